#!/usr/bin/env bash
# Benchmarks, one scenario per command; each adds its run to its result
# file in bench/results/ (which keeps every run of the same code), and
# `report` turns them into bench/results/README.md.
#
#   scripts/bench.sh idle             100,000 idle connections on one gateway (CONNECTIONS=N for fewer)
#   scripts/bench.sh rate-kafka       Kafka + PostgreSQL end to end, 1,000..5,000 msg/s, 60 s each
#                                     (after 2 minutes of unrecorded load at 3,000 msg/s)
#   scripts/bench.sh kafka-floor      rate-kafka, then Kafka's own end-to-end latency tool on the same
#                                     brokers under the same load (RATE, RECORDS): the two-hop floor
#   scripts/bench.sh rate-standalone  the standalone gateway at the same rates
#   scripts/bench.sh storage          one storage consumer draining 500,000 messages into PostgreSQL
#   scripts/bench.sh operator         1,000 ChatClusters applied at once → all Ready
#   scripts/bench.sh scaling          lag appears → storage Deployment scaled; lag passes the activation
#                                     threshold → first replica; the oldest
#                                     message passes targetDelay → storage Deployment scaled; lag
#                                     whose offsets stand still → ConsumersReady LagNotDraining
#   scripts/bench.sh failover         operator leader killed → standby holds the Lease
#   scripts/bench.sh flood            400 users flooding the standalone chat: peak memory vs the ceiling
#   scripts/bench.sh storm            5,000 members of 50 groups connecting at once to the standalone chat
#                                     (STORM_GROUPS, STORM_MEMBERS; STORM_URL, STORM_SECRET, STORM_PID for a running gateway)
#   scripts/bench.sh peer             cost per delivery against Centrifugo v6.9.1 (memory engine, no history;
#                                     built by scripts/env/centrifugo.sh), server on CPU 0, load tool on CPU 1:
#                                     50 groups × 100 at 99 msg/s (≈ 9,900 deliveries/s), then 1:1, 2,500 pairs
#                                     at 5,000 msg/s; Parley and Centrifugo alternated RUNS times each
#                                     (default 3), DURATION each (default 30s)
#   scripts/bench.sh report           README.md, report.json and the plot from the result files
#   scripts/bench.sh all              every scenario, then the report
#
# Counts and durations can be changed with the variables below. Everything
# stays on loopback; the environment (Kafka, kube-apiserver, PostgreSQL) is
# started by scripts/env/up.sh when a scenario needs it and left running.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source scripts/env/common.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PARLEY_CACHE/target}
results=bench/results
bin=$CARGO_TARGET_DIR/release

# The peer comparison's own default, unless DURATION is given.
PEER_DURATION=${DURATION:-30s}
RUNS=${RUNS:-3}
CONNECTIONS=${CONNECTIONS:-100000}
RATES=${RATES:-1000,2000,3000,5000}
DURATION=${DURATION:-60s}
MESSAGES=${MESSAGES:-500000}
CLUSTERS=${CLUSTERS:-1000}
KAFKA_WARMUP=${KAFKA_WARMUP:-120s}
KAFKA_WARMUP_RATE=${KAFKA_WARMUP_RATE:-3000}
STORM_GROUPS=${STORM_GROUPS:-50}
STORM_MEMBERS=${STORM_MEMBERS:-100}

build() {
  cargo build --quiet --release --locked -p parley-bench -p parley-gateway -p parley-standalone -p parley-consumer -p parley-operator \
    -p parley-tests --bins
}

environment() {
  scripts/env/up.sh >&2
  # shellcheck disable=SC1090
  source "$PARLEY_ENV_FILE"
}

scenario() {
  case $1 in
    idle) "$bin/parley-bench" idle --connections "$CONNECTIONS" --out "$results/idle.json" ;;
    kafka-floor)
      scenario rate-kafka
      "$bin/parley-bench" kafka-baseline --rate "${RATE:-5000}" --records "${RECORDS:-5000}" \
        --out "$results/kafka-baseline.json" ;;
    rate-standalone)
      "$bin/parley-bench" rate --rate "$RATES" --duration "$DURATION" --out "$results/rate-standalone.json" ;;
    rate-kafka)
      environment
      # Brokers that just started answer several times slower for minutes
      # (bench/results/profile.md): load them first, unrecorded, so the
      # figures are the steady state and not the environment's start.
      "$bin/parley-bench" rate --mode kafka --rate "$KAFKA_WARMUP_RATE" --duration "$KAFKA_WARMUP" >/dev/null
      "$bin/parley-bench" rate --mode kafka --rate "$RATES" --duration "$DURATION" --out "$results/rate-kafka.json" ;;
    storage)
      environment
      "$bin/parley-bench" storage --messages "$MESSAGES" --out "$results/storage.json" ;;
    operator)
      environment
      "$bin/parley-measure" --scenario many --clusters "$CLUSTERS" ;;
    scaling)
      environment
      "$bin/parley-measure" --scenario scale,activation,delay,stuck ;;
    failover)
      environment
      "$bin/parley-measure" --scenario failover ;;
    flood) "$bin/parley-bench" flood --out "$results/flood.json" ;;
    storm)
      storm=(--groups "$STORM_GROUPS" --members "$STORM_MEMBERS")
      if [[ -n ${STORM_URL:-} ]]; then
        storm+=(--url "$STORM_URL" --secret "${STORM_SECRET:?STORM_SECRET: the JWT secret of the running gateway}")
        [[ -z ${STORM_PID:-} ]] || storm+=(--pid "$STORM_PID")
      fi
      "$bin/parley-bench" storm "${storm[@]}" --out "$results/storm.json" ;;
    peer)
      centrifugo=$(scripts/env/centrifugo.sh build)
      # Alternated, so a change in the machine over the sitting falls on both.
      for shape in "--groups 50 --members 100 --rate 99" "--groups 2500 --members 2 --rate 5000"; do
        for run in $(seq "$RUNS"); do
          for server in parley centrifugo; do
            log "peer: $server $shape, run $run of $RUNS"
            bin_flag=()
            [[ $server == centrifugo ]] && bin_flag=(--server-bin "$centrifugo")
            # shellcheck disable=SC2086
            "$bin/parley-bench" groups --server "$server" $shape --duration "$PEER_DURATION" "${bin_flag[@]}" \
              --out "$results/groups.json" >/dev/null
          done
        done
      done ;;
    report) "$bin/parley-bench" report --dir "$results" ;;
    *)
      echo "unknown scenario $1; see the top of $0" >&2
      exit 2 ;;
  esac
}

[[ $# -eq 1 ]] || { sed -n '2,28p' "$0" >&2; exit 2; }
build
if [[ $1 == all ]]; then
  for s in idle rate-standalone kafka-floor storage operator scaling failover flood storm peer report; do
    log "scenario $s"
    scenario "$s"
  done
else
  scenario "$1"
fi
