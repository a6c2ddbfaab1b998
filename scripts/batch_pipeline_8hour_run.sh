#!/usr/bin/env bash
# Heavy batch: re-run the whole pipeline for every selected client over the last DAYS days
# (default 7, counted on each client's own calendar) so gaps left by failures are filled;
# finished days are skipped.
# Usage: batch_pipeline_8hour_run.sh [+client ...] [-client ...]
source "$(dirname "$0")/lib.sh"
with_lock 8hour bash -c 'source "$0"; for_past_days MonitorTracker "$@"' "$(dirname "$0")/lib.sh" "$@"
