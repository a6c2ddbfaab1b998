#!/usr/bin/env bash
# Statistics and reports: Labeling (precision/recall against client labels) for the last
# DAYS days (default 7) of the selected clients.
# Usage: cronjob_monthly.sh [+client ...] [-client ...]
source "$(dirname "$0")/lib.sh"
labels() {
  local worst=0 rc d
  for i in $(seq "${DAYS:-7}" -1 1); do
    d="$(date -u -d "-$i day" +%F)"
    for_clients Labeling "$d" "$@"; rc=$?
    [ "$rc" -gt "$worst" ] && worst=$rc
  done
  return "$worst"
}
export -f labels
with_lock monthly bash -c 'source "$0"; labels "$@"' "$(dirname "$0")/lib.sh" "$@"
