#!/usr/bin/env bash
# Runs a single-node Apache Kafka broker (KRaft, broker+controller) from Maven jars, on 127.0.0.1.
#   broker.sh fetch    download the broker jars into the cache (once per version)
#   broker.sh start    format storage if needed, start in the background, wait until it serves
#   broker.sh stop     stop the broker by its pid (TERM, then KILL after 20 s)
#   broker.sh status   say whether it runs, with pid and port
# Environment: KAFKA_VERSION (default 4.4.0), KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (port+1),
# KAFKA_DATA_DIR (deploy/kafka/.data/<port>), KAFKA_HEAP_OPTS (-Xms128m -Xmx512m),
# LEADPULSE_CACHE (~/.cache/leadpulse), KAFKA_START_TIMEOUT (seconds, 90), KAFKA_EXTRA_PROPERTIES (lines
# added to server.properties, e.g. a short log.retention.check.interval.ms for the erasure test).
#
# Cluster mode: the same commands run node KAFKA_NODE_ID of an N-node KRaft cluster on 127.0.0.1
# (every node broker+controller, static voters) when KAFKA_CLUSTER_VOTERS is set:
#   KAFKA_CLUSTER_VOTERS   id@127.0.0.1:controller-port of every node, comma-separated
#                          (e.g. 1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097)
#   KAFKA_NODE_ID          this node's id among the voters
#   KAFKA_CLUSTER_ID       the cluster id, the same for every node (`broker.sh cluster-id` makes one)
#   KAFKA_PORT, KAFKA_DATA_DIR   this node's own; KAFKA_CONTROLLER_PORT defaults to its port in the voters
#   KAFKA_REPLICATION_FACTOR (min(3, N)), KAFKA_MIN_INSYNC_REPLICAS (replication factor - 1, at least 1):
#                          topic defaults and the offsets, transaction and share-state topics
# Start all nodes at the same time: each one waits for a quorum of voters before it serves. Pick
# ports below the ephemeral range (/proc/sys/net/ipv4/ip_local_port_range): a client reconnecting
# to an ephemeral port can end up connected to itself and hold the port a restarted node needs.
#   broker.sh cluster-id   print a new cluster id
#
# Security listeners (single node; what the security tests and the README's walk-through use),
# each added next to PLAINTEXT (which stays for the broker itself and an administrator):
#   KAFKA_SASL_PORT        a SASL_PLAINTEXT listener (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN)
#   KAFKA_SSL_PORT         an SSL listener; clients must present a certificate signed by the CA
#   KAFKA_SASL_SSL_PORT    a SASL_SSL listener (same mechanisms, TLS without client certificates)
#   KAFKA_SCRAM_USERS      name=password,... : SCRAM-SHA-256 and -512 credentials written when the
#                          storage is formatted (a fresh KAFKA_DATA_DIR), and the PLAIN users
#   KAFKA_SSL_KEYSTORE, KAFKA_SSL_KEYSTORE_PASSWORD   the broker's key and certificate (PKCS12)
#   KAFKA_SSL_CA           the CA certificate (PEM) that client certificates must be signed by
#   KAFKA_AUTHORIZER=on    StandardAuthorizer, deny when no ACL matches (grant with acls.sh); KAFKA_SUPER_USERS (default
#                          User:ANONYMOUS, i.e. the PLAINTEXT listener, so keep that port private)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="${KAFKA_VERSION:-4.4.0}"
port="${KAFKA_PORT:-9092}"
ctl_port="${KAFKA_CONTROLLER_PORT:-$((port + 1))}"
data_dir="${KAFKA_DATA_DIR:-$here/.data/$port}"
cache="${LEADPULSE_CACHE:-$HOME/.cache/leadpulse}"
jars="$cache/kafka-$version/libs"
pid_file="$data_dir/broker.pid"
log_file="$data_dir/broker.log"
heap="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
timeout="${KAFKA_START_TIMEOUT:-90}"
voters="${KAFKA_CLUSTER_VOTERS:-}"
node_id="${KAFKA_NODE_ID:-1}"
label="" # what start and status add in cluster mode: "node <id>, "

die() { echo "broker.sh: $*" >&2; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found. The local broker needs Java 17+ and Maven; \
install them (Debian: apt-get install openjdk-17-jre-headless maven) or run the whole stack with Docker: docker compose up"
}

fetch() {
  [ -f "$jars/.complete" ] && return 0
  need java
  need mvn
  local profile=()
  case "$version" in 3.*) profile=(-Dkafka3) ;; esac
  echo "broker.sh: fetching Apache Kafka $version jars with Maven into $jars (once)..." >&2
  mkdir -p "$jars"
  mvn -q -B -f "$here/pom.xml" "${profile[@]}" dependency:copy-dependencies \
    -Dkafka.version="$version" -DincludeScope=runtime -DoutputDirectory="$jars" >&2 \
    || die "Maven could not fetch org.apache.kafka:kafka_2.13:$version"
  touch "$jars/.complete"
}

