# Shared helpers for the service scripts. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA_VERSION="${TALLY_KAFKA_VERSION:-3.9.1}"
CACHE_DIR="${TALLY_CACHE_DIR:-$HOME/.cache/tally}"
KAFKA_LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
DATA_DIR="${TALLY_DATA_DIR:-$ROOT/.data}"
KAFKA_DIR="$DATA_DIR/kafka"
KAFKA_PID_FILE="$KAFKA_DIR/broker.pid"
KAFKA_HOST="${TALLY_KAFKA_HOST:-127.0.0.1}"
KAFKA_PORT="${TALLY_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${TALLY_KAFKA_CONTROLLER_PORT:-9093}"
# Whatever sources this (npm test, npm run demo) talks to the broker these scripts start, also
# when TALLY_KAFKA_PORT moved it off 9092: never to another broker listening there.
export TALLY_KAFKA_BROKERS="${TALLY_KAFKA_BROKERS:-$KAFKA_HOST:$KAFKA_PORT}"
COMMAND_PARTITIONS="${TALLY_COMMAND_PARTITIONS:-8}"
# Where PostgreSQL is checked (and started, if local): TALLY_PG_HOST/PORT, else the host and
# port of TALLY_PG_URL (postgres://user@host:port/db), else 127.0.0.1:5432.
pg_url_rest="${TALLY_PG_URL:-}"
pg_url_rest="${pg_url_rest#*://}"
pg_url_rest="${pg_url_rest##*@}"
pg_url_rest="${pg_url_rest%%\?*}"
pg_url_hostport="${pg_url_rest%%/*}"
pg_url_host="${pg_url_hostport%%:*}"
pg_url_port=""
[ "$pg_url_hostport" = "$pg_url_host" ] || pg_url_port="${pg_url_hostport##*:}"
PG_HOST="${TALLY_PG_HOST:-${pg_url_host:-127.0.0.1}}"
PG_PORT="${TALLY_PG_PORT:-${pg_url_port:-5432}}"
COMMANDS_TOPIC="${TALLY_COMMANDS_TOPIC:-tally.commands}"
EVENTS_TOPIC="${TALLY_EVENTS_TOPIC:-tally.events}"

log() { printf '[tally] %s\n' "$*" >&2; }
die() { printf '[tally] error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Alive only if the recorded pid is still our broker: after a reboot the pid file survives
# and the number may belong to an unrelated process, which must never be signalled.
kafka_pid_alive() {
  [ -f "$KAFKA_PID_FILE" ] || return 1
  local pid; pid="$(cat "$KAFKA_PID_FILE")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  local cmdline; cmdline="$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)" || return 1
  case "$cmdline" in *kafka.Kafka*"$KAFKA_DIR"*) return 0 ;; *) return 1 ;; esac
}

kafka_java() {
  java -Xms64m -Xmx256m -XX:TieredStopAtLevel=1 -Dlog4j.configuration="file:$ROOT/scripts/kafka/tools-log4j.properties" \
    -cp "$KAFKA_LIBS/*" "$@"
}
