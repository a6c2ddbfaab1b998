#!/usr/bin/env bash
# A Flink session cluster on this host: one JobManager and one TaskManager, from .venv-flink's PyFlink.
#
#   scripts/flink-cluster.sh start    start what is not running, wait until the TaskManager has registered
#   scripts/flink-cluster.sh stop     stop the TaskManager (and its Python workers), then the JobManager
#   scripts/flink-cluster.sh status   print the JobManager's overview; exit 0 when a TaskManager is registered
#
# DCluster's standalone provider submits engine "flink" jobs here (`flink run -m HOST:PORT`), as it
# submits Spark jobs to scripts/spark-cluster.sh's master. Config, pid files and logs live in
# var/flink-cluster/ (conf/config.yaml is written at each start from the settings below). Both
# commands are idempotent. Settings (environment):
#   FLINK_CLUSTER_HOST (127.0.0.1), FLINK_CLUSTER_PORT (8094, REST API and web UI),
#   FLINK_CLUSTER_RPC_PORT (6123), FLINK_CLUSTER_SLOTS (2), FLINK_CLUSTER_JM_MEMORY (1024m),
#   FLINK_CLUSTER_TM_MEMORY (1728m), FLINK_CLUSTER_WAIT (90 seconds), FLINK_CLUSTER_DIR,
#   FRAUDBATCH_FLINK_VENV (.venv-flink).
# Exit codes: 0 ok, 1 failed to start (the log to read is named), 2 bad usage, 3 status: not
# (fully) running.
set -u
PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FRAUDBATCH_FLINK_VENV:-$PROJECT_ROOT/.venv-flink}"
DIR="${FLINK_CLUSTER_DIR:-$PROJECT_ROOT/var/flink-cluster}"
HOST="${FLINK_CLUSTER_HOST:-127.0.0.1}"
PORT="${FLINK_CLUSTER_PORT:-8094}"
RPC_PORT="${FLINK_CLUSTER_RPC_PORT:-6123}"
SLOTS="${FLINK_CLUSTER_SLOTS:-2}"
JM_MEMORY="${FLINK_CLUSTER_JM_MEMORY:-1024m}"
TM_MEMORY="${FLINK_CLUSTER_TM_MEMORY:-1728m}"
WAIT_S="${FLINK_CLUSTER_WAIT:-90}"
OVERVIEW_URL="http://$HOST:$PORT/overview"
JM_CLASS=org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint
TM_CLASS=org.apache.flink.runtime.taskexecutor.TaskManagerRunner

log() { printf '%s flink-cluster: %s\n' "$(date -u +%FT%TZ)" "$*" >&2; }
# shellcheck source=scripts/spark-lib.sh
. "$PROJECT_ROOT/scripts/spark-lib.sh"  # jvm_alive, halt_session

# flink_home: the pyflink package folder (its bin/ holds jobmanager.sh, taskmanager.sh and flink).
flink_home() {
  local home
  home="$("$VENV/bin/python" -c 'import os, pyflink; print(os.path.dirname(pyflink.__file__))' 2>/dev/null)"
  if [ -z "$home" ] || [ ! -x "$home/bin/jobmanager.sh" ]; then
    log "PyFlink not found in $VENV (run make flink-env)"
    return 1
  fi
  echo "$home"
}

# write_conf HOME: conf/ for this cluster, the package's logging files plus our config.yaml.
write_conf() {
  local home="$1" java_opts
  mkdir -p "$DIR/conf" "$DIR/log"
  cp -f "$home"/conf/log4j*.properties "$home"/conf/logback*.xml "$DIR/conf/"
  # Flink's JVMs on Java 17 need the module openings the package's own config lists.
  java_opts="$(sed -n 's/^ *all: *//p' "$home/conf/config.yaml" | head -n 1)"
  cat >"$DIR/conf/config.yaml.tmp" <<YAML
# Written by scripts/flink-cluster.sh at each start; change the FLINK_CLUSTER_* settings instead.
env:
  java:
    opts:
      all: $java_opts
jobmanager:
  bind-host: $HOST
  rpc:
    address: $HOST
    port: $RPC_PORT
  memory:
    process:
      size: $JM_MEMORY
taskmanager:
  bind-host: $HOST
  host: $HOST
  numberOfTaskSlots: $SLOTS
  memory:
    process:
      size: $TM_MEMORY
parallelism:
  default: $SLOTS
rest:
  address: $HOST
  bind-address: $HOST
  port: $PORT
YAML
  mv -f "$DIR/conf/config.yaml.tmp" "$DIR/conf/config.yaml"
}

