"""The LogTimeFileOrganizer: (source, event_id) de-duplication and records moved to their client-local day."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fraudcore.ingest import EVENT_FIELDS
from fraudcore.organize import (
    check_organizer_stats,
    complete_inbox,
    deduplicate,
    group_by_local_date,
    inbox_folder,
    local_date,
    organizer_stats,
    stale_inbox_folders,
)
from fraudcore.paths import DONE, atomic_dir, read_json
from fraudcore.summary import other_day_fields
from jobs.common import read_parquet_rows

NY = ZoneInfo("America/New_York")
CLIENT = "syncbank"
REGISTRY = f"clients:\n  {CLIENT}:\n    bucket: syncbank-data\n    timezone: America/New_York\n"
D = dt.date(2025, 11, 22)
E = dt.date(2025, 11, 21)
F = dt.date(2025, 11, 23)


def _ms(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _event(
    event_id: str, user: str, iso: str, source: str = "logs", source_file: str = "logs/a.jsonl", **extra
) -> dict:
    row = dict.fromkeys(EVENT_FIELDS)
    row.update(
        event_id=event_id,
        user_id=user,
        event_time_ms=_ms(iso),
        event_type="login",
        source=source,
        source_file=source_file,
        **extra,
    )
    return row


# --- plain functions ---------------------------------------------------------------------------


def test_local_date_is_the_client_calendar_day() -> None:
    assert local_date(_ms("2025-11-22T02:00:00Z"), NY) == E  # 21:00 the evening before in New York
    assert local_date(_ms("2025-11-22T05:00:00Z"), NY) == D  # midnight EST
    assert local_date(_ms("2025-11-22T04:59:59.999Z"), NY) == E
    assert local_date(_ms("2025-11-22T02:00:00Z"), ZoneInfo("UTC")) == D


def test_group_by_local_date_keeps_order_within_a_date() -> None:
    rows = [
        _event("a", "u", "2025-11-22T15:00:00Z"),
        _event("b", "u", "2025-11-22T02:00:00Z"),
        _event("c", "u", "2025-11-23T06:00:00Z"),
        _event("d", "u", "2025-11-22T01:00:00Z"),
    ]
    groups = group_by_local_date(rows, NY)
    assert list(groups) == [E, D, F]
    assert {k: [r["event_id"] for r in v] for k, v in groups.items()} == {E: ["b", "d"], D: ["a"], F: ["c"]}


def test_duplicates_are_one_source_and_event_id() -> None:
    first = _event("e1", "u1", "2025-11-22T15:00:00Z")
    other_source = _event(
        "e1", "u2", "2025-11-22T15:00:00Z", source="transactions", source_file="transactions/t.csv"
    )
    again = _event("e1", "u1", "2025-11-22T15:00:00Z", source_file="logs/b.jsonl")
    kept = deduplicate([again, other_source, first])
    # Both users keep their event; of the two logs copies the smaller source_file wins.
    assert sorted((r["source"], r["user_id"], r["source_file"]) for r in kept) == [
        ("logs", "u1", "logs/a.jsonl"),
        ("transactions", "u2", "transactions/t.csv"),
    ]


def test_organizer_stats_send_other_dates_away_and_reconcile() -> None:
    groups = [
        (False, "2025-11-22", 10, 5),
        (True, "2025-11-22", 10, 1),
        (True, "2025-11-21", 21, 1),
        (False, "2025-11-21", 21, 2),
        (False, "2025-11-23", 1, 3),
        (False, "2025-11-22", 23, 1),
    ]
    stats = organizer_stats(D, 13, groups, from_inbox={"2025-11-23": 4})
    assert stats == {
        "input": 13,
        "duplicates": 2,
        "other_days": {"2025-11-21": 2, "2025-11-23": 3},
        "from_inbox": {"2025-11-23": 4},
        "organized": 6,
        "per_hour": [0] * 10 + [5] + [0] * 12 + [1],
    }
    with pytest.raises(ValueError, match="reconcile"):
        organizer_stats(D, 14, groups)
    with pytest.raises(ValueError, match="reconcile"):
        check_organizer_stats({**stats, "other_days": {"2025-11-21": 1}})
    with pytest.raises(ValueError, match="inbox"):
        check_organizer_stats({**stats, "from_inbox": {"2025-11-23": 14}})
    with pytest.raises(ValueError, match="per_hour"):
        check_organizer_stats({**stats, "per_hour": [0] * 24})


def test_summary_fields_of_other_days() -> None:
    stats = {"other_days": {"2025-11-21": 656, "2025-11-23": 2}, "from_inbox": {"2025-11-23": 7}}
    assert other_day_fields(stats) == {
        "records_to_other_days": 658,
        "records_from_other_days": 7,
        "other_days": {"2025-11-21": {"sent": 656, "received": 0}, "2025-11-23": {"sent": 2, "received": 7}},
    }
    assert other_day_fields({}) == {
        "records_to_other_days": 0,
        "records_from_other_days": 0,
        "other_days": {},
    }


def test_inbox_reads_only_complete_folders_and_finds_stale_ones(tmp_path: Path) -> None:
    to_e = inbox_folder(tmp_path, CLIENT, E, D)
    assert to_e == tmp_path / CLIENT / "2025-11-21" / "inbox" / "from-2025-11-22"
    with atomic_dir(to_e, {"rows": 1, "from": "2025-11-22"}):
        pass
    with atomic_dir(inbox_folder(tmp_path, CLIENT, F, D)):
        pass
    half = inbox_folder(tmp_path, CLIENT, E, dt.date(2025, 11, 25))
    half.mkdir(parents=True)  # being written: no _DONE yet
    (to_e.parent / "notes").mkdir()
    assert complete_inbox(to_e.parent) == {"2025-11-22": to_e}
    assert complete_inbox(tmp_path / "nowhere") == {}
    assert stale_inbox_folders(tmp_path, CLIENT, D, keep=["2025-11-21"]) == [
        inbox_folder(tmp_path, CLIENT, F, D)
    ]
    assert stale_inbox_folders(tmp_path, CLIENT, D, keep=["2025-11-21", "2025-11-23"]) == []


# --- the Spark job -----------------------------------------------------------------------------

EVENTS_ARROW = pa.schema(
    [
        (f, pa.int64() if f == "event_time_ms" else pa.float64() if f == "amount" else pa.string())
        for f in EVENT_FIELDS
    ]
)


def _connector_day(warehouse: Path, day: dt.date, rows: list[dict]) -> None:
    stage = warehouse / CLIENT / day.isoformat() / "connector"
    with atomic_dir(stage) as tmp:
        (tmp / "events").mkdir()
        pq.write_table(pa.Table.from_pylist(rows, EVENTS_ARROW), str(tmp / "events" / "part-00000.parquet"))


@pytest.mark.spark
def test_records_of_another_client_day_are_organized_in_that_day(tmp_path: Path, spark, capsys) -> None:
    from jobs import organizer

    (tmp_path / "clients.yaml").write_text(REGISTRY)
    wh = tmp_path / "wh"

    def run(day: dt.date) -> dict:
        args = [
            "--client",
            CLIENT,
            "--date",
            day.isoformat(),
            "--warehouse",
            str(wh),
            "--registry",
            str(tmp_path / "clients.yaml"),
        ]
        assert organizer.main(args) == 0, capsys.readouterr().err
        return read_json(wh / CLIENT / day.isoformat() / "organized" / "stats.json")

    evening = _event("e9", "u3", "2025-11-22T02:00:00Z")  # 21:00 on 2025-11-21 in New York
    day_d = [
        _event("e1", "u1", "2025-11-22T15:00:00Z"),
        _event("e1", "u2", "2025-11-22T16:00:00Z", source="transactions", source_file="transactions/t.csv"),
        _event("e1", "u1", "2025-11-22T15:00:00Z", source_file="logs/b.jsonl"),  # duplicate of the first
        evening,
        _event("e7", "u4", "2025-11-23T06:00:00Z", source="events", source_file="events/c.json"),
    ]
    _connector_day(wh, D, day_d)
    stats = run(D)
    per_hour = [0] * 24
    per_hour[10] = per_hour[11] = 1
    assert stats == {
        "input": 5,
        "duplicates": 1,
        "other_days": {"2025-11-21": 1, "2025-11-23": 1},
        "from_inbox": {},
        "organized": 2,
        "per_hour": per_hour,
    }
    organized = wh / CLIENT / "2025-11-22" / "organized"
    assert sorted(p.name for p in organized.iterdir()) == [DONE, "events", "stats.json"]  # no late/ any more
    assert sorted(
        (r["source"], r["user_id"], r["hour"]) for r in read_parquet_rows(organized / "events")
    ) == [("logs", "u1", 10), ("transactions", "u2", 11)]

    to_e = wh / CLIENT / "2025-11-21" / "inbox" / "from-2025-11-22"
    meta = json.loads((to_e / DONE).read_text())
    assert {k: meta[k] for k in ("rows", "from")} == {"rows": 1, "from": "2025-11-22"}
    # The digest names the records, so the same records written again do not change day E's input.
    assert meta["digest"].startswith("xxhash64-sum:")
    assert pq.read_schema(next(to_e.glob("*.parquet"))).names == list(EVENT_FIELDS)
    assert read_parquet_rows(to_e) == [evening]
    assert [
        r["event_id"] for r in read_parquet_rows(wh / CLIENT / "2025-11-23" / "inbox" / "from-2025-11-22")
    ] == ["e7"]

    # The organizer of 2025-11-21 analyses the evening record with its own events; a folder still
    # being written (no _DONE) is not read.
    half = wh / CLIENT / "2025-11-21" / "inbox" / "from-2025-11-25"
    half.mkdir()
    pq.write_table(
        pa.Table.from_pylist([_event("e5", "u5", "2025-11-21T16:00:00Z")], EVENTS_ARROW),
        str(half / "part-00000.parquet"),
    )
    _connector_day(wh, E, [_event("e20", "u1", "2025-11-21T15:00:00Z")])
    stats_e = run(E)
    per_hour = [0] * 24
    per_hour[10] = per_hour[21] = 1
    assert stats_e == {
        "input": 2,
        "duplicates": 0,
        "other_days": {},
        "from_inbox": {"2025-11-22": 1},
        "organized": 2,
        "per_hour": per_hour,
    }
    rows_e = read_parquet_rows(wh / CLIENT / "2025-11-21" / "organized" / "events")
    assert sorted((r["event_id"], r["hour"]) for r in rows_e) == [("e20", 10), ("e9", 21)]
    assert "input=2 (from other days 1)" in capsys.readouterr().out

    # A rerun of 2025-11-22 whose data no longer has a record of 2025-11-23 takes back that inbox folder.
    _connector_day(wh, D, day_d[:4])
    assert run(D)["other_days"] == {"2025-11-21": 1}
    assert json.loads((to_e / DONE).read_text())["digest"] == meta["digest"], "same records, same digest"
    assert not (wh / CLIENT / "2025-11-23" / "inbox" / "from-2025-11-22").exists()
    assert list((wh / CLIENT / "2025-11-23" / "inbox").iterdir()) == []
    assert read_parquet_rows(to_e) == [evening]
