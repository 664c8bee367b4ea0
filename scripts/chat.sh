#!/usr/bin/env bash
# The standalone chat in one process (in-process broker, SQLite): builds
# `parley-standalone` into the same cache as scripts/test.sh and the demo, so
# none of them rebuilds what another built, and keeps the chat's data
# outside the work tree. Arguments go to `parley-standalone`
# (`scripts/chat.sh --help` lists them).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/env/common.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PARLEY_CACHE/target}

# Kept across runs (not under PARLEY_RUN, which down.sh throws away).
data=${PARLEY_CHAT_DATA:-$PARLEY_CACHE/chat}
mkdir -p "$data"
export PARLEY_DATABASE=${PARLEY_DATABASE:-$data/parley.db}
# --workspace: the dependencies' features as scripts/test.sh builds them, so
# the two share one build (only the gateway's part of it is compiled here).
cargo build --locked --workspace --bin parley-standalone
exec "$CARGO_TARGET_DIR/debug/parley-standalone" "$@"
