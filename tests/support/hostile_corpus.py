"""Hostile raw input files, one builder per case, and a whole hostile client-day made of them.

`write_hostile_corpus(raw_root)` writes the day under raw_root (the layout of
rawdata/{client}/{date}/ and of the warehouse raw/ stage) and returns what the connector must
make of it, so the plain reader tests and an end-to-end test can share it:

    {"client": {registry entry of the client the expectations hold for},
     "files": {relative path: {"status", "reason", "read", "accepted", "quarantined", "reasons", ...}},
     "totals": {"records_read", "records_accepted", "records_quarantined", "files_quarantined", ...},
     "unmapped_event_types": {value: count}, "partial": True}
"""

from __future__ import annotations

import bz2
import datetime as dt
import gzip
import json
from collections import Counter
from pathlib import Path

DAY = dt.date(2024, 1, 15)
# The client the expectations are for: UTC, with its own event-type vocabulary.
EVENT_TYPES = {
    "LOGIN_SUCCESS": "login",
    "LOGIN_FAILURE": "login_failed",
    "purchase": "transaction",
    "signup": "signup",
}
CLIENT = {
    "bucket": "hostile-data",
    "timezone": "UTC",
    "event_types": EVENT_TYPES,
    "on_bad_file": "quarantine",
}
CSV_HEADER = "user_id,event_time,event_type,amount,merchant_id"


