"""The connector and organizer Spark jobs on a tiny hand-written client-day."""
from __future__ import annotations

import gzip
import json
import os
import sys
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
    (raw / "transactions" / "t.csv.gz").write_bytes(gzip.compress(
        b"customer_id,ts,action,amount,merchant_id\n"
        b"u2,2024-01-15T00:30:00,transaction,12.5,m1\n"
        b"u3,2024-01-15T10:00:00Z,transaction,abc,m1\n"
        b"u4,2024-01-15T10:00:00Z,transaction,5\n", mtime=0))
    (raw / "labels" / "labels.csv").write_text("user_id,label\nu1,fraud\n")
    args = ["--client", "syncbank", "--date", DAY, "--warehouse", str(tmp_path / "wh"),
            "--registry", str(tmp_path / "clients.yaml")]
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


def test_process_one_tags_the_rows_of_one_file(warehouse, monkeypatch):
    from fraudcore.clients import get_client
    from fraudcore.ingest import EVENT_FIELDS
    from jobs import connector

    day, args = warehouse
    client = get_client("syncbank", args[-1])
    monkeypatch.setattr(connector, "RECORDS_PER_ROW", 2)
    rows = list(connector.process_one(client, (str(day / "raw" / "logs" / "a.jsonl"), "logs/a.jsonl", "logs")))
    # Accepted events in file order, at most RECORDS_PER_ROW to a row, then the quarantine, then the summary.
    assert [r[0] for r in rows] == ["event", "event", "quarantine", "file"]
    assert [[e["event_id"] for e in r[1]] for r in rows[:2]] == [["e1", "e2"], ["e3"]]
    assert all(list(e) == list(EVENT_FIELDS) for r in rows[:2] for e in r[1])
    assert rows[0][1][0]["event_time_ms"] == T and rows[0][1][0]["source_file"] == "logs/a.jsonl"
    assert rows[0][2:] == (None, None)
    assert rows[2][1] is None and rows[2][3] is None
    assert [(q["source_file"], q["line"], q["reason"]) for q in rows[2][2]] == [("logs/a.jsonl", 3, "invalid_json")]
    assert list(rows[2][2][0]) == list(connector.QUARANTINE_FIELDS)
    assert rows[3][:3] == ("file", None, None)
    assert json.loads(rows[3][3]) == {"source_file": "logs/a.jsonl", "source": "logs", "read": 4, "accepted": 3,
                                      "quarantined": 1, "reasons": {"invalid_json": 1}}

    # A file that cannot be read gives one error row and nothing else.
    (day / "raw" / "logs" / "z.jsonl.gz").write_bytes(b"not gzip")
    [(kind, events, quarantine, message)] = connector.process_one(
        client, (str(day / "raw" / "logs" / "z.jsonl.gz"), "logs/z.jsonl.gz", "logs"))
    assert (kind, events, quarantine) == ("error", None, None)
    assert message.startswith("logs/z.jsonl.gz: cannot read file")


@pytest.fixture
def spark_workers(request):
    """The shared session, with Python workers on this interpreter (it has the project installed)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return request.getfixturevalue("spark")


@pytest.mark.spark
def test_connector_then_organizer(warehouse, spark_workers, capsys):
    from jobs import connector, organizer

    day, args = warehouse
    assert connector.main(args) == 0
    stats = {
        "records_read": 9, "records_accepted": 6, "records_quarantined": 3,
        "quarantine_reasons": {"bad_amount": 1, "csv_column_count": 1, "invalid_json": 1},
        "files": 3, "by_source": {"logs": 3, "events": 2, "transactions": 1},
    }
    assert read_json(day / "connector" / "stats.json") == stats
    assert read_json(day / "connector" / DONE) == stats
    assert "read=9 accepted=6 quarantined=3" in capsys.readouterr().out
    events = read_parquet_rows(day / "connector" / "events")
    assert sorted((r["event_id"], r["user_id"], r["event_time_ms"], r["event_type"]) for r in events) == [
        ("derived-" + _derived_tx_id(), "u2", T - 8 * 3600_000, "transaction"),
        ("e1", "u1", T, "login"), ("e1", "u1", T, "login"), ("e2", "u2", T, "login"),
        ("e3", "u1", 1705384800000, "logout"), ("e4", "u3", 1705381199000, "page_view"),
    ]
    quarantine = [json.loads(line) for p in sorted((day / "connector" / "quarantine").glob("part-*"))
                  for line in p.read_text().splitlines()]
    assert [(q["source_file"], q["line"], q["reason"]) for q in quarantine] == [
        ("logs/a.jsonl", 3, "invalid_json"),
        ("transactions/t.csv.gz", 3, "bad_amount"),
        ("transactions/t.csv.gz", 4, "csv_column_count"),
    ]
    assert quarantine[2] == {"source_file": "transactions/t.csv.gz", "line": 4, "reason": "csv_column_count",
                             "detail": "", "record": "u4,2024-01-15T10:00:00Z,transaction,5"}

    assert organizer.main(args) == 0
    ostats = read_json(day / "organized" / "stats.json")
    per_hour = [0] * 24
    per_hour[0], per_hour[8], per_hour[23] = 1, 2, 1
    assert ostats == {"input": 6, "duplicates": 1, "late": 1, "organized": 4, "per_hour": per_hour}
    organized = read_parquet_rows(day / "organized" / "events")
    assert [(r["hour"], r["event_id"], r["user_id"], r["ip"], r["source_file"]) for r in
            sorted(organized, key=lambda r: (r["hour"], r["user_id"]))] == [
        (0, "derived-" + _derived_tx_id(), "u2", None, "transactions/t.csv.gz"),
        # The duplicate e1 kept is the one from the smaller source_file at the same time.
        (8, "e1", "u1", "10.0.0.2", "events/b.json"),
        (8, "e2", "u2", None, "logs/a.jsonl"),
        (23, "e4", "u3", None, "events/b.json"),
    ]
    assert [r["event_id"] for r in read_parquet_rows(day / "organized" / "late")] == ["e3"]

    # A corrupt file fails the connector with its name on the last stderr line; old output stays.
    (day / "raw" / "logs" / "z.jsonl.gz").write_bytes(b"not gzip")
    capsys.readouterr()
    assert connector.main(args) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("connector: error: IngestError: logs/z.jsonl.gz: cannot read file")
    assert read_json(day / "connector" / DONE) == stats


def _derived_tx_id() -> str:
    from fraudcore.ingest import derived_event_id

    return derived_event_id({"user_id": "u2", "event_time_ms": T - 8 * 3600_000, "event_type": "transaction",
                             "ip": None, "device_id": None, "amount": 12.5, "merchant_id": "m1"})[len("derived-"):]
