#!/usr/bin/env bash
# A whole Ocellus cluster on this machine, as a user would have it: the real control plane
# (up.sh), an S3-compatible store (s3s-fs), the process node running pods as local processes,
# the chart installed with Helm, and Kueue with a one-GPU queue. The end-to-end tests use this same entry point.
#
# Usage: tests/cluster/dev-cluster.sh up     start everything (idempotent), print how to use it
#        tests/cluster/dev-cluster.sh down   stop everything and remove what it made
# Needs: the Go tools in .tools/bin (tests/cluster/build-tools.sh, Kueue included), s3s-fs (make tools), and the
# workspace's debug binaries ocellus, ocellus-operator and ocellus-node (cargo build).
# Writes $STATE/dev.env: KUBECONFIG, the store's endpoint and keys, the demo namespace.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
S3S_FS="${OCELLUS_S3S_FS:-$ROOT/.tools/bin/s3s-fs}"
HELM="$BIN/helm"
KUEUE="$BIN/kueue"
KUEUE_QUEUE=gpu
KUEUE_CERT_MOUNT=/etc/kueue/metrics/certs
KUBECTL="$BIN/kubectl"
RELEASE_NAMESPACE=ocellus-system
DEMO_NAMESPACE="${OCELLUS_DEMO_NAMESPACE:-ocellus-demo}"
STORE_BUCKET=ocellus
DATA_BUCKET=data
NODE_STATE="$STATE/node"
S3_DATA="$STATE/s3"

pid_alive() { [ -f "$1" ] && [ -d "/proc/$(cat "$1")" ]; }

stop_pid() {
    local file="$1" pid i
    pid_alive "$file" || { rm -f "$file"; return 0; }
    pid="$(cat "$file")"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$file"
}

wait_http() {
    local url="$1" what="$2" i
    for ((i = 0; i < 300; i++)); do
        curl -s -o /dev/null "$url" && return 0
        sleep 0.2
    done
    log "$what did not answer at $url"; return 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_store() {
    mkdir -p "$S3_DATA/$STORE_BUCKET" "$S3_DATA/$DATA_BUCKET" "$STATE/pids" "$STATE/logs"
    if [ ! -f "$STATE/s3.env" ]; then
        cat > "$STATE/s3.env" <<EOF
S3_PORT=$(free_port)
AWS_ACCESS_KEY_ID=ocellus-dev-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d " \n")
AWS_SECRET_ACCESS_KEY=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
EOF
    fi
    source "$STATE/s3.env"
    if ! pid_alive "$STATE/pids/s3s-fs.pid"; then
        [ -x "$S3S_FS" ] || { log "$S3S_FS missing: run make tools"; return 1; }
        "$S3S_FS" --host 127.0.0.1 --port "$S3_PORT" --access-key "$AWS_ACCESS_KEY_ID" \
            --secret-key "$AWS_SECRET_ACCESS_KEY" "$S3_DATA" > "$STATE/logs/s3s-fs.log" 2>&1 &
        echo $! > "$STATE/pids/s3s-fs.pid"
    fi
    wait_http "http://127.0.0.1:$S3_PORT/" "s3s-fs"
    # The backbones the trainer pods use, with the SHA256SUMS the trainer checks downloads against.
    local backbones="$S3_DATA/$STORE_BUCKET/backbones"
    if [ ! -f "$backbones/SHA256SUMS" ]; then
        mkdir -p "$backbones"
        cp -r "$ROOT/backbones/efficientnet_lite0" "$backbones/"
        (cd "$backbones" && find efficientnet_lite0 -type f | sort | xargs sha256sum > .SHA256SUMS.tmp && mv .SHA256SUMS.tmp SHA256SUMS)
    fi
}

start_node() {
    if pid_alive "$STATE/pids/ocellus-node.pid"; then return 0; fi
    for b in ocellus ocellus-dataset ocellus-operator ocellus-node; do
        [ -x "$TARGET/$b" ] || { log "$TARGET/$b missing: run cargo build"; return 1; }
    done
    mkdir -p "$NODE_STATE"
    KUBECONFIG="$STATE/kubeconfig" "$TARGET/ocellus-node" --state-dir "$NODE_STATE" \
        --image "ghcr.io/ocellus/operator=$TARGET/ocellus-operator" \
        --image "ghcr.io/ocellus/trainer=$TARGET/ocellus" \
        > "$STATE/logs/ocellus-node.log" 2>&1 &
    echo $! > "$STATE/pids/ocellus-node.pid"
    local i
    for ((i = 0; i < 150; i++)); do
        "$KUBECTL" get node process-node -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null \
            | grep -q True && return 0
        sleep 0.2
    done
    log "the process node did not become Ready; see $STATE/logs/ocellus-node.log"; return 1
}

