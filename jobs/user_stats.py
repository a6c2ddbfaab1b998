"""UserStats: one *user_stats* row per user of a client-day (fraudcore.features.user_stats)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fraudcore.atomic import write_json
from fraudcore.features import USER_STATS_FIELDS, user_stats
from jobs.common import JobContext, map_rows, read_organized_events, run_main
from jobs.rawlogconverter import events_by_user, user_events

if TYPE_CHECKING:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType

APP = "user_stats"

# Summed over users into stats.json "totals".
TOTAL_FIELDS = ("events", "logins", "failed_logins", "transactions", "amount_total")


def user_stats_schema() -> StructType:
    """Spark schema of the *user_stats* dataset (docs/architecture.md), in USER_STATS_FIELDS order."""
    from pyspark.sql.types import BooleanType, DoubleType, LongType, StringType, StructField, StructType

    types = {
        "user_id": StringType(),
        "amount_total": DoubleType(),
        "amount_max": DoubleType(),
        "night_share": DoubleType(),
        "is_new_account": BooleanType(),
    }
    return StructType([StructField(f, types.get(f, LongType()), False) for f in USER_STATS_FIELDS])


def run(spark: SparkSession, ctx: JobContext) -> str:
    """Write user_stats/{stats,stats.json}; return the summary line."""
    from pyspark.sql import functions as F

    day_start_ms, _ = ctx.client.day_window_ms(ctx.paths.date)
    fields = USER_STATS_FIELDS
    rows = map_rows(
        events_by_user(read_organized_events(spark, ctx)),
        lambda row: tuple(user_stats(user_events(row), day_start_ms)[f] for f in fields),
        user_stats_schema(),
    )
    meta: dict = {}
    started = time.monotonic()
    with ctx.paths.output("user_stats", meta) as tmp:
        out = str(Path(tmp) / "stats")
        rows.orderBy("user_id").write.parquet(out)
        agg = (
            spark.read.parquet(out)
            .agg(F.count(F.lit(1)).alias("users"), *[F.sum(f).alias(f) for f in TOTAL_FIELDS])
            .first()
        )
        totals = {f: (agg[f] or 0) for f in TOTAL_FIELDS}
        totals["amount_total"] = float(totals["amount_total"])
        stats = {"users": int(agg["users"]), "totals": totals}
        write_json(Path(tmp) / "stats.json", stats)
        meta.update(users=stats["users"], seconds=round(time.monotonic() - started, 3))
    return f"users={stats['users']} events={totals['events']} transactions={totals['transactions']}"


def main(argv: list[str] | None = None) -> int:
    """Entry point: `run.py user_stats --client C --date D --warehouse W [--registry R]`."""
    return run_main(APP, "Compute the per-user statistics of a client-day.", run, argv)


if __name__ == "__main__":
    sys.exit(main())
