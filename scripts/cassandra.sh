#!/usr/bin/env bash
# A single Apache Cassandra node for development, tests and the demo, installed from Maven Central.
#
#   scripts/cassandra.sh install        copy cassandra-all and its runtime jars into var/cassandra/lib
#   scripts/cassandra.sh start [--tls]  install if needed, write the config, start, wait until CQL answers
#   scripts/cassandra.sh stop  [--tls]  SIGTERM, wait, SIGKILL if it will not go
#   scripts/cassandra.sh status [--tls] "up"/"down"; exit 0 when up, 3 when down
#   scripts/cassandra.sh cqlsh-check [--tls]  one CQL round trip through the Python driver
#
# --tls runs a second node beside the plain one (its own folder var/cassandra-tls/ and ports
# 9142/7100/7299) with client-to-node encryption required; the CA to trust is written to
# var/cassandra-tls/tls/ca.pem.
#
# Environment (defaults in brackets; the --tls node has its own defaults):
#   FRAUDBATCH_CASSANDRA_PORT          CQL native port [9042]
#   FRAUDBATCH_CASSANDRA_STORAGE_PORT  inter-node port [7000]
#   FRAUDBATCH_CASSANDRA_JMX_PORT      local JMX port [7199]
#   FRAUDBATCH_CASSANDRA_DIR           node folder: conf, data, logs, pid [var/cassandra]
#   FRAUDBATCH_CASSANDRA_LIB           jar folder shared by both nodes [var/cassandra/lib]
#   FRAUDBATCH_CASSANDRA_HEAP          maximum heap [1g] (initial heap is 512m)
#   FRAUDBATCH_CASSANDRA_START_TIMEOUT seconds to wait for CQL [240]
#   FRAUDBATCH_CASSANDRA_JVM_OPTS      extra JVM options
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEMPLATES="$ROOT/scripts/cassandra"
POM="$TEMPLATES/pom.xml"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
PYTHON="${FRAUDBATCH_PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3

TLS=0
ACTION="${1:-}"
[ $# -gt 0 ] && shift
for arg in "$@"; do
  case "$arg" in
    --tls) TLS=1 ;;
    *) echo "unknown option $arg; usage: $0 {install|start|stop|status|cqlsh-check} [--tls]" >&2; exit 2 ;;
  esac
done

if [ "$TLS" = 1 ]; then
  BASE="${FRAUDBATCH_CASSANDRA_TLS_DIR:-$ROOT/var/cassandra-tls}"
  NATIVE_PORT="${FRAUDBATCH_CASSANDRA_TLS_PORT:-9142}"
  STORAGE_PORT="${FRAUDBATCH_CASSANDRA_TLS_STORAGE_PORT:-7100}"
  JMX_PORT="${FRAUDBATCH_CASSANDRA_TLS_JMX_PORT:-7299}"
else
  BASE="${FRAUDBATCH_CASSANDRA_DIR:-$ROOT/var/cassandra}"
  NATIVE_PORT="${FRAUDBATCH_CASSANDRA_PORT:-9042}"
  STORAGE_PORT="${FRAUDBATCH_CASSANDRA_STORAGE_PORT:-7000}"
  JMX_PORT="${FRAUDBATCH_CASSANDRA_JMX_PORT:-7199}"
fi
LIB="${FRAUDBATCH_CASSANDRA_LIB:-$ROOT/var/cassandra/lib}"
HEAP="${FRAUDBATCH_CASSANDRA_HEAP:-1g}"
START_TIMEOUT="${FRAUDBATCH_CASSANDRA_START_TIMEOUT:-240}"
PIDFILE="$BASE/cassandra.pid"
TLS_DIR="$BASE/tls"
NAME="cassandra node $BASE (127.0.0.1:$NATIVE_PORT)"

