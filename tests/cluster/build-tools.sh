#!/usr/bin/env bash
# Builds the test control plane's binaries from the Go modules under
# tests/controlplane/ into .tools/bin (git-ignored):
#   kubernetes/  kube-apiserver kube-controller-manager kube-scheduler kubectl
#   etcd/        etcd
#   helm/        helm
#   kueue/       kueue (Kueue's manager, for the queued-GPU e2e)
# Sources come from the Go module proxy through `go`; the caches are Go's
# defaults (GOCACHE, GOMODCACHE, outside the repository), so a second build on
# the same machine is fast. A module whose go.mod/go.sum, Go version and build
# flags are unchanged and whose binaries exist is skipped (stamp file per module).
#
# Usage: tests/cluster/build-tools.sh [kubernetes|etcd|helm|kueue ...]   (default: all)
# Environment: OCELLUS_TOOLS_BIN (default <repo>/.tools/bin), GO_BUILD_P (default 2),
#              OCELLUS_TOOLS_FORCE=1 to rebuild regardless of stamps.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
MODS="$ROOT/tests/controlplane"
BIN="${OCELLUS_TOOLS_BIN:-$ROOT/.tools/bin}"
P="${GO_BUILD_P:-2}"
mkdir -p "$BIN"

command -v go >/dev/null || { echo "build-tools: go is not installed" >&2; exit 1; }

# Module version as go.mod requires it, e.g. modver kubernetes k8s.io/kubernetes -> v1.34.4
modver() {
    (cd "$MODS/$1" && go list -m -f '{{.Version}}' "$2")
}

# build MODULE_DIR "LDFLAGS" OUT=PKG ...
build() {
    local mod="$1" ldflags="$2"
    shift 2
    local stamp_file="$BIN/.stamp-$mod" stamp outs=() missing=0 pair
    stamp="$( { cat "$MODS/$mod/go.mod" "$MODS/$mod/go.sum"; go version; echo "$ldflags $*"; } | sha256sum | cut -d' ' -f1)"
    for pair in "$@"; do
        [ -x "$BIN/${pair%%=*}" ] || missing=1
    done
    if [ "${OCELLUS_TOOLS_FORCE:-0}" != 1 ] && [ "$missing" = 0 ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
        echo "build-tools: $mod up to date"
        return 0
    fi
    rm -f "$stamp_file"
    local start=$SECONDS
    for pair in "$@"; do
        echo "build-tools: $mod: building ${pair%%=*} from ${pair#*=}"
        (cd "$MODS/$mod" && CGO_ENABLED=0 nice -n 10 go build -p "$P" -trimpath \
            -ldflags="-s -w $ldflags" -o "$BIN/${pair%%=*}.tmp" "${pair#*=}")
        mv -f "$BIN/${pair%%=*}.tmp" "$BIN/${pair%%=*}"
    done
    echo "$stamp" > "$stamp_file"
    echo "build-tools: $mod built in $((SECONDS - start))s"
}

build_kubernetes() {
    local v major minor
    v="$(modver kubernetes k8s.io/kubernetes)"
    major="${v#v}"; major="${major%%.*}"
    minor="${v#v*.}"; minor="${minor%%.*}"
    local x=""
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        x+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        x+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    build kubernetes "$x" \
        kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
        kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
        kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
        kubectl=k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
    build etcd "" etcd=go.etcd.io/etcd/server/v3
}

build_helm() {
    local v kv minor
    v="$(modver helm helm.sh/helm/v3)"
    kv="$(modver helm k8s.io/client-go)"   # v0.37.0 -> Kubernetes 1.37
    minor="${kv#v0.}"; minor="${minor%%.*}"
    build helm "-X helm.sh/helm/v3/internal/version.version=$v -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor \
-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
        helm=helm.sh/helm/v3/cmd/helm
}

build_kueue() {
    build kueue "-X sigs.k8s.io/kueue/pkg/version.GitVersion=$(modver kueue sigs.k8s.io/kueue)" \
        kueue=sigs.k8s.io/kueue/cmd/kueue
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(etcd kubernetes helm kueue)
total=$SECONDS
for t in "${targets[@]}"; do
    case "$t" in
        kubernetes|etcd|helm|kueue) "build_$t" ;;
        *) echo "build-tools: unknown target $t (kubernetes, etcd, helm, kueue)" >&2; exit 2 ;;
    esac
done
echo "build-tools: done in $((SECONDS - total))s; binaries in $BIN"
