#!/usr/bin/env bash
# Brings up the services Tally's engine and tests talk to, idempotently:
#   - a single-node KRaft Apache Kafka broker on 127.0.0.1:9092, jars from Maven Central
#     cached outside the repository, data under .data/kafka;
#   - PostgreSQL at 127.0.0.1:5432 (started if installed but stopped), database `tally`,
#     migrations applied.
# Returns only once the broker answers metadata requests and both topics exist.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_kafka_jars() {
  if [ -f "$KAFKA_LIBS/.complete" ]; then return; fi
  command -v java >/dev/null || die "java not found: install a JDK 17 (apt-get install openjdk-17-jre-headless)."
  command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install maven); it fetches the Kafka jars from Maven Central."
  log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS"
  rm -rf "$KAFKA_LIBS"; mkdir -p "$KAFKA_LIBS"
  mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" \
    || die "Maven could not resolve the Kafka jars (is Maven Central reachable?)."
  touch "$KAFKA_LIBS/.complete"
}

write_broker_config() {
  mkdir -p "$KAFKA_DIR/logs"
  cat > "$KAFKA_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$KAFKA_DIR/logs
num.partitions=$COMMAND_PARTITIONS
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
log.segment.bytes=268435456
message.max.bytes=4194304
PROPS
}

start_kafka() {
  if kafka_pid_alive; then
    log "Kafka broker already running (pid $(cat "$KAFKA_PID_FILE"))"
    return
  fi
  if port_open "$KAFKA_HOST" "$KAFKA_PORT" || port_open "$KAFKA_HOST" "$KAFKA_CONTROLLER_PORT"; then
    die "port $KAFKA_PORT or $KAFKA_CONTROLLER_PORT on $KAFKA_HOST is taken by another process; stop it or set TALLY_KAFKA_PORT / TALLY_KAFKA_CONTROLLER_PORT."
  fi
  ensure_kafka_jars
  write_broker_config
  if [ ! -f "$KAFKA_DIR/logs/meta.properties" ]; then
    local cluster_id; cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)" \
      || die "java could not run Kafka's StorageTool (java -version, and the jars in $KAFKA_LIBS)."
    [ -n "$cluster_id" ] || die "Kafka's StorageTool printed no cluster id (java -version, and the jars in $KAFKA_LIBS)."
    kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_DIR/server.properties" >/dev/null \
      || die "formatting the KRaft storage in $KAFKA_DIR/logs failed."
  fi
  log "starting Kafka broker on $KAFKA_HOST:$KAFKA_PORT (log: $KAFKA_DIR/server.log)"
  nohup java -Xms512m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Dlog4j.configuration="file:$ROOT/scripts/kafka/log4j.properties" -Dkafka.logs.dir="$KAFKA_DIR" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
    >"$KAFKA_DIR/stdout.log" 2>&1 </dev/null &
  echo $! > "$KAFKA_PID_FILE"
}

wait_for_kafka() {
  local deadline=$((SECONDS + 120))
  until port_open "$KAFKA_HOST" "$KAFKA_PORT"; do
    kafka_pid_alive || die "the Kafka broker exited during start-up; see $KAFKA_DIR/server.log and $KAFKA_DIR/stdout.log."
    [ $SECONDS -lt $deadline ] || die "the Kafka broker did not open $KAFKA_HOST:$KAFKA_PORT within 120 s; see $KAFKA_DIR/server.log."
    sleep 0.5
  done
}

create_topic() {
  local name="$1" partitions="$2"
  local deadline=$((SECONDS + 60))
  # TopicCommand needs a metadata answer from the broker, so its success is also the readiness probe.
  until kafka_java org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_HOST:$KAFKA_PORT" \
        --create --if-not-exists --topic "$name" --partitions "$partitions" --replication-factor 1 >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "could not create topic $name on $KAFKA_HOST:$KAFKA_PORT within 60 s; see $KAFKA_DIR/server.log."
    sleep 1
  done
}

ensure_postgres() {
  if pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null || port_open "$PG_HOST" "$PG_PORT"; then return; fi
  case "$PG_HOST" in
    127.0.0.1|localhost|::1) ;;
    *) die "PostgreSQL is not answering on $PG_HOST:$PG_PORT (a remote host: start it there, or point TALLY_PG_URL at a running one)." ;;
  esac
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    local version; version="$(ls /etc/postgresql | sort -V | tail -1)"
    log "PostgreSQL is not answering on $PG_HOST:$PG_PORT; starting cluster $version/main"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || die "pg_ctlcluster could not start PostgreSQL $version/main."
  else
    die "PostgreSQL is not answering on $PG_HOST:$PG_PORT and no local cluster was found: install it (apt-get install postgresql) or point TALLY_PG_URL (or TALLY_PG_HOST/TALLY_PG_PORT) at a running one."
  fi
  local deadline=$((SECONDS + 60))
  until port_open "$PG_HOST" "$PG_PORT"; do
    [ $SECONDS -lt $deadline ] || die "PostgreSQL did not come up on $PG_HOST:$PG_PORT within 60 s."
    sleep 0.5
  done
}

migrate() {
  [ -d "$ROOT/node_modules/pg" ] || die "node_modules is missing: run 'source scripts/install.sh' first (it builds the native Kafka client as this machine needs)."
  [ -f "$ROOT/dist/io/cli.js" ] || (cd "$ROOT" && npm run -s build)
  node "$ROOT/dist/io/cli.js" migrate
}

start_kafka
ensure_postgres
wait_for_kafka
create_topic "$COMMANDS_TOPIC" "$COMMAND_PARTITIONS"
create_topic "$EVENTS_TOPIC" "$COMMAND_PARTITIONS"
migrate
log "services up: Kafka $KAFKA_HOST:$KAFKA_PORT, PostgreSQL $PG_HOST:$PG_PORT"