# running NAME CLASS: true when NAME's pid file names a live JVM of CLASS, or the start script
# that is about to exec it (jobmanager.sh / taskmanager.sh → flink-console.sh → java, one pid).
running() { jvm_alive "$DIR/$1.pid" "$(daemon_pattern "$1" "$2")"; }
daemon_pattern() { printf '%s' "$2\\|$1.sh\\|flink-console.sh"; }

# overview FIELD: one field of the JobManager's /overview, empty when it does not answer.
overview() {
  python3 - "$OVERVIEW_URL" "$1" <<'PY' 2>/dev/null
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as resp:
        doc = json.load(resp)
except (OSError, ValueError):
    sys.exit(0)
if sys.argv[2] == "summary":
    print(f"Flink {doc.get('flink-version')} session cluster: {doc.get('taskmanagers')} taskmanagers, "
          f"slots {doc.get('slots-available')}/{doc.get('slots-total')} free, "
          f"jobs running {doc.get('jobs-running')}, finished {doc.get('jobs-finished')}, "
          f"cancelled {doc.get('jobs-cancelled')}, failed {doc.get('jobs-failed')}")
else:
    print(doc.get(sys.argv[2], ""))
PY
}

# launch NAME SCRIPT: start one daemon in the foreground mode of its script, in its own session.
launch() {
  local name="$1" script="$2"
  setsid "$script" start-foreground >>"$DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/$name.pid"
  log "$name: started, pid $! (log $DIR/$name.log)"
}

start() {
  local home
  home="$(flink_home)" || return 1
  command -v java >/dev/null || { log "Java 17+ is needed (apt-get install openjdk-17-jre-headless)"; return 1; }
  write_conf "$home"
  export FLINK_CONF_DIR="$DIR/conf" FLINK_LOG_DIR="$DIR/log"
  # The TaskManager's Python workers import the checkout's packages (jobs/, fraudcore/).
  export PYTHONPATH="$PROJECT_ROOT${PYTHONPATH:+:$PYTHONPATH}"
  if running jobmanager "$JM_CLASS"; then
    log "jobmanager: already running, pid $(cat "$DIR/jobmanager.pid")"
  else
    launch jobmanager "$home/bin/jobmanager.sh"
  fi
  if running taskmanager "$TM_CLASS"; then
    log "taskmanager: already running, pid $(cat "$DIR/taskmanager.pid")"
  else
    launch taskmanager "$home/bin/taskmanager.sh"
  fi
  wait_ready
}

# wait_ready: poll /overview until a TaskManager has registered (or a daemon died).
wait_ready() {
  local deadline=$((SECONDS + WAIT_S)) tms
  while :; do
    tms="$(overview taskmanagers)"
    if [ "${tms:-0}" -ge 1 ]; then
      log "ready: $HOST:$PORT with $tms taskmanager(s), $(overview slots-total) slots (UI http://$HOST:$PORT/)"
      return 0
    fi
    running jobmanager "$JM_CLASS" || { log "jobmanager exited at start; see $DIR/jobmanager.log and $DIR/log/"; return 1; }
    running taskmanager "$TM_CLASS" || { log "taskmanager exited at start; see $DIR/taskmanager.log and $DIR/log/"; return 1; }
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "no taskmanager registered at $OVERVIEW_URL after ${WAIT_S}s; see $DIR/*.log and $DIR/log/"
      return 1
    fi
    sleep 1
  done
}

# halt NAME CLASS: stop one daemon and its session (the TaskManager's Python workers too).
halt() { halt_session "$DIR/$1.pid" "$(daemon_pattern "$1" "$2")" "$1"; }

stop() {
  halt taskmanager "$TM_CLASS"
  halt jobmanager "$JM_CLASS"
}

status() {
  local summary
  summary="$(overview summary)"
  if [ -z "$summary" ]; then
    echo "not running: no JobManager answers $OVERVIEW_URL"
    return 3
  fi
  echo "$summary"
  [ "$(overview taskmanagers)" -ge 1 ] 2>/dev/null || return 3
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $(basename "$0") {start|stop|status}" >&2; exit 2 ;;
esac
