#!/usr/bin/env bash
# Starts a local control plane (etcd + kube-apiserver v1.33, built from Go modules
# by hack/controlplane/build.sh), installs the CRD, runs the operator on it,
# applies examples/ and prints the filled consumer ConfigMap.
#
#   hack/local-up.sh           # keep running until Ctrl-C (SIGINT) or SIGTERM
#   hack/local-up.sh --once    # stop everything after printing
#
# Needs go (unless etcd and kube-apiserver are cached), cargo, kubectl, openssl,
# python3, curl and setsid; checks them first. The operator is built with cargo
# and taken from wherever cargo puts it (CARGO_TARGET_DIR is honoured). Stops within seconds on SIGINT or SIGTERM, also when started in the
# background, and leaves no process behind.
set -euo pipefail
# A shell started in the background by a non-interactive shell (`nohup ... &`)
# inherits SIGINT ignored, and bash cannot trap a signal ignored on entry: start
# again with SIGINT and SIGTERM at their defaults, so the traps below hold.
if [ -z "${TRO_LOCAL_UP_SIGNALS_RESET:-}" ] && env --default-signal=INT true 2>/dev/null; then
  export TRO_LOCAL_UP_SIGNALS_RESET=1
  exec env --default-signal=INT,TERM bash "${BASH_SOURCE[0]}" "$@"
fi
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
once=false
case "${1:-}" in
  --once) once=true ;;
  "") ;;
  *) sed -n "2,13p" "$0"; exit 2 ;;
