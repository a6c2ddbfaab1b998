#!/usr/bin/env bash
# Hourly batch: the whole client-day pipeline (MonitorTracker and everything it requires) for
# yesterday's data of the selected clients (each client's yesterday, in its timezone); finished
# days are skipped by luigi.
# Usage: batch_pipeline_hourly_run.sh [+client ...] [-client ...]   (DATE=YYYY-MM-DD to override)
source "$(dirname "$0")/lib.sh"
with_lock hourly bash -c 'source "$0"; for_clients MonitorTracker yesterday "$@"' \
  "$(dirname "$0")/lib.sh" "$@"
