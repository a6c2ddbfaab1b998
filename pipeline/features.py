"""dfe_store/: the day's DFE vectors written into the table store."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipeline.day import ClientDay, Progress


def store_dfe(day: ClientDay, chunk: int = 100_000, progress: Progress | None = None) -> dict[str, Any]:
    """Write the vectors of the dfe/ stage into the table store (one row per user and window).

    Chunks are large so a store that writes from several processes (Cassandra) gets enough rows
    to spread; they exist only to report progress.
    """
    from jobs.common import read_parquet_rows
    from storage.model import DfeRow

    rows = read_parquet_rows(day.paths.stage("dfe") / "vectors")
    written = 0
    meta: dict[str, Any] = {}
    with day.tables() as tables, day.paths.output("dfe_store", meta):
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            written += tables.write_dfe(
                day.name,
                [
                    DfeRow(
                        user_id=r["user_id"],
                        timestamp_ms=int(r["window_start_ms"]),
                        feature_vector={k: float(v) for k, v in _as_map(r["features"]).items()},
                    )
                    for r in part
                ],
            )
            if progress:
                progress(min(start + chunk, len(rows)), len(rows))
        meta.update(rows=written)
    return meta


def _as_map(value: dict[str, float] | Iterable[tuple[str, float]]) -> dict[str, float]:
    # pyarrow returns a Parquet map as a list of (key, value) pairs.
    return dict(value) if not isinstance(value, dict) else value
