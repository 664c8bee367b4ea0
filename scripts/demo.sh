#!/usr/bin/env bash
# The operator demo on the local one-node cluster: build the binaries and
# their images, bring up the environment with its node (real Kafka,
# PostgreSQL, kube-apiserver, kubelet), `helm install` the chart, apply
# examples/chatcluster-node.yaml and show what it became: topics, pods,
# status, events and `kubectl scale`. Leaves everything running;
# scripts/env/down.sh stops it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/env/common.sh
# The same build the tests use, so neither rebuilds what the other built.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PARLEY_CACHE/target}

step() { printf '\n$ %s\n' "$*"; "$@"; }
ns=parley-demo

log "building the binaries (debug, as the tests do; the images are made from them)"
cargo build --locked --bins
PARLEY_NODE=1 scripts/env/up.sh
# shellcheck disable=SC1090
source "$PARLEY_ENV_FILE"

repo=${PARLEY_OPERATOR_IMAGE%:*}
tag=${PARLEY_OPERATOR_IMAGE##*:}
step helm upgrade --install parley charts/parley -n parley-system --create-namespace \
  --set image.repository="$repo" --set image.tag="$tag" \
  --set workloadImages.gateway="$PARLEY_GATEWAY_IMAGE" --set workloadImages.consumer="$PARLEY_CONSUMER_IMAGE"
step kubectl rollout status -n parley-system deploy/parley --timeout=180s
step kubectl get pods -n parley-system -o wide

kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# The Secrets the example names: the database as pods reach it, a JWT key.
kubectl create secret generic chat-db -n "$ns" --dry-run=client -o yaml \
  --from-literal=url="$DATABASE_POD_URL" | kubectl apply -f - >/dev/null
kubectl get secret chat-auth -n "$ns" >/dev/null 2>&1 ||
  kubectl create secret generic chat-auth -n "$ns" --from-literal=jwt-key="$(openssl rand -hex 32)" >/dev/null

step kubectl apply -n "$ns" -f examples/chatcluster-node.yaml
log "waiting for the ChatCluster to be Ready (pods start, pass their probes)"
if ! kubectl wait -n "$ns" chatcluster/demo --for=condition=Ready --timeout=300s >/dev/null; then
  kubectl get pods -n "$ns" -o wide
  kubectl describe chat -n "$ns" demo | tail -n 30
  die "the ChatCluster did not become Ready"
fi
step kubectl get chat -n "$ns"
step kubectl get pods -n "$ns" -o wide
printf '\n$ scripts/env/kafka.sh topics --list | grep "^%s\\."\n' "$ns"
scripts/env/kafka.sh topics --list | grep "^$ns\."
step kubectl scale -n "$ns" chatcluster/demo --replicas=3
kubectl rollout status -n "$ns" deploy/demo-gateway --timeout=180s >/dev/null
step kubectl get pods -n "$ns" -l app.kubernetes.io/component=gateway
step kubectl get events -n "$ns" --field-selector involvedObject.kind=ChatCluster

ip=$(kubectl get svc -n "$ns" demo-gateway -o jsonpath='{.spec.clusterIP}')
port=$(kubectl get svc -n "$ns" demo-gateway -o jsonpath='{.spec.ports[0].port}')
cat <<TXT

The chat runs in the cluster. Open it through its Service:
  http://$ip:$port/          (the ClusterIP, routed by kube-proxy on this machine)
or forward a local port through the kubelet:
  kubectl port-forward -n $ns svc/demo-gateway 8080:$port   # then http://127.0.0.1:8080/
The cluster's gateways have no dev log-in; paste a token minted with the
ChatCluster's JWT key (the gateway pods have it), one per user:
  kubectl exec -n $ns deploy/demo-gateway -- parley-gateway token alice
In another shell:
  source $PARLEY_ENV_FILE
  kubectl get chat -n $ns -w
  kubectl logs -n parley-system deploy/parley
Stop everything with: scripts/env/down.sh
TXT
