#!/usr/bin/env bash
# Real Apache Kafka for tests: three KRaft nodes (broker+controller in one JVM
# each) on 127.0.0.1, replication defaults that make RF 3 / min ISR 2 the norm.
#
# Release tarballs cannot be downloaded here, so `install` lays out the same
# jars from Maven Central (scripts/env/kafka/pom.xml) and the nodes run as
# plain `java -cp 'libs/*' kafka.Kafka server.properties`.
#
# Usage: kafka.sh install | start | stop | status | env
#        kafka.sh stop-broker N... [--kill] | start-broker N... [--no-wait]
#        kafka.sh topics ARGS...     (TopicCommand against the cluster)
#        kafka.sh groups ARGS...     (ConsumerGroupCommand against the cluster)
#        kafka.sh produce TOPIC [ARGS...] / consume TOPIC [ARGS...]
#        kafka.sh tool MAIN-CLASS ARGS...   (any tool class, no bootstrap added)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
. "$HERE/common.sh"

KAFKA_VERSION=${PARLEY_KAFKA_VERSION:-4.3.1}
KAFKA_HOME=$PARLEY_CACHE/kafka/$KAFKA_VERSION
KAFKA_LIBS=$KAFKA_HOME/libs
KAFKA_STAMP=$KAFKA_HOME/installed.stamp
KAFKA_POM=$HERE/kafka/pom.xml
KAFKA_RUN=$PARLEY_RUN/kafka

