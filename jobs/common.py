"""What every Spark job shares: argument parsing, the session, and the events schema."""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dcluster_client.contract import SPARK_MASTER_SET_ENV, SPARK_REMOTE_ENV
from fraudcore.clients import ClientConfig, ConfigError, get_client, parse_date
from fraudcore.ingest import EVENT_FIELDS
from fraudcore.paths import WorkPaths

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructType


@dataclass(frozen=True)
class JobContext:
    """The client-day a job works on."""

    client: ClientConfig
    paths: WorkPaths
    args: argparse.Namespace


def job_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every job takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--client", required=True)
    p.add_argument("--date", required=True, help="YYYY-MM-DD")
    p.add_argument("--warehouse", required=True, help="warehouse root folder")
    p.add_argument("--registry", default=None, help="client registry YAML (default: config/clients.yaml)")
    return p


def job_context(parser: argparse.ArgumentParser, argv: list[str]) -> JobContext:
    args = parser.parse_args(argv)
    client = get_client(args.client, args.registry)
    day = parse_date(args.date)
    # Absolute, because a Spark Connect server resolves relative paths against its own folder.
    warehouse = Path(args.warehouse).absolute()
    return JobContext(client=client, paths=WorkPaths(warehouse, client.name, day), args=args)


def spark_session(app: str) -> SparkSession:
    """The job's session: UTC, few shuffle partitions (sized for small clusters), no UI.

    With FRAUDBATCH_SPARK_REMOTE set it is a session of its own on that Spark Connect server.
    """
    from pyspark.sql import SparkSession

    remote = os.environ.get(SPARK_REMOTE_ENV, "").strip()
    builder = SparkSession.builder.appName(app)
    if remote:
        builder = builder.remote(remote)
    builder = (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", os.environ.get("FRAUDBATCH_SHUFFLE_PARTITIONS", "8"))
        .config("spark.sql.parquet.compression.codec", "snappy")
    )
    if remote:
        # The SQL settings above are this session's own on the server, so they never reach another
        # job. Releasing the session at exit drops its views and settings on the server; stop() on
        # a Connect client ends only the client's session, never the server.
        session = builder.getOrCreate()
        atexit.register(session.stop)
        _interrupt_on_sigterm(session)
        return session
    builder = builder.config("spark.ui.enabled", "false")  # static: a Connect server sets it at start
    if not os.environ.get(SPARK_MASTER_SET_ENV):
        # spark-submit sets spark.master; a direct `python -m jobs.run` falls back to local mode.
        builder = builder.config("spark.master", os.environ.get("FRAUDBATCH_SPARK_MASTER", "local[2]"))
    return builder.getOrCreate()


def _interrupt_on_sigterm(session: SparkSession) -> None:
    """On SIGTERM (DCluster's terminate), cancel the session's queries on the server, then exit 143.

    A Connect server keeps running the queries of a client that died, holding the cores the next
    job needs. The exit unwinds the job while its session still works, so atomic_dir removes its
    half-written folder and a persisted frame is unpersisted; atexit then releases the session.
    """

    def stop(signum: int, frame: object) -> None:
        session.interruptAll()
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
        signal.signal(signal.SIGTERM, stop)


def events_schema() -> StructType:
    """Schema of accepted events (docs/architecture.md, *events*), in the order of EVENT_FIELDS."""
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    types = {"event_time_ms": LongType(), "amount": DoubleType()}
    required = {"event_id", "user_id", "event_time_ms", "event_type", "source", "source_file"}
    return StructType(
        [StructField(name, types.get(name, StringType()), name not in required) for name in EVENT_FIELDS]
    )


def read_parquet_rows(path: Path, columns: list[str] | None = None) -> list[dict]:
    """Rows of a Parquet folder (or file) as dicts, for the plain-Python steps (no Spark)."""
    import pyarrow.parquet as pq

    p = Path(path)
    if p.is_dir() and not any(p.rglob("*.parquet")):
        return []
    table = pq.read_table(str(p), columns=columns)
    return table.to_pylist()


def one_line(exc: BaseException) -> str:
    """A short single-line message of an exception, digging the Python cause out of Spark errors."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # Spark wraps worker errors in a long trace whose informative line is "SomeError: message".
    for ln in reversed(lines):
        if ln.split(":", 1)[0].endswith(("Error", "Exception")) and ":" in ln:
            return ln
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def read_organized_events(spark: SparkSession, ctx: JobContext) -> DataFrame:
    """The client-day's organized events (schema *events* plus `hour`)."""
    from pyspark.sql.types import IntegerType, StructField, StructType

    path = ctx.paths.stage("organized") / "events"
    if not path.is_dir():
        raise FileNotFoundError(f"organized events not found: {path} (run the organizer first)")
    # An explicit schema lets a day without events read as an empty frame instead of failing
    # schema inference, and pins the partition column's type.
    schema = StructType(events_schema().fields + [StructField("hour", IntegerType(), True)])
    return spark.read.schema(schema).parquet(str(path))