def _iso(day: dt.date, second: int) -> str:
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return (start + dt.timedelta(seconds=second % 86400)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_line(user: str, second: int, event_type: str = "login", day: dt.date = DAY, **extra) -> str:
    return json.dumps({"user_id": user, "event_time": _iso(day, second), "event_type": event_type, **extra})


def _csv_row(
    user: str,
    second: int,
    event_type: str = "transaction",
    amount: str = "1.5",
    merchant: str = "m1",
    day: dt.date = DAY,
) -> str:
    return f"{user},{_iso(day, second)},{event_type},{amount},{merchant}"


# --- one builder per hostile case: the file's bytes -------------------------------------------


def unbalanced_quote_csv(rows: int = 3000, bad_row: int = 3, day: dt.date = DAY) -> bytes:
    """A CSV of `rows` data rows where data row `bad_row` opens a quote it never closes."""
    lines = [CSV_HEADER]
    for i in range(1, rows + 1):
        user = f'"u{i}' if i == bad_row else f"u{i}"
        lines.append(_csv_row(user, i, day=day))
    return ("\n".join(lines) + "\n").encode()


def big_field_csv(field_bytes: int = 200 * 1024, day: dt.date = DAY) -> bytes:
    """Three CSV rows, the second with a quoted merchant_id of `field_bytes` characters."""
    return (
        "\n".join(
            [
                CSV_HEADER,
                _csv_row("u1", 1, day=day),
                _csv_row("u2", 2, merchant='"' + "m" * field_bytes + '"', day=day),
                _csv_row("u3", 3, day=day),
            ]
        ).encode()
        + b"\n"
    )


def cr_only_csv(day: dt.date = DAY) -> bytes:
    """A CSV with old-Mac CR line endings, one quoted user_agent spanning two lines."""
    rows = [
        f"u1,{_iso(day, 1)},login,ua",
        f'u2,{_iso(day, 2)},login,"two\rlines"',
        f"u3,{_iso(day, 3)},login,ua",
    ]
    return "\r".join(["user_id,event_time,event_type,user_agent", *rows]).encode() + b"\r"


def utf16_jsonl(little_endian: bool = True, day: dt.date = DAY) -> bytes:
    """JSON lines in UTF-16 with a BOM, CRLF endings, one non-ASCII user id."""
    text = "\r\n".join([_json_line("u1", 1, day=day), _json_line("üser-2", 2, day=day)]) + "\r\n"
    codec = "utf-16-le" if little_endian else "utf-16-be"
    bom = b"\xff\xfe" if little_endian else b"\xfe\xff"
    return bom + text.encode(codec)


def bom_quoted_header_csv(day: dt.date = DAY) -> bytes:
    """A UTF-8 BOM right before a quoted header."""
    header = ",".join(f'"{c}"' for c in CSV_HEADER.split(","))
    return b"\xef\xbb\xbf" + (header + "\r\n" + _csv_row("u1", 1, day=day) + "\r\n").encode()


def nul_jsonl(day: dt.date = DAY) -> bytes:
    """A NUL in a user_agent (JSON escape), a raw NUL byte in a line, and a good line."""
    return (
        "\n".join(
            [_json_line("u1", 1, day=day, user_agent="Mozilla\u0000/5.0"), _json_line("u2", 2, day=day)]
        ).encode()
        + b'\n{"user_id": "u3\x00"}\n'
    )


def long_id_jsonl(chars: int = 70_000, day: dt.date = DAY) -> bytes:
    """A user id of `chars` characters, then a good record."""
    return (_json_line("u" * chars, 1, day=day) + "\n" + _json_line("u2", 2, day=day) + "\n").encode()


def newline_id_jsonl(day: dt.date = DAY) -> bytes:
    """A user id with a newline inside ("u\\n1" in JSON), then a good record."""
    return (_json_line("u\n1", 1, day=day) + "\n" + _json_line("u2", 2, day=day) + "\n").encode()


def long_line_jsonl(line_bytes: int = (1 << 20) + 512 * 1024, day: dt.date = DAY) -> bytes:
    """A good record, a record of `line_bytes` bytes (over the 1 MiB record limit), a good record."""
    big = _json_line("u2", 2, day=day, user_agent="x" * line_bytes)
    return "\n".join([_json_line("u1", 1, day=day), big, _json_line("u3", 3, day=day)]).encode() + b"\n"


def good_jsonl(users: int = 3, day: dt.date = DAY, offset: int = 0) -> bytes:
    return "".join(
        _json_line(f"u{offset + i}", offset + i, day=day) + "\n" for i in range(1, users + 1)
    ).encode()


def truncated_gzip(day: dt.date = DAY) -> bytes:
    """The first half of a gzip file of 20,000 JSON lines (its first records decompress fine)."""
    data = gzip.compress(good_jsonl(20_000, day), mtime=0)
    return data[: len(data) // 2]


def not_gzip(day: dt.date = DAY) -> bytes:
    """Plain JSON lines under a .gz name."""
    return good_jsonl(2, day)


def gzip_bomb(decompressed: int, member: int = 64 << 20) -> bytes:
    """A gzip file of zeros decompressing to at least `decompressed` bytes, cheap to build at any
    size: one member of `member` zeros, repeated (a multi-member gzip file)."""
    member = min(member, decompressed)
    one = gzip.compress(bytes(member), compresslevel=9, mtime=0)
    return one * (decompressed // member + 1)


def bz2_jsonl(day: dt.date = DAY) -> bytes:
    return bz2.compress(good_jsonl(3, day, offset=100))


def zstd_csv(day: dt.date = DAY) -> bytes:
    import zstandard

    text = "\n".join([CSV_HEADER, _csv_row("u201", 1, day=day), _csv_row("u202", 2, day=day)]) + "\n"
    return zstandard.ZstdCompressor().compress(text.encode())


def truncated_zstd(day: dt.date = DAY) -> bytes:
    import zstandard

    data = zstandard.ZstdCompressor().compress(good_jsonl(2000, day))
    return data[: len(data) - 5]


def twin_transactions_csv(day: dt.date = DAY) -> bytes:
    """Two identical same-second transactions without an event id."""
    row = _csv_row("u9", 60, amount="9.99", day=day)
    return (CSV_HEADER + "\n" + row + "\n" + row + "\n").encode()


def event_types_jsonl(day: dt.date = DAY) -> bytes:
    """Event types of the client's vocabulary: exact, other case, already canonical, unmapped."""
    types = [
        "LOGIN_SUCCESS",
        "login_success",
        "purchase",
        "PURCHASE",
        "Signup",
        "LOGIN",
        "weird_type",
        "weird_type",
        "Other",
    ]
    return "".join(_json_line(f"u{i}", i, t, day=day) + "\n" for i, t in enumerate(types, start=1)).encode()


# --- the whole day ------------------------------------------------------------------------------


def _ok(read: int, accepted: int | None = None, reasons: dict | None = None, **extra) -> dict:
    reasons = reasons or {}
    quarantined = sum(reasons.values())
    accepted = read - quarantined if accepted is None else accepted
    return {
        "status": "read",
        "reason": "",
        "read": read,
        "accepted": accepted,
        "quarantined": quarantined,
        "reasons": reasons,
        **extra,
    }


def _bad(reason: str) -> dict:
    return {
        "status": "quarantined",
        "reason": reason,
        "read": 0,
        "accepted": 0,
        "quarantined": 0,
        "reasons": {},
    }


def _skip(status: str, reason: str) -> dict:
    return {"status": status, "reason": reason, "read": 0, "accepted": 0, "quarantined": 0, "reasons": {}}


def write_hostile_corpus(
    raw_root: Path, day: dt.date = DAY, decompressed_limit: int | None = None, ready_marker: str = "_READY"
) -> dict:
    """Write a hostile client-day under raw_root; the expected outcome per file and for the day.

    decompressed_limit is the connector's limit in effect (ingest.MAX_DECOMPRESSED_BYTES by
    default): the gzip bomb decompresses to just over it.
    """
    from fraudcore import ingest

    limit = ingest.MAX_DECOMPRESSED_BYTES if decompressed_limit is None else decompressed_limit
    files: dict[str, tuple[bytes, dict]] = {
        # Records each file loses, and only those.
        "logs/unbalanced.csv": (
            unbalanced_quote_csv(day=day),
            _ok(3000, reasons={"csv_unbalanced_quote": 1}),
        ),
        "logs/big_field.csv": (big_field_csv(day=day), _ok(3, reasons={"field_too_large": 1})),
        "logs/cr_only.csv": (cr_only_csv(day=day), _ok(3)),
        "events/utf16le.jsonl": (utf16_jsonl(True, day), _ok(2)),
        "events/utf16be.json": (utf16_jsonl(False, day), _ok(2)),
        "events/bom_header.csv": (bom_quoted_header_csv(day), _ok(1)),
        "logs/nul.jsonl": (nul_jsonl(day), _ok(3, reasons={"nul_in_value": 1, "invalid_json": 1})),
        "logs/long_id.jsonl": (long_id_jsonl(day=day), _ok(2, reasons={"id_too_long": 1})),
        "logs/newline_id.jsonl": (newline_id_jsonl(day), _ok(2, reasons={"bad_id_characters": 1})),
        "logs/long_line.jsonl": (long_line_jsonl(day=day), _ok(3, reasons={"record_too_large": 1})),
        # Names read today only by luck, or not at all.
        "logs/PART.JSONL": (good_jsonl(2, day, offset=300), _ok(2)),
        "logs/x.ndjson": (good_jsonl(2, day, offset=310), _ok(2)),
        "logs/2025/part.jsonl": (good_jsonl(2, day, offset=320), _ok(2)),
        "events/b.jsonl.bz2": (bz2_jsonl(day), _ok(3)),
        "events/z.CSV.ZST": (zstd_csv(day), _ok(2)),
        "transactions/twins.csv": (twin_transactions_csv(day), _ok(2)),
        "events/types.jsonl": (
            event_types_jsonl(day),
            _ok(9, unmapped_event_types={"weird_type": 2, "Other": 1}),
        ),
        # Whole-file problems: quarantined, the day goes on (partial).
        "transactions/truncated.jsonl.gz": (truncated_gzip(day), _bad("truncated_compressed_file")),
        "transactions/not_gzip.jsonl.gz": (not_gzip(day), _bad("not_the_format_its_name_says")),
        "logs/bomb.jsonl.gz": (gzip_bomb(limit + (1 << 20)), _bad("decompressed_over_limit")),
        "events/cut.jsonl.zst": (truncated_zstd(day), _bad("truncated_compressed_file")),
        # Files that are not data: named, never silently dropped.
        "logs/_archive/old.jsonl": (good_jsonl(2, day), _skip("not_recognised", "bookkeeping_folder")),
        "logs/.hidden.jsonl": (good_jsonl(2, day), _skip("not_recognised", "hidden_file")),
        "logs/readme.xml": (b"<readme/>\n", _skip("not_recognised", "unknown_suffix")),
        "readme.xml": (b"<readme/>\n", _skip("not_recognised", "outside_data_folders")),
        "exports/x.jsonl": (good_jsonl(1, day), _skip("not_recognised", "outside_data_folders")),
        "labels/labels.csv": (b"user_id,label\nu1,fraud\n", _skip("expected", "labels")),
        ready_marker: (b"", _skip("expected", "marker")),
    }
    root = Path(raw_root)
    for rel, (data, _) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    expected = {rel: outcome for rel, (_, outcome) in files.items()}
    data_files = [e for e in expected.values() if e["status"] in ("read", "quarantined")]
    reasons: Counter[str] = Counter()
    unmapped: Counter[str] = Counter()
    for e in data_files:
        reasons.update(e["reasons"])
        unmapped.update(e.get("unmapped_event_types", {}))
    totals = {
        "records_read": sum(e["read"] for e in data_files),
        "records_accepted": sum(e["accepted"] for e in data_files),
        "records_quarantined": sum(e["quarantined"] for e in data_files),
        "quarantine_reasons": dict(sorted(reasons.items())),
        "data_files": len(data_files),
        "files_read": sum(1 for e in data_files if e["status"] == "read"),
        "files_quarantined": sum(1 for e in data_files if e["status"] == "quarantined"),
        "files_not_recognised": sum(1 for e in expected.values() if e["status"] == "not_recognised"),
    }
    return {
        "client": dict(CLIENT, ready_marker=ready_marker),
        "day": day.isoformat(),
        "files": expected,
        "totals": totals,
        "unmapped_event_types": dict(sorted(unmapped.items())),
        "partial": True,
    }