read -r -a BROKER_PORTS <<<"$PARLEY_KAFKA_PORTS"
read -r -a CONTROLLER_PORTS <<<"$PARLEY_KAFKA_CONTROLLER_PORTS"
read -r -a SASL_PORTS <<<"$PARLEY_KAFKA_SASL_PORTS"
read -r -a TLS_PORTS <<<"$PARLEY_KAFKA_TLS_PORTS"
read -r -a MTLS_PORTS <<<"$PARLEY_KAFKA_MTLS_PORTS"
read -r -a POD_PORTS <<<"$PARLEY_KAFKA_POD_PORTS"
((${#BROKER_PORTS[@]} == 3 && ${#CONTROLLER_PORTS[@]} == 3 && ${#SASL_PORTS[@]} == 3 && ${#TLS_PORTS[@]} == 3 &&
  ${#MTLS_PORTS[@]} == 3 && ${#POD_PORTS[@]} == 3)) ||
  die "PARLEY_KAFKA_PORTS, PARLEY_KAFKA_CONTROLLER_PORTS, PARLEY_KAFKA_SASL_PORTS, PARLEY_KAFKA_TLS_PORTS, PARLEY_KAFKA_MTLS_PORTS and PARLEY_KAFKA_POD_PORTS need 3 ports each"
NODES=(1 2 3)

# bootstrap_of PORT...: "127.0.0.1:P1,127.0.0.1:P2,..." (HOST instead of
# 127.0.0.1 when set)
bootstrap_of() {
  local s
  s=$(printf "${HOST:-127.0.0.1}:%s," "$@")
  echo "${s%,}"
}
BOOTSTRAP=$(bootstrap_of "${BROKER_PORTS[@]}")
# A second listener on every broker that wants SASL, PLAIN or SCRAM-SHA-256
# (one user for both; no TLS): clients configured with librdkafka security
# properties, as a ChatCluster's Secret gives them, are tested against it.
# Throwaway credentials of a loopback-only test cluster.
SASL_BOOTSTRAP=$(bootstrap_of "${SASL_PORTS[@]}")
SASL_USER=parley
SASL_PASSWORD=parley-sasl-password
# And a third that wants TLS, with a self-signed certificate for 127.0.0.1
# made by the JDK's keytool; its PEM is what clients trust (ssl.ca.pem).
TLS_BOOTSTRAP=$(bootstrap_of "${TLS_PORTS[@]}")
TLS_DIR=$KAFKA_RUN/tls
TLS_STOREPASS=parley-tls-password
# And a fourth that also wants the client's certificate (mutual TLS). The
# client's key and self-signed certificate are made with openssl (keytool
# cannot export a private key as PEM); the brokers trust that certificate.
MTLS_BOOTSTRAP=$(bootstrap_of "${MTLS_PORTS[@]}")
# And a fifth, plaintext, on the node's pod-network address: what pods use.
POD_BOOTSTRAP=$(HOST=$PARLEY_NODE_IP bootstrap_of "${POD_PORTS[@]}")
VOTERS=$(for n in "${NODES[@]}"; do printf '%s@127.0.0.1:%s,' "$n" "${CONTROLLER_PORTS[n - 1]}"; done)
VOTERS=${VOTERS%,}

# Modest heaps: three brokers share 2 cores / 24 GiB with builds and tests.
# (A fixed 1 GiB heap was measured and not kept: bench/results/profile.md.)
BROKER_HEAP_OPTS=${PARLEY_KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}
# Short-lived tools: C1 only and the serial GC start noticeably faster.
TOOL_JVM_OPTS=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
  -Djava.awt.headless=true "-Dlog4j2.configurationFile=$HERE/kafka/log4j2-tools.properties")

START_TIMEOUT=${PARLEY_KAFKA_START_TIMEOUT:-120}

node_dir() { echo "$KAFKA_RUN/node-$1"; }
pidfile() { echo "$(node_dir "$1")/kafka.pid"; }

# ---------------------------------------------------------------- install ---

require_java() {
  command -v java >/dev/null || die "java not found (Kafka $KAFKA_VERSION needs Java 17+)"
  local v
  v=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
  ((${v%%.*} >= 17)) || die "Java $v found; Kafka $KAFKA_VERSION brokers need Java 17+"
}

# The stamp records the version and the pom's hash, so editing the pom (or
# bumping PARLEY_KAFKA_VERSION) re-resolves instead of trusting stale jars.
install_key() { printf '%s %s\n' "$KAFKA_VERSION" "$(sha256sum <"$KAFKA_POM" | cut -d' ' -f1)"; }

cmd_install() {
  require_java
  if [[ -f $KAFKA_STAMP && $(cat "$KAFKA_STAMP") == "$(install_key)" && -d $KAFKA_LIBS ]]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (needed to fetch the Kafka jars from Maven Central)"
  log "resolving Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS"
  mkdir -p "$KAFKA_HOME"
  local tmp=$KAFKA_HOME/libs.tmp mvnlog=$KAFKA_HOME/install.log
  rm -rf "$tmp"
  # Resolve into a scratch dir and swap it in, so an interrupted install never
  # leaves a half-filled libs/ behind a valid-looking stamp.
  if ! mvn -B -f "$KAFKA_POM" \
    -Dkafka.version="$KAFKA_VERSION" \
    -Dmaven.repo.local="$PARLEY_CACHE/m2" \
    -DincludeScope=runtime -DoutputDirectory="$tmp" \
    dependency:copy-dependencies >"$mvnlog" 2>&1; then
    tail -n 40 "$mvnlog" >&2
    die "maven could not resolve the Kafka jars (full log: $mvnlog)"
  fi
  [[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar && -f $tmp/kafka-tools-$KAFKA_VERSION.jar ]] ||
    die "maven finished but the Kafka jars are missing from $tmp"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  install_key >"$KAFKA_STAMP"
  log "installed $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars"
}

# ------------------------------------------------------------------ tools ---

# run_tool MAIN-CLASS ARGS...: a Kafka command-line tool in the foreground.
run_tool() {
  local main=$1; shift
  java "${TOOL_JVM_OPTS[@]}" -cp "$KAFKA_LIBS/*" "$main" "$@"
}

# Broker ids the cluster metadata reports. BrokerApiVersionsCommand asks the
# cluster for its metadata, which only lists registered, unfenced brokers --
# unlike a port check, this is true only once a node has joined the cluster.
registered_brokers() {
  run_tool org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "$BOOTSTRAP" 2>/dev/null |
    sed -n 's/^[^ ]* (id: \([0-9][0-9]*\) .*/\1/p' | sort -un || true
}

# --------------------------------------------------------------- env file ---

env_line() { printf 'export KAFKA_BOOTSTRAP_SERVERS=%s\n' "$BOOTSTRAP"; }
sasl_env_line() {
  printf 'export KAFKA_SASL_BOOTSTRAP_SERVERS=%s KAFKA_SASL_USERNAME=%s KAFKA_SASL_PASSWORD=%s\n' \
    "$SASL_BOOTSTRAP" "$SASL_USER" "$SASL_PASSWORD"
}
tls_env_line() {
  printf 'export KAFKA_TLS_BOOTSTRAP_SERVERS=%s KAFKA_TLS_CA_FILE=%s\n' "$TLS_BOOTSTRAP" "$TLS_DIR/ca.pem"
}
mtls_env_line() {
  printf 'export KAFKA_MTLS_BOOTSTRAP_SERVERS=%s KAFKA_MTLS_CERT_FILE=%s KAFKA_MTLS_KEY_FILE=%s\n' \
    "$MTLS_BOOTSTRAP" "$TLS_DIR/client.pem" "$TLS_DIR/client-key.pem"
}
pod_env_line() { printf 'export KAFKA_POD_BOOTSTRAP_SERVERS=%s\n' "$POD_BOOTSTRAP"; }
write_env() {
  env_file_edit KAFKA_POD_BOOTSTRAP_SERVERS "$(pod_env_line)"
  env_file_edit KAFKA_BOOTSTRAP_SERVERS "$(env_line)"
  env_file_edit KAFKA_SASL_BOOTSTRAP_SERVERS "$(sasl_env_line)"
  env_file_edit KAFKA_TLS_BOOTSTRAP_SERVERS "$(tls_env_line)"
  env_file_edit KAFKA_MTLS_BOOTSTRAP_SERVERS "$(mtls_env_line)"
}

# The brokers' key and certificate (PKCS12) and the certificate as PEM; a
# client's key and certificate (PEM) and the brokers' truststore holding it.
make_tls_material() {
  local f have=1
  for f in broker.p12 ca.pem client.pem client-key.pem clients.p12; do [[ -s $TLS_DIR/$f ]] || have=0; done
  ((have)) && return 0
  command -v openssl >/dev/null || die "openssl is required (apt-get install openssl)"
  mkdir -p "$TLS_DIR"
  rm -f "$TLS_DIR"/{broker.p12,ca.pem,client.pem,client-key.pem,clients.p12}
  keytool -genkeypair -alias broker -keyalg RSA -keysize 2048 -validity 3650 -dname CN=127.0.0.1 \
    -ext SAN=ip:127.0.0.1,dns:localhost -ext BC:c=ca:true -keystore "$TLS_DIR/broker.p12" -storetype PKCS12 \
    -storepass "$TLS_STOREPASS" -keypass "$TLS_STOREPASS" >/dev/null 2>&1 ||
    die "keytool could not make the brokers' TLS certificate"
  keytool -exportcert -rfc -alias broker -keystore "$TLS_DIR/broker.p12" -storepass "$TLS_STOREPASS" \
    -file "$TLS_DIR/ca.pem" >/dev/null 2>&1 || die "keytool could not export the TLS certificate"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=parley-client \
    -keyout "$TLS_DIR/client-key.pem" -out "$TLS_DIR/client.pem" >/dev/null 2>&1 ||
    die "openssl could not make the client's TLS certificate"
  keytool -importcert -noprompt -alias client -file "$TLS_DIR/client.pem" -keystore "$TLS_DIR/clients.p12" \
    -storetype PKCS12 -storepass "$TLS_STOREPASS" >/dev/null 2>&1 ||
    die "keytool could not make the brokers' truststore"
}

# ------------------------------------------------------------------ nodes ---

# node_alive N: node N's pidfile names a live JVM started by this script (the
# marker property guards against a recycled pid after a reboot).
node_alive() {
  local f cmdline
  f=$(pidfile "$1")
  pid_alive "$f" || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$(cat "$f")/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *" -Dparley.kafka.node=$1 "* ]]
}

# port_busy PORT [ADDRESS]: something listens there (127.0.0.1 by default).
port_busy() { (exec 3<>"/dev/tcp/${2:-127.0.0.1}/$1") 2>/dev/null; }

write_config() {
  local dir
  dir=$(node_dir "$1")
  mkdir -p "$dir/data" "$dir/logs"
  config_text "$1" >"$dir/server.properties"
}

config_text() {
  local n=$1 dir port cport sport tport mport pport
  dir=$(node_dir "$n")
  port=${BROKER_PORTS[n - 1]}
  cport=${CONTROLLER_PORTS[n - 1]}
  sport=${SASL_PORTS[n - 1]}
  tport=${TLS_PORTS[n - 1]}
  mport=${MTLS_PORTS[n - 1]}
  pport=${POD_PORTS[n - 1]}
  cat <<EOF
# Generated by scripts/env/kafka.sh -- node $n of a throwaway test cluster.
# JVM: $BROKER_HEAP_OPTS (here so that a change restarts the cluster)
process.roles=broker,controller
node.id=$n
# Static quorum: simplest to format (no directory ids), fine for a fixed trio.
controller.quorum.voters=$VOTERS
# POD: plaintext on the node's pod-network address, for clients in pods.
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport,SASL://127.0.0.1:$sport,TLS://127.0.0.1:$tport,MTLS://127.0.0.1:$mport,POD://$PARLEY_NODE_IP:$pport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL://127.0.0.1:$sport,TLS://127.0.0.1:$tport,MTLS://127.0.0.1:$mport,POD://$PARLEY_NODE_IP:$pport
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL:SASL_PLAINTEXT,TLS:SSL,MTLS:SSL,POD:PLAINTEXT
listener.name.sasl.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256
listener.name.sasl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$SASL_PASSWORD";
listener.name.sasl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.tls.ssl.keystore.type=PKCS12
listener.name.tls.ssl.keystore.location=$TLS_DIR/broker.p12
listener.name.tls.ssl.keystore.password=$TLS_STOREPASS
listener.name.tls.ssl.key.password=$TLS_STOREPASS
listener.name.mtls.ssl.keystore.type=PKCS12
listener.name.mtls.ssl.keystore.location=$TLS_DIR/broker.p12
listener.name.mtls.ssl.keystore.password=$TLS_STOREPASS
listener.name.mtls.ssl.key.password=$TLS_STOREPASS
listener.name.mtls.ssl.truststore.type=PKCS12
listener.name.mtls.ssl.truststore.location=$TLS_DIR/clients.p12
listener.name.mtls.ssl.truststore.password=$TLS_STOREPASS
listener.name.mtls.ssl.client.auth=required
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$dir/data

# Replication tests expect every topic on all three nodes and acks=all to
# survive exactly one node down.
num.partitions=1
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
unclean.leader.election.enable=false
# Tests create their topics explicitly; a typo must fail, not invent a topic.
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0

# Sized for 2 cores shared by three nodes: fewer threads, fewer internal
# partitions (first group/transaction use creates them), small cleaner buffer
# (the 128 MiB default would take a quarter of the heap).
num.network.threads=2
num.io.threads=4
num.replica.fetchers=1
num.recovery.threads.per.data.dir=1
background.threads=4
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
EOF
}

# A Kafka cluster id is a Uuid in URL-safe base64 without padding -- what
# `kafka-storage random-uuid` prints -- made here without paying a JVM start.
# Like Kafka's Uuid.randomUuid, skip ids starting with '-' (they read as flags).
new_cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    [[ $id == -* ]] || break
  done
  echo "$id"
}

