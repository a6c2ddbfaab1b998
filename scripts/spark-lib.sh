# Helpers shared by scripts/spark-cluster.sh and scripts/spark-connect.sh (sourced; needs $VENV).

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
