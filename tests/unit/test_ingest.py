"""Plain tests of raw-record reading, timestamp parsing, validation and the organizer rules."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from fraudcore.clients import ClientConfig
from fraudcore.ingest import (
    EVENT_FIELDS,
    IngestError,
    RawRecord,
    RecordError,
    connector_stats,
    derived_event_id,
    ingest_file,
    list_data_files,
    normalize,
    parse_event_time,
    process_file,
    read_records,
    reconcile,
)
from fraudcore.organize import hour_of_day, is_late, pick_duplicate

UTC = ZoneInfo("UTC")
NY = ZoneInfo("America/New_York")
T = 1705325400000  # 2024-01-15T13:30:00Z
DEMO = ClientConfig(name="demo", bucket="demo-bucket")
SYNCBANK = ClientConfig(
    name="syncbank",
    bucket="syncbank-data",
    timezone="America/New_York",
    field_map={"customer_id": "user_id", "ts": "event_time", "action": "event_type"},
)
BASE = {"user_id": "u1", "event_time": "2024-01-15T13:30:00Z", "event_type": "login"}


# --- parse_event_time ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, tz, expected",
    [
        ("2024-01-15T13:30:00Z", UTC, T),
        ("2024-01-15T13:30:00.250Z", UTC, T + 250),
        ("2024-01-15T08:30:00-05:00", UTC, T),
        ("2024-01-15T19:00:00+05:30", NY, T),
        ("2024-01-15 13:30:00+00:00", NY, T),
        ("2024-01-15T08:30:00", NY, T),  # naive, EST (UTC-5)
        ("2024-07-15T08:30:00", NY, 1721046600000),  # naive, EDT (UTC-4)
        ("2024-01-15T13:30:00", UTC, T),
        ("  2024-01-15T13:30:00Z  ", UTC, T),
        (1705325400, UTC, T),  # epoch seconds
        (1705325400.5, UTC, T + 500),
        (1705325400123, UTC, T + 123),  # epoch milliseconds
        (1705325400123.0, UTC, T + 123),
        ("1705325400", UTC, T),
        ("1705325400.123", UTC, T + 123),
        ("1705325400000", UTC, T),
        (1705325400, NY, T),  # epoch numbers ignore the client zone
    ],
)
def test_parse_event_time_formats(value, tz, expected):
    assert parse_event_time(value, tz) == expected


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        None,
        "",
        "   ",
        "yesterday",
        "2024-13-01T00:00:00Z",
        "15/01/2024 13:30",
        "1999-12-31T23:59:59Z",
        "2101-01-01T00:00:00Z",
        0,
        -5,
        946684799,
        float("nan"),
        float("inf"),
        "1e9",
        "-1705325400",
        [1705325400],
        {"t": 1},
    ],
)
def test_parse_event_time_rejects(value):
    with pytest.raises(RecordError) as err:
        parse_event_time(value, UTC)
    assert err.value.reason == "bad_event_time"


def test_parse_event_time_year_bounds():
    assert parse_event_time("2000-01-01T00:00:00Z", UTC) == 946684800000
    assert parse_event_time("2100-12-31T23:59:59Z", UTC) == 4133980799000
    assert parse_event_time(946684800, UTC) == 946684800000


# --- read_records ------------------------------------------------------------------------------


def _write(path: Path, text: str | bytes, gz: bool = False) -> Path:
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def test_read_jsonl_gz_with_line_numbers_and_errors(tmp_path):
    text = '{"user_id": "a"}\n\n{"user_id": \n[1, 2]\n   \n{"user_id": "b"}\r\n'
    p = _write(tmp_path / "x.jsonl.gz", text, gz=True)
    got = list(read_records(p, "logs/x.jsonl.gz"))
    assert got == [
        RawRecord("logs/x.jsonl.gz", 1, {"user_id": "a"}, None, '{"user_id": "a"}'),
        RawRecord("logs/x.jsonl.gz", 3, None, "invalid_json", '{"user_id": '),
        RawRecord("logs/x.jsonl.gz", 4, None, "not_an_object", "[1, 2]"),
        RawRecord("logs/x.jsonl.gz", 6, {"user_id": "b"}, None, '{"user_id": "b"}'),
    ]


def test_read_json_invalid_encoding(tmp_path):
    p = _write(tmp_path / "x.json", b'\xef\xbb\xbf{"a": 1}\n{"a": "\xff"}\n')
    got = list(read_records(p, "events/x.json"))
    assert [(r.line, r.record, r.error) for r in got] == [(1, {"a": 1}, None), (2, None, "invalid_encoding")]
    assert got[1].raw == '{"a": "\ufffd"}'


def test_read_csv_gz_with_line_numbers_and_errors(tmp_path):
    text = (
        "user_id, event_time ,event_type\r\n"
        "u1,1705325400,login\r\n"
        "\r\n"
        "u2,1705325400\r\n"
        '"u3","1705325400","note\r\nsplit"\r\n'
        "u4,1705325400,logout,extra\r\n"
        "u5,1705325400,login\r\n"
    )
    p = _write(tmp_path / "t.csv.gz", text, gz=True)
    got = list(read_records(p, "transactions/t.csv.gz"))
    assert [(r.line, r.error) for r in got] == [
        (2, None),
        (4, "csv_column_count"),
        (5, None),
        (7, "csv_column_count"),
        (8, None),
    ]
    assert got[0].record == {"user_id": "u1", "event_time": "1705325400", "event_type": "login"}
    assert got[1].raw == "u2,1705325400"
    assert got[2].record["event_type"] == "note\r\nsplit"


def test_read_csv_invalid_encoding_only_that_row(tmp_path):
    p = _write(tmp_path / "t.csv", b"user_id,event_type\nu1,login\nu\xff2,login\nu3,login\n")
    got = list(read_records(p, "logs/t.csv"))
    assert [(r.line, r.error) for r in got] == [(2, None), (3, "invalid_encoding"), (4, None)]
    assert got[1].raw == "u\ufffd2,login"


def test_read_csv_header_only_and_empty(tmp_path):
    assert list(read_records(_write(tmp_path / "h.csv", "user_id,event_type\n"), "logs/h.csv")) == []
    assert list(read_records(_write(tmp_path / "e.jsonl", ""), "logs/e.jsonl")) == []


def test_read_corrupt_gzip_names_the_file(tmp_path):
    p = _write(tmp_path / "bad.jsonl.gz", b"this is not gzip data")
    with pytest.raises(IngestError, match=r"logs/bad\.jsonl\.gz"):
        list(read_records(p, "logs/bad.jsonl.gz"))


def test_read_truncated_gzip_names_the_file(tmp_path):
    data = gzip.compress(b'{"user_id": "a"}\n' * 200, mtime=0)
    p = _write(tmp_path / "cut.csv.gz", data[: len(data) // 2])
    with pytest.raises(IngestError, match=r"events/cut\.csv\.gz"):
        list(read_records(p, "events/cut.csv.gz"))


def test_read_unsupported_file_type(tmp_path):
    with pytest.raises(IngestError, match="unsupported"):
        list(read_records(_write(tmp_path / "x.txt", "hi"), "logs/x.txt"))


def test_list_data_files_sorted_and_filtered(tmp_path):
    for rel in [
        "logs/b.jsonl",
        "logs/a.csv.gz",
        "events/sub/c.json",
        "transactions/t.csv",
        "labels/labels.csv",
        "logs/README.txt",
        "logs/.hidden.jsonl",
        "logs/_SUCCESS",
        "_DONE",
    ]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    got = [(rel, source) for _, rel, source in list_data_files(tmp_path)]
    assert got == [
        ("events/sub/c.json", "events"),
        ("logs/a.csv.gz", "logs"),
        ("logs/b.jsonl", "logs"),
        ("transactions/t.csv", "transactions"),
    ]


# --- normalize -------------------------------------------------------------------------------


def test_normalize_full_record():
    rec = {
        "event_id": 42,
        "user_id": " u1 ",
        "event_time": "2024-01-15T13:30:00Z",
        "event_type": " LOGIN ",
        "ip": "10.0.0.1",
        "device_id": "d1",
        "user_agent": "Mozilla/5.0",
        "email": "A.B@Example.COM",
        "phone": "+15551234",
        "amount": "12.50",
        "currency": "USD",
        "country": "US",
        "merchant_id": "",
    }
    row = normalize(rec, DEMO, "logs", "logs/a.jsonl")
    assert list(row) == list(EVENT_FIELDS)
    assert row == {
        "event_id": "42",
        "user_id": "u1",
        "event_time_ms": T,
        "event_type": "login",
        "ip": "10.0.0.1",
        "device_id": "d1",
        "browser_fingerprint": None,
        "user_agent": "Mozilla/5.0",
        "email_domain": "example.com",
        "phone": "+15551234",
        "amount": 12.5,
        "currency": "USD",
        "country": "US",
        "merchant_id": None,
        "source": "logs",
        "source_file": "logs/a.jsonl",
    }


def test_normalize_field_map_syncbank():
    rec = {
        "customer_id": "c-9",
        "ts": "2024-01-15T08:30:00",
        "action": "Transaction",
        "amount": 99,
        "email_domain": "Bank.com",
        "email": "x@other.org",
        "browser_fingerprint": "fp1",
    }
    row = normalize(rec, SYNCBANK, "transactions", "transactions/t.csv")
    assert (row["user_id"], row["event_time_ms"], row["event_type"]) == ("c-9", T, "transaction")
    assert (row["amount"], row["email_domain"], row["browser_fingerprint"]) == (99.0, "bank.com", "fp1")


def test_normalize_field_map_wins_over_canonical_name():
    rec = {"customer_id": "mapped", "user_id": "other", "ts": 1705325400, "action": "login"}
    assert normalize(rec, SYNCBANK, "logs", "f")["user_id"] == "mapped"


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"user_id": None}, "missing_user_id"),
        ({"user_id": "   "}, "missing_user_id"),
        ({"event_type": ""}, "missing_event_type"),
        ({"event_time": None}, "missing_event_time"),
        ({"event_time": " "}, "missing_event_time"),
        ({"event_time": "soon"}, "bad_event_time"),
        ({"event_time": True}, "bad_event_time"),
        ({"amount": "12,50"}, "bad_amount"),
        ({"amount": "NaN"}, "bad_amount"),
        ({"amount": float("inf")}, "bad_amount"),
        ({"amount": True}, "bad_amount"),
        ({"amount": [1]}, "bad_amount"),
        ({"ip": "300.1.1.1"}, "bad_ip"),
        ({"ip": "localhost"}, "bad_ip"),
    ],
)
def test_normalize_quarantine_reasons(change, reason):
    rec = {**BASE, **change}
    for key in [k for k, v in change.items() if v is None]:
        del rec[key]
    with pytest.raises(RecordError) as err:
        normalize(rec, DEMO, "logs", "f")
    assert err.value.reason == reason


def test_normalize_optional_values():
    row = normalize(
        {**BASE, "ip": "2001:DB8::0001", "amount": " -3e2 ", "email": "no-at-sign", "phone": 5551234},
        DEMO,
        "logs",
        "f",
    )
    assert (row["ip"], row["amount"], row["email_domain"], row["phone"]) == (
        "2001:db8::1",
        -300.0,
        None,
        "5551234",
    )
    row = normalize({**BASE, "amount": "", "ip": ""}, DEMO, "logs", "f")
    assert (row["amount"], row["ip"]) == (None, None)


def test_derived_event_id_stable_and_sensitive():
    a = normalize({**BASE, "ip": "1.2.3.4", "amount": 5}, DEMO, "logs", "logs/a.jsonl", 7)
    again = normalize(
        {**BASE, "ip": "1.2.3.4", "amount": "5.0", "user_agent": "x"}, DEMO, "logs", "logs/a.jsonl", 7
    )
    c = normalize({**BASE, "ip": "1.2.3.5", "amount": 5}, DEMO, "logs", "logs/a.jsonl", 7)
    assert a["event_id"] == again["event_id"] == derived_event_id(a, 7)
    assert a["event_id"].startswith("derived-") and len(a["event_id"]) == len("derived-") + 20
    assert c["event_id"] != a["event_id"]
    # The same instant written two ways is the same event.
    d = normalize(
        {**BASE, "event_time": 1705325400, "ip": "1.2.3.4", "amount": 5}, DEMO, "logs", "logs/a.jsonl", 7
    )
    assert d["event_id"] == a["event_id"]
    # The same record on another line or in another file is another event.
    assert (
        normalize({**BASE, "ip": "1.2.3.4", "amount": 5}, DEMO, "logs", "logs/a.jsonl", 8)["event_id"]
        != a["event_id"]
    )
    assert (
        normalize({**BASE, "ip": "1.2.3.4", "amount": 5}, DEMO, "logs", "logs/b.jsonl", 7)["event_id"]
        != a["event_id"]
    )
    assert (
        a["event_id"]
        == "derived-"
        + hashlib.sha1(
            json.dumps(
                ["u1", T, "login", "1.2.3.4", None, 5.0, None, "logs/a.jsonl", 7], separators=(",", ":")
            ).encode()
        ).hexdigest()[:20]
    )


# --- process_file, stats, reconcile ---------------------------------------------------------


def test_process_file_accepts_and_quarantines(tmp_path):
    lines = [
        json.dumps({**BASE, "event_id": "e1"}),
        "{oops",
        json.dumps({**BASE, "ip": "x"}),
        "",
        json.dumps({"customer_id": "c1", "ts": "2024-01-15T08:30:00", "action": "login"}),
    ]
    p = _write(tmp_path / "a.jsonl", "\n".join(lines) + "\n")
    accepted, quarantine = process_file(p, "logs/a.jsonl", "logs", SYNCBANK)
    assert [r["user_id"] for r in accepted] == ["u1", "c1"]
    assert accepted[1]["event_time_ms"] == T
    assert quarantine == [
        {"source_file": "logs/a.jsonl", "line": 2, "reason": "invalid_json", "detail": "", "record": "{oops"},
        {
            "source_file": "logs/a.jsonl",
            "line": 3,
            "reason": "bad_ip",
            "detail": "not an IPv4/IPv6 address: 'x'",
            "record": lines[2],
        },
    ]
    assert ingest_file(p, "logs/a.jsonl", "logs", SYNCBANK).summary == {
        "source_file": "logs/a.jsonl",
        "source": "logs",
        "status": "read",
        "reason": "",
        "detail": "",
        "read": 4,
        "accepted": 2,
        "quarantined": 2,
        "reasons": {"bad_ip": 1, "invalid_json": 1},
        "unmapped_event_types": {},
    }


def test_connector_stats_sums_files():
    files = [
        {
            "source_file": "logs/a",
            "source": "logs",
            "status": "read",
            "read": 4,
            "accepted": 3,
            "quarantined": 1,
            "reasons": {"bad_ip": 1},
            "unmapped_event_types": {"purchase": 2},
        },
        {
            "source_file": "transactions/b",
            "source": "transactions",
            "status": "read",
            "read": 5,
            "accepted": 3,
            "quarantined": 2,
            "reasons": {"bad_ip": 1, "bad_amount": 1},
            "unmapped_event_types": {"purchase": 1},
        },
    ]
    other = {
        "source_file": "readme.xml",
        "source": None,
        "status": "not_recognised",
        "read": 0,
        "accepted": 0,
        "quarantined": 0,
        "reasons": {},
    }
    assert connector_stats(files, [other]) == {
        "records_read": 9,
        "records_accepted": 6,
        "records_quarantined": 3,
        "quarantine_reasons": {"bad_amount": 1, "bad_ip": 2},
        "data_files": 2,
        "files_read": 2,
        "files_quarantined": 0,
        "files_not_recognised": 1,
        "partial": False,
        "unmapped_event_types": {"purchase": 3},
        "by_source": {"logs": 3, "events": 0, "transactions": 3},
        "files": [files[0], other, files[1]],
    }


def test_reconcile():
    reconcile({"records_read": 3, "records_accepted": 2, "records_quarantined": 1})
    with pytest.raises(ValueError, match="do not reconcile"):
        reconcile({"records_read": 4, "records_accepted": 2, "records_quarantined": 1})
    with pytest.raises(ValueError, match="reasons"):
        reconcile(
            {
                "records_read": 3,
                "records_accepted": 2,
                "records_quarantined": 1,
                "quarantine_reasons": {"bad_ip": 2},
            }
        )
    # Each listed file must reconcile too, not only the day.
    with pytest.raises(ValueError, match="logs/a: record counts"):
        reconcile(
            {
                "records_read": 3,
                "records_accepted": 2,
                "records_quarantined": 1,
                "files": [
                    {"source_file": "logs/a", "read": 2, "accepted": 2, "quarantined": 1},
                    {"source_file": "logs/b", "read": 1, "accepted": 0, "quarantined": 0},
                ],
            }
        )


# --- organizer rules -----------------------------------------------------------------------


def test_hour_of_day_client_zone():
    assert hour_of_day(T, UTC) == 13
    assert hour_of_day(T, NY) == 8
    assert hour_of_day(1721046600000, NY) == 8  # summer time
    assert hour_of_day(T + 999, UTC) == 13


def test_is_late_half_open_window():
    window = SYNCBANK.day_window_ms(dt.date(2024, 1, 15))
    assert window == (1705294800000, 1705381200000)
    assert not is_late(window[0], window)
    assert is_late(window[0] - 1, window)
    assert not is_late(window[1] - 1, window)
    assert is_late(window[1], window)


def test_pick_duplicate_deterministic():
    rows = [
        {"event_id": "e", "event_time_ms": 2, "source_file": "a", "user_id": "u"},
        {"event_id": "e", "event_time_ms": 1, "source_file": "z", "user_id": "u"},
        {"event_id": "e", "event_time_ms": 1, "source_file": "b", "user_id": "u", "ip": "1.1.1.1"},
        {"event_id": "e", "event_time_ms": 1, "source_file": "b", "user_id": "u", "ip": None},
    ]
    assert pick_duplicate(rows) is rows[3]
    assert pick_duplicate(list(reversed(rows))) is rows[3]
    assert pick_duplicate(rows[:3]) is rows[2]
    with pytest.raises(ValueError):
        pick_duplicate([])


def test_event_fields_match_spark_schema():
    from jobs.common import events_schema

    assert tuple(events_schema().fieldNames()) == EVENT_FIELDS