format_node() {
  local n=$1 dir cid
  dir=$(node_dir "$n")
  [[ -f $dir/data/meta.properties ]] && return 0
  cid=$(cat "$KAFKA_RUN/cluster-id")
  # The SCRAM user lives in the cluster metadata, written here at format time.
  if ! run_tool kafka.tools.StorageTool format -c "$dir/server.properties" -t "$cid" \
    --add-scram "SCRAM-SHA-256=[name=$SASL_USER,password=$SASL_PASSWORD]" \
    >"$dir/logs/format.log" 2>&1; then
    tail -n 30 "$dir/logs/format.log" >&2
    die "formatting node $n failed (log: $dir/logs/format.log)"
  fi
}

launch_node() {
  local n=$1 dir
  dir=$(node_dir "$n")
  node_alive "$n" && return 0
  # shellcheck disable=SC2086 # BROKER_HEAP_OPTS is a list of JVM flags
  # setsid: the broker outlives the calling shell and its process group, so a
  # test harness interrupting this script does not take the cluster down.
  setsid java $BROKER_HEAP_OPTS \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true \
    "-Dparley.kafka.node=$n" \
    "-Dkafka.logs.dir=$dir/logs" \
    "-Dlog4j2.configurationFile=$HERE/kafka/log4j2-broker.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties" \
    </dev/null >>"$dir/logs/stdout.log" 2>&1 &
  echo $! >"$(pidfile "$n")"
}