say() { printf 'cassandra: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

version() { sed -n 's:.*<cassandra.version>\(.*\)</cassandra.version>.*:\1:p' "$POM"; }

install() {
  local ver; ver="$(version)"
  # The marker is written last, so an interrupted copy is redone rather than trusted.
  if [ -f "$LIB/.installed-$ver" ]; then
    return 0
  fi
  command -v mvn >/dev/null || die "Maven is needed to install Cassandra $ver (apt-get install maven)"
  "$JAVA" -version >/dev/null 2>&1 || die "Java 17 is needed to run Cassandra (apt-get install openjdk-17-jre-headless)"
  say "installing Cassandra $ver from Maven Central into $LIB"
  rm -rf "$LIB.partial"
  mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$LIB.partial" >&2 || die "mvn could not resolve cassandra-all $ver (see above)"
  ls "$LIB.partial"/cassandra-all-"$ver".jar "$LIB.partial"/jamm-*.jar >/dev/null \
    || die "cassandra-all $ver or its jamm agent is missing from $LIB.partial"
  rm -rf "$LIB"
  mv "$LIB.partial" "$LIB"
  touch "$LIB/.installed-$ver"
  say "installed $(ls "$LIB"/*.jar | wc -l) jars"
}

# The pid of this folder's running node, or nothing (a stale pid file or a reused pid is ignored).
node_pid() {
  [ -f "$PIDFILE" ] || return 0
  local pid; pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "CassandraDaemon" || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-Dcassandra.storagedir=$BASE " || return 0
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cql_ping() {
  local ca=()
  [ "$TLS" = 1 ] && ca=(--ca-file "$TLS_DIR/ca.pem")
  "$PYTHON" "$TEMPLATES/cql_ping.py" --port "$NATIVE_PORT" "${ca[@]}" "$@"
}

# A CA and a node certificate signed by it (SAN 127.0.0.1, localhost) in a PKCS12 keystore;
# the CA goes out as PEM for the Python driver's ssl_context.
make_keystore() {
  [ -f "$TLS_DIR/keystore.p12" ] && [ -f "$TLS_DIR/ca.pem" ] && [ -f "$TLS_DIR/password" ] && return 0
  local kt="${JAVA_HOME:+$JAVA_HOME/bin/}keytool"
  rm -rf "$TLS_DIR" && mkdir -p "$TLS_DIR" && chmod 700 "$TLS_DIR"
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$TLS_DIR/password"
  chmod 600 "$TLS_DIR/password"
  local pw; pw="$(cat "$TLS_DIR/password")"
  "$kt" -genkeypair -alias ca -keyalg RSA -keysize 2048 -validity 3650 -dname "CN=fraudbatch dev CA" \
        -ext bc:c -storetype PKCS12 -keystore "$TLS_DIR/ca.p12" -storepass "$pw" >/dev/null 2>&1
  "$kt" -exportcert -rfc -alias ca -keystore "$TLS_DIR/ca.p12" -storepass "$pw" -file "$TLS_DIR/ca.pem" 2>/dev/null
  "$kt" -genkeypair -alias node -keyalg RSA -keysize 2048 -validity 3650 -dname "CN=127.0.0.1" \
        -storetype PKCS12 -keystore "$TLS_DIR/keystore.p12" -storepass "$pw" >/dev/null 2>&1
  "$kt" -certreq -alias node -keystore "$TLS_DIR/keystore.p12" -storepass "$pw" -file "$TLS_DIR/node.csr" 2>/dev/null
  "$kt" -gencert -alias ca -keystore "$TLS_DIR/ca.p12" -storepass "$pw" -infile "$TLS_DIR/node.csr" \
        -outfile "$TLS_DIR/node.pem" -rfc -validity 3650 -ext "SAN=ip:127.0.0.1,dns:localhost" \
        -ext ku:c=digitalSignature,keyEncipherment -ext eku=serverAuth 2>/dev/null
  "$kt" -importcert -noprompt -alias ca -file "$TLS_DIR/ca.pem" -keystore "$TLS_DIR/keystore.p12" \
        -storepass "$pw" >/dev/null 2>&1
  "$kt" -importcert -noprompt -alias node -file "$TLS_DIR/node.pem" -keystore "$TLS_DIR/keystore.p12" \
        -storepass "$pw" >/dev/null 2>&1
  [ -s "$TLS_DIR/ca.pem" ] && [ -s "$TLS_DIR/node.pem" ] || die "keytool could not create the TLS keystore in $TLS_DIR"
  rm -f "$TLS_DIR/node.csr"
}

write_config() {
  mkdir -p "$BASE"/{conf,data,commitlog,hints,saved_caches,cdc_raw,logs,tmp,triggers}
  local enc="  enabled: false"
  if [ "$TLS" = 1 ]; then
    make_keystore
    # optional: false refuses plaintext clients on the native port.
    enc="  enabled: true
  optional: false
  keystore: $TLS_DIR/keystore.p12
  keystore_password: $(cat "$TLS_DIR/password")
  store_type: PKCS12
  require_client_auth: false"
  fi
  local tmpl="$TEMPLATES/cassandra.yaml.template" out="$BASE/conf/cassandra.yaml"
  # The encryption block is spliced in by awk: sed cannot take a multi-line replacement portably.
  sed -e "s|@BASE@|$BASE|g" -e "s|@NATIVE_PORT@|$NATIVE_PORT|g" -e "s|@STORAGE_PORT@|$STORAGE_PORT|g" \
      -e "s|@SSL_STORAGE_PORT@|$((STORAGE_PORT + 1))|g" -e "s|@AUTHENTICATOR@|AllowAllAuthenticator|g" "$tmpl" \
    | ENC="$enc" awk '$0 == "@CLIENT_ENCRYPTION@" { print ENVIRON["ENC"]; next } { print }' >"$out.tmp"
  mv "$out.tmp" "$out"
  cp "$TEMPLATES/logback.xml" "$BASE/conf/logback.xml"
  cp "$TEMPLATES/jvm17.options" "$BASE/conf/jvm17.args"
}

start() {
  local pid; pid="$(node_pid)"
  if [ -n "$pid" ]; then
    if cql_ping --quiet; then
      say "$NAME already up (pid $pid)"
      return 0
    fi
    say "$NAME is starting (pid $pid); waiting for CQL"
  else
    install
    if port_open "$NATIVE_PORT"; then
      die "port $NATIVE_PORT is taken by another process; stop it or set FRAUDBATCH_CASSANDRA_PORT"
    fi
    write_config
    local jamm cp
    jamm="$(ls "$LIB"/jamm-*.jar | head -1)"
    cp="$BASE/conf:$(printf '%s:' "$LIB"/*.jar)"
    # No -ea: Cassandra's assertions cost noticeable CPU on a small shared machine.
    # JIT, GC and heap are sized for a 2-core box that also runs the pipeline.
    # shellcheck disable=SC2086
    nohup "$JAVA" \
      -Xms512m -Xmx"$HEAP" -Xss256k -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxGCPauseMillis=300 \
      -XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath="$BASE/logs" -XX:+CrashOnOutOfMemoryError \
      -XX:+UseThreadPriorities -XX:+PerfDisableSharedMem -XX:+UseTLAB -XX:+ResizeTLAB \
      -Djava.net.preferIPv4Stack=true -Djava.awt.headless=true -Djava.security.manager=allow \
      -javaagent:"$jamm" @"$BASE/conf/jvm17.args" \
      -Dchronicle.analytics.disable=true -Dchronicle.announcer.disable=true \
      -Djava.io.tmpdir="$BASE/tmp" -Djna.tmpdir="$BASE/tmp" \
      -Dcassandra.config="file://$BASE/conf/cassandra.yaml" \
      -Dcassandra.storagedir="$BASE" -Dcassandra.logdir="$BASE/logs" \
      -Dlogback.configurationFile="$BASE/conf/logback.xml" \
      -Dcassandra-foreground=yes -Dcassandra-pidfile="$PIDFILE" \
      -Dcassandra.triggers_dir="$BASE/triggers" \
      -Dcassandra.jmx.local.port="$JMX_PORT" -Dcom.sun.management.jmxremote.authenticate=false \
      -Djava.rmi.server.hostname=127.0.0.1 \
      -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=1000 \
      ${FRAUDBATCH_CASSANDRA_JVM_OPTS:-} \
      -cp "$cp" org.apache.cassandra.service.CassandraDaemon >"$BASE/logs/stdout.log" 2>&1 </dev/null &
    pid=$!
    # The daemon only deletes its pid file on exit, so the script writes it.
    echo "$pid" >"$PIDFILE"
    say "starting $NAME (pid $pid, heap $HEAP, log $BASE/logs/system.log)"
  fi
  local t0=$SECONDS
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$BASE/logs/system.log" "$BASE/logs/stdout.log" >&2 2>/dev/null || true
      rm -f "$PIDFILE"
      die "$NAME exited during start-up (log above)"
    fi
    if port_open "$NATIVE_PORT" && cql_ping --quiet; then
      say "$NAME up after $((SECONDS - t0)) s"
      return 0
    fi
    if [ $((SECONDS - t0)) -ge "$START_TIMEOUT" ]; then
      tail -n 30 "$BASE/logs/system.log" >&2 2>/dev/null || true
      die "$NAME did not answer CQL within $START_TIMEOUT s (pid $pid still running; log above)"
    fi
    sleep 1
  done
}

stop() {
  local pid; pid="$(node_pid)"
  if [ -z "$pid" ]; then
    rm -f "$PIDFILE"
    say "$NAME not running"
    return 0
  fi
  # SIGTERM runs the shutdown hook: memtables are flushed and clients disconnected cleanly.
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for i in $(seq 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; say "$NAME stopped"; return 0; }
    sleep 1
  done
  say "$NAME still running after 60 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for i in $(seq 10); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  rm -f "$PIDFILE"
}

status() {
  local pid; pid="$(node_pid)"
  if [ -n "$pid" ] && cql_ping --quiet; then
    echo "up: $NAME, pid $pid"
    return 0
  fi
  if [ -n "$pid" ]; then
    echo "starting: $NAME, pid $pid (no CQL answer yet)"
  else
    echo "down: $NAME"
  fi
  return 3
}

case "$ACTION" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  cqlsh-check) cql_ping ;;
  *) echo "usage: $0 {install|start|stop|status|cqlsh-check} [--tls]" >&2; exit 2 ;;
esac
