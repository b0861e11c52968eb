#!/usr/bin/env bash
# Runs a command with the dev cluster up (tests/cluster/dev-cluster.sh) and its dev.env
# exported, then stops the cluster whatever the command's outcome; exits with the command's
# status. `make test` runs the whole test suite this way.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${OCELLUS_CLUSTER_DIR:-$HERE/../../.tools/cluster}"
trap 'bash "$HERE/dev-cluster.sh" down' EXIT
trap 'exit 130' INT TERM
bash "$HERE/dev-cluster.sh" up || { echo "the dev cluster did not start; logs: $STATE/logs" >&2; exit 1; }
set -a
source "$STATE/dev.env"
set +a
"$@"