# check_ports N...: die before launching anything if a stopped node's ports
# are held by some other process (a half-started cluster is worse).
check_ports() {
  local n port
  for n in "$@"; do
    node_alive "$n" && continue
    for port in "${BROKER_PORTS[n - 1]}" "${CONTROLLER_PORTS[n - 1]}" "${SASL_PORTS[n - 1]}" "${TLS_PORTS[n - 1]}" \
      "${MTLS_PORTS[n - 1]}"; do
      port_busy "$port" && die "port 127.0.0.1:$port is taken by another process; node $n cannot start"
    done
    port_busy "${POD_PORTS[n - 1]}" "$PARLEY_NODE_IP" &&
      die "port $PARLEY_NODE_IP:${POD_PORTS[n - 1]} is taken by another process; node $n cannot start"
  done
  return 0
}

# launch_and_wait N...: start the stopped ones among N... and wait until all
# of them are registered; if that fails, kill the ones this call started (the
# logs stay under $KAFKA_RUN) rather than leave a broken cluster running.
launch_and_wait() {
  local n started=()
  for n in "$@"; do
    node_alive "$n" && continue
    write_config "$n"
    launch_node "$n"
    started+=("$n")
  done
  if ! wait_registered "$START_TIMEOUT" "$@"; then
    for n in "${started[@]}"; do stop_node "$n" --kill; done
    die "kafka did not come up; logs kept in $KAFKA_RUN/node-N/logs ('$0 stop' removes them)"
  fi
}

