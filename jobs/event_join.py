"""EventJoinLite: the organized events of flagged users, each with the user's risk_score and campaign_id.

Usage: spark-submit jobs/run.py event_join --client C --date D --warehouse W [--registry R]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from fraudcore.atomic import write_json
from fraudcore.ingest import EVENT_FIELDS
from jobs.campaign import require_done
from jobs.common import JobContext, read_organized_events, run_main

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

APP = "event_join"
INPUT_STAGES = ("organized", "risk")
OUTPUT_ORDER = ("event_time_ms", "event_id")


def per_hour_counts(groups: Iterable[tuple[int, int]]) -> list[int]:
    """24 counts, client hours 0-23, from (hour, count) pairs."""
    counts = [0] * 24
    for hour, count in groups:
        if not 0 <= int(hour) <= 23:
            raise ValueError(f"hour {hour} is outside 0-23")
        counts[int(hour)] += int(count)
    return counts


def run(spark: SparkSession, ctx: JobContext) -> str:
    """Write event_join/{flagged_events/,stats.json}; return the summary line."""
    from pyspark.sql import functions as F

    started = time.monotonic()
    require_done(ctx, INPUT_STAGES)
    flagged = (
        spark.read.parquet(str(ctx.paths.stage("risk") / "scores"))
        .where(F.col("is_flagged"))
        .select("user_id", "risk_score", "campaign_id")
    )
    events = read_organized_events(spark, ctx)
    # Flagged users are a small share of all users, so they travel to every task instead of
    # shuffling the day's events.
    joined = events.join(F.broadcast(flagged), "user_id").select(
        *EVENT_FIELDS, "hour", "risk_score", "campaign_id"
    )
    meta: dict = {}
    with ctx.paths.output("event_join", meta) as tmp:
        out = str(tmp / "flagged_events")
        joined.orderBy(*OUTPUT_ORDER).write.parquet(out)
        hours = [(r["hour"], r["count"]) for r in spark.read.parquet(out).groupBy("hour").count().collect()]
        per_hour = per_hour_counts(hours)
        stats = {"flagged_events": sum(per_hour), "per_hour": per_hour}
        write_json(tmp / "stats.json", stats)
        meta.update(flagged_events=stats["flagged_events"], seconds=round(time.monotonic() - started, 3))
    return f"flagged_events={stats['flagged_events']}"


def main(argv: list[str] | None = None) -> int:
    """Entry point: `run.py event_join --client C --date D --warehouse W [--registry R]`."""
    return run_main(APP, "Join the events of flagged users with their risk.", run, argv)


if __name__ == "__main__":
    sys.exit(main())
