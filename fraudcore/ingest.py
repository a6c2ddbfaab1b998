"""Raw input files to canonical *events* rows: reading, timestamp parsing, validation, quarantine."""
from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import ipaddress
import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from fraudcore.clients import ClientConfig

# Order and names of the *events* schema (docs/architecture.md); jobs.common.events_schema matches it.
EVENT_FIELDS = (
    "event_id", "user_id", "event_time_ms", "event_type", "ip", "device_id", "browser_fingerprint",
    "user_agent", "email_domain", "phone", "amount", "currency", "country", "merchant_id", "source",
    "source_file",
)
SOURCES = ("logs", "events", "transactions")
DATA_SUFFIXES = (".jsonl", ".json", ".csv")
# Fields copied as plain stripped strings (the rest get their own parsing below).
_TEXT_FIELDS = (
    "user_id", "device_id", "browser_fingerprint", "user_agent", "phone", "currency", "country",
    "merchant_id",
)
_DERIVED_ID_FIELDS = ("user_id", "event_time_ms", "event_type", "ip", "device_id", "amount", "merchant_id")
_MIN_MS = int(dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
_MAX_MS = int(dt.datetime(2101, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_EPOCH_RE = re.compile(r"\d+(?:\.\d+)?")
# Below this an epoch number is seconds (1e11 s is year 5138; 1e11 ms is 1973).
_SECONDS_LIMIT = 1e11


class RecordError(ValueError):
    """One record failed validation; `reason` is the quarantine reason code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class IngestError(RuntimeError):
    """A whole input file cannot be read (corrupt gzip, unknown format); the job must fail."""


@dataclass(frozen=True)
class RawRecord:
    """One record as read from a file: the parsed object, or the reason it could not be parsed."""

    source_file: str
    line: int
    record: dict | None
    error: str | None
    raw: str


# --- timestamps -------------------------------------------------------------------------------

def parse_event_time(value: Any, tz: ZoneInfo) -> int:
    """Epoch milliseconds UTC of an ISO-8601 string or epoch seconds/milliseconds number."""
    if isinstance(value, bool) or value is None:
        raise RecordError("bad_event_time", f"not a timestamp: {value!r}")
    if isinstance(value, int | float):
        # repr() of a float is its shortest exact decimal text, so 1704067200.123 stays .123.
        return _check_range(_epoch_number_ms(Decimal(repr(value) if isinstance(value, float) else value)), value)
    if not isinstance(value, str):
        raise RecordError("bad_event_time", f"not a timestamp: {value!r}")
    text = value.strip()
    if not text:
        raise RecordError("bad_event_time", "empty timestamp")
    if _EPOCH_RE.fullmatch(text):
        return _check_range(_epoch_number_ms(Decimal(text)), value)
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise RecordError("bad_event_time", f"unparseable timestamp {value!r}") from None
    if parsed.tzinfo is None:
        # A timestamp without zone is the client's local wall-clock time.
        parsed = parsed.replace(tzinfo=tz)
    return _check_range((parsed - _EPOCH) // dt.timedelta(milliseconds=1), value)


def _epoch_number_ms(number: Decimal) -> int:
    if not number.is_finite():
        raise RecordError("bad_event_time", f"not a finite number: {number}")
    ms = number * 1000 if abs(number) < _SECONDS_LIMIT else number
    # Decimal keeps "1704067200.123" exact; float maths would give ...122.99999.
    return int(ms.to_integral_value(rounding="ROUND_HALF_EVEN"))


def _check_range(ms: int, original: Any) -> int:
    if not _MIN_MS <= ms < _MAX_MS:
        raise RecordError("bad_event_time", f"timestamp {original!r} outside years 2000-2100")
    return ms


# --- reading files ----------------------------------------------------------------------------

def data_format(name: str) -> str | None:
    """'jsonl' or 'csv' for a supported data file name (optionally .gz), else None."""
    base = name[:-3] if name.endswith(".gz") else name
    if base.endswith((".jsonl", ".json")):
        return "jsonl"
    if base.endswith(".csv"):
        return "csv"
    return None


def list_data_files(raw_dir: Path) -> list[tuple[Path, str, str]]:
    """(path, name relative to raw_dir, source) of every data file under logs/, events/, transactions/."""
    out = []
    for source in SOURCES:
        folder = Path(raw_dir) / source
        if not folder.is_dir():
            continue
        for p in sorted(folder.rglob("*")):
            rel = p.relative_to(raw_dir).as_posix()
            # Hidden and marker files (.crc, _SUCCESS, _DONE) are bookkeeping, not data.
            if any(part.startswith((".", "_")) for part in p.relative_to(folder).parts):
                continue
            if p.is_file() and data_format(p.name):
                out.append((p, rel, source))
    return sorted(out, key=lambda t: t[1])


def read_records(path: Path, rel_name: str) -> Iterator[RawRecord]:
    """Every record of one data file, with its 1-based physical line number; blank lines skipped."""
    fmt = data_format(Path(path).name)
    if fmt is None:
        raise IngestError(f"{rel_name}: unsupported file type (expected .jsonl, .json or .csv, optionally .gz)")
    try:
        with _open_binary(Path(path)) as fh:
            if fmt == "csv":
                yield from _read_csv(fh, rel_name)
            else:
                yield from _read_jsonl(fh, rel_name)
    except (OSError, EOFError, zlib.error) as exc:
        raise IngestError(f"{rel_name}: cannot read file: {exc}") from exc
    except csv.Error as exc:
        raise IngestError(f"{rel_name}: malformed CSV: {exc}") from exc


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _read_jsonl(fh: IO[bytes], rel_name: str) -> Iterator[RawRecord]:
    for line_no, data in enumerate(fh, start=1):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raw = data.decode("utf-8", errors="replace").rstrip("\r\n")
            if raw.strip():
                yield RawRecord(rel_name, line_no, None, "invalid_encoding", raw)
            continue
        if line_no == 1:
            text = text.lstrip("\ufeff")
        raw = text.rstrip("\r\n")
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            yield RawRecord(rel_name, line_no, None, "invalid_json", raw)
            continue
        if not isinstance(obj, dict):
            yield RawRecord(rel_name, line_no, None, "not_an_object", raw)
            continue
        yield RawRecord(rel_name, line_no, obj, None, raw)


class _LineTap:
    """Feeds csv.reader line by line and remembers the physical lines of the current row."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._it = iter(lines)
        self.consumed = 0
        self.pending: list[str] = []

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        line = next(self._it)
        self.consumed += 1
        self.pending.append(line)
        return line

    def take(self) -> tuple[int, str]:
        """(first line number, raw text) of the lines read since the last take."""
        first = self.consumed - len(self.pending) + 1
        raw = "".join(self.pending).rstrip("\r\n")
        self.pending = []
        return first, raw


def _read_csv(fh: IO[bytes], rel_name: str) -> Iterator[RawRecord]:
    # surrogateescape keeps reading past bad bytes so only the affected rows are quarantined.
    text = io.TextIOWrapper(fh, encoding="utf-8", errors="surrogateescape", newline="")
    tap = _LineTap(text)
    reader = csv.reader(tap)
    header: list[str] | None = None
    for row in reader:
        line_no, raw = tap.take()
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if header is None:
            header = [c.strip() for c in row]
            header[0] = header[0].lstrip("\ufeff")
            continue
        if _has_bad_bytes(raw):
            yield RawRecord(rel_name, line_no, None, "invalid_encoding", _printable(raw))
        elif len(row) != len(header):
            yield RawRecord(rel_name, line_no, None, "csv_column_count", raw)
        else:
            yield RawRecord(rel_name, line_no, dict(zip(header, row, strict=True)), None, raw)


def _has_bad_bytes(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _printable(text: str) -> str:
    return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


# --- validation -------------------------------------------------------------------------------

def normalize(record: dict, client: ClientConfig, source: str, source_file: str) -> dict:
    """The canonical *events* row of one raw record, or RecordError with the quarantine reason."""
    rec = _apply_field_map(record, client.field_map)
    user_id = _text(rec.get("user_id"))
    if user_id is None:
        raise RecordError("missing_user_id", "no user_id")
    event_type = _text(rec.get("event_type"))
    if event_type is None:
        raise RecordError("missing_event_type", "no event_type")
    raw_time = rec.get("event_time")
    if raw_time is None or (isinstance(raw_time, str) and not raw_time.strip()):
        raise RecordError("missing_event_time", "no event_time")
    row: dict[str, Any] = {name: None for name in EVENT_FIELDS}
    row.update({name: _text(rec.get(name)) for name in _TEXT_FIELDS})
    row["event_time_ms"] = parse_event_time(raw_time, client.tz)
    row["event_type"] = event_type.lower()
    row["amount"] = _amount(rec.get("amount"))
    row["ip"] = _ip(rec.get("ip"))
    row["email_domain"] = _email_domain(rec.get("email_domain"), rec.get("email"))
    row["source"] = source
    row["source_file"] = source_file
    row["event_id"] = _text(rec.get("event_id")) or derived_event_id(row)
    return row


def _apply_field_map(record: dict, field_map: dict[str, str]) -> dict:
    out = {k: v for k, v in record.items() if k not in field_map}
    # The client's own field is what the client configured, so it wins over a same-named canonical one.
    out.update({field_map[k]: v for k, v in record.items() if k in field_map})
    return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value).strip()
    return text or None


def _amount(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise RecordError("bad_amount", f"amount is a boolean: {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and _NUMBER_RE.fullmatch(value.strip()):
        number = float(value.strip())
    else:
        raise RecordError("bad_amount", f"amount is not a number: {value!r}")
    if not math.isfinite(number):
        raise RecordError("bad_amount", f"amount is not finite: {value!r}")
    return number


def _ip(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    try:
        # The canonical text form, so "::0001" and "::1" become the same graph node later.
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise RecordError("bad_ip", f"not an IPv4/IPv6 address: {text!r}") from None


def _email_domain(domain: Any, email: Any) -> str | None:
    text = _text(domain)
    if text is not None:
        return text.lstrip("@").lower() or None
    address = _text(email)
    if address is None or "@" not in address:
        return None
    return address.rsplit("@", 1)[1].strip().lower() or None


def derived_event_id(row: dict) -> str:
    """Stable id of a record without its own: sha1 of its canonical fields."""
    key = json.dumps([row.get(name) for name in _DERIVED_ID_FIELDS], separators=(",", ":"))
    return "derived-" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:20]


# --- files and counts -------------------------------------------------------------------------

def process_file(path: Path, rel_name: str, source: str, client: ClientConfig) -> tuple[list[dict], list[dict]]:
    """Accepted *events* rows and quarantine entries of one data file."""
    accepted: list[dict] = []
    quarantine: list[dict] = []
    for rr in read_records(path, rel_name):
        if rr.error is not None:
            quarantine.append(_quarantine_entry(rr, rr.error, ""))
            continue
        try:
            accepted.append(normalize(rr.record or {}, client, source, rel_name))
        except RecordError as exc:
            quarantine.append(_quarantine_entry(rr, exc.reason, exc.detail))
    return accepted, quarantine


def _quarantine_entry(rr: RawRecord, reason: str, detail: str) -> dict:
    return {"source_file": rr.source_file, "line": rr.line, "reason": reason, "detail": detail,
            "record": rr.raw}


def file_summary(rel_name: str, source: str, accepted: list[dict], quarantine: list[dict]) -> dict:
    """Counts of one processed file, the unit the connector stats are summed from."""
    return {
        "source_file": rel_name,
        "source": source,
        "read": len(accepted) + len(quarantine),
        "accepted": len(accepted),
        "quarantined": len(quarantine),
        "reasons": dict(Counter(q["reason"] for q in quarantine)),
    }


def connector_stats(summaries: Iterable[dict]) -> dict:
    """The connector's stats.json from per-file summaries."""
    summaries = list(summaries)
    reasons: Counter[str] = Counter()
    by_source = {s: 0 for s in SOURCES}
    for s in summaries:
        reasons.update(s["reasons"])
        by_source[s["source"]] = by_source.get(s["source"], 0) + s["accepted"]
    stats = {
        "records_read": sum(s["read"] for s in summaries),
        "records_accepted": sum(s["accepted"] for s in summaries),
        "records_quarantined": sum(s["quarantined"] for s in summaries),
        "quarantine_reasons": dict(sorted(reasons.items())),
        "files": len(summaries),
        "by_source": by_source,
    }
    reconcile(stats)
    return stats


def reconcile(stats: dict) -> None:
    """Raise unless accepted + quarantined == read (and the reasons add up to quarantined)."""
    read, acc, quar = stats["records_read"], stats["records_accepted"], stats["records_quarantined"]
    if acc + quar != read:
        raise ValueError(f"record counts do not reconcile: accepted {acc} + quarantined {quar} != read {read}")
    reasons = stats.get("quarantine_reasons")
    if reasons is not None and sum(reasons.values()) != quar:
        raise ValueError(f"quarantine reasons sum to {sum(reasons.values())}, not {quar}")
