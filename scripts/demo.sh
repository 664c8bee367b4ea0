#!/usr/bin/env bash
# The operator demo: bring up the local environment (real Kafka and
# kube-apiserver), install the generated CRD, run the operator, apply the
# minimal ChatCluster and show what it became: topics, Deployments, status,
# events, and `kubectl scale`. Leaves the environment running;
# scripts/env/down.sh stops it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/env/common.sh

scripts/env/up.sh
# shellcheck disable=SC1090
source "$PARLEY_ENV_FILE"

step() { printf '\n$ %s\n' "$*"; "$@"; }
ns=parley-demo

cargo build --quiet --release -p parley-operator
operator=${CARGO_TARGET_DIR:-target}/release/parley-operator
"$operator" crd > "$PARLEY_RUN/chatcluster-crd.yaml"
step kubectl apply --server-side --force-conflicts -f "$PARLEY_RUN/chatcluster-crd.yaml"
step kubectl wait --for=condition=Established --timeout=60s crd/chatclusters.parley.dev
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null

log "starting the operator (log: $PARLEY_RUN/logs/operator.log)"
"$operator" run --namespace "$ns" --leader-election=false --http 127.0.0.1:18080 \
  > "$PARLEY_RUN/logs/operator.log" 2>&1 &
operator_pid=$!
trap 'kill $operator_pid 2>/dev/null || true' EXIT

step kubectl apply -n "$ns" -f examples/chatcluster-minimal.yaml
wait_for "topics" 60 bash -c "kubectl get chat -n $ns demo -o jsonpath='{.status.topics[3].name}' | grep -q ."
step kubectl get chat -n "$ns"
printf '\n$ scripts/env/kafka.sh topics --list | grep "^%s\\."\n' "$ns"
scripts/env/kafka.sh topics --list | grep "^$ns\."
step kubectl get deploy,svc -n "$ns" -l app.kubernetes.io/instance=demo
step kubectl scale -n "$ns" chatcluster/demo --replicas=3
wait_for "gateway scaled" 30 bash -c "[[ \$(kubectl get deploy -n $ns demo-gateway -o jsonpath='{.spec.replicas}') == 3 ]]"
step kubectl get deploy -n "$ns" demo-gateway
step kubectl get events -n "$ns" --field-selector involvedObject.kind=ChatCluster
printf '\nA partition decrease is refused by the apiserver:\n'
step kubectl patch -n "$ns" chatcluster/demo --type=merge -p '{"spec":{"topics":{"partitions":3}}}' || true

cat <<TXT

Deployments stay unready here: this environment has no kubelet, so pods never
run and READY stays False (GatewayReady/ConsumersReady report 0 ready).
The environment keeps running; in another shell:
  source $PARLEY_ENV_FILE
  $operator run --namespace $ns --leader-election=false
  kubectl get chat -n $ns -w
Stop it with: scripts/env/down.sh
TXT
