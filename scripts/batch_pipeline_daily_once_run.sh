#!/usr/bin/env bash
# Daily maintenance: remove warehouse client-days older than KEEP_DAYS (default 14); results
# stay in the clients' buckets.
source "$(dirname "$0")/lib.sh"
with_lock daily "$VENV/bin/fraudbatch" maintenance --keep-days "${KEEP_DAYS:-14}"
