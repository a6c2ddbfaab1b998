"""Connector: the raw/ files of a client-day to validated *events* Parquet plus a quarantine.

Usage: spark-submit jobs/run.py connector --client C --date D --warehouse W [--registry R]
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from fraudcore.clients import ClientConfig
from fraudcore.ingest import (
    IngestError,
    connector_stats,
    file_summary,
    list_data_files,
    process_file,
    reconcile,
)
from fraudcore.paths import atomic_dir, write_json
from jobs.common import (
    EVENT_FIELDS,
    events_schema,
    guarded_main,
    job_context,
    job_parser,
    spark_session,
)

APP = "connector"
EXIT_NO_DATA = 3
QUARANTINE_FIELDS = ("source_file", "line", "reason", "detail", "record")


def process_one(client: ClientConfig, item: tuple[str, str, str]) -> Iterator[tuple[str, object]]:
    """Tagged output of one file: ("event", row tuple)…, ("quarantine", entry tuple)…, ("file", summary)."""
    path, rel_name, source = item
    try:
        accepted, quarantine = process_file(Path(path), rel_name, source, client)
    except IngestError as exc:
        # Reported to the driver as data, so the job fails with this message, not a worker trace.
        yield "error", str(exc)
        return
    for row in accepted:
        yield "event", tuple(row[f] for f in EVENT_FIELDS)
    for q in quarantine:
        yield "quarantine", tuple(q[f] for f in QUARANTINE_FIELDS)
    yield "file", file_summary(rel_name, source, accepted, quarantine)


def quarantine_schema():
    """Schema of the quarantine JSON lines."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    return StructType([
        StructField("source_file", StringType(), False),
        StructField("line", LongType(), False),
        StructField("reason", StringType(), False),
        StructField("detail", StringType(), True),
        StructField("record", StringType(), True),
    ])


def run(argv: list[str]) -> int:
    """Run the connector for one client-day; the exit code."""
    ctx = job_context(job_parser(__doc__.splitlines()[0]), argv)
    raw_dir = ctx.paths.stage("raw")
    files = list_data_files(raw_dir) if raw_dir.is_dir() else []
    if not files:
        print(f"no raw data files under {raw_dir}", file=sys.stderr)
        return EXIT_NO_DATA

    from pyspark import StorageLevel

    spark = spark_session(APP)
    items = [(str(p), rel, source) for p, rel, source in files]
    tagged = (
        spark.sparkContext.parallelize(items, len(items))
        .flatMap(partial(process_one, ctx.client))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    try:
        meta = tagged.filter(lambda t: t[0] in ("file", "error")).collect()
        errors = sorted(m for kind, m in meta if kind == "error")
        if errors:
            raise IngestError(errors[0] + (f" (and {len(errors) - 1} more files)" if len(errors) > 1 else ""))
        stats = connector_stats(sorted((m for kind, m in meta if kind == "file"), key=lambda s: s["source_file"]))

        with atomic_dir(ctx.paths.stage("connector"), stats) as tmp:
            events = spark.createDataFrame(tagged.filter(lambda t: t[0] == "event").values(), events_schema())
            events.write.parquet(str(tmp / "events"))
            quarantine = spark.createDataFrame(
                tagged.filter(lambda t: t[0] == "quarantine").values(), quarantine_schema()
            )
            # One part file, in file/line order, keeping null details so every line has every key.
            (quarantine.coalesce(1).sortWithinPartitions("source_file", "line")
             .write.option("ignoreNullFields", "false").json(str(tmp / "quarantine")))
            _check_written(tmp, stats)
            write_json(tmp / "stats.json", stats)
    finally:
        tagged.unpersist()

    reasons = ", ".join(f"{k}={v}" for k, v in stats["quarantine_reasons"].items()) or "none"
    print(f"connector {ctx.client.name} {ctx.paths.date}: files={stats['files']} read={stats['records_read']} "
          f"accepted={stats['records_accepted']} quarantined={stats['records_quarantined']} ({reasons})")
    return 0


def _check_written(stage_tmp: Path, stats: dict) -> None:
    """Fail unless the written datasets hold exactly the counted records (nothing lost in the write)."""
    import pyarrow.parquet as pq

    parts = sorted((stage_tmp / "events").glob("*.parquet"))
    written_events = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    written_quarantine = 0
    for p in sorted((stage_tmp / "quarantine").glob("part-*")):
        with open(p, encoding="utf-8") as fh:
            written_quarantine += sum(1 for line in fh if line.strip())
    reconcile({"records_read": stats["records_read"], "records_accepted": written_events,
               "records_quarantined": written_quarantine})


def main(argv: list[str]) -> int:
    """Entry point for jobs/run.py: the exit code; a failure's message is the last stderr line."""
    return guarded_main(APP, run, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

