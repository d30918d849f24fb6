#!/usr/bin/env bash
# Builds the binaries of the local e2e control plane (see docs/dev/e2e-cluster.md)
# from the nested scratch Go modules under internal/localcluster/tools/, each ONCE, into
#   ${ADH_CACHE:-$HOME/.cache/argo-disruption-handler}/<component>-<version>/<binary>
# A component is skipped when its binary exists and was built from the same
# scratch go.mod/go.sum (+ version/ldflags); change the module and it rebuilds.
#
# Usage: internal/localcluster/build-bins.sh [component ...]
#   components: etcd kube-apiserver kube-controller-manager kubectl kwok adapter
#               argo-v3.5.10 argo-v3.6.10 argo-v3.6.18 argo-v3.7.3 argo-v3.7.18 argo-v4.0.5
#               argo-v4.0.7   (also: all, argo = every argo version)
#               func (the knative func CLI v0.44.0; not in "all")
#               helm (the Helm CLI v4.3.2 that lints, renders and installs deploy/chart in the
#                     tests; not in "all")
#               karpenter kube-scheduler (Karpenter v1.15.0's KWOK provider and the scheduler it
#               needs, for the Karpenter scenarios; not in "all"; Karpenter v1.15.0 needs Go >= 1.26.9,
#               so its build runs with GOTOOLCHAIN=go1.27.3, the approved toolchain the Go proxy serves)
#               broker (Knative Eventing's broker ingress, filter and InMemoryChannel dispatcher
#                       v0.50.0, plus the eventing CRDs; not in "all")
#   default: all
# Env: ADH_CACHE (output root), ADH_NICE (nice level, default 10), ADH_FORCE=1 (rebuild).
# Builds run sequentially (2-core machine); only the Go module proxy is contacted.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS="$HERE/tools"
CACHE="${ADH_CACHE:-$HOME/.cache/argo-disruption-handler}"
NICE="${ADH_NICE:-10}"
export GOWORK=off
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

K8S_VERSION=v1.35.4
K8S_LDFLAGS=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDFLAGS+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=35"
  K8S_LDFLAGS+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

ARGO_VERSIONS=(v3.5.10 v3.6.10 v3.6.18 v3.7.3 v3.7.18 v4.0.5 v4.0.7)
ALL=(etcd kube-apiserver kube-controller-manager kwok adapter)
for v in "${ARGO_VERSIONS[@]}"; do ALL+=("argo-$v"); done
ALL+=(kubectl)

# Argo's module path carries its major version from v4.0.2 on.
argo_module() { echo "github.com/argoproj/argo-workflows/${1%%.*}"; }

# The CRDs Argo's default install applies: minimal up to 3.7, full from 4.0.
argo_crd_flavour() { case "$1" in v3.*) echo minimal ;; *) echo full ;; esac; }

# Eventing's broker data plane: the three mains built from internal/localcluster/tools/broker.
BROKER_PKGS="knative.dev/eventing/cmd/broker/ingress knative.dev/eventing/cmd/broker/filter knative.dev/eventing/cmd/in_memory/channel_dispatcher"

# The Go toolchain a component's module needs when the machine's own Go is older than its go line.
TOOLCHAIN_DEFAULT="${GOTOOLCHAIN-}"
toolchain() { case "$1" in karpenter) echo go1.27.3 ;; *) echo "$TOOLCHAIN_DEFAULT" ;; esac; }

