"""UserStats on Flink: the user_stats/ stage of jobs/user_stats.py (Spark), computed by a Flink batch job.

Usage: .venv-flink/bin/python jobs/flink/run.py user_stats --client C --date D --warehouse W [--registry R]

Flink reads the organized events' Parquet files in parallel (one file per source element),
groups the events by user (key_by + reduce; in batch mode each user's group is emitted once,
complete) and applies fraudcore.features.user_stats to each group, as the Spark job does
(docs/adr/0002), so both engines write the same rows. The output has the Spark job's layout:
stats/ (Parquet, ordered by user_id), stats.json and _DONE, written through atomic_dir.
Totals in stats.json are exact sums (math.fsum), so they do not depend on how rows were split.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from fraudcore.atomic import write_json
from fraudcore.features import USER_STATS_FIELDS, user_stats
from jobs.common import JobContext
from jobs.flink.common import batch_env, flink_main, job_name
from jobs.rawlogconverter import USER_EVENT_COLUMNS  # Spark jobs import PySpark lazily: safe to share
from jobs.user_stats import TOTAL_FIELDS

APP = "user_stats"

# The event columns stored in the Parquet files; `hour` is the partition folder's (hour=H).
EVENT_COLUMNS = tuple(c for c in USER_EVENT_COLUMNS if c != "hour")
# Column types of the *user_stats* dataset (docs/architecture.md); every other column is a long.
FLOAT_FIELDS = ("amount_total", "amount_max", "night_share")
HOUR_DIR = re.compile(r"^hour=(\d+)$")


def event_files(events_dir: Path) -> list[str]:
    """The Parquet files of organized/events/, sorted; an error if the stage has not been written."""
    if not events_dir.is_dir():
        raise FileNotFoundError(f"organized events not found: {events_dir} (run the organizer first)")
    return sorted(str(p) for p in events_dir.rglob("*.parquet"))


def read_events(path: str) -> Iterator[tuple[str, list[dict]]]:
    """(user_id, [event]) for every event of one file of organized/events/hour=H/, with its `hour`."""
    import pyarrow.parquet as pq

    match = HOUR_DIR.match(Path(path).parent.name)
    hour = int(match.group(1)) if match else None  # the partition folder names the client hour
    for event in pq.read_table(path, columns=list(EVENT_COLUMNS)).to_pylist():
        event["hour"] = hour
        yield event["user_id"], [event]


def merge_events(a: tuple[str, list[dict]], b: tuple[str, list[dict]]) -> tuple[str, list[dict]]:
    """One user's events so far plus more (extends in place: a user's list is built once)."""
    a[1].extend(b[1])
    return a


def row_types() -> object:
    """Flink row type of a user_stats row, in USER_STATS_FIELDS order."""
    from pyflink.common import Types

    def kind(f: str) -> object:
        if f == "user_id":
            return Types.STRING()
        if f == "is_new_account":
            return Types.BOOLEAN()
        return Types.DOUBLE() if f in FLOAT_FIELDS else Types.LONG()

    return Types.ROW_NAMED(list(USER_STATS_FIELDS), [kind(f) for f in USER_STATS_FIELDS])


def arrow_schema() -> object:
    """Parquet schema of stats/, the one the Spark job writes (no nulls, USER_STATS_FIELDS order)."""
    import pyarrow as pa

    def kind(f: str) -> object:
        if f == "user_id":
            return pa.string()
        if f == "is_new_account":
            return pa.bool_()
        return pa.float64() if f in FLOAT_FIELDS else pa.int64()

    return pa.schema([pa.field(f, kind(f), nullable=False) for f in USER_STATS_FIELDS])


def compute(ctx: JobContext) -> list[dict]:
    """The user_stats rows of the client-day, computed by a Flink batch job, ordered by user_id."""
    from pyflink.common import Types

    day_start_ms, _ = ctx.client.day_window_ms(ctx.paths.date)
    files = event_files(ctx.paths.stage("organized") / "events")
    if not files:
        return []  # Flink cannot start a job from an empty collection; a day without events has no users
    fields = USER_STATS_FIELDS

    def stats_row(group: tuple[str, list[dict]]) -> object:
        from pyflink.common import Row

        row = user_stats(group[1], day_start_ms)
        return Row(*(row[f] for f in fields))

    env = batch_env(APP)
    rows = (
        env.from_collection(files, type_info=Types.STRING())
        .flat_map(read_events, output_type=Types.PICKLED_BYTE_ARRAY())
        .key_by(lambda group: group[0], key_type=Types.STRING())
        .reduce(merge_events)
        .map(stats_row, output_type=row_types())
    )
    with rows.execute_and_collect(job_name(APP, ctx.client.name, ctx.paths.date.isoformat())) as results:
        out = [dict(zip(fields, tuple(r), strict=True)) for r in results]
    return sorted(out, key=lambda r: r["user_id"])


def run(ctx: JobContext) -> str:
    """Write user_stats/{stats/,stats.json}; return the summary line."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.monotonic()
    rows = compute(ctx)
    totals: dict = {f: sum(r[f] for r in rows) for f in TOTAL_FIELDS if f != "amount_total"}
    totals["amount_total"] = float(math.fsum(r["amount_total"] for r in rows))
    stats = {"users": len(rows), "totals": totals}
    meta: dict = {}
    with ctx.paths.output("user_stats", meta) as tmp:
        (tmp / "stats").mkdir()
        pq.write_table(
            pa.Table.from_pylist(rows, arrow_schema()),
            str(tmp / "stats" / "part-00000.parquet"),
            compression="snappy",
        )
        write_json(tmp / "stats.json", stats)
        meta.update(users=stats["users"], seconds=round(time.monotonic() - started, 3))
    return f"users={stats['users']} events={totals['events']} transactions={totals['transactions']}"


def main(argv: list[str] | None = None) -> int:
    """Entry point: `jobs/flink/run.py user_stats --client C --date D --warehouse W [--registry R]`."""
    return flink_main(APP, "Compute the per-user statistics of a client-day with Flink.", run, argv)


if __name__ == "__main__":
    sys.exit(main())
