#!/usr/bin/env bash
# Headless browser for the page tests: Debian's chromium, driven by
# playwright-core from npm (which uses the system browser; nothing else is
# downloaded). Idempotent; the npm package is cached under PARLEY_CACHE.
#   browser.sh install   install chromium (apt) and playwright-core (npm)
#   browser.sh env       print the export lines the tests need
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"

PLAYWRIGHT_VERSION=1.65.1
NODE_DIR=$PARLEY_CACHE/node/playwright-core-$PLAYWRIGHT_VERSION
CHROMIUM=/usr/bin/chromium

install_chromium() {
  [[ -x $CHROMIUM ]] && return 0
  log "installing chromium from Debian"
  # apt may be busy with a parallel install (postgres.sh); wait for its lock.
  apt-get -o DPkg::Lock::Timeout=300 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends chromium fonts-dejavu-core
}

install_playwright() {
  [[ -f $NODE_DIR/.stamp ]] && return 0
  log "installing playwright-core $PLAYWRIGHT_VERSION from npm"
  local tmp=$NODE_DIR.tmp.$$
  rm -rf "$tmp" && mkdir -p "$tmp"
  (cd "$tmp" && npm install --silent --no-audit --no-fund --prefix "$tmp" "playwright-core@$PLAYWRIGHT_VERSION")
  touch "$tmp/.stamp"
  rm -rf "$NODE_DIR" && mv "$tmp" "$NODE_DIR"
}

env_lines() {
  printf 'export PARLEY_CHROMIUM=%s\n' "$CHROMIUM"
  printf 'export PARLEY_PLAYWRIGHT=%s\n' "$NODE_DIR/node_modules/playwright-core"
}

case ${1:-} in
  install) install_chromium; install_playwright ;;
  env) env_lines ;;
  *) die "usage: $0 install|env" ;;
esac
