"""Rules of the LogTimeFileOrganizer: client-local hour, late records, duplicate choice."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from fraudcore.ingest import EVENT_FIELDS

# Duplicates are ranked by these first, then by every other field, so the winner never depends
# on read order even when two rows share event_id, time and file.
DUPLICATE_ORDER = ("event_time_ms", "source_file") + tuple(
    f for f in EVENT_FIELDS if f not in ("event_time_ms", "source_file")
)


def hour_of_day(event_time_ms: int, tz: ZoneInfo) -> int:
    """Hour 0-23 of an epoch-ms instant on the client's wall clock."""
    return dt.datetime.fromtimestamp(event_time_ms // 1000, tz).hour


def is_late(event_time_ms: int, window: tuple[int, int]) -> bool:
    """True when the instant is outside the client-day [start, end)."""
    start, end = window
    return not start <= event_time_ms < end


def duplicate_sort_key(row: dict) -> tuple:
    """Ascending key of a row among rows sharing an event_id; nulls sort first."""
    return tuple(_null_first(row.get(f)) for f in DUPLICATE_ORDER)


def _null_first(value: Any) -> tuple[bool, Any]:
    return (value is not None, value if value is not None else 0)


def pick_duplicate(rows: Iterable[dict]) -> dict:
    """The row kept among rows sharing an event_id: smallest (event_time_ms, source_file, …)."""
    rows = list(rows)
    if not rows:
        raise ValueError("pick_duplicate needs at least one row")
    return min(rows, key=duplicate_sort_key)


def organizer_stats(input_rows: int, groups: Iterable[tuple[bool, bool, int, int]]) -> dict:
    """stats.json of the organizer from (is_duplicate, is_late, hour, rows) groups; checks the sum."""
    duplicates = late = 0
    per_hour = [0] * 24
    for is_dup, late_flag, hour, rows in groups:
        if is_dup:
            duplicates += rows
        elif late_flag:
            late += rows
        else:
            per_hour[hour] += rows
    stats = {"input": input_rows, "duplicates": duplicates, "late": late, "organized": sum(per_hour),
             "per_hour": per_hour}
    check_organizer_stats(stats)
    return stats


def check_organizer_stats(stats: dict) -> None:
    """Raise unless input == duplicates + late + organized and per_hour sums to organized."""
    parts = stats["duplicates"] + stats["late"] + stats["organized"]
    if parts != stats["input"]:
        raise ValueError(f"organizer counts do not reconcile: duplicates {stats['duplicates']} + late "
                         f"{stats['late']} + organized {stats['organized']} != input {stats['input']}")
    if sum(stats["per_hour"]) != stats["organized"]:
        raise ValueError(f"per_hour sums to {sum(stats['per_hour'])}, not organized {stats['organized']}")
