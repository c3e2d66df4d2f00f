#!/usr/bin/env bash
# Stops the Kafka broker that services-up.sh started, by the pid it recorded (never by
# process name, so another project's broker is never touched). PostgreSQL is shared with
# the machine and is left running.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if ! kafka_pid_alive; then
  log "no Kafka broker recorded in $KAFKA_PID_FILE is running"
  rm -f "$KAFKA_PID_FILE"
  exit 0
fi
pid="$(cat "$KAFKA_PID_FILE")"
log "stopping Kafka broker (pid $pid)"
kill -TERM "$pid"
for _ in $(seq 1 60); do
  kill -0 "$pid" 2>/dev/null || { rm -f "$KAFKA_PID_FILE"; log "Kafka broker stopped"; exit 0; }
  sleep 0.5
done
log "Kafka broker did not stop within 30 s; sending SIGKILL"
kill -KILL "$pid" 2>/dev/null || true
rm -f "$KAFKA_PID_FILE"
