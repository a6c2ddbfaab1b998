"""The connector and organizer Spark jobs on a tiny hand-written client-day."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path

import pytest

from fraudcore.paths import DONE, read_json
from jobs.common import read_parquet_rows

REGISTRY = """\
clients:
  syncbank:
    bucket: syncbank-data
    timezone: America/New_York
    field_map: {customer_id: user_id, ts: event_time, action: event_type}
"""
DAY = "2024-01-15"
T = 1705325400000  # 2024-01-15T08:30:00 America/New_York


@pytest.fixture
def warehouse(tmp_path: Path) -> tuple[Path, list[str]]:
    """A warehouse with one client-day of raw files, and the job arguments for it."""
    (tmp_path / "clients.yaml").write_text(REGISTRY)
    raw = tmp_path / "wh" / "syncbank" / DAY / "raw"
    for sub in ("logs", "events", "transactions", "labels"):
        (raw / sub).mkdir(parents=True)
    (raw / "logs" / "a.jsonl").write_text(
        '{"customer_id": "u1", "ts": "2024-01-15T08:30:00", "action": "login", "event_id": "e1", "ip": "10.0.0.1"}\n'
        '{"customer_id": "u2", "ts": 1705325400, "action": "Login", "event_id": "e2"}\n'
        '{"customer_id": "u3", "ts": \n'
        '{"customer_id": "u1", "ts": "2024-01-16T06:00:00Z", "action": "logout", "event_id": "e3"}\n'
    )
    (raw / "events" / "b.json").write_text(
        '{"customer_id": "u3", "ts": "2024-01-15T23:59:59-05:00", "action": "page_view", "event_id": "e4"}\n'
        "\n"
        '{"customer_id": "u1", "ts": "2024-01-15T08:30:00", "action": "login", "event_id": "e1", "ip": "10.0.0.2"}\n'
    )
    (raw / "transactions" / "t.csv.gz").write_bytes(
        gzip.compress(
            b"customer_id,ts,action,amount,merchant_id\n"
            b"u2,2024-01-15T00:30:00,transaction,12.5,m1\n"
            b"u3,2024-01-15T10:00:00Z,transaction,abc,m1\n"
            b"u4,2024-01-15T10:00:00Z,transaction,5\n",
            mtime=0,
        )
    )
    (raw / "labels" / "labels.csv").write_text("user_id,label\nu1,fraud\n")
    args = [
        "--client",
        "syncbank",
        "--date",
        DAY,
        "--warehouse",
        str(tmp_path / "wh"),
        "--registry",
        str(tmp_path / "clients.yaml"),
    ]
    return tmp_path / "wh" / "syncbank" / DAY, args


def test_connector_without_raw_files_exits_3(warehouse, capsys):
    from jobs import connector

    day, args = warehouse
    for p in (day / "raw").rglob("*.*"):
        if p.parent.name != "labels":
            p.unlink()
    assert connector.main(args) == 3
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"no raw data files under {day / 'raw'}"
    assert not (day / "connector").exists()


def _summary(rel: str, source: str, read: int, accepted: int, reasons: dict, **extra) -> dict:
    return {
        "source_file": rel,
        "source": source,
        "status": "read",
        "reason": "",
        "detail": "",
        "read": read,
        "accepted": accepted,
        "quarantined": sum(reasons.values()),
        "reasons": reasons,
        "unmapped_event_types": {},
        **extra,
    }


def test_process_one_tags_the_rows_of_one_file(warehouse, monkeypatch):
    from fraudcore.clients import get_client
    from fraudcore.ingest import EVENT_FIELDS
    from jobs import connector

    day, args = warehouse
    client = get_client("syncbank", args[-1])
    monkeypatch.setattr(connector, "RECORDS_PER_ROW", 2)
    rows = list(
        connector.process_one(client, (str(day / "raw" / "logs" / "a.jsonl"), "logs/a.jsonl", "logs"))
    )
    # Accepted events in file order, at most RECORDS_PER_ROW to a row, then the quarantine, then the summary.
    assert [r[0] for r in rows] == ["event", "event", "quarantine", "file"]
    assert [[e["event_id"] for e in r[1]] for r in rows[:2]] == [["e1", "e2"], ["e3"]]
    assert all(list(e) == list(EVENT_FIELDS) for r in rows[:2] for e in r[1])
    assert rows[0][1][0]["event_time_ms"] == T and rows[0][1][0]["source_file"] == "logs/a.jsonl"
    # Record rows carry their file's name, so the driver can drop the rows of a file quarantined whole.
    assert rows[0][2:] == (None, "logs/a.jsonl")
    assert rows[2][1] is None and rows[2][3] == "logs/a.jsonl"
    assert [(q["source_file"], q["line"], q["reason"]) for q in rows[2][2]] == [
        ("logs/a.jsonl", 3, "invalid_json")
    ]
    assert list(rows[2][2][0]) == list(connector.QUARANTINE_FIELDS)
    assert rows[3][:3] == ("file", None, None)
    assert json.loads(rows[3][3]) == _summary("logs/a.jsonl", "logs", 4, 3, {"invalid_json": 1})

    # A file that cannot be read as a whole: by default its summary says quarantined, with the reason.
    (day / "raw" / "logs" / "z.jsonl.gz").write_bytes(b"not gzip")
    item = (str(day / "raw" / "logs" / "z.jsonl.gz"), "logs/z.jsonl.gz", "logs")
    [(kind, events, quarantine, meta)] = connector.process_one(client, item)
    assert (kind, events, quarantine) == ("file", None, None)
    summary = json.loads(meta)
    assert (summary["status"], summary["reason"], summary["read"]) == (
        "quarantined",
        "not_the_format_its_name_says",
        0,
    )
    # With on_bad_file: fail it is one error row and nothing else.
    [(kind, events, quarantine, message)] = connector.process_one(replace(client, on_bad_file="fail"), item)
    assert (kind, events, quarantine) == ("error", None, None)
    assert message.startswith("logs/z.jsonl.gz: cannot read file")


@pytest.mark.spark
def test_connector_then_organizer(warehouse, spark, capsys):
    from jobs import connector, organizer

    day, args = warehouse
    assert connector.main(args) == 0
    labels = {
        "source_file": "labels/labels.csv",
        "source": None,
        "status": "expected",
        "reason": "labels",
        "detail": "labels, read by the labeling step",
        "read": 0,
        "accepted": 0,
        "quarantined": 0,
        "reasons": {},
        "unmapped_event_types": {},
    }
    stats = {
        "records_read": 9,
        "records_accepted": 6,
        "records_quarantined": 3,
        "quarantine_reasons": {"bad_amount": 1, "csv_column_count": 1, "invalid_json": 1},
        "data_files": 3,
        "files_read": 3,
        "files_quarantined": 0,
        "files_not_recognised": 0,
        "partial": False,
        "unmapped_event_types": {},
        "by_source": {"logs": 3, "events": 2, "transactions": 1},
        "files": [
            _summary("events/b.json", "events", 2, 2, {}),
            labels,
            _summary("logs/a.jsonl", "logs", 4, 3, {"invalid_json": 1}),
            _summary("transactions/t.csv.gz", "transactions", 3, 1, {"bad_amount": 1, "csv_column_count": 1}),
        ],
    }
    assert read_json(day / "connector" / "stats.json") == stats
    assert _done(day) == stats
    assert "read=9 accepted=6 quarantined=3" in capsys.readouterr().out
    assert read_json(day / "connector" / "bad_files" / "reasons.json") == {}
    events = read_parquet_rows(day / "connector" / "events")
    expected_events = _expected_events()
    assert (
        sorted((r["event_id"], r["user_id"], r["event_time_ms"], r["event_type"]) for r in events)
        == expected_events
    )
    quarantine = _quarantine(day)
    assert [(q["source_file"], q["line"], q["reason"]) for q in quarantine] == [
        ("logs/a.jsonl", 3, "invalid_json"),
        ("transactions/t.csv.gz", 3, "bad_amount"),
        ("transactions/t.csv.gz", 4, "csv_column_count"),
    ]
    assert quarantine[2] == {
        "source_file": "transactions/t.csv.gz",
        "line": 4,
        "reason": "csv_column_count",
        "detail": "",
        "record": "u4,2024-01-15T10:00:00Z,transaction,5",
    }

    assert organizer.main(args) == 0
    ostats = read_json(day / "organized" / "stats.json")
    per_hour = [0] * 24
    per_hour[0], per_hour[8], per_hour[23] = 1, 3, 1
    assert ostats == {
        "input": 6,
        "duplicates": 0,
        "other_days": {"2024-01-16": 1},
        "from_inbox": {},
        "organized": 5,
        "per_hour": per_hour,
    }
    organized = read_parquet_rows(day / "organized" / "events")
    assert [
        (r["hour"], r["event_id"], r["user_id"], r["source"])
        for r in sorted(organized, key=lambda r: (r["hour"], r["user_id"], r["source"]))
    ] == [
        (0, _derived_tx_id(), "u2", "transactions"),
        # e1 in two sources is two events: ids are unique per source, not across them.
        (8, "e1", "u1", "events"),
        (8, "e1", "u1", "logs"),
        (8, "e2", "u2", "logs"),
        (23, "e4", "u3", "events"),
    ]
    assert not (day / "organized" / "late").exists()
    # e3's time is on the next client-local day: it waits in that day's inbox, not in a late bin.
    inbox = day.parent / "2024-01-16" / "inbox" / "from-2024-01-15"
    assert [r["event_id"] for r in read_parquet_rows(inbox)] == ["e3"]


@pytest.mark.spark
def test_connector_partial_day(warehouse, spark, capsys):
    """Files the day cannot use: a truncated gzip whose first records did come out, a .gz that is
    not gzip, files in no data folder. The day completes, partial, with copies of the bad files."""
    from jobs import connector

    day, args = warehouse
    expected_events = _expected_events()
    raw = day / "raw"
    lines = b"".join(
        b'{"customer_id": "x%d", "ts": 1705325400, "action": "login"}\n' % i for i in range(20000)
    )
    whole = gzip.compress(lines, mtime=0)
    (raw / "logs" / "cut.jsonl.gz").write_bytes(whole[: len(whole) * 3 // 4])
    (raw / "logs" / "z.jsonl.gz").write_bytes(b"not gzip")
    (raw / "logs" / "_archive").mkdir()
    (raw / "logs" / "_archive" / "old.jsonl").write_text('{"customer_id": "old"}\n')
    capsys.readouterr()
    assert connector.main(args) == 0
    out = capsys.readouterr()
    assert "2 files quarantined whole (partial): logs/cut.jsonl.gz, logs/z.jsonl.gz" in out.out
    assert "logs/_archive/old.jsonl (bookkeeping_folder)" in out.err
    partial = read_json(day / "connector" / "stats.json")
    assert {
        k: partial[k]
        for k in (
            "records_read",
            "records_accepted",
            "data_files",
            "files_quarantined",
            "files_not_recognised",
            "partial",
        )
    } == {
        "records_read": 9,
        "records_accepted": 6,
        "data_files": 5,
        "files_quarantined": 2,
        "files_not_recognised": 1,
        "partial": True,
    }
    by_file = {f["source_file"]: f for f in partial["files"]}
    assert (by_file["logs/cut.jsonl.gz"]["status"], by_file["logs/cut.jsonl.gz"]["reason"]) == (
        "quarantined",
        "truncated_compressed_file",
    )
    assert by_file["logs/z.jsonl.gz"]["reason"] == "not_the_format_its_name_says"
    assert by_file["logs/_archive/old.jsonl"]["status"] == "not_recognised"
    # None of the truncated file's records made it into the events, though some were read before the cut.
    events = read_parquet_rows(day / "connector" / "events")
    assert (
        sorted((r["event_id"], r["user_id"], r["event_time_ms"], r["event_type"]) for r in events)
        == expected_events
    )
    assert len(_quarantine(day)) == 3
    bad = day / "connector" / "bad_files"
    assert (bad / "logs" / "z.jsonl.gz").read_bytes() == b"not gzip"
    assert (bad / "logs" / "cut.jsonl.gz").read_bytes() == (raw / "logs" / "cut.jsonl.gz").read_bytes()
    assert sorted(read_json(bad / "reasons.json")) == ["logs/cut.jsonl.gz", "logs/z.jsonl.gz"]

    # With on_bad_file: fail the connector fails with the file's name on the last stderr line; old output stays.
    registry = Path(args[-1])
    registry.write_text(REGISTRY + "    on_bad_file: fail\n")
    capsys.readouterr()
    assert connector.main(args) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("connector: error: IngestError: logs/cut.jsonl.gz: cannot read file")
    assert _done(day) == partial


def _expected_events() -> list[tuple]:
    """(event_id, user_id, event_time_ms, event_type) of the fixture's accepted records, sorted."""
    return [
        (_derived_tx_id(), "u2", T - 8 * 3600_000, "transaction"),
        ("e1", "u1", T, "login"),
        ("e1", "u1", T, "login"),
        ("e2", "u2", T, "login"),
        ("e3", "u1", 1705384800000, "logout"),
        ("e4", "u3", 1705381199000, "page_view"),
    ]


def _done(day: Path) -> dict:
    """The connector's _DONE metadata without the input snapshot id paths.output adds."""
    return {k: v for k, v in read_json(day / "connector" / DONE).items() if k != "input"}


def _quarantine(day: Path) -> list[dict]:
    return [
        json.loads(line)
        for p in sorted((day / "connector" / "quarantine").glob("part-*"))
        for line in p.read_text().splitlines()
    ]


def _derived_tx_id() -> str:
    from fraudcore.ingest import derived_event_id

    return derived_event_id(
        {
            "user_id": "u2",
            "event_time_ms": T - 8 * 3600_000,
            "event_type": "transaction",
            "ip": None,
            "device_id": None,
            "amount": 12.5,
            "merchant_id": "m1",
            "source_file": "transactions/t.csv.gz",
        },
        2,
    )
