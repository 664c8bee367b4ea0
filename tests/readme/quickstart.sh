#!/usr/bin/env bash
# The README's quick start, run as written, so it cannot drift: its first
# shell block holds the two commands; the second must be what .ci/run runs,
# the first must serve the chat page, log a user in and keep its data out
# of the work tree. Run by scripts/test.sh after the build tier, with
# PARLEY_QUICKSTART_BUILT=1: then the chat command must compile nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
fail() { printf 'README quick start: %s\n' "$*" >&2; exit 1; }

# The first ```sh block, comments and blank lines dropped.
mapfile -t commands < <(awk '/^```sh$/ { inside = 1; next } inside && /^```$/ { exit } inside' README.md |
  sed -e 's/[[:space:]]*#.*$//' -e '/^[[:space:]]*$/d')
[[ ${#commands[@]} -eq 2 ]] || fail "the first sh block should hold two commands, it holds ${#commands[@]}: ${commands[*]}"
chat=${commands[0]} tests=${commands[1]}

ci=$(sed -n 's/^exec //p' .ci/run)
[[ $ci == "$tests" ]] || fail "the test command is '$tests' but .ci/run runs '$ci'"
[[ -x ${tests%% *} ]] || fail "'${tests%% *}' is not an executable script"

# The chat command, on a free port and a scratch data dir (the variables
# the scripts document), in its own process group so all of it stops.
grep -q "open http://127.0.0.1:8080" README.md || fail "the README no longer says where the page is"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data=$(mktemp -d)
log=$data/chat.log
touch "$data/started"
PARLEY_LISTEN=127.0.0.1:$port PARLEY_CHAT_DATA=$data setsid bash -c "$chat" > "$log" 2>&1 &
pid=$!
trap 'kill -TERM -- -$pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$data"' EXIT

url=http://127.0.0.1:$port
for _ in $(seq 1 600); do
  curl -fsS "$url/" -o "$data/page.html" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "'$chat' exited before serving the page"; }
  sleep 0.5
done
grep -q '<title>Parley</title>' "$data/page.html" 2>/dev/null || { cat "$log" >&2; fail "no chat page on $url/"; }

# The dev log-in the page uses, as the README documents it.
token=$(curl -fsS -X POST "$url/api/dev/token" -H 'content-type: application/json' -d '{"user":"readme"}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
me=$(curl -fsS "$url/api/me" -H "authorization: Bearer $token")
[[ $me == *'"readme"'* ]] || fail "/api/me with the dev token answered: $me"
[[ -f $data/parley.db ]] || fail "the chat's database is not in its data dir ($data)"
[[ ! parley.db -nt $data/started ]] || fail "parley.db was written into the work tree"
# Run right after scripts/test.sh's build tier, the chat command must find
# everything built: the two share one cache and one feature set.
if [[ ${PARLEY_QUICKSTART_BUILT:-0} == 1 ]] && grep -q '^ *Compiling ' "$log"; then
  fail "'$chat' compiled again what the test command had built: $(grep '^ *Compiling ' "$log" | head -5)"
fi
echo "README quick start: '$chat' served $url/ and a dev log-in; '$tests' is what .ci/run runs"