install_chart() {
    source "$STATE/s3.env"
    "$KUBECTL" create namespace "$DEMO_NAMESPACE" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
    "$KUBECTL" label --overwrite namespace "$DEMO_NAMESPACE" \
        pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted >/dev/null
    "$KUBECTL" create namespace "$RELEASE_NAMESPACE" --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
    for ns in "$DEMO_NAMESPACE" "$RELEASE_NAMESPACE"; do
        "$KUBECTL" -n "$ns" create secret generic ocellus-store \
            --from-literal=AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
            --from-literal=AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
            --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
    done
    "$HELM" upgrade --install ocellus "$ROOT/charts/ocellus" --namespace "$RELEASE_NAMESPACE" --wait --timeout 3m \
        --set artifacts.location="s3://$STORE_BUCKET/store" \
        --set artifacts.s3Endpoint="http://127.0.0.1:$S3_PORT" \
        --set artifacts.credentialsSecret=ocellus-store \
        --set backbones.location="s3://$STORE_BUCKET/backbones" \
        --set operator.progressTimeoutSeconds=300 \
        --set "trainer.namespaces={$DEMO_NAMESPACE}" \
        ${OCELLUS_HELM_ARGS:-} >/dev/null
}

# Kueue's manager as a local process (admin kubeconfig, not a pod), its CRDs from the module
# cache with their conversion webhook pointed at it on loopback (a self-signed serving cert; no
# Service can route to loopback here), and a ClusterQueue holding one GPU with a LocalQueue
# "gpu" in the demo namespace. Its admission webhooks are not installed: the operator creates
# queued Jobs suspended itself, which is all the Job webhook would add.
start_kueue() {
    [ -x "$KUEUE" ] || { log "$KUEUE missing: run tests/cluster/build-tools.sh kueue"; return 1; }
    local dir="$STATE/kueue" src ca patch crd
    mkdir -p "$dir/certs"
    if [ ! -f "$dir/kueue.env" ]; then
        printf 'KUEUE_WEBHOOK_PORT=%s\nKUEUE_HEALTH_PORT=%s\n' "$(free_port)" "$(free_port)" > "$dir/kueue.env"
    fi
    source "$dir/kueue.env"
    if [ ! -f "$dir/certs/tls.crt" ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=kueue-webhook \
            -addext "subjectAltName=IP:127.0.0.1" \
            -keyout "$dir/certs/tls.key" -out "$dir/certs/tls.crt" 2>/dev/null
    fi
    src="$(cd "$ROOT/tests/controlplane/kueue" && go mod download sigs.k8s.io/kueue && go list -m -f '{{.Dir}}' sigs.k8s.io/kueue)"
    "$KUBECTL" apply --server-side --force-conflicts -f "$src/config/components/crd/bases" >/dev/null
    ca="$(base64 -w0 < "$dir/certs/tls.crt")"
    patch="{\"spec\":{\"conversion\":{\"strategy\":\"Webhook\",\"webhook\":{\"conversionReviewVersions\":[\"v1\"],\"clientConfig\":{\"url\":\"https://127.0.0.1:$KUEUE_WEBHOOK_PORT/convert\",\"caBundle\":\"$ca\"}}}}}"
    for crd in localqueues clusterqueues cohorts workloads multikueueclusters; do
        "$KUBECTL" patch crd "$crd.kueue.x-k8s.io" --type merge -p "$patch" >/dev/null
    done
    "$KUBECTL" create namespace kueue-system --dry-run=client -o yaml | "$KUBECTL" apply -f - >/dev/null
    cat > "$dir/config.yaml" <<EOF
apiVersion: config.kueue.x-k8s.io/v1beta2
kind: Configuration
namespace: kueue-system
health: {healthProbeBindAddress: "127.0.0.1:$KUEUE_HEALTH_PORT"}
metrics: {bindAddress: "0"}
webhook: {host: 127.0.0.1, port: $KUEUE_WEBHOOK_PORT, certDir: $dir/certs}
leaderElection: {leaderElect: false}
internalCertManagement: {enable: false}
manageJobsWithoutQueueName: false
integrations: {frameworks: ["batch/job"]}
EOF
    # Without internal cert management Kueue reads its metrics certificate from a fixed path, the
    # mount point of its Deployment's Secret volume: bind the serving cert there in a private
    # mount namespace (only the empty mount point is made on the host).
    mkdir -p "$KUEUE_CERT_MOUNT"
    if ! pid_alive "$STATE/pids/kueue.pid"; then
        KUBECONFIG="$STATE/kubeconfig" unshare --mount --propagation private sh -c \
            'mount --bind "$1" "$2" && shift 2 && exec "$@"' kueue "$dir/certs" "$KUEUE_CERT_MOUNT" \
            "$KUEUE" --config "$dir/config.yaml" --feature-gates=VisibilityOnDemand=false \
            > "$STATE/logs/kueue.log" 2>&1 &
        echo $! > "$STATE/pids/kueue.pid"
    fi
    wait_http "http://127.0.0.1:$KUEUE_HEALTH_PORT/readyz" "kueue" || { log "see $STATE/logs/kueue.log"; return 1; }
    "$KUBECTL" apply --server-side -f - >/dev/null <<EOF
apiVersion: kueue.x-k8s.io/v1beta2
kind: ResourceFlavor
metadata: {name: default-flavor}
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: ClusterQueue
metadata: {name: $KUEUE_QUEUE}
spec:
  namespaceSelector: {}
  resourceGroups:
  - coveredResources: [cpu, memory, nvidia.com/gpu]
    flavors:
    - name: default-flavor
      resources:
      - {name: cpu, nominalQuota: "64"}
      - {name: memory, nominalQuota: 256Gi}
      - {name: nvidia.com/gpu, nominalQuota: "1"}
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: LocalQueue
metadata: {name: $KUEUE_QUEUE, namespace: $DEMO_NAMESPACE}
spec: {clusterQueue: $KUEUE_QUEUE}
EOF
}

write_env() {
    source "$STATE/s3.env"
    cat > "$STATE/dev.env" <<EOF
export KUBECONFIG=$STATE/kubeconfig
export OCELLUS_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
export AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
export AWS_REGION=us-east-1
export OCELLUS_S3_DATA_DIR=$S3_DATA
export OCELLUS_DEMO_NAMESPACE=$DEMO_NAMESPACE
export OCELLUS_RELEASE_NAMESPACE=$RELEASE_NAMESPACE
export OCELLUS_NODE_STATE_DIR=$NODE_STATE
export OCELLUS_KUEUE_QUEUE=$KUEUE_QUEUE
EOF
}

up() {
    "$ROOT/tests/cluster/up.sh" >/dev/null
    export KUBECONFIG="$STATE/kubeconfig"
    start_store
    start_node
    install_chart
    start_kueue
    write_env
    source "$STATE/s3.env"
    cat <<EOF
The Ocellus dev cluster is up: control plane, process node, S3 store, chart.
  export KUBECONFIG=$STATE/kubeconfig        (or: source $STATE/dev.env)
  kubectl -n $DEMO_NAMESPACE apply -f your-manifests.yaml; kubectl -n $DEMO_NAMESPACE get ds,exp -w
S3 store: endpoint http://127.0.0.1:$S3_PORT, access key $AWS_ACCESS_KEY_ID, secret key $AWS_SECRET_ACCESS_KEY
  buckets: s3://$STORE_BUCKET (artifacts under store/, backbones under backbones/), s3://$DATA_BUCKET (your data)
  files of bucket B live in $S3_DATA/B; upload with any S3 client.
Kueue: ClusterQueue $KUEUE_QUEUE (1 GPU), LocalQueue $KUEUE_QUEUE in $DEMO_NAMESPACE; label an Experiment
  kueue.x-k8s.io/queue-name: $KUEUE_QUEUE to queue it.
Logs: $STATE/logs/ (control plane, s3s-fs, node, kueue); pod logs under $NODE_STATE/pods/.
Stop: make dev-cluster-down
EOF
}

down() {
    stop_pid "$STATE/pids/ocellus-node.pid"
    # The node's pods are its children's process groups; the agent stops them on SIGTERM.
    stop_pid "$STATE/pids/s3s-fs.pid"
    stop_pid "$STATE/pids/kueue.pid"
    rmdir "$KUEUE_CERT_MOUNT" /etc/kueue/metrics /etc/kueue 2>/dev/null || true
    "$ROOT/tests/cluster/down.sh" --clean >/dev/null 2>&1 || "$ROOT/tests/cluster/down.sh" >/dev/null 2>&1 || true
    rm -rf "$STATE"
    log "dev cluster stopped and removed"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
