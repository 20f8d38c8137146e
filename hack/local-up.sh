#!/usr/bin/env bash
# Starts a local control plane (etcd + kube-apiserver v1.33, built from Go modules
# by hack/controlplane/build.sh), installs the CRD, runs the operator on it,
# applies examples/ and prints the filled consumer ConfigMap.
#
#   hack/local-up.sh           # keep running until Ctrl-C; prints how to use kubectl
#   hack/local-up.sh --once    # stop everything after printing (used by the tests)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
once=false
[ "${1:-}" = "--once" ] && once=true

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

log "building the control plane (cached after the first run)"
bin=$("$repo/hack/controlplane/build.sh" | tail -n1)
log "building the operator"
(cd "$repo" && cargo build --quiet --bin tracing-relation-operator)
operator="$repo/target/debug/tracing-relation-operator"

state=$(mktemp -d "${TMPDIR:-/tmp}/tracing-relation-local.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$state"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port); metrics_port=$(free_port)
data=$state/etcd
[ -w /dev/shm ] && data=$(mktemp -d /dev/shm/tracing-relation-etcd.XXXXXX) && trap 'cleanup; rm -rf "$data"' EXIT

log "starting etcd on 127.0.0.1:$etcd_port"
"$bin/etcd" --data-dir "$data" --listen-client-urls "http://127.0.0.1:$etcd_port" \
  --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" --initial-cluster "default=http://127.0.0.1:$peer_port" \
  --unsafe-no-fsync --log-level warn >"$state/etcd.log" 2>&1 &
pids+=($!)

token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$token,admin,admin,system:masters" >"$state/tokens.csv"
openssl genrsa -out "$state/sa.key" 2048 2>/dev/null
openssl rsa -in "$state/sa.key" -pubout -out "$state/sa.pub" 2>/dev/null

log "starting kube-apiserver $("$bin/kube-apiserver" --version | cut -d' ' -f2) on https://127.0.0.1:$api_port"
"$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" --secure-port "$api_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --cert-dir "$state/certs" \
  --token-auth-file "$state/tokens.csv" --authorization-mode RBAC \
  --service-account-key-file "$state/sa.pub" --service-account-signing-key-file "$state/sa.key" \
  --service-account-issuer https://kubernetes.default.svc --service-cluster-ip-range 10.0.0.0/24 \
  --disable-admission-plugins ServiceAccount >"$state/apiserver.log" 2>&1 &
pids+=($!)

export KUBECONFIG=$state/kubeconfig
cat >"$KUBECONFIG" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://127.0.0.1:$api_port", insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: "$token"}}]
contexts: [{name: local, context: {cluster: local, user: admin}}]
current-context: local
EOF
for _ in $(seq 1 120); do
  kubectl get --raw /readyz >/dev/null 2>&1 && break
  sleep 0.5
done
kubectl get --raw /readyz >/dev/null || { tail -n 30 "$state/apiserver.log"; exit 1; }

log "installing the CRD"
kubectl apply --server-side -f "$repo/crds/" >/dev/null
kubectl wait --for condition=Established crd/tracingrelations.tracing.relations.dev --timeout 60s >/dev/null

# The operator runs as the identity the shipped admission policy knows as the
# operator's (the admin impersonating it, with every permission): any other
# identity writing with its field manager is refused.
cat >"$state/operator-kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://127.0.0.1:$api_port", insecure-skip-tls-verify: true}}]
users: [{name: operator, user: {token: "$token", as: "system:serviceaccount:tracing-relation-operator:tracing-relation-operator", as-groups: ["system:masters", "system:authenticated"]}}]
contexts: [{name: local, context: {cluster: local, user: operator}}]
current-context: local
EOF

log "starting the operator (log: $state/operator.log)"
KUBECONFIG=$state/operator-kubeconfig "$operator" --metrics-addr "127.0.0.1:$metrics_port" --leader-elect=false >"$state/operator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$metrics_port/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done

log "applying examples/"
kubectl apply -f "$repo/examples/tempo-service.yaml" -f "$repo/examples/tracing-relation.yaml" -f "$repo/examples/consumer-configmap.yaml"
for _ in $(seq 1 120); do
  [ -n "$(kubectl -n shop get configmap cart-tracing -o jsonpath='{.data.tempo_endpoint}' 2>/dev/null)" ] && break
  sleep 0.5
done

kubectl -n observability wait --for condition=Ready trel/tempo --timeout 30s >/dev/null || true
log "the TracingRelation"
kubectl get trel -A
log "the filled consumer ConfigMap"
kubectl -n shop get configmap cart-tracing -o yaml --show-managed-fields=false
kubectl -n shop get configmap cart-tracing -o jsonpath='{.data.tempo_endpoint}' | grep -q hostname || {
  echo "the consumer was not filled; operator log:" >&2; tail -n 40 "$state/operator.log" >&2; exit 1; }

if $once; then exit 0; fi
cat <<EOF

The control plane and the operator keep running. In another shell:

  export KUBECONFIG=$KUBECONFIG
  kubectl get trel -A
  kubectl -n shop get configmap cart-tracing -o yaml
  curl -s http://127.0.0.1:$metrics_port/metrics

Press Ctrl-C to stop and remove everything.
EOF
while kill -0 "${pids[2]}" 2>/dev/null; do sleep 1; done
echo "the operator exited; its log:" >&2
tail -n 40 "$state/operator.log" >&2
exit 1