running_pid() {
  [ -f "$pid_file" ] || return 1
  local pid
  pid="$(cat "$pid_file")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_config() {
  if [ -n "$voters" ]; then
    write_cluster_config
    return
  fi
  local extra="" map="" props=""
  for spec in "SASL_PLAINTEXT:${KAFKA_SASL_PORT:-}" "SSL:${KAFKA_SSL_PORT:-}" "SASL_SSL:${KAFKA_SASL_SSL_PORT:-}"; do
    [ -n "${spec#*:}" ] || continue
    extra="$extra,${spec%%:*}://127.0.0.1:${spec#*:}"
    map="$map,${spec%%:*}:${spec%%:*}"
  done
  [ -z "$extra" ] || props="$(security_properties)"
  cat >"$data_dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctl_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctl_port$extra
advertised.listeners=PLAINTEXT://127.0.0.1:$port$extra
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT$map
inter.broker.listener.name=PLAINTEXT
$props
log.dirs=$data_dir/logs
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.segment.bytes=67108864
${KAFKA_EXTRA_PROPERTIES:-}
PROPS
}

# The SASL and TLS settings of the security listeners (see the header).
security_properties() {
  local jaas_plain="org.apache.kafka.common.security.plain.PlainLoginModule required" user
  IFS=',' read -r -a users <<<"${KAFKA_SCRAM_USERS:-}"
  for user in "${users[@]}"; do
    [[ "$user" =~ ^([A-Za-z0-9_.-]+)=(.+)$ ]] || die "KAFKA_SCRAM_USERS: '$user' is not name=password"
    jaas_plain="$jaas_plain user_${BASH_REMATCH[1]}=\"${BASH_REMATCH[2]}\""
  done
  echo "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN"
  for listener in sasl_plaintext sasl_ssl; do
    echo "listener.name.$listener.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
    echo "listener.name.$listener.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
    echo "listener.name.$listener.plain.sasl.jaas.config=$jaas_plain;"
  done
  if [ -n "${KAFKA_SSL_PORT:-}${KAFKA_SASL_SSL_PORT:-}" ]; then
    [ -f "${KAFKA_SSL_KEYSTORE:-}" ] || die "KAFKA_SSL_KEYSTORE: a PKCS12 keystore file is needed for the TLS listeners"
    [ -f "${KAFKA_SSL_CA:-}" ] || die "KAFKA_SSL_CA: the CA certificate (PEM) is needed for the TLS listeners"
    echo "ssl.keystore.type=PKCS12"
    echo "ssl.keystore.location=$KAFKA_SSL_KEYSTORE"
    echo "ssl.keystore.password=${KAFKA_SSL_KEYSTORE_PASSWORD:-}"
    echo "ssl.truststore.type=PEM"
    echo "ssl.truststore.location=$KAFKA_SSL_CA"
    echo "listener.name.ssl.ssl.client.auth=required"
  fi
  if [ "${KAFKA_AUTHORIZER:-off}" = "on" ]; then
    echo "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    echo "super.users=${KAFKA_SUPER_USERS:-User:ANONYMOUS}"
    echo "allow.everyone.if.no.acl.found=false"
  fi
}

# `--add-scram` arguments of the storage format for KAFKA_SCRAM_USERS.
scram_arguments() {
  local user
  IFS=',' read -r -a users <<<"${KAFKA_SCRAM_USERS:-}"
  for user in "${users[@]}"; do
    [[ "$user" =~ ^([A-Za-z0-9_.-]+)=(.+)$ ]] || continue
    for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
      printf '%s\n' --add-scram "$mechanism=[name=${BASH_REMATCH[1]},password=${BASH_REMATCH[2]}]"
    done
  done
}

