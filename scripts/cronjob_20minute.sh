#!/usr/bin/env bash
# High-frequency ingest: Connector and LogTimeFileOrganizer for today's data (each client's
# today, in its timezone) of the selected clients.
# Usage: cronjob_20minute.sh [+client ...] [-client ...]   (DATE=YYYY-MM-DD to override)
source "$(dirname "$0")/lib.sh"
lockname="20minute-$(echo "${*:-all}" | tr ' +' '_p')"
with_lock "$lockname" bash -c 'source "$0"; for_clients LogTimeFileOrganizer today "$@"' \
  "$(dirname "$0")/lib.sh" "$@"
