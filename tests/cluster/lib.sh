# Shared by up.sh and down.sh (sourced, not run).
# State layout under $STATE (default <repo>/.tools/cluster, or $OCELLUS_CLUSTER_DIR):
#   pki/         CAs, serving and client certificates, service-account key pair
#   etcd-data/   etcd's data directory
#   pids/        <component>.pid
#   logs/        <component>.log
#   ports        the loopback ports chosen at the first start (reused when still free)
#   kubeconfig   admin (system:masters); *.kubeconfig for the components
#   env.sh       export KUBECONFIG=... OCELLUS_APISERVER_PORT=...

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${OCELLUS_TOOLS_BIN:-$ROOT/.tools/bin}"
STATE="${OCELLUS_CLUSTER_DIR:-$ROOT/.tools/cluster}"
# Stop order; start order is the reverse.
COMPONENTS=(kube-scheduler kube-controller-manager kube-apiserver etcd)

log() { echo "cluster: $*" >&2; }

# The pid in pids/$1.pid, if that process is alive and is our binary from $BIN.
component_pid() {
    local f="$STATE/pids/$1.pid" pid exe
    [ -f "$f" ] || return 1
    pid="$(cat "$f")"
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
    exe="${exe% (deleted)}"
    [ "$exe" = "$BIN/$1" ] || return 1
    echo "$pid"
}

# SIGTERM, then SIGKILL after $2 seconds (default 10).
stop_component() {
    local name="$1" grace="${2:-10}" pid i
    if pid="$(component_pid "$name")"; then
        log "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < grace * 10; i++)); do
            [ -d "/proc/$pid" ] || break
            # A zombie child of this shell counts as gone.
            [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
            sleep 0.1
        done
        if [ -d "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
            log "$name did not stop in ${grace}s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$STATE/pids/$name.pid"
}

stop_all() {
    local c
    for c in "${COMPONENTS[@]}"; do
        stop_component "$c" "${1:-10}"
    done
}
