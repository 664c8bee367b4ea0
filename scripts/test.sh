#!/usr/bin/env bash
# Every test tier, from cheapest to most real. Starts the environment the
# real-service tests need (and stops it again unless PARLEY_KEEP_ENV=1).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/env/common.sh

# Compiled dependencies live with the other caches, outside the work tree,
# so a fresh clone (as in CI) does not rebuild them.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PARLEY_CACHE/target}

started=$SECONDS
tier() { printf '\n== %s (%ss)\n' "$*" $((SECONDS - started)) >&2; }

# The environment comes up in the background while Rust compiles: on a cold
# machine both take minutes and neither needs the other.
mkdir -p "$PARLEY_RUN/logs"
env_log=$PARLEY_RUN/logs/up.log
scripts/env/up.sh > "$env_log" 2>&1 &
env_pid=$!
cleanup() {
  kill "$env_pid" 2>/dev/null || true
  if [[ ${PARLEY_KEEP_ENV:-0} != 1 ]]; then scripts/env/down.sh >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

tier "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

tier "build binaries and tests"
cargo build --workspace --locked --bins
cargo test --workspace --locked --no-run

tier "the README's quick start, as written"
PARLEY_QUICKSTART_BUILT=1 tests/readme/quickstart.sh

tier "unit tests (no services)"
cargo test --workspace --locked --exclude parley-tests

tier "wait for the environment"
if ! wait "$env_pid"; then
  echo "starting the environment failed; last lines of $env_log:" >&2
  tail -n 60 "$env_log" >&2
  exit 1
fi
cat "$env_log" >&2
# shellcheck disable=SC1090
source "$PARLEY_ENV_FILE"
# These tiers run the operator and the chat as local processes against the
# apiserver alone: no pod starts, and only operator_stuck_lag.rs writes a
# Deployment's status (a kept environment may still have the node running
# from an earlier run or the demo; its pods would crash on the tiers'
# loopback addresses, and its deployment controller would overwrite that status).
scripts/env/node.sh stop >&2

tier "tests against real Kafka, kube-apiserver and PostgreSQL"
cargo test --locked -p parley-tests
# The load tool's Kafka-mode scenarios, small (ignored in the unit tier).
cargo test --locked -p parley-bench --test kafka_smoke -- --ignored

tier "browser: the chat page in headless Chromium"
PARLEY_STANDALONE_BIN=$CARGO_TARGET_DIR/debug/parley-standalone \
  PARLEY_KAFKA_CHAT_BIN=$CARGO_TARGET_DIR/debug/parley-kafka-chat node --test tests/browser/

# Last: pods really run; the operator's Ready comes from their probes.
tier "the node: images built here, pods that really run"
scripts/env/images.sh build
scripts/env/node.sh start
# shellcheck disable=SC1090
source "$PARLEY_ENV_FILE"
# One at a time: each installs a release and runs its pods on the one node.
cargo test --locked -p parley-tests --test node -- --ignored --test-threads=1

tier "all tiers passed"
