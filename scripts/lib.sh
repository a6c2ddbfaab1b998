#!/usr/bin/env bash
# Shared by the cron wrappers: project paths, client selection, locking, exit codes.
#
# Exit codes: a wrapper passes luigi's code through (luigi.cfg [retcode]: 10 already running,
# 20 missing data, 25 not run, 30 task failed, 35 scheduling error, 40 unhandled exception),
# the highest over all clients it ran; 15 when luigi succeeded but the day is partial (a file was
# set aside: fraudbatch status names it); 2 for bad arguments; and SKIPPED_LOCKED when the
# previous run of the same wrapper still holds its lock.
set -u
PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FRAUDBATCH_VENV:-$PROJECT_ROOT/.venv}"
VAR="${FRAUDBATCH_VAR:-$PROJECT_ROOT/var}"
export LUIGI_CONFIG_PATH="${LUIGI_CONFIG_PATH:-$PROJECT_ROOT/luigi.cfg}"
SKIPPED_LOCKED=50
PARTIAL=15  # the day completed, but files were set aside (fraudbatch.recovery.PARTIAL_EXIT)
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
  if [ "$rc" = 0 ]; then
    "$VENV/bin/fraudbatch" status --client "$client" --date "$day" --partial-exit >/dev/null 2>&1
    if [ "$?" = "$PARTIAL" ]; then
      rc=$PARTIAL
      log "$client $day is partial: files were set aside; fraudbatch status --client $client --date $day lists them"
    fi
  else
    log "see fraudbatch status --client $client --date $day: which stage failed and what to run"
  fi
  log "$task $client $day exited $rc"
  return "$rc"
}

# client_date CLIENT WHEN: the client-day WHEN names for CLIENT. WHEN is YYYY-MM-DD (itself),
# or today / yesterday / today-N on the client's own calendar (its registry timezone); DATE
# (YYYY-MM-DD) overrides today and yesterday. FRAUDBATCH_NOW (ISO-8601) replaces the clock.
client_date() {
  local client="$1" when="$2"
  if [[ "$when" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]]; then echo "$when"; return 0; fi
  if [ -n "${DATE:-}" ] && { [ "$when" = today ] || [ "$when" = yesterday ]; }; then echo "$DATE"; return 0; fi
  "$VENV/bin/fraudbatch" day --client "$client" ${FRAUDBATCH_NOW:+--now "$FRAUDBATCH_NOW"} "$when"
}

# for_clients TASK WHEN SELECTORS...: run TASK for each selected client on the client-day WHEN
# names for it (client_date); returns the highest code.
for_clients() {
  local task="$1" when="$2"; shift 2
  local clients worst=0 rc day
  clients="$(select_clients "$@")" || return 2
  for c in $clients; do
    if ! day="$(client_date "$c" "$when")"; then
      log "$task $c: no client-day for $when"; rc=2
    else
      run_task "$task" "$c" "$day" --workers "${WORKERS:-5}"; rc=$?
    fi
    [ "$rc" -gt "$worst" ] && worst=$rc
  done
  return "$worst"
}

# for_past_days TASK SELECTORS...: for_clients TASK over the last DAYS days (default 7, oldest
# first, each on the client's own calendar); returns the worst exit code.
for_past_days() {
  local task="$1"; shift
  local worst=0 rc
  for i in $(seq "${DAYS:-7}" -1 1); do
    for_clients "$task" "today-$i" "$@"; rc=$?
    [ "$rc" -gt "$worst" ] && worst=$rc
  done
  return "$worst"
}
