#!/usr/bin/env bash
# Real PostgreSQL for tests: a throwaway cluster under $PARLEY_RUN/postgres,
# listening on 127.0.0.1:$PARLEY_PG_PORT and, for pods, on the node's
# pod-network address (PARLEY_NODE_IP), with role and database
# "parley" (password "parley").
#
# Usage: postgres.sh install | start | stop | status | env
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

PG_RUN=$PARLEY_RUN/postgres
PG_DATA=$PG_RUN/data
PG_SOCK=$PG_RUN/socket
PG_LOG=$PG_RUN/postgres.log
PG_PORT=$PARLEY_PG_PORT
PG_DB=parley PG_ROLE=parley PG_PASSWORD=parley
# The server refuses to run as root: it runs as Debian's `postgres` user, or
# as this dedicated one when that user does not exist.
PG_FALLBACK_USER=parley-pg

DATABASE_URL="postgres://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"
# The same database as pods reach it: on the node's pod-network address.
DATABASE_POD_URL="postgres://$PG_ROLE:$PG_PASSWORD@$PARLEY_NODE_IP:$PG_PORT/$PG_DB"

# ---------------------------------------------------------------- install ---

# Newest installed server's bin dir (Debian keeps them out of PATH).
pg_bindir() {
  local d
  d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  [[ -x $d/initdb && -x $d/postgres && -x $d/pg_ctl ]] && echo "$d"
}

cmd_install() {
  pg_bindir >/dev/null && return 0
  command -v apt-get >/dev/null || die "no PostgreSQL server found and no apt-get to install one"
  ((EUID == 0)) || die "installing PostgreSQL needs root (apt-get)"
  # up.sh runs the installs side by side: wait for another apt's lock
  # instead of failing on it.
  local apt=(apt-get -qq -o DPkg::Lock::Timeout=300)
  # Refresh the package lists only when apt does not know the package yet.
  if ! apt-cache show postgresql >/dev/null 2>&1; then
    log "apt-get update"
    "${apt[@]}" update >&2
  fi
  log "installing PostgreSQL from Debian packages"
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends postgresql >&2
  pg_bindir >/dev/null || die "postgresql installed but no server binaries under /usr/lib/postgresql"
}

# ------------------------------------------------------------------ users ---

pg_user() {
  if id -u postgres >/dev/null 2>&1; then
    echo postgres
  else
    id -u "$PG_FALLBACK_USER" >/dev/null 2>&1 ||
      useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_FALLBACK_USER"
    echo "$PG_FALLBACK_USER"
  fi
}

# as_pg CMD...: run CMD as the server's user. From / so a cwd it cannot enter
# (e.g. /root) does not produce warnings; -X keeps root's psqlrc out of psql.
as_pg() {
  if ((EUID == 0)); then
    (cd / && runuser -u "$PG_USER" -- "$@")
  else
    (cd / && "$@")
  fi
}

pg_ctl() { as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" "$@"; }
# psql_admin: SQL on stdin, as the superuser over the private socket.
psql_admin() {
  as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres
}

# --------------------------------------------------------------- env file ---

env_line() { printf 'export DATABASE_URL=%s DATABASE_POD_URL=%s\n' "$DATABASE_URL" "$DATABASE_POD_URL"; }

# ----------------------------------------------------------------- server ---

running() { [[ -f $PG_DATA/postmaster.pid ]] && pg_ctl status >/dev/null 2>&1; }

show_log() {
  log "---- tail of $PG_LOG"
  tail -n 30 "$PG_LOG" >&2 2>/dev/null || true
}

init_cluster() {
  # A run dir without a finished initdb (PG_VERSION is written last) is
  # debris from an interrupted start: begin again.
  [[ -f $PG_DATA/PG_VERSION ]] && return 0
  rm -rf "$PG_RUN"
  mkdir -p "$PG_DATA" "$PG_SOCK"
  # Socket dir private to the server's user: local connections are trusted.
  chmod 700 "$PG_DATA" "$PG_SOCK"
  chown "$PG_USER:" "$PG_RUN" "$PG_DATA" "$PG_SOCK"
  as_pg test -w "$PG_DATA" ||
    die "user $PG_USER cannot reach $PG_DATA (a parent of PARLEY_RUN=$PARLEY_RUN is not traversable)"
  local initlog=$PG_RUN/initdb.log
  if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 --no-instructions >"$initlog" 2>&1; then
    tail -n 30 "$initlog" >&2
    die "initdb failed (log: $initlog)"
  fi
  cat >>"$PG_DATA/postgresql.conf" <<EOF

# ---- scripts/env/postgres.sh: throwaway test cluster ----
listen_addresses = '127.0.0.1,$PARLEY_NODE_IP'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
# Durability off for speed: this cluster is deleted by \`stop\` and never holds
# data worth keeping; a crash may corrupt it, and \`stop\` + \`start\` fixes that.
fsync = off
synchronous_commit = off
full_page_writes = off
# Integration tests open many short-lived pools in parallel.
max_connections = 200
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  # Password login over TCP only from loopback and from pods (the node's pod
  # network, scripts/env/node.sh).
  cat >"$PG_DATA/pg_hba.conf" <<EOF
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   $PARLEY_POD_CIDR  scram-sha-256
EOF
}

create_role_and_db() {
  psql_admin <<EOF
DO \$\$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
    -- CREATEDB so tests can make a scratch database each.
    CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  END IF;
END
\$\$;
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_ROLE'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')
\gexec
EOF
}

cmd_start() {
  if ! running; then
    init_cluster
    (exec 3<>"/dev/tcp/127.0.0.1/$PG_PORT") 2>/dev/null &&
      die "port 127.0.0.1:$PG_PORT is taken by another process"
    log "starting postgres ($("$PG_BIN/postgres" --version)) on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
    # -w: return once the server accepts connections.
    if ! pg_ctl -l "$PG_LOG" -w -t 60 start >/dev/null; then
      show_log
      die "postgres did not start"
    fi
  fi
  if ! create_role_and_db; then
    show_log
    die "could not create role/database $PG_ROLE/$PG_DB"
  fi
  env_file_edit DATABASE_URL "$(env_line)"
  log "postgres up: $DATABASE_URL"
}

cmd_stop() {
  if running; then
    pg_ctl -m fast -w -t 60 stop >/dev/null || { show_log; die "postgres did not stop"; }
  fi
  rm -rf "$PG_RUN"
  [[ -f $PARLEY_ENV_FILE ]] && env_file_edit DATABASE_URL
  log "postgres stopped"
}

cmd_status() {
  if running; then
    echo "postgres: running (pid $(head -n 1 "$PG_DATA/postmaster.pid"), 127.0.0.1:$PG_PORT)"
  else
    echo "postgres: stopped"
    return 1
  fi
}

main() {
  local cmd=${1-}
  case $cmd in
    install) cmd_install; return ;;
    env) env_line; return ;;
    start | stop | status) ;;
    *)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
      exit 2 ;;
  esac
  [[ $cmd == start ]] && cmd_install
  if ! PG_BIN=$(pg_bindir); then
    # Nothing installed means nothing can be running.
    [[ $cmd == stop ]] && { rm -rf "$PG_RUN"; return 0; }
    [[ $cmd == status ]] && { echo "postgres: not installed"; return 1; }
  fi
  PG_USER=$(pg_user)
  "cmd_$cmd"
}

main "$@"
