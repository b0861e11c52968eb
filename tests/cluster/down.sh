#!/usr/bin/env bash
# Stops the control plane started by up.sh, by its PID files (SIGTERM, then
# SIGKILL after 10 seconds), newest component first.
# Usage: tests/cluster/down.sh [--clean]   --clean also removes the state dir
#        (certificates, etcd data, logs). Honours OCELLUS_CLUSTER_DIR like up.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

clean=0
for a in "$@"; do
    case "$a" in
        --clean) clean=1 ;;
        *) echo "usage: $0 [--clean]" >&2; exit 2 ;;
    esac
done
if [ -d "$STATE/pids" ]; then
    stop_all 10
fi
rm -f "$STATE/env.sh" "$STATE/kubeconfig"
if [ "$clean" = 1 ] && [ -d "$STATE" ]; then
    # Guard against removing something that is not a state dir.
    if [ -f "$STATE/ports" ] || [ -d "$STATE/pki" ]; then
        rm -rf "$STATE"
        log "removed $STATE"
    else
        log "$STATE does not look like a cluster state dir; not removing it"
        exit 1
    fi
fi
log "stopped"