# Cluster mode: check the voters, find this node's controller port, derive the replication.
cluster_setup() {
  [ -n "$voters" ] || return 0
  [[ "$node_id" =~ ^[0-9]+$ ]] || die "KAFKA_NODE_ID=$node_id: expected a node id (a whole number)"
  local voter id address own="" count=0 seen=" "
  IFS=',' read -r -a voter_list <<<"$voters"
  for voter in "${voter_list[@]}"; do
    [[ "$voter" =~ ^([0-9]+)@([^:@]+):([0-9]+)$ ]] \
      || die "KAFKA_CLUSTER_VOTERS: '$voter' is not id@host:controller-port"
    id="${BASH_REMATCH[1]}"
    address="${BASH_REMATCH[3]}"
    case "$seen" in *" $id "*) die "KAFKA_CLUSTER_VOTERS: node id $id appears twice" ;; esac
    seen="$seen$id "
    count=$((count + 1))
    [ "$id" = "$node_id" ] && own="$address"
  done
  [ -n "$own" ] || die "KAFKA_NODE_ID=$node_id is not among KAFKA_CLUSTER_VOTERS=$voters"
  if [ -n "${KAFKA_CONTROLLER_PORT:-}" ] && [ "$KAFKA_CONTROLLER_PORT" != "$own" ]; then
    die "KAFKA_CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT but node $node_id's voter entry says $own"
  fi
  ctl_port="$own"
  label="node $node_id, "
  [ "$ctl_port" != "$port" ] || die "node $node_id: KAFKA_PORT and its controller port are both $port"
  replication="${KAFKA_REPLICATION_FACTOR:-$((count < 3 ? count : 3))}"
  min_isr="${KAFKA_MIN_INSYNC_REPLICAS:-$((replication > 1 ? replication - 1 : 1))}"
  [ "$replication" -le "$count" ] || die "KAFKA_REPLICATION_FACTOR=$replication: the cluster has $count nodes"
  [ "$min_isr" -le "$replication" ] || die "KAFKA_MIN_INSYNC_REPLICAS=$min_isr exceeds the replication factor $replication"
}

write_cluster_config() {
  cat >"$data_dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$node_id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctl_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data_dir/logs
num.partitions=1
default.replication.factor=$replication
min.insync.replicas=$min_isr
unclean.leader.election.enable=false
offsets.topic.replication.factor=$replication
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$replication
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$replication
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.segment.bytes=67108864
PROPS
}

cluster_id() {
  need java
  fetch
  java -cp "$jars/*" kafka.tools.StorageTool random-uuid 2>/dev/null || die "StorageTool random-uuid failed"
}

java_opts() {
  local logcfg
  case "$version" in
    3.*) logcfg="-Dlog4j.configuration=file:$here/log4j.properties" ;;
    *) logcfg="-Dlog4j2.configurationFile=$here/log4j2.properties" ;;
  esac
  # shellcheck disable=SC2086
  echo $heap -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true "$logcfg"
}

start() {
  if pid="$(running_pid)"; then
    echo "broker.sh: already running (${label}pid $pid, 127.0.0.1:$port)" >&2
    return 0
  fi
  port_open "$port" && die "port $port on 127.0.0.1 is taken by another process"
  if [ -n "$voters" ]; then
    [ -n "${KAFKA_CLUSTER_ID:-}" ] || die "KAFKA_CLUSTER_ID is needed with KAFKA_CLUSTER_VOTERS (the same for every node; broker.sh cluster-id makes one)"
    port_open "$ctl_port" && die "controller port $ctl_port on 127.0.0.1 is taken by another process"
  fi
  need java
  fetch
  mkdir -p "$data_dir"
  write_config
  local cp="$jars/*" opts
  opts="$(java_opts)"
  : >"$log_file"
  if [ ! -f "$data_dir/logs/meta.properties" ]; then
    local scram=()
    mapfile -t scram < <(scram_arguments)
    # shellcheck disable=SC2086
    java $opts -cp "$cp" kafka.tools.StorageTool format -t "${KAFKA_CLUSTER_ID:-$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null || cat /proc/sys/kernel/random/uuid)}" \
      -c "$data_dir/server.properties" --ignore-formatted "${scram[@]}" >>"$log_file" 2>&1 \
      || die "formatting storage failed; see $log_file"
  fi
  # shellcheck disable=SC2086
  nohup java $opts -cp "$cp" kafka.Kafka "$data_dir/server.properties" >>"$log_file" 2>&1 &
  local pid=$!
  echo "$pid" >"$pid_file"
  local waited=0
  until port_open "$port" && grep -q "Kafka Server started" "$log_file"; do
    kill -0 "$pid" 2>/dev/null || die "broker exited during start-up; last lines of $log_file:
$(tail -n 20 "$log_file")"
    sleep 0.2
    waited=$((waited + 1))
    [ "$waited" -lt $((timeout * 5)) ] || { kill -9 "$pid" 2>/dev/null; die "broker not ready after ${timeout}s; see $log_file"; }
  done
  echo "broker.sh: Kafka $version running on 127.0.0.1:$port (${label}pid $pid, data $data_dir)" >&2
  echo "$pid"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then
    echo "broker.sh: not running" >&2
    rm -f "$pid_file"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pid_file"
  echo "broker.sh: stopped (pid $pid)" >&2
}

status() {
  local pid
  if pid="$(running_pid)"; then
    echo "running: ${label}pid $pid, 127.0.0.1:$port, Kafka $version, data $data_dir"
  else
    echo "not running (127.0.0.1:$port)"
    return 3
  fi
}

case "${1:-}" in
  start | stop | status) cluster_setup ;;
esac

case "${1:-}" in
  fetch) fetch ;;
  cluster-id) cluster_id ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: broker.sh fetch|start|stop|status|cluster-id" ;;
esac
