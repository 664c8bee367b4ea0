#!/usr/bin/env bash
# A second kube-apiserver (+ controller-manager) for the many-ChatCluster
# measurement, next to the environment's own (scripts/env/up.sh must be up):
# same binaries, certificates and etcd, but its own etcd key prefix (so it
# is a separate, empty cluster) and a /16 service range.
#
# Why: the environment's apiserver has `--service-cluster-ip-range
# 10.0.0.0/24` (254 ClusterIPs). Every ChatCluster has a ClusterIP gateway
# Service, so past ~250 ChatClusters Service creation fails ("range is
# full"); an extra ServiceCIDR does not help in practice: with the legacy
# bitmap allocator still dual-writing, each create first retries the full
# /24 bitmap (one etcd key) under a global lock, and creates time out after
# 60 s. Restarting the shared apiserver with a bigger range would disturb
# whoever else uses the environment, hence a private one.
#
#   bench/private-apiserver.sh start   # prints the KUBECONFIG to use
#   bench/private-apiserver.sh stop
set -euo pipefail

RUN=${PARLEY_RUN:-/tmp/parley-env}
PKI=$RUN/k8s/pki
DIR=${BENCH_APISERVER_DIR:-/tmp/parley-bench-apiserver}
PORT=${BENCH_APISERVER_PORT:-17443}
KCM_PORT=${BENCH_KCM_PORT:-17444}
ETCD_URL=http://127.0.0.1:${PARLEY_ETCD_PORT:-12379}
SA_ISSUER=https://kubernetes.default.svc.cluster.local
KCM_CONTROLLERS=garbagecollector,namespace,serviceaccount,serviceaccount-token,clusterrole-aggregation,root-ca-cert-publisher

stop() {
  for name in kube-controller-manager kube-apiserver; do
    if [[ -f $DIR/$name.pid ]]; then
      kill "$(cat "$DIR/$name.pid")" 2>/dev/null || true
      rm -f "$DIR/$name.pid"
    fi
  done
}

ready() {
  [[ $(curl -s --max-time 3 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$PORT/readyz" 2>/dev/null) == ok ]]
}

start() {
  # shellcheck disable=SC1091
  source "$RUN/env.sh"
  local bin
  bin=$(dirname "$(command -v kubectl)")
  mkdir -p "$DIR"
  if ! ready; then
    stop
    setsid "$bin/kube-apiserver" \
      --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$PORT" \
      --etcd-servers "$ETCD_URL" --etcd-prefix /parley-bench-registry \
      --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
      --client-ca-file "$PKI/ca.crt" --authorization-mode Node,RBAC \
      --service-account-issuer "$SA_ISSUER" --api-audiences "$SA_ISSUER" \
      --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
      --service-cluster-ip-range 10.0.0.0/16 --endpoint-reconciler-type none \
      --allow-privileged=true --profiling=false \
      </dev/null >>"$DIR/kube-apiserver.log" 2>&1 &
    echo $! >"$DIR/kube-apiserver.pid"
    for _ in $(seq 240); do ready && break; sleep 0.5; done
    ready || { tail -20 "$DIR/kube-apiserver.log" >&2; exit 1; }
  fi
  sed "s#https://127.0.0.1:[0-9]*#https://127.0.0.1:$PORT#" "$RUN/k8s/kubeconfig" >"$DIR/kubeconfig"
  sed "s#https://127.0.0.1:[0-9]*#https://127.0.0.1:$PORT#" "$RUN/k8s/controller-manager.kubeconfig" \
    >"$DIR/controller-manager.kubeconfig"
  if ! { [[ -f $DIR/kube-controller-manager.pid ]] && kill -0 "$(cat "$DIR/kube-controller-manager.pid")" 2>/dev/null; }; then
    setsid "$bin/kube-controller-manager" \
      --kubeconfig "$DIR/controller-manager.kubeconfig" \
      --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --controllers "$KCM_CONTROLLERS" \
      --use-service-account-credentials=false --leader-elect=false \
      --root-ca-file "$PKI/ca.crt" --service-account-private-key-file "$PKI/sa.key" --profiling=false \
      </dev/null >>"$DIR/kube-controller-manager.log" 2>&1 &
    echo $! >"$DIR/kube-controller-manager.pid"
  fi
  echo "$DIR/kubeconfig"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
