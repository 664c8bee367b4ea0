#!/usr/bin/env bash
# Centrifugo, the peer server of issue #25's cost comparison
# (`scripts/bench.sh peer`), built from its Go module through the module
# proxy; module and build caches and the binary live under PARLEY_CACHE, so
# a second `build` is instant.
#
# Usage: centrifugo.sh build | path
#   build  build it unless the pinned version is there; print the binary's path
#   path   print the binary's path (whether built or not)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

CENTRIFUGO_VERSION=${CENTRIFUGO_VERSION:-v6.9.1}
CENTRIFUGO_MODULE=github.com/centrifugal/centrifugo/v6
# One directory per version: a changed pin builds next to the old one.
CENTRIFUGO_BIN=$PARLEY_CACHE/centrifugo/$CENTRIFUGO_VERSION/bin

binary() { echo "$CENTRIFUGO_BIN/centrifugo"; }

cmd_build() {
  local bin
  bin=$(binary)
  if [[ ! -x $bin ]]; then
    command -v go >/dev/null || die "no go toolchain to build Centrifugo with"
    log "building Centrifugo $CENTRIFUGO_VERSION (first time only)"
    mkdir -p "$CENTRIFUGO_BIN"
    # Module-mode install of a tagged version: no go.mod of ours is involved.
    # The version is stamped as its release build does (`centrifugo version`).
    env GOBIN="$CENTRIFUGO_BIN" GOMODCACHE="$PARLEY_CACHE/go/mod" GOCACHE="$PARLEY_CACHE/go/build" \
      GOFLAGS="-buildvcs=false" CGO_ENABLED=0 \
      go install -ldflags "-X $CENTRIFUGO_MODULE/internal/build.Version=${CENTRIFUGO_VERSION#v}" \
      "$CENTRIFUGO_MODULE@$CENTRIFUGO_VERSION"
  fi
  "$bin" version >&2
  echo "$bin"
}

case ${1:-} in
  build) cmd_build ;;
  path) binary ;;
  *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
