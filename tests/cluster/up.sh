#!/usr/bin/env bash
# Starts a real Kubernetes control plane on loopback: etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler from .tools/bin (build them with
# tests/cluster/build-tools.sh), with TLS everywhere, RBAC + Node authorization,
# the default admission plugins (PodSecurity included) and service-account tokens.
# There is no node: pods are created and scheduled against nothing (Pending).
#
# Usage: tests/cluster/up.sh            then: source "$STATE/env.sh"
# Environment: OCELLUS_CLUSTER_DIR (state dir, default <repo>/.tools/cluster),
#              OCELLUS_TOOLS_BIN (default <repo>/.tools/bin),
#              OCELLUS_CLUSTER_TIMEOUT (seconds to wait for readiness, default 180).
# Stop with tests/cluster/down.sh [--clean].
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TIMEOUT="${OCELLUS_CLUSTER_TIMEOUT:-180}"
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1
ISSUER=https://kubernetes.default.svc.cluster.local
CLUSTER_NAME=ocellus-test
PKI="$STATE/pki"
KUBECTL="$BIN/kubectl"

for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$BIN/$b" ] || { log "$BIN/$b missing: run tests/cluster/build-tools.sh (make cluster-tools)"; exit 1; }
done
command -v openssl >/dev/null || { log "openssl is required"; exit 1; }

mkdir -p "$STATE"/{pki,pids,logs,etcd-data}
chmod 700 "$STATE" "$STATE/pki" "$STATE/etcd-data"

running=()
for c in "${COMPONENTS[@]}"; do
    if component_pid "$c" >/dev/null; then running+=("$c"); fi
