#!/usr/bin/env bash
# Statistics and reports: Labeling (precision/recall against client labels) for the last
# DAYS days (default 7, on each client's own calendar) of the selected clients.
# Usage: cronjob_monthly.sh [+client ...] [-client ...]
source "$(dirname "$0")/lib.sh"
with_lock monthly bash -c 'source "$0"; for_past_days Labeling "$@"' "$(dirname "$0")/lib.sh" "$@"
