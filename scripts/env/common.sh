# Shared settings for the test-environment scripts. Sourced, never run.
#
# Downloads and builds are cached outside the work tree (PARLEY_CACHE) so a
# second run is fast; running state (data dirs, logs, pids) lives in PARLEY_RUN
# and is thrown away by `down`.

PARLEY_CACHE=${PARLEY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/parley}
PARLEY_RUN=${PARLEY_RUN:-/tmp/parley-env}
export PARLEY_CACHE PARLEY_RUN

# Loopback ports, chosen away from the usual defaults so a developer's own
# Kafka/Postgres/cluster on the same machine does not collide with the tests.
PARLEY_KAFKA_PORTS=${PARLEY_KAFKA_PORTS:-"19092 19093 19094"}
PARLEY_KAFKA_CONTROLLER_PORTS=${PARLEY_KAFKA_CONTROLLER_PORTS:-"19192 19193 19194"}
PARLEY_KAFKA_SASL_PORTS=${PARLEY_KAFKA_SASL_PORTS:-"19292 19293 19294"}
PARLEY_KAFKA_TLS_PORTS=${PARLEY_KAFKA_TLS_PORTS:-"19392 19393 19394"}
PARLEY_KAFKA_MTLS_PORTS=${PARLEY_KAFKA_MTLS_PORTS:-"19492 19493 19494"}
PARLEY_APISERVER_PORT=${PARLEY_APISERVER_PORT:-16443}
PARLEY_ETCD_PORT=${PARLEY_ETCD_PORT:-12379}
PARLEY_ETCD_PEER_PORT=${PARLEY_ETCD_PEER_PORT:-12380}
PARLEY_KCM_PORT=${PARLEY_KCM_PORT:-16444}
PARLEY_PG_PORT=${PARLEY_PG_PORT:-15432}
PARLEY_KAFKA_POD_PORTS=${PARLEY_KAFKA_POD_PORTS:-"19592 19593 19594"}

# The one-node cluster's pod network (scripts/env/node.sh): a bridge made by
# `node.sh net`, whose address is the node's. Pods reach Kafka, PostgreSQL and
# the apiserver there; their traffic never leaves this machine (node.sh drops
# whatever pods send elsewhere, and service addresses are routed onto the
# bridge, not the default route).
PARLEY_NODE_BRIDGE=${PARLEY_NODE_BRIDGE:-parley0}
PARLEY_NODE_IP=${PARLEY_NODE_IP:-10.244.0.1}
PARLEY_POD_CIDR=${PARLEY_POD_CIDR:-10.244.0.0/24}
PARLEY_SERVICE_CIDR=${PARLEY_SERVICE_CIDR:-10.0.0.0/16}
PARLEY_NODE_NAME=${PARLEY_NODE_NAME:-parley-node}
# Node processes' ports: kubelet API, its healthz, kube-proxy's metrics and
# healthz, the scheduler's and the workload controllers' secure ports.
PARLEY_KUBELET_PORT=${PARLEY_KUBELET_PORT:-16450}
PARLEY_KUBELET_HEALTHZ_PORT=${PARLEY_KUBELET_HEALTHZ_PORT:-16451}
PARLEY_PROXY_METRICS_PORT=${PARLEY_PROXY_METRICS_PORT:-16452}
PARLEY_PROXY_HEALTHZ_PORT=${PARLEY_PROXY_HEALTHZ_PORT:-16453}
PARLEY_SCHEDULER_PORT=${PARLEY_SCHEDULER_PORT:-16454}
PARLEY_WORKLOADS_PORT=${PARLEY_WORKLOADS_PORT:-16455}

log() { printf '[parley-env] %s\n' "$*" >&2; }
die() { printf '[parley-env] error: %s\n' "$*" >&2; exit 1; }

# wait_for DESCRIPTION SECONDS COMMAND...: poll COMMAND every 0.5 s.
wait_for() {
  local what=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${secs}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
}

# pid_alive FILE: the pid in FILE names a running process.
pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pidfile FILE [NAME]: TERM, wait up to 20 s, then KILL.
stop_pidfile() {
  local f=$1 name=${2:-$1} pid
  pid_alive "$f" || { rm -f "$f"; return 0; }
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop on TERM; killing"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# Lines "export NAME=value" appended here by each service's start; `up`
# prints them and tests source the file.
PARLEY_ENV_FILE=$PARLEY_RUN/env.sh

# env_file_edit NAME [LINE]: keep exactly one "export NAME=..." line (LINE, or
# none) in PARLEY_ENV_FILE, leaving other services' lines alone. flock:
# services may start in parallel.
env_file_edit() {
  local name=$1 line=${2-}
  mkdir -p "$(dirname "$PARLEY_ENV_FILE")"
  (
    flock 9
    local tmp="$PARLEY_ENV_FILE.tmp.$$"
    : >"$tmp"
    if [[ -f $PARLEY_ENV_FILE ]]; then grep -v "^export $name=" "$PARLEY_ENV_FILE" >"$tmp" || true; fi
    [[ -n $line ]] && printf '%s\n' "$line" >>"$tmp"
    mv "$tmp" "$PARLEY_ENV_FILE"
  ) 9>>"$PARLEY_ENV_FILE.lock"
}
