"""Connector: the raw/ files of a client-day to validated *events* Parquet plus a quarantine.

Usage: spark-submit jobs/run.py connector --client C --date D --warehouse W [--registry R]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from fraudcore import ingest
from fraudcore.atomic import write_json
from fraudcore.clients import ClientConfig
from fraudcore.ingest import (
    DATA,
    NOT_RECOGNISED,
    QUARANTINED,
    BadFileError,
    FileTally,
    IngestError,
    connector_stats,
    iter_file,
    keep_bad_files,
    reconcile,
    scan_raw_dir,
)
from jobs.common import (
    events_schema,
    flat_map_rows,
    guarded_main,
    job_context,
    job_parser,
    plain_strings,
    spark_session,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

APP = "connector"
EXIT_NO_DATA = 3
QUARANTINE_FIELDS = ("source_file", "line", "reason", "detail", "record")
# Records per tagged row: a big file becomes several rows of bounded size, not one huge row.
RECORDS_PER_ROW = 1000


def process_one(
    client: ClientConfig, item: tuple[str, str, str], max_decompressed: int | None = None
) -> Iterator[tuple]:
    """Tagged rows of one file, in tagged_schema order (kind, events, quarantine, meta), streamed.

    ("event", [event dicts], None, file) and ("quarantine", None, [entry dicts], file) as the file
    is read, each with at most RECORDS_PER_ROW records in file order, then ("file", None, None, its
    summary as JSON). A file that cannot be read as a whole ends with a summary of status
    quarantined (the driver then drops the rows it already gave), or, with the client's
    on_bad_file: fail, with ("error", None, None, message) instead.
    """
    path, rel_name, source = item
    tally = FileTally(rel_name, source)
    events: list[dict] = []
    quarantine: list[dict] = []
    try:
        for kind, record in iter_file(
            Path(path), rel_name, source, client, tally, max_decompressed=max_decompressed
        ):
            if kind == "event":
                events.append(record)
                if len(events) >= RECORDS_PER_ROW:
                    yield "event", events, None, rel_name
                    events = []
            else:
                quarantine.append({f: record[f] for f in QUARANTINE_FIELDS})
                if len(quarantine) >= RECORDS_PER_ROW:
                    yield "quarantine", None, quarantine, rel_name
                    quarantine = []
    except BadFileError as exc:
        if client.on_bad_file == "fail":
            # Reported to the driver as data, so the job fails with this message, not a worker trace.
            yield "error", None, None, str(exc)
            return
        tally.mark_bad(exc)
        yield "file", None, None, json.dumps(tally.summary())
        return
    if events:
        yield "event", events, None, rel_name
    if quarantine:
        yield "quarantine", None, quarantine, rel_name
    yield "file", None, None, json.dumps(tally.summary())


def process_row(client: ClientConfig, max_decompressed: int, row: dict) -> Iterator[tuple]:
    """process_one of a file_frame row."""
    return process_one(client, (row["path"], row["rel_name"], row["source"]), max_decompressed)


def quarantine_schema() -> StructType:
    """Schema of the quarantine JSON lines."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    return StructType(
        [
            StructField("source_file", StringType(), False),
            StructField("line", LongType(), False),
            StructField("reason", StringType(), False),
            StructField("detail", StringType(), True),
            StructField("record", StringType(), True),
        ]
    )


def tagged_schema() -> StructType:
    """Schema of process_one's rows. Records sit in arrays of non-null structs, so inline() gives
    back exactly events_schema() and quarantine_schema(), non-nullable columns included."""
    from pyspark.sql.types import ArrayType, StringType, StructField, StructType

    return StructType(
        [
            StructField("kind", StringType(), False),  # event | quarantine | file | error
            StructField("events", ArrayType(events_schema(), False), True),
            StructField("quarantine", ArrayType(quarantine_schema(), False), True),
            # event, quarantine: the file's name; file: its summary as JSON; error: the message
            StructField("meta", StringType(), True),
        ]
    )


def file_frame(spark: SparkSession, items: list[tuple[str, str, str]]) -> DataFrame:
    """path, rel_name, source: one row per file, file i alone in partition i, in list order.

    range() with as many partitions as rows puts row i alone in partition i, so every file is a
    task of its own and the events part files follow the file order.
    """
    from pyspark.sql import functions as F

    listed = F.array(
        *[
            F.struct(
                F.lit(path).alias("path"), F.lit(rel_name).alias("rel_name"), F.lit(source).alias("source")
            )
            for path, rel_name, source in items
        ]
    )
    return (
        spark.range(len(items), numPartitions=len(items))
        .select(listed[F.col("id").cast("int")].alias("file"))
        .select("file.*")
    )