done
if [ ${#running[@]} -eq ${#COMPONENTS[@]} ] && [ -f "$STATE/env.sh" ] \
    && KUBECONFIG="$STATE/kubeconfig" "$KUBECTL" get --raw /readyz >/dev/null 2>&1; then
    log "already running ($STATE)"
    echo "export KUBECONFIG=$STATE/kubeconfig"
    exit 0
fi
if [ ${#running[@]} -gt 0 ]; then
    log "partly running (${running[*]}); run tests/cluster/down.sh first"
    exit 1
fi

# From here on, whatever this script started is stopped again if it fails.
started=0
cleanup() {
    local rc=$?
    if [ "$rc" -ne 0 ] && [ "$started" = 1 ]; then
        log "start failed (exit $rc); stopping what was started. Logs: $STATE/logs/"
        stop_all 5
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ---------------------------------------------------------------- ports
port_free() {
    # Nothing listening on it (any address) and not already chosen.
    ! ss -Htln "sport = :$1" 2>/dev/null | grep -q . && [[ " ${chosen[*]:-} " != *" $1 "* ]]
}
pick_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 30000))
        if port_free "$p"; then echo "$p"; return 0; fi
    done
    log "no free port found"; return 1
}
chosen=()
ETCD_PORT="" ETCD_PEER_PORT="" APISERVER_PORT="" KCM_PORT="" SCHEDULER_PORT=""
if [ -f "$STATE/ports" ]; then
    source "$STATE/ports"
    for p in "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$KCM_PORT" "$SCHEDULER_PORT"; do
        if [ -z "$p" ] || ! port_free "$p"; then
            log "port ${p:-?} from an earlier start is taken; choosing new ports"
            ETCD_PORT="" ; break
        fi
        chosen+=("$p")
    done
fi
if [ -z "$ETCD_PORT" ]; then
    chosen=()
    for v in ETCD_PORT ETCD_PEER_PORT APISERVER_PORT; do
        p="$(pick_port)"; chosen+=("$p"); printf -v "$v" '%s' "$p"
    done
    # The controller-manager's and scheduler's usual ports when free: the apiserver's
    # (deprecated) componentstatuses probes exactly 127.0.0.1:10257 and :10259.
    for v in KCM_PORT:10257 SCHEDULER_PORT:10259; do
        if port_free "${v#*:}"; then p="${v#*:}"; else p="$(pick_port)"; fi
        chosen+=("$p"); printf -v "${v%%:*}" '%s' "$p"
    done
    cat > "$STATE/ports" <<EOF
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_PORT=$APISERVER_PORT
KCM_PORT=$KCM_PORT
SCHEDULER_PORT=$SCHEDULER_PORT
EOF
fi
log "ports: etcd $ETCD_PORT (peer $ETCD_PEER_PORT), apiserver $APISERVER_PORT, controller-manager $KCM_PORT, scheduler $SCHEDULER_PORT"

# ---------------------------------------------------------------- certificates
# Made once per state dir; EC P-256 keys, 10-year CAs, 1-year leaves.
ca() {  # ca NAME CN
    [ -f "$PKI/$1.crt" ] && return 0
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$1.key" 2>/dev/null
    openssl req -x509 -new -key "$PKI/$1.key" -sha256 -days 3650 -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
        -out "$PKI/$1.crt" 2>/dev/null
}
leaf() {  # leaf NAME CA SUBJECT EXTENDED_KEY_USAGE [SANS]
    local name="$1" ca="$2" subj="$3" eku="$4" sans="${5:-}" ext
    [ -f "$PKI/$name.crt" ] && return 0
    ext="$PKI/$name.ext"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        [ -z "$sans" ] || echo "subjectAltName=$sans"
    } > "$ext"
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
    openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" \
        -CAcreateserial -sha256 -days 365 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
    rm -f "$PKI/$name.csr" "$ext"
}
ca ca "$CLUSTER_NAME-ca"
ca etcd-ca "$CLUSTER_NAME-etcd-ca"
ca front-proxy-ca "$CLUSTER_NAME-front-proxy-ca"
leaf apiserver ca "/CN=kube-apiserver" serverAuth \
    "IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
leaf apiserver-kubelet-client ca "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
leaf admin ca "/O=system:masters/CN=ocellus-admin" clientAuth
leaf kube-controller-manager ca "/CN=system:kube-controller-manager" clientAuth
leaf kube-scheduler ca "/CN=system:kube-scheduler" clientAuth
leaf etcd-server etcd-ca "/CN=etcd" serverAuth,clientAuth "IP:127.0.0.1,DNS:localhost"
leaf apiserver-etcd-client etcd-ca "/CN=kube-apiserver-etcd-client" clientAuth
leaf front-proxy-client front-proxy-ca "/CN=front-proxy-client" clientAuth
if [ ! -f "$PKI/sa.key" ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
    openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
fi
chmod 600 "$PKI"/*.key

APISERVER_URL="https://127.0.0.1:$APISERVER_PORT"
kubeconfig() {  # kubeconfig FILE CERT_NAME USER
    local f="$1"
    cat > "$f.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $CLUSTER_NAME
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $3
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$2.crt")
    client-key-data: $(base64 -w0 "$PKI/$2.key")
contexts:
- name: $3@$CLUSTER_NAME
  context:
    cluster: $CLUSTER_NAME
    user: $3
current-context: $3@$CLUSTER_NAME
EOF
    chmod 600 "$f.tmp"
    mv -f "$f.tmp" "$f"
}
kubeconfig "$STATE/kube-controller-manager.kubeconfig" kube-controller-manager system:kube-controller-manager
kubeconfig "$STATE/kube-scheduler.kubeconfig" kube-scheduler system:kube-scheduler
# The admin kubeconfig is written last, once the cluster is ready.
ADMIN_KC="$STATE/admin.kubeconfig"
kubeconfig "$ADMIN_KC" admin ocellus-admin

cat > "$STATE/kube-scheduler.yaml" <<EOF
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: $STATE/kube-scheduler.kubeconfig
leaderElection:
  leaderElect: false
EOF

# ---------------------------------------------------------------- processes
start_component() {  # start_component NAME ARGS...
    local name="$1"; shift
    : > "$STATE/logs/$name.log"
    started=1
    # setsid: the components outlive this script and the shell that ran it.
    setsid "$BIN/$name" "$@" </dev/null >>"$STATE/logs/$name.log" 2>&1 &
    echo $! > "$STATE/pids/$name.pid"
    log "started $name (pid $!, log $STATE/logs/$name.log)"
}
check_alive() {
    local c
    for c in "$@"; do
        if ! component_pid "$c" >/dev/null; then
            log "$c exited; last lines of $STATE/logs/$c.log:"
            tail -n 25 "$STATE/logs/$c.log" >&2 || true
            return 1
        fi
    done
}
wait_for() {  # wait_for WHAT COMPONENTS... -- COMMAND...
    local what="$1" comps=() deadline=$((SECONDS + TIMEOUT))
    shift
    while [ "$1" != -- ]; do comps+=("$1"); shift; done
    shift
    until "$@" >/dev/null 2>&1; do
        check_alive "${comps[@]}"
        if [ $SECONDS -ge $deadline ]; then
            log "timed out after ${TIMEOUT}s waiting for $what"; return 1
        fi
        sleep 0.5
    done
}
t0=$SECONDS

start_component etcd \
    --name=ocellus \
    --data-dir="$STATE/etcd-data" \
    --listen-client-urls="https://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls="https://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="https://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="https://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="ocellus=https://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state=new \
    --cert-file="$PKI/etcd-server.crt" --key-file="$PKI/etcd-server.key" \
    --trusted-ca-file="$PKI/etcd-ca.crt" --client-cert-auth=true \
    --peer-cert-file="$PKI/etcd-server.crt" --peer-key-file="$PKI/etcd-server.key" \
    --peer-trusted-ca-file="$PKI/etcd-ca.crt" --peer-client-cert-auth=true \
    --snapshot-count=10000
etcd_healthy() {
    curl -sf --cacert "$PKI/etcd-ca.crt" --cert "$PKI/apiserver-etcd-client.crt" \
        --key "$PKI/apiserver-etcd-client.key" "https://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'
}
wait_for "etcd health" etcd -- etcd_healthy
log "etcd healthy after $((SECONDS - t0))s"

# --endpoint-reconciler-type=none: Kubernetes refuses loopback addresses in Endpoints, so the
# reconciler could only log "may not be in the loopback range" every 10s. The `kubernetes`
# Service (10.96.0.1) is still created; it has no endpoints (there is no kube-proxy either):
# in-cluster clients must be given KUBERNETES_SERVICE_HOST=127.0.0.1 and the port in env.sh.
start_component kube-apiserver \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --etcd-servers="https://127.0.0.1:$ETCD_PORT" \
    --etcd-cafile="$PKI/etcd-ca.crt" \
    --etcd-certfile="$PKI/apiserver-etcd-client.crt" --etcd-keyfile="$PKI/apiserver-etcd-client.key" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP,Hostname \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User \
    --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" \
    --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --authorization-mode=Node,RBAC \
    --allow-privileged=false \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" \
    --service-account-issuer="$ISSUER" \
    --api-audiences="$ISSUER" \
    --endpoint-reconciler-type=none \
    --profiling=false
wait_for "kube-apiserver /readyz" etcd kube-apiserver -- \
    sh -c '"$0" --kubeconfig "$1" get --raw /readyz | grep -qx ok' "$KUBECTL" "$ADMIN_KC"
log "kube-apiserver ready after $((SECONDS - t0))s"

start_component kube-controller-manager \
    --kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
    --cert-dir="$STATE/kube-controller-manager-certs" \
    --client-ca-file="$PKI/ca.crt" \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$PKI/sa.key" \
    --root-ca-file="$PKI/ca.crt" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --cluster-name="$CLUSTER_NAME" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --allocate-node-cidrs=false \
    --controllers='*,-node-ipam-controller,-cloud-node-lifecycle-controller' \
    --leader-elect=false \
    --profiling=false

start_component kube-scheduler \
    --config="$STATE/kube-scheduler.yaml" \
    --authentication-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" \
    --cert-dir="$STATE/kube-scheduler-certs" \
    --client-ca-file="$PKI/ca.crt" \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --profiling=false

component_healthz() {  # component_healthz PORT: the component's own /healthz over TLS
    curl -sfk --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://127.0.0.1:$1/healthz" | grep -qx ok
}
wait_for "kube-controller-manager /healthz" "${COMPONENTS[@]}" -- component_healthz "$KCM_PORT"
wait_for "kube-scheduler /healthz" "${COMPONENTS[@]}" -- component_healthz "$SCHEDULER_PORT"
# The service-account controller (controller-manager) creates this; token
# controller and root-CA publisher run alongside it.
wait_for "ServiceAccount default/default" "${COMPONENTS[@]}" -- \
    "$KUBECTL" --kubeconfig "$ADMIN_KC" -n default get serviceaccount default
wait_for "ConfigMap default/kube-root-ca.crt" "${COMPONENTS[@]}" -- \
    "$KUBECTL" --kubeconfig "$ADMIN_KC" -n default get configmap kube-root-ca.crt

cp -f "$ADMIN_KC" "$STATE/kubeconfig.tmp" && mv -f "$STATE/kubeconfig.tmp" "$STATE/kubeconfig"
cat > "$STATE/env.sh" <<EOF
# Written by tests/cluster/up.sh; source it.
export KUBECONFIG=$STATE/kubeconfig
export OCELLUS_CLUSTER_DIR=$STATE
export OCELLUS_APISERVER_PORT=$APISERVER_PORT
export OCELLUS_APISERVER_URL=$APISERVER_URL
export OCELLUS_CLUSTER_CA=$PKI/ca.crt
export OCELLUS_TOOLS_BIN=$BIN
EOF
log "control plane ready in $((SECONDS - t0))s ($APISERVER_URL); state $STATE"
echo "export KUBECONFIG=$STATE/kubeconfig"
