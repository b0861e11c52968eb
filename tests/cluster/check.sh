#!/usr/bin/env bash
# Checks a running control plane (tests/cluster/up.sh) for real: readiness,
# RBAC, PodSecurity admission, the Job controller, service-account tokens with an
# audience and a TokenReview. Leaves nothing behind (deletes its namespace).
# Usage: tests/cluster/check.sh     (uses $OCELLUS_CLUSTER_DIR/env.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ -f "$STATE/env.sh" ] || { log "no $STATE/env.sh: start the cluster with tests/cluster/up.sh"; exit 1; }
source "$STATE/env.sh"
K="$BIN/kubectl"
NS="ocellus-check-$$"
fail() { echo "check: FAIL: $*" >&2; exit 1; }
ok() { echo "check: ok: $*"; }
trap '"$K" delete namespace "$NS" --wait=false >/dev/null 2>&1 || true' EXIT

[ "$("$K" get --raw /readyz)" = ok ] || fail "/readyz"
ok "/readyz"
"$K" get --raw '/readyz?verbose' | grep -q 'readyz check passed' || fail "/readyz?verbose"
"$K" version -o json | grep -q '"gitVersion"' || fail "kubectl version"
ok "server $("$K" version -o json | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | tail -1)"

[ "$("$K" auth can-i '*' '*')" = yes ] || fail "admin can-i * *"
[ "$("$K" auth can-i list pods --as=system:serviceaccount:default:default)" = no ] \
    || fail "default ServiceAccount must not list pods (RBAC)"
[ "$("$K" auth can-i create pods --as=system:kube-scheduler)" = no ] || fail "scheduler must not create pods"
[ "$("$K" auth can-i create bindings --as=system:kube-scheduler)" = yes ] || fail "scheduler binds pods"
ok "auth can-i (RBAC: admin yes, default SA no, scheduler binds only)"

"$K" create namespace "$NS" >/dev/null
"$K" label namespace "$NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
"$K" -n "$NS" wait --for=jsonpath='{.data.ca\.crt}' configmap/kube-root-ca.crt --timeout=30s >/dev/null \
    || fail "kube-root-ca.crt ConfigMap not published"
ok "namespace $NS (enforce=restricted) with kube-root-ca.crt"

# --allow-privileged=false: a privileged container is refused by validation.
if out="$("$K" -n "$NS" run priv --image=busybox --restart=Never \
    --overrides='{"spec":{"containers":[{"name":"priv","image":"busybox","securityContext":{"privileged":true}}]}}' 2>&1)"; then
    fail "privileged pod admitted: $out"
fi
grep -q 'disallowed by cluster policy' <<<"$out" || fail "privileged pod refused for another reason: $out"
ok "--allow-privileged=false refuses a privileged pod"
# PodSecurity admission (enforce=restricted): a pod without the restricted settings is refused.
if out="$("$K" -n "$NS" run plain --image=busybox --restart=Never 2>&1)"; then
    fail "pod violating restricted admitted: $out"
fi
grep -q 'violates PodSecurity "restricted' <<<"$out" || fail "plain pod refused for another reason: $out"
ok "PodSecurity restricted refuses a pod without runAsNonRoot/seccomp/capabilities settings"

"$K" -n "$NS" apply -f - >/dev/null <<'EOF'
apiVersion: batch/v1
kind: Job
metadata:
  name: hello
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: hello
        image: busybox
        command: ["true"]
        securityContext:
          allowPrivilegeEscalation: false
          capabilities: {drop: ["ALL"]}
EOF
for _ in $(seq 60); do
    pod="$("$K" -n "$NS" get pods -l job-name=hello -o name 2>/dev/null | head -1)"
    [ -n "$pod" ] && break
    sleep 0.5
done
[ -n "$pod" ] || fail "the Job controller made no Pod"
if [ -n "$("$K" get nodes -o name)" ]; then
    # A node has registered (e.g. tests/node): only the Job controller is checked here.
    ok "Job -> $pod (nodes exist; scheduling not checked here)"
else
    phase="$("$K" -n "$NS" get "$pod" -o jsonpath='{.status.phase}')"
    [ "$phase" = Pending ] || fail "$pod phase $phase (no node exists: expected Pending)"
    # The scheduler saw it and found no node.
    for _ in $(seq 40); do
        reason="$("$K" -n "$NS" get "$pod" -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].reason}')"
        [ "$reason" = Unschedulable ] && break
        sleep 0.5
    done
    [ "$reason" = Unschedulable ] || fail "$pod not marked Unschedulable by the scheduler (got '$reason')"
    ok "Job -> $pod (Pending, PodScheduled=False/Unschedulable: there is no node)"
fi

"$K" -n "$NS" create serviceaccount trainer >/dev/null
token="$("$K" -n "$NS" create token trainer --audience foo --duration 10m)"
[ -n "$token" ] || fail "create token"
review() {  # review AUDIENCE -> status as JSON
    "$K" create -o json -f - <<EOF
apiVersion: authentication.k8s.io/v1
kind: TokenReview
spec:
  token: $token
  audiences: ["$1"]
EOF
}
r="$(review foo)"
grep -q '"authenticated": true' <<<"$r" || fail "TokenReview audience foo: $r"
grep -q "\"username\": \"system:serviceaccount:$NS:trainer\"" <<<"$r" || fail "TokenReview user: $r"
ok "create token --audience foo; TokenReview(foo) authenticated as system:serviceaccount:$NS:trainer"
r="$(review bar)"
grep -q '"authenticated": true' <<<"$r" && fail "TokenReview with the wrong audience authenticated: $r"
ok "TokenReview(bar) with the wrong audience is refused"
# A default-audience token works against the API as that ServiceAccount.
t2="$("$K" -n "$NS" create token trainer --duration 10m)"
who="$("$K" --token "$t2" --kubeconfig /dev/null --server "$OCELLUS_APISERVER_URL" \
    --certificate-authority "$OCELLUS_CLUSTER_CA" auth whoami -o jsonpath='{.status.userInfo.username}')"
[ "$who" = "system:serviceaccount:$NS:trainer" ] || fail "whoami with SA token: $who"
ok "a ServiceAccount token authenticates to the API (whoami: $who)"

# Helm: the chart lints strictly and its rendered manifests pass the real API server's
# validation (server-side dry run: CRD schemas, RBAC, Deployment) without being created.
if [ -x "$BIN/helm" ]; then
    "$BIN/helm" version --short | grep -q '^v3\.' || fail "helm version"
    "$BIN/helm" lint --strict "$ROOT/charts/ocellus" >/dev/null 2>&1 || fail "helm lint --strict charts/ocellus"
    "$BIN/helm" template ocellus "$ROOT/charts/ocellus" --namespace default \
        --set artifacts.location=s3://bucket/prefix \
        | "$K" apply --dry-run=server -n default -f - >/dev/null || fail "chart rejected by the API server (dry run)"
    ok "helm $("$BIN/helm" version --short): lint --strict passes; rendered chart accepted by a server-side dry run"
fi

echo "check: all passed"
