"""LogTimeFileOrganizer: connector events de-duplicated, late ones split off, the rest by client hour.

Usage: spark-submit jobs/run.py organizer --client C --date D --warehouse W [--registry R]
"""
from __future__ import annotations

import sys
from pathlib import Path

from fraudcore.organize import DUPLICATE_ORDER, check_organizer_stats, organizer_stats
from fraudcore.paths import is_done, write_json
from jobs.common import (
    EVENT_FIELDS,
    events_schema,
    guarded_main,
    job_context,
    job_parser,
    spark_session,
)

APP = "organizer"
OUTPUT_ORDER = ("user_id", "event_time_ms", "event_id")


def run(argv: list[str]) -> int:
    """Organize one client-day; the exit code."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ctx = job_context(job_parser(__doc__.splitlines()[0]), argv)
    source = ctx.paths.stage("connector")
    if not is_done(source):
        raise RuntimeError(f"connector stage is not complete: {source} has no _DONE")
    spark = spark_session(APP)
    events = spark.read.schema(events_schema()).parquet(str(source / "events"))
    start, end = ctx.client.day_window_ms(ctx.paths.date)

    ranking = Window.partitionBy("event_id").orderBy(*[F.col(c).asc_nulls_first() for c in DUPLICATE_ORDER])
    ranked = (
        events.withColumn("_dup", F.row_number().over(ranking) > 1)
        .withColumn("_late", ~((F.col("event_time_ms") >= start) & (F.col("event_time_ms") < end)))
        # Session time is UTC, so shifting the instant to the client zone makes hour() the local hour.
        .withColumn("hour", F.hour(F.from_utc_timestamp(F.timestamp_millis("event_time_ms"),
                                                        ctx.client.timezone)).cast("int"))
        .persist()
    )
    try:
        groups = [(r["_dup"], r["_late"], r["hour"], r["count"])
                  for r in ranked.groupBy("_dup", "_late", "hour").count().collect()]
        stats = organizer_stats(events.count(), groups)
        kept = ranked.filter(~F.col("_dup"))
        with ctx.paths.output("organized", stats) as tmp:
            (kept.filter(~F.col("_late")).select(*EVENT_FIELDS, "hour")
             .repartition("hour").sortWithinPartitions("hour", *OUTPUT_ORDER)
             .write.partitionBy("hour").parquet(str(tmp / "events")))
            (kept.filter(F.col("_late")).select(*EVENT_FIELDS)
             .coalesce(1).sortWithinPartitions(*OUTPUT_ORDER)
             .write.parquet(str(tmp / "late")))
            check_organizer_stats({**stats, "late": _rows(tmp / "late"), "organized": _rows(tmp / "events")})
            write_json(tmp / "stats.json", stats)
    finally:
        ranked.unpersist()

    print(f"organizer {ctx.client.name} {ctx.paths.date}: input={stats['input']} "
          f"duplicates={stats['duplicates']} late={stats['late']} organized={stats['organized']}")
    return 0


def _rows(folder: Path) -> int:
    """Rows written under a Parquet folder, from file footers (no data read)."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in sorted(folder.rglob("*.parquet")))


def main(argv: list[str]) -> int:
    """Entry point for jobs/run.py: the exit code; a failure's message is the last stderr line."""
    return guarded_main(APP, run, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