def map_rows(frame: DataFrame, fn: Callable[[dict], tuple], schema: StructType) -> DataFrame:
    """A frame of fn(row) for every row of `frame`: one output tuple (in `schema` order) per input row.

    fn gets each row as a plain dict (arrays as lists, structs and maps as dicts, null as None) and
    runs on the Python workers through mapInArrow, which Spark Connect has and DataFrame.rdd lacks.
    """
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow_schema = to_arrow_schema(schema)

    def apply(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield _record_batch([fn(row) for row in batch.to_pylist(maps_as_pydicts="strict")], arrow_schema)

    mapped = frame.mapInArrow(apply, schema)
    return mapped.select(
        *[_default_collation(mapped[f.name], f.dataType).alias(f.name) for f in schema.fields]
    )


def flat_map_rows(
    frame: DataFrame, fn: Callable[[dict], Iterable[tuple]], schema: StructType, batch_rows: int = 10_000
) -> DataFrame:
    """A frame of every tuple fn(row) yields for each row of `frame`: none, one or many per input row.

    map_rows for a one-to-many function: rows as plain dicts, the same Python workers, output in
    input order within a partition, returned to Spark in Arrow batches of at most batch_rows rows.
    Top-level strings are re-typed as in map_rows; a column of arrays or structs holding strings is
    left as it is, so a frame flattened out of it (inline, explode) goes through plain_strings
    before it is written.
    """
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import ArrayType
    from pyspark.sql.types import StructType as Struct

    arrow_schema = to_arrow_schema(schema)

    def apply(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        out: list[tuple] = []
        for batch in batches:
            for row in batch.to_pylist(maps_as_pydicts="strict"):
                for result in fn(row):
                    out.append(result)
                    if len(out) >= batch_rows:
                        yield _record_batch(out, arrow_schema)
                        out = []
        if out:
            yield _record_batch(out, arrow_schema)

    mapped = frame.mapInArrow(apply, schema)
    return mapped.select(
        *[
            (
                mapped[f.name]
                if isinstance(f.dataType, (ArrayType, Struct)) and _has_strings(f.dataType)
                else _default_collation(mapped[f.name], f.dataType)
            ).alias(f.name)
            for f in schema.fields
        ]
    )


def plain_strings(frame: DataFrame) -> DataFrame:
    """frame with every string column re-typed as the plain `string` type (see _default_collation)."""
    schema = frame.schema
    return frame.select(*[_default_collation(frame[f.name], f.dataType).alias(f.name) for f in schema.fields])


def _record_batch(rows: list[tuple], arrow_schema: pa.Schema) -> pa.RecordBatch:
    """An Arrow batch of `rows`, tuples in arrow_schema's column order."""
    import pyarrow as pa

    columns = list(zip(*rows, strict=True)) if rows else [()] * len(arrow_schema)
    return pa.RecordBatch.from_arrays(
        [pa.array(col, type=field.type) for col, field in zip(columns, arrow_schema, strict=True)],
        schema=arrow_schema,
    )


def _default_collation(col: Column, data_type: DataType) -> Column:
    """col with its strings re-typed on the server as the plain `string` type.

    A schema sent by a Spark Connect client marks each string as collated UTF8_BINARY
    explicitly, and Spark writes that into the Parquet footer ("string collate UTF8_BINARY"),
    where every later reader would carry it on. A cast to string alone is dropped as a no-op;
    through binary it is not. Values and nullability stay as they are.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, MapType, StringType, StructType

    if isinstance(data_type, StringType):
        return col.cast("binary").cast("string")
    if isinstance(data_type, MapType):
        if _has_strings(data_type.keyType):
            col = F.transform_keys(col, lambda k, _: _default_collation(k, data_type.keyType))
        if _has_strings(data_type.valueType):
            col = F.transform_values(col, lambda _, v: _default_collation(v, data_type.valueType))
        return col
    if isinstance(data_type, (ArrayType, StructType)) and _has_strings(data_type):
        raise ValueError(f"map_rows: strings inside {data_type.simpleString()} are not supported")
    return col


def _has_strings(data_type: DataType) -> bool:
    from pyspark.sql.types import ArrayType, MapType, StringType, StructType

    if isinstance(data_type, StringType):
        return True
    if isinstance(data_type, ArrayType):
        return _has_strings(data_type.elementType)
    if isinstance(data_type, MapType):
        return _has_strings(data_type.keyType) or _has_strings(data_type.valueType)
    if isinstance(data_type, StructType):
        return any(_has_strings(f.dataType) for f in data_type.fields)
    return False


def guarded_main(
    app: str,
    run: Callable[[list[str]], int],
    argv: list[str],
    describe: Callable[[BaseException], str] = one_line,
) -> int:
    """run(argv)'s exit code; a config error exits 2, any other failure 1, its cause the last stderr line."""
    try:
        return run(argv)
    except ConfigError as exc:
        print(f"{app}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the service shows the last stderr line, so end with the cause
        traceback.print_exc()
        print(f"{app}: error: {describe(exc)}", file=sys.stderr)
        return 1


def client_day_main(
    app: str,
    description: str,
    body: Callable[[JobContext], str],
    argv: list[str] | None,
    describe: Callable[[BaseException], str] = one_line,
) -> int:
    """Parse the client-day arguments, run body(ctx) and print its one-line summary; failures as guarded_main."""

    def run(args: list[str]) -> int:
        ctx = job_context(job_parser(description), args)
        started = time.monotonic()
        summary = body(ctx)
        print(
            f"{app} {ctx.client.name} {ctx.paths.date.isoformat()}: {summary} "
            f"({time.monotonic() - started:.1f}s)",
            flush=True,
        )
        return 0

    return guarded_main(app, run, list(sys.argv[1:] if argv is None else argv), describe)


def run_main(
    app: str, description: str, body: Callable[[SparkSession, JobContext], str], argv: list[str] | None
) -> int:
    """client_day_main for a Spark job: body gets the job's session."""
    return client_day_main(app, description, lambda ctx: body(spark_session(app), ctx), argv)