# component -> "module-dir|version|package|binary|extra-ldflags"; package and binary may be
# space-separated lists of the same length (one build per pair).
spec() {
  case "$1" in
    etcd)                    echo "etcd|v3.6.16|go.etcd.io/etcd/server/v3|etcd|" ;;
    kube-apiserver)          echo "kubernetes|$K8S_VERSION|k8s.io/kubernetes/cmd/kube-apiserver|kube-apiserver|$K8S_LDFLAGS" ;;
    kube-controller-manager) echo "kubernetes|$K8S_VERSION|k8s.io/kubernetes/cmd/kube-controller-manager|kube-controller-manager|$K8S_LDFLAGS" ;;
    kubectl)                 echo "kubernetes|$K8S_VERSION|k8s.io/kubernetes/cmd/kubectl|kubectl|$K8S_LDFLAGS" ;;
    kwok)                    echo "kwok|v0.7.0|sigs.k8s.io/kwok/cmd/kwok|kwok|" ;;
    adapter)                 echo "adapter|v0.50.0|.|apiserver_receive_adapter|" ;;
    func)                    echo "func|v0.44.0|knative.dev/func/cmd/func|func|-X knative.dev/func/pkg/app.vers=v0.44.0" ;;
    helm)                    echo "helm|v4.3.2|helm.sh/helm/v4/cmd/helm|helm|-X helm.sh/helm/v4/internal/version.version=v4.3.2" ;;
    kube-scheduler)          echo "kube-scheduler|$K8S_VERSION|k8s.io/kubernetes/cmd/kube-scheduler|kube-scheduler|$K8S_LDFLAGS" ;;
    karpenter)               echo "karpenter|v1.15.0|sigs.k8s.io/karpenter/kwok|karpenter|-X sigs.k8s.io/karpenter/pkg/operator.Version=v1.15.0" ;;
    broker)                  echo "broker|v0.50.0|$BROKER_PKGS|ingress filter channel_dispatcher|" ;;
    argo-v*)
      local v="${1#argo-}" m
      m="$(argo_module "$v")"
      echo "argo-$v|$v|$m/cmd/workflow-controller|workflow-controller|-X $m.version=$v -X $m.gitTag=$v -X $m.gitCommit=$v -X $m.gitTreeState=clean" ;;
    *) return 1 ;;
  esac
}

