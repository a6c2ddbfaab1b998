#!/usr/bin/env bash
# The resident Spark session: a Spark Connect server on this host, from the venv's pyspark.
#
#   scripts/spark-connect.sh start    start it unless it runs, wait until its gRPC port answers
#   scripts/spark-connect.sh stop     stop it (and its Python workers)
#   scripts/spark-connect.sh status   exit 0 when it runs and its port answers
#
# Jobs reach it with FRAUDBATCH_SPARK_REMOTE=sc://HOST:PORT (jobs/common.py); DCluster sends
# eligible jobs there when resident_session is enabled (docs/dcluster.md). Pid file and log live in
# var/spark-connect/. Both commands are idempotent. Settings (environment):
#   SPARK_CONNECT_HOST (127.0.0.1), SPARK_CONNECT_PORT (15002), SPARK_CONNECT_MASTER (local[2];
#   spark://HOST:PORT runs every session's work on the executors of a standalone cluster),
#   SPARK_CONNECT_DRIVER_MEMORY (1g), SPARK_CONNECT_EXECUTOR_MEMORY (Spark's default: 1g; on a
#   cluster, what fits a worker), SPARK_CONNECT_SHUFFLE_PARTITIONS (8),
#   SPARK_CONNECT_SESSION_TIMEOUT (30min: an abandoned client session is dropped after it),
#   SPARK_CONNECT_WAIT (90 seconds), SPARK_CONNECT_DIR.
# Exit codes: 0 ok, 1 failed to start (the log to read is named), 2 bad usage, 3 status: not running.
set -u
PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FRAUDBATCH_VENV:-$PROJECT_ROOT/.venv}"
DIR="${SPARK_CONNECT_DIR:-$PROJECT_ROOT/var/spark-connect}"
HOST="${SPARK_CONNECT_HOST:-127.0.0.1}"
PORT="${SPARK_CONNECT_PORT:-15002}"
WAIT_S="${SPARK_CONNECT_WAIT:-90}"
PIDFILE="$DIR/server.pid"
LOGFILE="$DIR/server.log"
SERVER_CLASS=org.apache.spark.sql.connect.service.SparkConnectServer

log() { printf '%s spark-connect: %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }
# shellcheck source=scripts/spark-lib.sh
. "$PROJECT_ROOT/scripts/spark-lib.sh"

# The wheel's sbin/start-connect-server.sh ends in `spark-submit --class SparkConnectServer`
# through spark-daemon.sh, whose pid files live in /tmp; calling spark-submit directly keeps the
# pid and log here, and spark-submit execs java, so the pid is the server's.
spark_home() {
  pyspark_home || { log "pyspark not found in $VENV (make install)"; return 1; }
}

# running: true when the pid file names a live JVM of the Connect server.
running() { jvm_alive "$PIDFILE" "$SERVER_CLASS"; }

# answers: true when something accepts TCP connections on HOST:PORT.
answers() {
  "$VENV/bin/python" - "$HOST" "$PORT" <<'PY' 2>/dev/null
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}

start() {
  local home deadline
  if running; then
    log "already running, pid $(cat "$PIDFILE") on sc://$HOST:$PORT"
    wait_ready
    return
  fi
  if answers; then
    log "port $HOST:$PORT is taken by another process; set SPARK_CONNECT_PORT"
    return 1
  fi
  home="$(spark_home)" || return 1
  mkdir -p "$DIR"
  # The session settings of jobs/common.py::spark_session are the server's defaults too; each
  # client session sets its own SQL settings again, so one job's settings never reach another.
  # Python workers (UDFs) must use the venv's interpreter, which has the project installed.
  # maxRetries=0: a taken port must fail loudly, not drift to 15003 where nobody looks for it.
  SPARK_HOME="$home" PYSPARK_PYTHON="${PYSPARK_PYTHON:-$VENV/bin/python}" SPARK_LOCAL_IP="$HOST" \
  PYTHONPATH="$PROJECT_ROOT${PYTHONPATH:+:$PYTHONPATH}" SPARK_CONNECT_MODE=0 \
    setsid "$home/bin/spark-submit" --class "$SERVER_CLASS" --name "Spark Connect server" \
      --master "${SPARK_CONNECT_MASTER:-local[2]}" --driver-memory "${SPARK_CONNECT_DRIVER_MEMORY:-1g}" \
      --conf "spark.connect.grpc.binding.address=$HOST" --conf "spark.connect.grpc.binding.port=$PORT" \
      --conf spark.connect.grpc.port.maxRetries=0 \
      ${SPARK_CONNECT_EXECUTOR_MEMORY:+--executor-memory "$SPARK_CONNECT_EXECUTOR_MEMORY"} \
      --conf "spark.executorEnv.PYTHONPATH=$PROJECT_ROOT" \
      --conf "spark.connect.session.manager.defaultSessionTimeout=${SPARK_CONNECT_SESSION_TIMEOUT:-30min}" \
      --conf spark.sql.session.timeZone=UTC \
      --conf "spark.sql.shuffle.partitions=${SPARK_CONNECT_SHUFFLE_PARTITIONS:-8}" \
      --conf spark.sql.parquet.compression.codec=snappy \
      --conf spark.ui.enabled=false \
      >>"$LOGFILE" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  log "started, pid $! (log $LOGFILE)"
  wait_ready
}

# wait_ready: poll the port until it answers (or the server died, or WAIT_S passed).
wait_ready() {
  local deadline=$((SECONDS + WAIT_S))
  while :; do
    if answers; then
      log "ready: sc://$HOST:$PORT"
      return 0
    fi
    if ! running; then
      log "the server exited at start; see $LOGFILE"
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "sc://$HOST:$PORT does not answer after ${WAIT_S}s; see $LOGFILE"
      return 1
    fi
    sleep 0.5
  done
}

stop() {
  local n
  if ! running; then
    rm -f "$PIDFILE"
    log "not running"
    return 0
  fi
  halt_session "$PIDFILE" "$SERVER_CLASS"
  # An exiting JVM may hold the port a moment longer; a start right after must find it free.
  for n in $(seq 1 20); do
    answers || break
    sleep 0.25
  done
}

status() {
  if running && answers; then
    echo "running: pid $(cat "$PIDFILE"), sc://$HOST:$PORT answers (log $LOGFILE)"
    return 0
  fi
  if running; then
    echo "starting or stuck: pid $(cat "$PIDFILE") runs but sc://$HOST:$PORT does not answer (log $LOGFILE)"
  else
    echo "not running (no server pid in $PIDFILE)"
  fi
  return 3
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $(basename "$0") {start|stop|status}" >&2; exit 2 ;;
esac