show_node_logs() {
  local n dir
  for n in "$@"; do
    dir=$(node_dir "$n")
    log "---- node $n: tail of $dir/logs/server.log"
    tail -n 25 "$dir/logs/server.log" >&2 2>/dev/null || true
    if [[ -s $dir/logs/stdout.log ]]; then
      log "---- node $n: tail of $dir/logs/stdout.log"
      tail -n 15 "$dir/logs/stdout.log" >&2
    fi
  done
}

# wait_registered SECONDS N...: until every listed node is a registered,
# unfenced broker; fails early if one of their JVMs exits. On failure it
# prints the nodes' log tails and returns 1.
wait_registered() {
  local secs=$1; shift
  local deadline=$((SECONDS + secs)) n ids
  while :; do
    for n in "$@"; do
      if ! node_alive "$n"; then
        show_node_logs "$n"
        log "error: kafka node $n exited during startup"
        return 1
      fi
    done
    # Cheap gate first: no probe JVM until every listed node has its port.
    local ports_open=1
    for n in "$@"; do port_busy "${BROKER_PORTS[n - 1]}" || ports_open=0; done
    if ((ports_open)); then
      ids=" $(registered_brokers | tr '\n' ' ')"
    else
      ids=" "
    fi
    local missing=()
    for n in "$@"; do [[ $ids == *" $n "* ]] || missing+=("$n"); done
    ((${#missing[@]} == 0)) && return 0
    if ((SECONDS >= deadline)); then
      show_node_logs "${missing[@]}"
      log "error: kafka node(s) ${missing[*]} not registered after ${secs}s (registered:${ids:- none})"
      return 1
    fi
    sleep 1
  done
}

# --------------------------------------------------------------- commands ---

cmd_start() {
  cmd_install
  local n all_up=1
  for n in "${NODES[@]}"; do node_alive "$n" || all_up=0; done
  if ((all_up)); then
    for n in "${NODES[@]}"; do
      if [[ "$(config_text "$n")" != "$(cat "$(node_dir "$n")/server.properties" 2>/dev/null)" ]]; then
        log "kafka node $n runs with another configuration; starting the cluster afresh"
        cmd_stop
        all_up=0
        break
      fi
    done
  fi
  if ((all_up)); then
    wait_registered 30 "${NODES[@]}" || die "kafka nodes run but are not all registered"
    write_env
    log "kafka already running at $BOOTSTRAP"
    return 0
  fi
  check_ports "${NODES[@]}"
  mkdir -p "$KAFKA_RUN"
  # One cluster id for all nodes; kept so a restarted node formats (or is
  # checked) against the same cluster.
  [[ -s $KAFKA_RUN/cluster-id ]] || new_cluster_id >"$KAFKA_RUN/cluster-id"
  make_tls_material
  # Formatting costs a JVM start per node: do the three at once.
  local pids=() failed=0
  for n in "${NODES[@]}"; do
    write_config "$n"
    format_node "$n" &
    pids+=($!)
  done
  for n in "${pids[@]}"; do wait "$n" || failed=1; done
  ((failed == 0)) || die "could not format the kafka storage (see above)"
  log "starting kafka $KAFKA_VERSION nodes ${NODES[*]} (logs: $KAFKA_RUN/node-N/logs)"
  launch_and_wait "${NODES[@]}"
  write_env
  log "kafka up at $BOOTSTRAP"
}

# stop_node N [--kill]: TERM (a controlled shutdown; common.sh escalates to
# KILL after 20 s) or, with --kill, an immediate SIGKILL like a crash.
stop_node() {
  local n=$1 mode=${2-} f pid
  f=$(pidfile "$n")
  if ! node_alive "$n"; then
    rm -f "$f"
    return 0
  fi
  if [[ $mode == --kill ]]; then
    pid=$(cat "$f")
    kill -9 "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$f"
  else
    stop_pidfile "$f" "kafka node $n"
  fi
}

cmd_stop() {
  local n
  # In parallel: a node stopping after its peers has lost the quorum and may
  # sit out its controlled-shutdown timeout; no need to pay that three times.
  for n in "${NODES[@]}"; do stop_node "$n" & done
  wait
  rm -rf "$KAFKA_RUN"
  if [[ -f $PARLEY_ENV_FILE ]]; then
    env_file_edit KAFKA_BOOTSTRAP_SERVERS
    env_file_edit KAFKA_SASL_BOOTSTRAP_SERVERS
    env_file_edit KAFKA_TLS_BOOTSTRAP_SERVERS
    env_file_edit KAFKA_MTLS_BOOTSTRAP_SERVERS
    env_file_edit KAFKA_POD_BOOTSTRAP_SERVERS
  fi
  log "kafka stopped"
}

# parse_nodes FLAG ARGS...: node numbers into NODE_ARGS (deduplicated, in
# order); FLAG_SET=1 when the one allowed flag is among ARGS.
parse_nodes() {
  local flag=$1 a; shift
  NODE_ARGS=() FLAG_SET=0
  for a in "$@"; do
    if [[ $a == "$flag" ]]; then
      FLAG_SET=1
    elif [[ $a =~ ^[123]$ ]]; then
      [[ " ${NODE_ARGS[*]} " == *" $a "* ]] || NODE_ARGS+=("$a")
    else
      die "expected node numbers 1, 2, 3 and optionally $flag, got '$a'"
    fi
  done
  ((${#NODE_ARGS[@]})) || die "which node? give 1, 2 and/or 3"
}

# stop-broker N... [--kill]: several nodes go down together (in parallel),
# e.g. `stop-broker 1 2 3 --kill` for a whole-Kafka crash. Data is kept.
cmd_stop_broker() {
  parse_nodes --kill "$@"
  local n mode=
  ((FLAG_SET)) && mode=--kill
  for n in "${NODE_ARGS[@]}"; do stop_node "$n" "$mode" & done
  wait
  log "kafka node(s) ${NODE_ARGS[*]} stopped${mode:+ (SIGKILL)}; data kept in $KAFKA_RUN"
}

# start-broker N... [--no-wait]: restart stopped nodes on their old data and
# wait until they are registered brokers again. A lone node cannot register
# while the controller quorum lacks a majority, so after a whole-Kafka outage
# restart at least two together (or use `start`, which restarts all three).
cmd_start_broker() {
  parse_nodes --no-wait "$@"
  local n
  for n in "${NODE_ARGS[@]}"; do
    [[ -f $(node_dir "$n")/data/meta.properties ]] ||
      die "node $n has no data in $(node_dir "$n"); run '$0 start' first"
  done
  cmd_install
  check_ports "${NODE_ARGS[@]}"
  if ((FLAG_SET)); then
    for n in "${NODE_ARGS[@]}"; do
      node_alive "$n" && continue
      write_config "$n"
      launch_node "$n"
    done
    log "kafka node(s) ${NODE_ARGS[*]} launched (not waiting)"
    return 0
  fi
  launch_and_wait "${NODE_ARGS[@]}"
  log "kafka node(s) ${NODE_ARGS[*]} up"
}

cmd_status() {
  local n up=0 f
  for n in "${NODES[@]}"; do
    f=$(pidfile "$n")
    if node_alive "$n"; then
      up=$((up + 1))
      echo "node $n: running (pid $(cat "$f"), 127.0.0.1:${BROKER_PORTS[n - 1]})"
    else
      echo "node $n: stopped"
    fi
  done
  if ((up > 0)); then
    echo "registered brokers: $(registered_brokers | tr '\n' ' ')"
  fi
  ((up == ${#NODES[@]}))
}

require_installed() {
  [[ -d $KAFKA_LIBS ]] || die "kafka is not installed; run '$0 install'"
}

main() {
  local cmd=${1-}
  (($#)) && shift
  case $cmd in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    stop-broker) cmd_stop_broker "$@" ;;
    start-broker) cmd_start_broker "$@" ;;
    status) cmd_status ;;
    env) env_line; sasl_env_line; tls_env_line; mtls_env_line; pod_env_line ;;
    topics) require_installed; run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" "$@" ;;
    groups) require_installed; run_tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$BOOTSTRAP" "$@" ;;
    produce)
      require_installed
      (($#)) || die "produce TOPIC [ARGS...]"
      local topic=$1; shift
      run_tool org.apache.kafka.tools.ConsoleProducer --bootstrap-server "$BOOTSTRAP" --topic "$topic" "$@" ;;
    consume)
      require_installed
      (($#)) || die "consume TOPIC [ARGS...]"
      local topic=$1; shift
      run_tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$BOOTSTRAP" --topic "$topic" "$@" ;;
    # exec: the tool is this process, so whoever started it can stop it.
    tool) require_installed; (($#)) || die "tool MAIN-CLASS ARGS..."; exec java "${TOOL_JVM_OPTS[@]}" -cp "$KAFKA_LIBS/*" "$@" ;;
    *)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
      exit 2 ;;
  esac
}

main "$@"
