#!/usr/bin/env bash
# Statistics and reports: Labeling (precision/recall against client labels) for the last
# DAYS days (default 7, on each client's own calendar) of the selected clients.
# Usage: cronjob_monthly.sh [+client ...] [-client ...]
source "$(dirname "$0")/lib.sh"
labels() {
  local worst=0 rc
  for i in $(seq "${DAYS:-7}" -1 1); do
    for_clients Labeling "today-$i" "$@"; rc=$?
    [ "$rc" -gt "$worst" ] && worst=$rc
  done
  return "$worst"
}
export -f labels
with_lock monthly bash -c 'source "$0"; labels "$@"' "$(dirname "$0")/lib.sh" "$@"
