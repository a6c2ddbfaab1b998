#!/usr/bin/env bash
# Real-time feature transfer: CronFeaturePlatformFerry for today's data (in each client's
# timezone) of the selected clients.
# Usage: batch_pipeline_cronfpferry.sh [+client ...] [-client ...]
source "$(dirname "$0")/lib.sh"
with_lock cronfpferry bash -c 'source "$0"; for_clients CronFeaturePlatformFerry today "$@"' \
  "$(dirname "$0")/lib.sh" "$@"