# Everything below runs from one function that bash parses completely before
# running it, so editing this file during a build does not break the build.
main() {
  local want=() summary=() c moddir version pkg bin ldx comp dir out key start d total_start pkgs bins i
  if [ $# -eq 0 ]; then set -- all; fi
  for c in "$@"; do
    case "$c" in
      all)  want+=("${ALL[@]}") ;;
      argo) for v in "${ARGO_VERSIONS[@]}"; do want+=("argo-$v"); done ;;
      *)    if spec "$c" >/dev/null; then want+=("$c"); else echo "unknown component: $c" >&2; exit 2; fi ;;
    esac
  done

  # Copies the CRDs of Argo's default install (manifests/base/crds/{minimal,full}) next to the
  # binary, so localcluster does not need the Go module cache at run time.
  copy_argo_crds() { # moddir version dir
    if compgen -G "$3/crds/argoproj.io_*.yaml" >/dev/null; then return 0; fi
    local src
    src="$(cd "$TOOLS/$1" && go mod download -json "$(argo_module "$2")@$2" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
    mkdir -p "$3/crds"
    cp "$src/manifests/base/crds/$(argo_crd_flavour "$2")"/argoproj.io_*.yaml "$3/crds/"
    chmod u+w "$3"/crds/*.yaml
  }

  # Copies the CRDs Karpenter's KWOK chart installs (NodePool, NodeClaim, KWOKNodeClass) next to
  # the binary: Karpenter panics at start when one of the kinds it watches is missing.
  copy_karpenter_crds() { # moddir version dir
    if compgen -G "$3/crds/*.yaml" >/dev/null; then return 0; fi
    local src
    src="$(cd "$TOOLS/$1" && go mod download -json "sigs.k8s.io/karpenter@$2" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
    mkdir -p "$3/crds"
    cp "$src"/kwok/charts/crds/karpenter.sh_{nodepools,nodeclaims}.yaml "$src"/kwok/apis/crds/karpenter.kwok.sh_kwoknodeclasses.yaml "$3/crds/"
    chmod u+w "$3"/crds/*.yaml
  }

  # Copies the CRDs the broker data plane watches (eventing's config/core/resources, the
  # release's eventing-crds.yaml, plus the InMemoryChannel CRD, which that file leaves out) next
  # to the binaries, so localcluster does not need the Go module cache at run time.
  copy_broker_crds() { # moddir version dir
    if compgen -G "$3/crds/*.yaml" >/dev/null; then return 0; fi
    local src
    src="$(cd "$TOOLS/$1" && go mod download -json "knative.dev/eventing@$2" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
    mkdir -p "$3/crds"
    cp "$src"/config/core/resources/*.yaml "$src"/config/channels/in-memory-channel/resources/in-memory-channel.yaml "$3/crds/"
    chmod u+w "$3"/crds/*.yaml
  }

  # Copies whatever else a component needs at run time next to its binaries.
  copy_extras() { # component moddir version dir
    case "$1" in
      argo)   copy_argo_crds "$2" "$3" "$4" ;;
      broker) copy_broker_crds "$2" "$3" "$4" ;;
      karpenter) copy_karpenter_crds "$2" "$3" "$4" ;;
    esac
  }

  # True when every binary of the list exists in dir.
  all_built() { # dir bin...
    local d="$1" b
    shift
    for b in "$@"; do [ -x "$d/$b" ] || return 1; done
  }

  fmt_dur() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

  summary=()
  total_start=$SECONDS
  for c in "${want[@]}"; do
    IFS='|' read -r moddir version pkg bin ldx <<<"$(spec "$c")"
    comp="${c%%-v[0-9]*}"                       # argo-v3.5.10 -> argo
    if [ -n "$(toolchain "$comp")" ]; then export GOTOOLCHAIN="$(toolchain "$comp")"; else unset GOTOOLCHAIN; fi
    dir="$CACHE/$comp-$version"
    read -r -a pkgs <<<"$pkg"
    read -r -a bins <<<"$bin"
    [ -d "$TOOLS/$moddir" ] || { echo "missing scratch module $TOOLS/$moddir" >&2; exit 1; }
    key="$( { cat "$TOOLS/$moddir/go.mod" "$TOOLS/$moddir/go.sum"; echo "$pkg $version $ldx"; go env GOVERSION; } | sha256sum | cut -c1-16)"
    if [ -z "${ADH_FORCE:-}" ] && all_built "$dir" "${bins[@]}" && [ "$(cat "$dir/.build-key" 2>/dev/null)" = "$key" ]; then
      echo "== $c: up to date ($dir/${bins[*]})"
      copy_extras "$comp" "$moddir" "$version" "$dir"
      summary+=("$(printf '%-26s %-9s cached' "$c" "$version")")
      continue
    fi
    mkdir -p "$dir"
    start=$SECONDS
    for i in "${!pkgs[@]}"; do
      out="$dir/${bins[$i]}"
      echo "== $c $version: building ${pkgs[$i]} -> $out"
      ( cd "$TOOLS/$moddir" &&
        nice -n "$NICE" go build -trimpath -ldflags="-s -w $ldx" -o "$out.tmp" "${pkgs[$i]}" )
      mv -f "$out.tmp" "$out"
    done
    echo "$key" >"$dir/.build-key"
    copy_extras "$comp" "$moddir" "$version" "$dir"
    d=$((SECONDS - start))
    echo "== $c: built in $(fmt_dur $d)"
    echo "$(date -u +%FT%TZ) $c $version $(fmt_dur $d) $(nproc)cpu" >>"$CACHE/build-times.log"
    summary+=("$(printf '%-26s %-9s %s' "$c" "$version" "$(fmt_dur $d)")")
  done
  echo
  echo "== summary (cache: $CACHE)"
  printf '  %s\n' "${summary[@]}"
  echo "  total $(fmt_dur $((SECONDS - total_start)))"
}

main "$@"
exit
