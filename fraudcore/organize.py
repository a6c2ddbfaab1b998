"""Rules of the LogTimeFileOrganizer: client-local hour and date, the inbox of other days, duplicate choice."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fraudcore.ingest import EVENT_FIELDS
from fraudcore.paths import WorkPaths, done_meta, is_done

# Rows are duplicates when they share this key: an event id is unique within a source only
# (a client's logs and its transactions number their records independently).
DUPLICATE_KEY = ("source", "event_id")
# Duplicates are ranked by these first, then by every other field, so the winner never depends
# on read order even when two rows share event_id, time and file.
DUPLICATE_ORDER = ("event_time_ms", "source_file") + tuple(
    f for f in EVENT_FIELDS if f not in ("event_time_ms", "source_file")
)
# inbox/from-{date}/: records of this client-day that the organizer of {date} found in its files.
INBOX_PREFIX = "from-"
_INBOX_RE = re.compile(rf"^{INBOX_PREFIX}(\d{{4}}-\d{{2}}-\d{{2}})$")


def hour_of_day(event_time_ms: int, tz: ZoneInfo) -> int:
    """Hour 0-23 of an epoch-ms instant on the client's wall clock."""
    return dt.datetime.fromtimestamp(event_time_ms // 1000, tz).hour


def local_date(event_time_ms: int, tz: ZoneInfo) -> dt.date:
    """The client-local calendar date of an epoch-ms instant."""
    return dt.datetime.fromtimestamp(event_time_ms // 1000, tz).date()


def is_late(event_time_ms: int, window: tuple[int, int]) -> bool:
    """True when the instant is outside the client-day [start, end)."""
    start, end = window
    return not start <= event_time_ms < end


def group_by_local_date(rows: Iterable[dict[str, Any]], tz: ZoneInfo) -> dict[dt.date, list[dict[str, Any]]]:
    """Rows grouped by the client-local date of their event_time_ms, dates ascending, order kept."""
    out: dict[dt.date, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(local_date(int(row["event_time_ms"]), tz), []).append(row)
    return dict(sorted(out.items()))


def duplicate_sort_key(row: dict[str, Any]) -> tuple[tuple[bool, Any], ...]:
    """Ascending key of a row among rows sharing (source, event_id); nulls sort first."""
    return tuple(_null_first(row.get(f)) for f in DUPLICATE_ORDER)


def _null_first(value: Any) -> tuple[bool, Any]:
    return (value is not None, value if value is not None else 0)


def pick_duplicate(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The row kept among rows sharing (source, event_id): smallest (event_time_ms, source_file, …)."""
    rows = list(rows)
    if not rows:
        raise ValueError("pick_duplicate needs at least one row")
    return min(rows, key=duplicate_sort_key)


def deduplicate(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (source, event_id), the pick_duplicate winner, in first-seen order of the keys."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in DUPLICATE_KEY), []).append(row)
    return [pick_duplicate(g) for g in groups.values()]


def organizer_stats(
    day: dt.date,
    input_rows: int,
    groups: Iterable[tuple[bool, str, int, int]],
    from_inbox: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """stats.json of the organizer of `day` from (is_duplicate, local date, hour, rows) groups; checks the sum.

    input_rows counts the connector's events plus the inbox records (from_inbox: source day ->
    rows); kept rows of another local date are sent to that day (other_days: date -> rows).
    """
    own = day.isoformat()
    duplicates = 0
    other_days: dict[str, int] = {}
    per_hour = [0] * 24
    for is_dup, date, hour, rows in groups:
        if is_dup:
            duplicates += rows
        elif date != own:
            other_days[date] = other_days.get(date, 0) + rows
        else:
            per_hour[hour] += rows
    stats = {
        "input": input_rows,
        "duplicates": duplicates,
        "other_days": dict(sorted(other_days.items())),
        "from_inbox": dict(sorted((from_inbox or {}).items())),
        "organized": sum(per_hour),
        "per_hour": per_hour,
    }
    check_organizer_stats(stats)
    return stats


def check_organizer_stats(stats: Mapping[str, Any]) -> None:
    """Raise unless input == duplicates + sent to other days + organized, and per_hour sums to organized."""
    sent = sum(stats["other_days"].values())
    parts = stats["duplicates"] + sent + stats["organized"]
    if parts != stats["input"]:
        raise ValueError(
            f"organizer counts do not reconcile: duplicates {stats['duplicates']} + to other "
            f"days {sent} + organized {stats['organized']} != input {stats['input']}"
        )
    received = sum(stats["from_inbox"].values())
    if received > stats["input"]:
        raise ValueError(
            f"organizer counts do not reconcile: {received} records from the inbox "
            f"but input is only {stats['input']}"
        )
    if sum(stats["per_hour"]) != stats["organized"]:
        raise ValueError(f"per_hour sums to {sum(stats['per_hour'])}, not organized {stats['organized']}")


# --- the inbox: records a client-day receives from the files of other days ----------------------


def inbox_folder(warehouse: Path, client: str, to_day: dt.date, from_day: dt.date) -> Path:
    """Where the organizer of from_day puts the records of to_day: {to_day}/inbox/from-{from_day}/."""
    return WorkPaths(Path(warehouse), client, to_day).inbox / f"{INBOX_PREFIX}{from_day.isoformat()}"


def inbox_meta(rows: int, from_day: dt.date, digest: str = "") -> dict[str, Any]:
    """The _DONE metadata of an inbox folder.

    `digest` sums a hash of every record, so the same records written again have the same
    digest and the receiving day's input does not change (pipeline.ingest.inbox_files):
    two days whose files carry records for each other settle instead of invalidating each
    other on every run.
    """
    return {"rows": int(rows), "from": from_day.isoformat(), "digest": digest}


def complete_inbox(inbox: Path) -> dict[str, Path]:
    """Source day -> folder of every complete (_DONE) inbox/from-{date}/ folder, dates ascending.

    A folder without _DONE is still being written (or was abandoned) and is not read.
    """
    inbox = Path(inbox)
    if not inbox.is_dir():
        return {}
    found = {}
    for folder in inbox.iterdir():
        m = _INBOX_RE.match(folder.name)
        if m and folder.is_dir() and is_done(folder):
            found[m.group(1)] = folder
    return dict(sorted(found.items()))


def check_inbox_rows(folder: Path, rows: int) -> None:
    """Raise unless the rows read from an inbox folder are the rows its _DONE says were written."""
    expected = done_meta(folder).get("rows")
    if expected is not None and int(expected) != rows:
        raise ValueError(f"{folder} holds {rows} records but its _DONE says {expected}")


def stale_inbox_folders(warehouse: Path, client: str, from_day: dt.date, keep: Iterable[str]) -> list[Path]:
    """Inbox folders an earlier run of from_day's organizer wrote for days not in `keep` (dates)."""
    keep = set(keep)
    name = f"{INBOX_PREFIX}{from_day.isoformat()}"
    out = []
    for folder in sorted((Path(warehouse) / client).glob(f"*/inbox/{name}")):
        to_day = folder.parent.parent.name
        if folder.is_dir() and to_day not in keep and to_day != from_day.isoformat():
            out.append(folder)
    return out


def remove_folder(folder: Path) -> None:
    """Remove a folder in one rename (readers see it whole or not at all), then delete its files."""
    folder = Path(folder)
    gone = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(folder, gone)
    shutil.rmtree(gone, ignore_errors=True)
