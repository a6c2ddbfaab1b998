#!/usr/bin/env bash
# A Spark standalone cluster on this host: one master and two workers, from the venv's pyspark.
#
#   scripts/spark-cluster.sh start    start what is not running, wait for every worker to be ALIVE
#   scripts/spark-cluster.sh stop     stop the workers (and their executors), then the master
#   scripts/spark-cluster.sh status   print the master's view; exit 0 when all workers are ALIVE
#
# Pid files and logs live in var/spark-cluster/ (workers' work dirs under work/). Both commands
# are idempotent. Settings (environment):
#   SPARK_CLUSTER_HOST (127.0.0.1), SPARK_CLUSTER_PORT (7077), SPARK_CLUSTER_UI_PORT (8090),
#   SPARK_CLUSTER_WORKERS (2), SPARK_CLUSTER_WORKER_CORES (1), SPARK_CLUSTER_WORKER_MEMORY (1g),
#   SPARK_CLUSTER_DAEMON_MEMORY (512m), SPARK_CLUSTER_WAIT (90 seconds), SPARK_CLUSTER_DIR.
# Exit codes: 0 ok, 1 failed to start (the log to read is named), 2 bad usage, 3 status: not
# (fully) running.
set -u
PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FRAUDBATCH_VENV:-$PROJECT_ROOT/.venv}"
DIR="${SPARK_CLUSTER_DIR:-$PROJECT_ROOT/var/spark-cluster}"
HOST="${SPARK_CLUSTER_HOST:-127.0.0.1}"
PORT="${SPARK_CLUSTER_PORT:-7077}"
UI_PORT="${SPARK_CLUSTER_UI_PORT:-8090}"
WORKERS="${SPARK_CLUSTER_WORKERS:-2}"
WORKER_CORES="${SPARK_CLUSTER_WORKER_CORES:-1}"
WORKER_MEMORY="${SPARK_CLUSTER_WORKER_MEMORY:-1g}"
WAIT_S="${SPARK_CLUSTER_WAIT:-90}"
MASTER_URL="spark://$HOST:$PORT"
JSON_URL="http://$HOST:$UI_PORT/json/"
MASTER_CLASS=org.apache.spark.deploy.master.Master
WORKER_CLASS=org.apache.spark.deploy.worker.Worker

