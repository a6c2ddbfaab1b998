# Helpers shared by the JVM daemon scripts: spark-cluster.sh, spark-connect.sh, flink-cluster.sh
# (sourced; pyspark_home needs $VENV, halt_session a log function).

# pyspark_home: the pyspark package folder of the venv (its bin/ holds spark-submit and spark-class).
pyspark_home() {
  "$VENV/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))' 2>/dev/null
}

# jvm_alive PIDFILE CLASS: true when PIDFILE names a live JVM running CLASS (a reused pid is not ours).
jvm_alive() {
  local pid
  [ -f "$1" ] || return 1
  pid="$(cat "$1")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$2"
}

# halt_session PIDFILE PATTERN [LABEL]: stop the daemon PIDFILE names while it matches PATTERN (see
# jvm_alive): SIGTERM to its whole session (the JVM and the workers or executors it forked), SIGKILL
# after 20 s, then the pid file goes. Log lines start with "LABEL: " when a label is given.
halt_session() {
  local pidfile="$1" pattern="$2" prefix="${3:+$3: }" pid n
  if ! jvm_alive "$pidfile" "$pattern"; then
    rm -f "$pidfile"
    return 0
  fi
  pid="$(cat "$pidfile")"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  for n in $(seq 1 40); do
    jvm_alive "$pidfile" "$pattern" || break
    sleep 0.5
  done
  if jvm_alive "$pidfile" "$pattern"; then
    log "${prefix}still running after 20 s, killing"
  fi
  # Also what outlived the leader (executors, Python workers) must not keep cores and memory.
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
  rm -f "$pidfile"
  log "${prefix}stopped"
}