esac

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# ---- prerequisites, before anything is built ----------------------------------
# command, what it is for, where it comes from on Debian/Ubuntu
missing=()
need() {
  command -v "$1" >/dev/null 2>&1 || missing+=("$1 ($2): $3")
}
bin_dir=$("$repo/hack/controlplane/build.sh" --print-dir)
built() { [ -x "$bin_dir/etcd" ] && [ -x "$bin_dir/kube-apiserver" ]; }
built || need go "builds etcd and kube-apiserver" "Debian package golang-go, Go >= $(awk '$1=="go" {print $2; exit}' "$repo/hack/controlplane/go.mod") (on bookworm: golang-go from bookworm-backports, or an upstream Go release)"
need cargo "builds the operator" "Debian package cargo, or rustup"
need kubectl "installs the CRD and the examples" "Debian package kubernetes-client is too old (1.20 on bookworm): package kubectl from the Kubernetes project's apt repository"
need openssl "makes the API server's certificates and keys" "Debian package openssl"
need python3 "picks free ports and reads cargo's metadata" "Debian package python3"
need curl "waits for the operator to be ready" "Debian package curl"
need setsid "stops each process with what it started" "Debian package util-linux"
if [ ${#missing[@]} -gt 0 ]; then
  echo "hack/local-up.sh needs these commands, which are not on PATH:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

# ---- stopping: every process this script started, within seconds --------------
state=$(mktemp -d "${TMPDIR:-/tmp}/tracing-relation-local.XXXXXX")
data=$state/etcd
[ -w /dev/shm ] && data=$(mktemp -d /dev/shm/tracing-relation-etcd.XXXXXX)
# Every job runs in a process group of its own (setsid), so stopping it stops
# what it started too (go build under build.sh, rustc under cargo).
pids=()
live_groups() { local p; for p in "${pids[@]}"; do kill -0 -- "-$p" 2>/dev/null && echo "-$p"; done; true; }
cleanup() {
  trap - EXIT INT TERM
  local left
  left=$(live_groups)
  if [ -n "$left" ]; then
    # shellcheck disable=SC2086
    kill -TERM -- $left 2>/dev/null || true
    for _ in $(seq 1 30); do # 3 s for a graceful stop, then SIGKILL
      left=$(live_groups)
      [ -n "$left" ] || break
      sleep 0.1
    done
    # shellcheck disable=SC2086
    [ -z "$left" ] || kill -KILL -- $left 2>/dev/null || true
  fi
  wait 2>/dev/null || true
  rm -rf "$state" "$data"
}
trap cleanup EXIT
trap 'echo "stopping (SIGINT)" >&2; exit 130' INT
trap 'echo "stopping (SIGTERM)" >&2; exit 143' TERM
# Long steps run as jobs: a trapped signal interrupts `wait` at once, where it
# would wait for a foreground command to finish.
run() { setsid "$@" & pids+=($!); wait $!; }
pause() { sleep "$1" & wait $!; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---- build what runs here: etcd, kube-apiserver, the operator ------------------
if built; then
  log "etcd and kube-apiserver: cached in $bin_dir"
else
  log "building etcd and kube-apiserver from Go modules into $bin_dir (a cold build takes 5 to 10 minutes; cached afterwards)"
  run "$repo/hack/controlplane/build.sh" etcd kube-apiserver >/dev/null
fi
log "building the operator (cargo build; a cold build takes 3 to 8 minutes, later ones seconds)"
run cargo build --manifest-path "$repo/Cargo.toml" --bin tracing-relation-operator
target_dir=$(cargo metadata --manifest-path "$repo/Cargo.toml" --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
operator=$target_dir/debug/tracing-relation-operator
[ -x "$operator" ] || { echo "cargo built no $operator" >&2; exit 1; }

# ---- etcd, kube-apiserver ----------------------------------------------------------
etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port); metrics_port=$(free_port)
log "starting etcd on 127.0.0.1:$etcd_port"
setsid "$bin_dir/etcd" --data-dir "$data" --listen-client-urls "http://127.0.0.1:$etcd_port" \
  --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" --initial-cluster "default=http://127.0.0.1:$peer_port" \
  --unsafe-no-fsync --log-level warn >"$state/etcd.log" 2>&1 &
pids+=($!)

token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$token,admin,admin,system:masters" >"$state/tokens.csv"
openssl genrsa -out "$state/sa.key" 2048 2>/dev/null
openssl rsa -in "$state/sa.key" -pubout -out "$state/sa.pub" 2>/dev/null
# A CA of this run's own signs the serving certificate; the kubeconfigs trust it.
"$repo/hack/tls-certs.sh" "$state/tls"

log "starting kube-apiserver $("$bin_dir/kube-apiserver" --version | cut -d' ' -f2) on https://127.0.0.1:$api_port"
setsid "$bin_dir/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" --secure-port "$api_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
  --tls-cert-file "$state/tls/serving.crt" --tls-private-key-file "$state/tls/serving.key" \
  --token-auth-file "$state/tokens.csv" --authorization-mode RBAC \
  --service-account-key-file "$state/sa.pub" --service-account-signing-key-file "$state/sa.key" \
  --service-account-issuer https://kubernetes.default.svc --service-cluster-ip-range 10.0.0.0/24 \
  --disable-admission-plugins ServiceAccount >"$state/apiserver.log" 2>&1 &
pids+=($!)

ca_data=$(base64 -w0 "$state/tls/ca.crt")
kubeconfig() { # user-name user-yaml
  cat <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://127.0.0.1:$api_port", certificate-authority-data: "$ca_data"}}]
users: [{name: $1, user: $2}]
contexts: [{name: local, context: {cluster: local, user: $1}}]
current-context: local
EOF
}
export KUBECONFIG=$state/kubeconfig
kubeconfig admin "{token: \"$token\"}" >"$KUBECONFIG"
for _ in $(seq 1 120); do
  kubectl get --raw /readyz >/dev/null 2>&1 && break
  pause 0.5
done
kubectl get --raw /readyz >/dev/null || { tail -n 30 "$state/apiserver.log"; exit 1; }

log "installing the CRD"
kubectl apply --server-side -f "$repo/crds/" >/dev/null
run kubectl wait --for condition=Established crd/tracingrelations.tracing.relations.dev --timeout 60s >/dev/null

# The operator runs as the identity the shipped admission policy knows as the
# operator's (the admin impersonating it, with every permission): any other
# identity writing with its field manager is refused.
kubeconfig operator "{token: \"$token\", as: \"system:serviceaccount:tracing-relation-operator:tracing-relation-operator\", as-groups: [\"system:masters\", \"system:authenticated\"]}" \
  >"$state/operator-kubeconfig"

log "starting the operator (log: $state/operator.log)"
KUBECONFIG=$state/operator-kubeconfig setsid "$operator" --metrics-addr "127.0.0.1:$metrics_port" --leader-elect=false >"$state/operator.log" 2>&1 &
operator_pid=$!
pids+=("$operator_pid")
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$metrics_port/readyz" >/dev/null 2>&1 && break
  kill -0 "$operator_pid" 2>/dev/null || { echo "the operator exited; its log:" >&2; tail -n 40 "$state/operator.log" >&2; exit 1; }
  pause 0.5
done

log "applying examples/"
kubectl apply -f "$repo/examples/tempo-service.yaml" -f "$repo/examples/tracing-relation.yaml" -f "$repo/examples/consumer-configmap.yaml"
for _ in $(seq 1 120); do
  [ -n "$(kubectl -n shop get configmap cart-tracing -o jsonpath='{.data.tempo_endpoint}' 2>/dev/null)" ] && break
  pause 0.5
done

run kubectl -n observability wait --for condition=Ready trel/tempo --timeout 30s >/dev/null || true
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

Press Ctrl-C (or send SIGTERM to $$) to stop and remove everything.
EOF
while kill -0 "$operator_pid" 2>/dev/null; do pause 1; done
echo "the operator exited; its log:" >&2
tail -n 40 "$state/operator.log" >&2
exit 1
