#!/usr/bin/env bash
# Shared by the cron wrappers: project paths, client selection, locking, exit codes.
#
# Exit codes: a wrapper passes luigi's code through (luigi.cfg [retcode]: 10 already running,
# 20 missing data, 25 not run, 30 task failed, 35 scheduling error, 40 unhandled exception),
# the highest over all clients it ran; 2 for bad arguments; and SKIPPED_LOCKED when the
# previous run of the same wrapper still holds its lock.
set -u
PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FRAUDBATCH_VENV:-$PROJECT_ROOT/.venv}"
VAR="${FRAUDBATCH_VAR:-$PROJECT_ROOT/var}"
export LUIGI_CONFIG_PATH="${LUIGI_CONFIG_PATH:-$PROJECT_ROOT/luigi.cfg}"
SKIPPED_LOCKED=50
mkdir -p "$VAR/lock" "$VAR/log/cron"

log() { printf '%s %s: %s\n' "$(date -u +%FT%TZ)" "$(basename "$0")" "$*" >&2; }

# with_lock NAME CMD...: run CMD unless another run holds NAME's lock (kernel-released on exit).
with_lock() {
  local name="$1"; shift
  flock -n -E "$SKIPPED_LOCKED" "$VAR/lock/$name.lock" "$@"
  local rc=$?
  [ "$rc" = "$SKIPPED_LOCKED" ] && log "skipped: the previous $name run still holds $VAR/lock/$name.lock"
  return "$rc"
}

# select_clients ARGS...: clients chosen by +name / -name selectors (none: all configured).
select_clients() { "$VENV/bin/fraudbatch" clients "$@"; }

# run_task TASK CLIENT DATE [luigi args...]: one luigi run; prints and returns its exit code.
run_task() {
  local task="$1" client="$2" day="$3"; shift 3
  log "luigi $task --client $client --date $day"
  (cd "$PROJECT_ROOT" && "$VENV/bin/luigi" --module batch_tasks "$task" --client "$client" --date "$day" "$@")
  local rc=$?
  log "$task $client $day exited $rc"
  return "$rc"
}

# for_clients TASK DATE SELECTORS...: run TASK for each selected client; returns the highest code.
for_clients() {
  local task="$1" day="$2"; shift 2
  local clients worst=0 rc
  clients="$(select_clients "$@")" || return 2
  for c in $clients; do
    run_task "$task" "$c" "$day" --workers "${WORKERS:-5}"; rc=$?
    [ "$rc" -gt "$worst" ] && worst=$rc
  done
  return "$worst"
}

# The client-day a wrapper works on: DATE if given (YYYY-MM-DD), else today / yesterday in UTC.
today() { echo "${DATE:-$(date -u +%F)}"; }
yesterday() { echo "${DATE:-$(date -u -d yesterday +%F)}"; }
