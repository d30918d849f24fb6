#!/usr/bin/env bash
# The project's single test entry (the README's "Development" section, docs/dev/README.md; .ci/run calls exactly this).
# Unit tests need no network beyond the Go module proxy and no cluster; they run in seconds once
# the module and build caches are warm.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './internal/localcluster/tools/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go build"
go build ./...

# -tags e2e: the e2e tests, the benchmarks and their helpers too (no file is built only without it).
step "go vet"
go vet -tags e2e ./...

step "staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 -tags e2e ./...

# The chart's unit tests (deploy/) render it with the Helm CLI users run: built once, cached.
step "helm CLI (built once, cached in ${ADH_CACHE:-$HOME/.cache/argo-disruption-handler})"
internal/localcluster/build-bins.sh helm

step "unit tests"
go test -count=1 ./...

# A count, not a duration: with -fuzztime 10s a worker still busy when the time runs out fails
# the run with "context deadline exceeded" (seen once in CI on nodedelete). 50,000 execs take
# 5–10 s per decoder here.
step "fuzz (short pass per decoder; FUZZTIME=${FUZZTIME:=50000x})"
for pkg in ./eventing/podresource ./eventing/podreference ./eventing/nodedelete ./eventing/karpenterevent ./eventing/ec2interruption ./eventing/pingsource; do
  # Minimizing a new input of a 30 KiB seed takes up to 60 s by default and stalls the workers.
  go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime "$FUZZTIME" -fuzzminimizetime 10x "$pkg"
done

step "benchmarks (one short run, figures only: targets are read from the report, not asserted)"
go test -run '^$' -bench 'IrrelevantEvent|HealthyWorkflowPodUpdate' -benchtime 2000x ./test/bench/micro/
go test -run '^$' -bench . -benchtime 2000x ./eventing/podresource/

# The e2e matrix on the local real control plane (docs/dev/e2e.md). E2E=0 skips it for a quick run.
# CI runs one controller version per test (the defaults below: the newest patch of each minor
# that test needs). ADH_E2E_FULL=1 runs the full matrix (docs/dev/e2e-results.md): every scenario on
# Argo v3.5.10, v3.6.18, v3.7.18 and v4.0.7, and the PodGC race on v3.6.18, v3.7.18 and v4.0.7
# (about 40 min more, and three more controllers to build on a new machine).
if [ "${E2E:-1}" != 0 ]; then
  if [ "${ADH_E2E_FULL:-0}" = 1 ]; then
    : "${ADH_E2E_ARGO_VERSIONS:=v3.5.10 v3.6.18 v3.7.18 v4.0.7}" "${ADH_E2E_RACE_ARGO:=v3.6.18 v3.7.18 v4.0.7}" "${ADH_E2E_TIMEOUT:=150m}"
  fi
  versions=${ADH_E2E_ARGO_VERSIONS:-v3.5.10} # the version that hangs for ever without the function
  signals=${ADH_E2E_SIGNALS_ARGO:-v3.7.18} # the status finalizer needs 3.6+
  harm=${ADH_E2E_HARM_ARGO:-v3.7.18}
  race=${ADH_E2E_RACE_ARGO:-v3.7.18} # PodGC's Failed status: misread as success up to 3.7.6
  restart=${ADH_E2E_RESTART_ARGO:-v4.0.7} # failedPodRestart exists from 4.0
  step "e2e binaries for Argo $versions $signals $harm $race $restart (built once, cached in ${ADH_CACHE:-$HOME/.cache/argo-disruption-handler})"
  internal/localcluster/build-bins.sh etcd kube-apiserver kube-controller-manager kubectl kwok adapter kube-scheduler karpenter broker $(for v in $versions $signals $harm $race $restart v3.5.10; do printf 'argo-%s ' "$v"; done | tr ' ' '\n' | sort -u | tr '\n' ' ')
  step "e2e: scenario matrix (Argo $versions), disruption signals (Argo $signals), do-no-harm (Argo $harm), PodGC race (Argo $race), failedPodRestart (Argo $restart), the sweep command, Karpenter v1.15's drift, NodeClaim deletion and node reboot and the Broker data plane (Argo v3.5.10), the Helm chart (dry run, install, upgrade, uninstall), RBAC, sender authentication"
  # The tables are printed in the log; docs/dev/e2e-results.md is only rewritten on request.
  ADH_E2E_ARGO_VERSIONS="$versions" ADH_E2E_SIGNALS_ARGO="$signals" ADH_E2E_HARM_ARGO="$harm" ADH_E2E_RACE_ARGO="$race" ADH_E2E_RESTART_ARGO="$restart" \
    go test -tags e2e -count=1 -run 'TestMatrix|TestDisruptionSignals|TestSweep|TestChartInstall|TestRBACRepairSteps|TestResilience|TestRecordAfterWorkflowEnds|TestDoNoHarm|TestSenderAuthentication|TestPodGCRace|TestFailedPodRestart|TestKarpenter|TestBrokerDataPlane' -v -timeout "${ADH_E2E_TIMEOUT:-80m}" ./test/e2e/
fi

# func deploy --builder=host against the local stack (docs/dev/func-deploy.md): ADH_E2E_FUNC=1 adds it.
# Not by default: on a new machine the func CLI takes ~6 min to build and the host build of three
# platforms up to 7 min more (about 1 min once cached).
if [ "${E2E:-1}" != 0 ] && [ "${ADH_E2E_FUNC:-0}" = 1 ]; then
  step "e2e: func deploy --builder=host, its Service against the chart's (service.create)"
  internal/localcluster/build-bins.sh func
  go test -tags e2e -count=1 -run 'TestFuncDeploy' -v -timeout 30m ./test/e2e/
fi
