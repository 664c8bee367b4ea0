#!/usr/bin/env bash
# The main job for now: bring up the local environment, install the
# generated CRD, apply the minimal ChatCluster, and show what the apiserver
# made of it (defaults, printer columns, scale subresource). Leaves the
# environment running; scripts/env/down.sh stops it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/env/common.sh

scripts/env/up.sh
# shellcheck disable=SC1090
source "$PARLEY_ENV_FILE"

step() { printf '\n$ %s\n' "$*"; "$@"; }

cargo run --quiet -p parley-operator -- crd > "$PARLEY_RUN/chatcluster-crd.yaml"
step kubectl apply --server-side --force-conflicts -f "$PARLEY_RUN/chatcluster-crd.yaml"
step kubectl wait --for=condition=Established --timeout=60s crd/chatclusters.parley.dev
kubectl create namespace parley-demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
step kubectl apply -n parley-demo -f examples/chatcluster-minimal.yaml
step kubectl get chat -n parley-demo
step kubectl scale -n parley-demo chatcluster/demo --replicas=3
step kubectl get chat -n parley-demo demo -o jsonpath='{.spec.gateway.replicas}{"\n"}'
printf '\nA partition decrease is refused by the apiserver:\n'
step kubectl patch -n parley-demo chatcluster/demo --type=merge -p '{"spec":{"topics":{"partitions":3}}}' || true

cat <<TXT

The environment keeps running. In another shell:
  source $PARLEY_ENV_FILE
  kubectl get chat -A
Stop it with: scripts/env/down.sh
TXT
