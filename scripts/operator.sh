#!/usr/bin/env bash
# The operator as a local process against the test environment (real
# Kafka and kube-apiserver; with the node, its pods really run): starts the
# environment (what is up stays up), installs the CRD, and runs
# `parley-operator run` in the foreground with the images built here as the
# pods' defaults. Arguments go to `parley-operator run` (`--help` lists
# them); Ctrl-C stops it. The environment stays up: scripts/env/down.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/env/common.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PARLEY_CACHE/target}

# --workspace: the same build as scripts/test.sh's (see scripts/chat.sh).
cargo build --locked --workspace --bin parley-operator
# Idempotent: what runs already is left running (PARLEY_NODE=1 adds the node).
scripts/env/up.sh
# shellcheck disable=SC1090
source "$PARLEY_ENV_FILE"
kubectl apply --server-side -f crds/parley.dev_chatclusters.yaml >/dev/null

# Defaults for a local run: loopback metrics on 8081, no leader election,
# the images scripts/env/images.sh builds (the node has them; without the
# node no pod starts, and the ChatCluster waits for its pods).
export PARLEY_GATEWAY_IMAGE=${PARLEY_GATEWAY_IMAGE:-localhost/parley/parley-gateway:dev}
export PARLEY_CONSUMER_IMAGE=${PARLEY_CONSUMER_IMAGE:-localhost/parley/parley-consumer:dev}
log "parley-operator run $* (metrics on http://127.0.0.1:8081/metrics; KUBECONFIG=$KUBECONFIG)"
exec "$CARGO_TARGET_DIR/debug/parley-operator" run "$@"
