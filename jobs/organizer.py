"""LogTimeFileOrganizer: connector events plus the day's inbox, de-duplicated, by client hour; other days' records sent to them.

Usage: spark-submit jobs/run.py organizer --client C --date D --warehouse W [--registry R]

Records of client-day D whose time falls on another client-local day E are written to E's
inbox (E/inbox/from-D/, fraudcore.organize.inbox_folder); every run of D reads D/inbox/from-*/
with the connector's events, so each record is analysed in its own client-local day.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from fraudcore.atomic import write_json
from fraudcore.ingest import EVENT_FIELDS
from fraudcore.organize import (
    DUPLICATE_KEY,
    DUPLICATE_ORDER,
    check_inbox_rows,
    check_organizer_stats,
    complete_inbox,
    inbox_folder,
    inbox_meta,
    organizer_stats,
    remove_folder,
    stale_inbox_folders,
)
from fraudcore.paths import atomic_dir, is_done
from jobs.common import events_schema, guarded_main, job_context, job_parser, spark_session

APP = "organizer"
OUTPUT_ORDER = ("user_id", "event_time_ms", "event_id")


def run(argv: list[str]) -> int:
    """Organize one client-day; the exit code."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ctx = job_context(job_parser(__doc__.splitlines()[0]), argv)
    day, warehouse, client = ctx.paths.date, ctx.paths.warehouse, ctx.client.name
    source = ctx.paths.stage("connector")
    if not is_done(source):
        raise RuntimeError(f"connector stage is not complete: {source} has no _DONE")
    spark = spark_session(APP)
    events = spark.read.schema(events_schema()).parquet(str(source / "events"))
    input_rows = events.count()
    inbox = complete_inbox(ctx.paths.inbox)
    from_inbox = {}
    for from_day, folder in inbox.items():
        from_inbox[from_day] = _rows(folder)
        check_inbox_rows(folder, from_inbox[from_day])
    if inbox:
        events = events.unionByName(
            spark.read.schema(events_schema()).parquet(*[str(f) for f in inbox.values()])
        )
        input_rows += sum(from_inbox.values())
    start, end = ctx.client.day_window_ms(day)
    # Session time is UTC, so shifting the instant to the client zone gives the local wall clock.
    local = F.from_utc_timestamp(F.timestamp_millis("event_time_ms"), ctx.client.timezone)

    ranking = Window.partitionBy(*DUPLICATE_KEY).orderBy(
        *[F.col(c).asc_nulls_first() for c in DUPLICATE_ORDER]
    )
    in_day = (F.col("event_time_ms") >= start) & (F.col("event_time_ms") < end)
    ranked = (
        events.withColumn("_dup", F.row_number().over(ranking) > 1)
        .withColumn(
            "_date", F.when(in_day, F.lit(day.isoformat())).otherwise(F.date_format(local, "yyyy-MM-dd"))
        )
        .withColumn("hour", F.hour(local).cast("int"))
        .persist()
    )
    try:
        counted = (
            ranked.groupBy("_dup", "_date", "hour")
            .agg(
                F.count("*").alias("count"),
                F.sum(F.xxhash64(*EVENT_FIELDS).cast("decimal(38,0)")).alias("digest"),
            )
            .collect()
        )
        groups = [(r["_dup"], r["_date"], r["hour"], r["count"]) for r in counted]
        digests: dict[str, int] = {}
        for r in counted:
            if not r["_dup"]:
                digests[r["_date"]] = digests.get(r["_date"], 0) + int(r["digest"] or 0)
        stats = organizer_stats(day, input_rows, groups, from_inbox)
        kept = ranked.filter(~F.col("_dup"))
        # Other days first: once organized/ is complete, every record of the day has its place.
        sent = {}
        for other, rows in stats["other_days"].items():
            folder = inbox_folder(warehouse, client, dt.date.fromisoformat(other), day)
            with atomic_dir(folder, inbox_meta(rows, day, f"xxhash64-sum:{digests.get(other, 0)}")) as tmp:
                (
                    kept.filter(F.col("_date") == other)
                    .select(*EVENT_FIELDS)
                    .coalesce(1)
                    .sortWithinPartitions(*OUTPUT_ORDER)
                    .write.mode("overwrite")
                    .parquet(str(tmp))
                )
                sent[other] = _rows(tmp)
                if sent[other] != rows:
                    raise RuntimeError(f"{folder}: wrote {sent[other]} records, expected {rows}")
        for folder in stale_inbox_folders(warehouse, client, day, keep=stats["other_days"]):
            remove_folder(folder)
        # A copy: output() stamps the _DONE meta's "input" with the raw snapshot id.
        with ctx.paths.output("organized", dict(stats)) as tmp:
            (
                kept.filter(F.col("_date") == day.isoformat())
                .select(*EVENT_FIELDS, "hour")
                .repartition("hour")
                .sortWithinPartitions("hour", *OUTPUT_ORDER)
                .write.partitionBy("hour")
                .parquet(str(tmp / "events"))
            )
            check_organizer_stats({**stats, "other_days": sent, "organized": _rows(tmp / "events")})
            write_json(tmp / "stats.json", stats)
    finally:
        ranked.unpersist()

    print(
        f"organizer {client} {day}: input={stats['input']} (from other days "
        f"{sum(from_inbox.values())}) duplicates={stats['duplicates']} "
        f"to other days={sum(stats['other_days'].values())} organized={stats['organized']}"
    )
    return 0


def _rows(folder: Path) -> int:
    """Rows written under a Parquet folder, from file footers (no data read)."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in sorted(Path(folder).rglob("*.parquet")))


def main(argv: list[str]) -> int:
    """Entry point for jobs/run.py: the exit code; a failure's message is the last stderr line."""
    return guarded_main(APP, run, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