log() { printf '%s spark-cluster: %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }
# shellcheck source=scripts/spark-lib.sh
. "$PROJECT_ROOT/scripts/spark-lib.sh"

# The wheel ships spark-class but not sbin/start-master.sh, so the daemons are started by hand.
spark_class() {
  if [ -x "$VENV/bin/spark-class" ]; then
    echo "$VENV/bin/spark-class"
    return
  fi
  local pkg
  pkg="$(pyspark_home)" && [ -x "$pkg/bin/spark-class" ] && { echo "$pkg/bin/spark-class"; return; }
  log "spark-class not found in $VENV/bin or the pyspark package (make install)"
  return 1
}

# running NAME CLASS: true when NAME's pid file names a live JVM of CLASS.
running() { jvm_alive "$DIR/$1.pid" "$2"; }

# master_json FIELD: one field of the master's JSON status page, empty when it does not answer.
master_json() {
  "$VENV/bin/python" - "$JSON_URL" "$1" <<'PY' 2>/dev/null
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as resp:
        doc = json.load(resp)
except (OSError, ValueError):
    sys.exit(0)
field = sys.argv[2]
if field == "alive":
    print(sum(1 for w in doc.get("workers", []) if w.get("state") == "ALIVE"))
elif field == "summary":
    print(f"master {doc.get('url')} {doc.get('status')}: {doc.get('aliveworkers')} alive workers, "
          f"{doc.get('cores')} cores, {doc.get('memory')} MB, {len(doc.get('activeapps', []))} running apps")
    for w in doc.get("workers", []):
        print(f"  worker {w.get('id')} {w.get('state')} {w.get('host')}:{w.get('port')} "
              f"cores {w.get('coresused')}/{w.get('cores')} memory {w.get('memoryused')}/{w.get('memory')} MB")
PY
}

# launch NAME ARGS...: start one daemon in its own session (so stop reaches its executors too).
launch() {
  local name="$1"; shift
  # Without job control the background child is no group leader, so setsid needs no fork and
  # $! stays the daemon's pid (spark-class execs java).
  setsid "$@" >>"$DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/$name.pid"
  log "$name: started, pid $! (log $DIR/$name.log)"
}

start() {
  local sc i
  sc="$(spark_class)" || return 1
  mkdir -p "$DIR/work"
  # Daemons and executors talk over loopback only; a multi-host cluster sets its own address.
  export SPARK_LOCAL_IP="$HOST" SPARK_DAEMON_MEMORY="${SPARK_CLUSTER_DAEMON_MEMORY:-512m}"
  export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$VENV/bin/python}"
  if running master "$MASTER_CLASS"; then
    log "master: already running, pid $(cat "$DIR/master.pid")"
  else
    # maxRetries=0: a taken port must fail loudly, not drift to 7078 where nobody looks for it.
    SPARK_MASTER_OPTS="-Dspark.port.maxRetries=0 ${SPARK_MASTER_OPTS:-}" \
      launch master "$sc" "$MASTER_CLASS" --host "$HOST" --port "$PORT" --webui-port "$UI_PORT"
  fi
  for i in $(seq 1 "$WORKERS"); do
    if running "worker-$i" "$WORKER_CLASS"; then
      log "worker-$i: already running, pid $(cat "$DIR/worker-$i.pid")"
      continue
    fi
    mkdir -p "$DIR/work/worker-$i"
    # Random ports for the worker and its UI: several workers share the host.
    SPARK_WORKER_OPTS="-Dspark.worker.cleanup.enabled=true -Dspark.worker.cleanup.appDataTtl=86400 ${SPARK_WORKER_OPTS:-}" \
      launch "worker-$i" "$sc" "$WORKER_CLASS" --host "$HOST" --port 0 --webui-port 0 \
      --cores "$WORKER_CORES" --memory "$WORKER_MEMORY" --work-dir "$DIR/work/worker-$i" "$MASTER_URL"
  done
  wait_alive
}

# wait_alive: poll the master's JSON until it lists WORKERS alive workers (or a daemon died).
wait_alive() {
  local deadline=$((SECONDS + WAIT_S)) alive i
  while :; do
    alive="$(master_json alive)"
    if [ "${alive:-0}" -ge "$WORKERS" ]; then
      log "ready: $MASTER_URL with $alive alive workers (UI http://$HOST:$UI_PORT/)"
      return 0
    fi
    if ! running master "$MASTER_CLASS"; then
      log "master exited at start; see $DIR/master.log"
      return 1
    fi
    for i in $(seq 1 "$WORKERS"); do
      running "worker-$i" "$WORKER_CLASS" || { log "worker-$i exited at start; see $DIR/worker-$i.log"; return 1; }
    done
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "only ${alive:-0}/$WORKERS workers ALIVE at $JSON_URL after ${WAIT_S}s; see $DIR/*.log"
      return 1
    fi
    sleep 1
  done
}

# halt NAME CLASS: stop one daemon and its session (its executors and Python workers too).
halt() { halt_session "$DIR/$1.pid" "$2" "$1"; }

stop() {
  local f name
  # Every worker pid file, not only 1..WORKERS: a run with more workers may have left some.
  for f in "$DIR"/worker-*.pid; do
    [ -e "$f" ] || continue
    name="$(basename "$f" .pid)"
    halt "$name" "$WORKER_CLASS"
  done
  halt master "$MASTER_CLASS"
}

status() {
  local summary alive
  summary="$(master_json summary)"
  if [ -z "$summary" ]; then
    echo "not running: no master answers $JSON_URL"
    return 3
  fi
  echo "$summary"
  alive="$(master_json alive)"
  [ "${alive:-0}" -ge "$WORKERS" ] || return 3
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $(basename "$0") {start|stop|status}" >&2; exit 2 ;;
esac