def run(argv: list[str]) -> int:
    """Run the connector for one client-day; the exit code."""
    ctx = job_context(job_parser(__doc__.splitlines()[0]), argv)
    raw_dir = ctx.paths.stage("raw")
    entries = scan_raw_dir(raw_dir, ctx.client.ready_marker) if raw_dir.is_dir() else []
    files = [e for e in entries if e.status == DATA]
    ignored = [e for e in entries if e.status == NOT_RECOGNISED]
    if ignored:
        print(
            f"{len(ignored)} files not recognised under {raw_dir}: "
            + ", ".join(f"{e.rel} ({e.reason})" for e in ignored[:10])
            + (" ..." if len(ignored) > 10 else ""),
            file=sys.stderr,
        )
    if not files:
        print(f"no raw data files under {raw_dir}", file=sys.stderr)
        return EXIT_NO_DATA

    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    spark = spark_session(APP)
    items = [(str(e.path), e.rel, e.source or "") for e in files]
    # Every file is read once: the actions below all read this cache.
    tagged = flat_map_rows(
        # The limit is the job's (its environment), shipped with the function: the Python workers
        # of a resident Spark session do not see the job's environment.
        file_frame(spark, items),
        partial(process_row, ctx.client, ingest.MAX_DECOMPRESSED_BYTES),
        tagged_schema(),
        batch_rows=1,
    ).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        meta = [
            (r["kind"], r["meta"])
            for r in tagged.where(F.col("kind").isin("file", "error")).select("kind", "meta").collect()
        ]
        errors = sorted(m for kind, m in meta if kind == "error")
        if errors:
            day = f"--client {ctx.client.name} --date {ctx.paths.date}"
            raise IngestError(
                errors[0]
                + (f" (and {len(errors) - 1} more files)" if len(errors) > 1 else "")
                + f". The client's on_bad_file is 'fail': replace or remove the file in the bucket "
                f"and run the day again (it fetches what changed); fraudbatch status {day} "
                "shows every stage"
            )
        summaries = sorted(
            (json.loads(m) for kind, m in meta if kind == "file"), key=lambda s: s["source_file"]
        )
        if len(summaries) != len(files):
            raise IngestError(f"{len(files)} data files listed but {len(summaries)} summaries came back")
        stats = connector_stats(summaries, [e.summary() for e in entries if e.status != DATA])
        bad = [s["source_file"] for s in summaries if s["status"] == QUARANTINED]
        # Rows a file gave before it turned out unreadable are not the day's records.
        kept = ~F.col("meta").isin(bad) if bad else F.lit(True)

        with ctx.paths.output("connector", stats) as tmp:
            events = plain_strings(tagged.where((F.col("kind") == "event") & kept).select(F.inline("events")))
            events.write.parquet(str(tmp / "events"))
            quarantine = tagged.where((F.col("kind") == "quarantine") & kept).select(F.inline("quarantine"))
            # One part file, in file/line order, keeping null details so every line has every key.
            (
                quarantine.coalesce(1)
                .sortWithinPartitions("source_file", "line")
                .write.option("ignoreNullFields", "false")
                .json(str(tmp / "quarantine"))
            )
            keep_bad_files(raw_dir, tmp / "bad_files", summaries)
            _check_written(tmp, stats)
            write_json(tmp / "stats.json", stats)
    finally:
        tagged.unpersist()

    reasons = ", ".join(f"{k}={v}" for k, v in stats["quarantine_reasons"].items()) or "none"
    bad_note = (
        f"; {stats['files_quarantined']} files quarantined whole (partial): " + ", ".join(bad) if bad else ""
    )
    print(
        f"connector {ctx.client.name} {ctx.paths.date}: files={stats['data_files']} "
        f"read={stats['records_read']} accepted={stats['records_accepted']} "
        f"quarantined={stats['records_quarantined']} ({reasons}){bad_note}"
    )
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
    reconcile(
        {
            "records_read": stats["records_read"],
            "records_accepted": written_events,
            "records_quarantined": written_quarantine,
        }
    )


def main(argv: list[str]) -> int:
    """Entry point for jobs/run.py: the exit code; a failure's message is the last stderr line."""
    return guarded_main(APP, run, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
