#!/usr/bin/env bash
# The project's single test entry (the README's "Test" command; .ci/run calls exactly this).
# Unit tests need no network beyond the Go module proxy and no cluster; they run in seconds once
# the module and build caches are warm.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './test/e2e/tools/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go build"
go build ./...

step "go vet"
go vet ./...

step "staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

step "unit tests"
go test -count=1 ./...

step "fuzz (short pass per decoder; FUZZTIME=${FUZZTIME:=10s})"
for pkg in ./eventing/podresource ./eventing/podreference; do
  # Minimizing a new input of a 30 KiB seed takes up to 60 s by default and stalls the workers.
  go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime "$FUZZTIME" -fuzzminimizetime 10x "$pkg"
done

step "benchmarks (one short run, figures only: targets are read from the report, not asserted)"
go test -run '^$' -bench . -benchtime 2000x ./handlers/ ./eventing/podresource/
