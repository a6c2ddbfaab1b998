"""What the client-day's non-Spark steps do, as plain functions of a `ClientDay` (no luigi here).

Import direction: fraudbatch (CLI) → batch_tasks (Luigi wiring) → pipeline → fraudcore, storage,
dcluster_client, fp_ferry. Each step reads its inputs from the warehouse (docs/architecture.md),
writes its stage folder atomically, and returns the metadata stored in the stage's _DONE marker.
"""

from pipeline.day import ClientDay, Settings

__all__ = ["ClientDay", "Settings"]
