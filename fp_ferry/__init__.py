"""FP client and ferry logic (batching, idempotent batch ids) that the Ferry tasks call."""
