"""Raw input files to canonical *events* rows: file recognition, streaming reading, validation, quarantine.

The rules, in the order a file meets them:

* Recognition (`scan_raw_dir`): every file under raw/ is listed. Data files sit under logs/,
  events/ or transactions/ at any depth and end (any case) in .jsonl, .ndjson or .json (JSON
  lines) or .csv, optionally compressed .gz, .bz2 or .zst. labels/*.csv and the top-level
  markers (_DONE, _SUCCESS, _READY, the client's ready_marker) are expected and not read here;
  everything else is listed as not recognised with its reason.
* Reading (`FileReader`): one streaming pass per file with bounded memory: at most
  MAX_DECOMPRESSED_BYTES decompressed, records of at most MAX_RECORD_BYTES, UTF-8 with or
  without BOM or UTF-16 with BOM, LF, CRLF or CR line endings. `records` counts the physical
  records (non-blank lines; CSV records as delimited below) whatever their parse outcome.
* CSV: a strict dialect. A quoted field may span lines; when a record cannot be parsed once it
  spans lines (its quote is not closed within MAX_RECORD_BYTES or before EOF, or the joined
  lines are not one good row) only its first line is quarantined (csv_unbalanced_quote) and
  parsing restarts at the next physical line.
* A file that cannot be read as a whole (BadFileError: corrupt, truncated, not the format its
  name says, over the decompressed limit, undecodable, bad CSV header) gives no record at all:
  the caller drops whatever it already got from it, and the connector keeps a copy.
* Validation (`normalize`): ids over MAX_ID_CHARS → id_too_long; control characters in an id →
  bad_id_characters; NUL in any other kept value → the record is quarantined (nul_in_value),
  never silently stripped; lone surrogates (from JSON escapes) → invalid_encoding.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import datetime as dt
import gzip
import hashlib
import ipaddress
import json
import math
import os
import re
import shutil
from collections import Counter, deque
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, cast
from zoneinfo import ZoneInfo

from fraudcore.clients import CANONICAL_EVENT_TYPES, ClientConfig

# Order and names of the *events* schema (docs/architecture.md); jobs.common.events_schema matches it.
EVENT_FIELDS = (
    "event_id",
    "user_id",
    "event_time_ms",
    "event_type",
    "ip",
    "device_id",
    "browser_fingerprint",
    "user_agent",
    "email_domain",
    "phone",
    "amount",
    "currency",
    "country",
    "merchant_id",
    "source",
    "source_file",
)
SOURCES = ("logs", "events", "transactions")
LABELS = "labels"
# Data file suffixes (matched case-insensitively), then the optional compression suffix.
FORMAT_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}
COMPRESSION_SUFFIXES = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}
DATA_SUFFIXES = tuple(FORMAT_SUFFIXES)
MARKERS = ("_DONE", "_SUCCESS", "_READY")

# Limits. Module constants so tests can lower them; every reader looks them up when it starts.
# Per compressed file: more is refused as a (possible) bomb. FRAUDBATCH_MAX_DECOMPRESSED_BYTES in
# the environment of the jobs (DCluster's) sets it for a deployment whose clients send bigger files.
MAX_DECOMPRESSED_BYTES = int(os.environ.get("FRAUDBATCH_MAX_DECOMPRESSED_BYTES") or 4 << 30)
MAX_RECORD_BYTES = 1 << 20  # one record (a JSON line, a CSV record with its continuation lines)
MAX_FIELD_CHARS = 128 * 1024  # one CSV field: the csv module's default field_size_limit
MAX_ID_CHARS = 512  # Cassandra keys and the graph's node ids stay small
READ_CHUNK = 256 << 10  # decompressed bytes handled at a time
RAW_PREVIEW_CHARS = 64 << 10  # the quarantine keeps at most this much of a record's text
MAX_UNMAPPED_VALUES = 100  # distinct unmapped event types kept per file and day (the rest are summed)
UNMAPPED_VALUE_CHARS = 100
UNMAPPED_OTHER = "(other values)"

ID_FIELDS = ("event_id", "user_id", "device_id", "browser_fingerprint", "merchant_id")
_ID_SET = frozenset(ID_FIELDS)
# Fields copied as plain stripped strings (the rest get their own parsing below).
_TEXT_FIELDS = (
    "user_id",
    "device_id",
    "browser_fingerprint",
    "user_agent",
    "phone",
    "currency",
    "country",
    "merchant_id",
)
_DERIVED_ID_FIELDS = ("user_id", "event_time_ms", "event_type", "ip", "device_id", "amount", "merchant_id")
_CANONICAL_TYPES = frozenset(CANONICAL_EVENT_TYPES)
_MIN_MS = int(dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
_MAX_MS = int(dt.datetime(2101, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_EPOCH_RE = re.compile(r"\d+(?:\.\d+)?")
# Below this an epoch number is seconds (1e11 s is year 5138; 1e11 ms is 1973).
_SECONDS_LIMIT = 1e11

# File statuses in the connector's stats.
READ, QUARANTINED, NOT_RECOGNISED, EXPECTED = "read", "quarantined", "not_recognised", "expected"
DATA = "data"  # a FileEntry the connector reads (its stats status is then read or quarantined)


class RecordError(ValueError):
    """One record failed validation; `reason` is the quarantine reason code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class IngestError(RuntimeError):
    """The connector cannot ingest the day (a bad file with on_bad_file: fail, a failed task)."""


class BadFileError(IngestError):
    """A whole data file cannot be read; `reason` is its quarantine reason code."""

    def __init__(self, rel_name: str, reason: str, detail: str) -> None:
        super().__init__(f"{rel_name}: cannot read file ({reason}): {detail}")
        self.rel_name = rel_name
        self.reason = reason
        self.detail = detail


class CountError(ValueError):
    """Internal error: records were lost or invented between reading and the outcome counts."""


@dataclass(frozen=True)
class RawRecord:
    """One record as read from a file: the parsed object, or the reason it could not be parsed."""

    source_file: str
    line: int
    record: dict[str, Any] | None
    error: str | None
    raw: str
    detail: str = ""


# --- timestamps -------------------------------------------------------------------------------


def parse_event_time(value: Any, tz: ZoneInfo) -> int:
    """Epoch milliseconds UTC of an ISO-8601 string or epoch seconds/milliseconds number."""
    if isinstance(value, bool) or value is None:
        raise RecordError("bad_event_time", f"not a timestamp: {value!r}")
    if isinstance(value, int | float):
        # repr() of a float is its shortest exact decimal text, so 1704067200.123 stays .123.
        return _check_range(
            _epoch_number_ms(Decimal(repr(value) if isinstance(value, float) else value)), value
        )
    if not isinstance(value, str):
        raise RecordError("bad_event_time", f"not a timestamp: {_short(value)}")
    text = value.strip()
    if not text:
        raise RecordError("bad_event_time", "empty timestamp")
    if _EPOCH_RE.fullmatch(text):
        return _check_range(_epoch_number_ms(Decimal(text)), value)
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise RecordError("bad_event_time", f"unparseable timestamp {_short(value)}") from None
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
        raise RecordError("bad_event_time", f"timestamp {_short(original)} outside years 2000-2100")
    return ms


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


# --- recognising files ------------------------------------------------------------------------


def split_suffix(name: str) -> tuple[str | None, str | None]:
    """(format, compression) of a file name, suffixes matched case-insensitively: ('csv', 'gzip') for
    'A.CSV.GZ', ('jsonl', None) for 'x.ndjson'; format None when the name is not a data file's."""
    lower = name.lower()
    compression = None
    for suffix, kind in COMPRESSION_SUFFIXES.items():
        if lower.endswith(suffix):
            compression, lower = kind, lower[: -len(suffix)]
            break
    for suffix, fmt in FORMAT_SUFFIXES.items():
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return fmt, compression
    return None, compression


def data_format(name: str) -> str | None:
    """'jsonl' or 'csv' for a data file name (see split_suffix), else None."""
    return split_suffix(name)[0]


@dataclass(frozen=True)
class FileEntry:
    """One file under raw/: a data file to read, an expected non-data file, or one not recognised."""

    rel: str  # path relative to raw/, with '/'
    path: Path
    status: str  # DATA | EXPECTED | NOT_RECOGNISED
    source: str | None = None  # logs | events | transactions for data files
    fmt: str | None = None  # jsonl | csv
    compression: str | None = None  # gzip | bz2 | zstd
    reason: str = ""  # why it is not read: labels, marker, hidden_file, unknown_suffix, ...
    detail: str = ""

    def summary(self) -> dict[str, Any]:
        """The stats entry of a file the connector does not read."""
        return _file_entry(self.rel, self.source, self.status, self.reason, self.detail)


def classify(rel: str, markers: Collection[str] = MARKERS) -> tuple[str, str | None, str, str]:
    """(status, source, reason, detail) of a file path relative to raw/ (see scan_raw_dir)."""
    parts = rel.split("/")
    name, folders = parts[-1], parts[:-1]
    if not folders:
        if name in markers:
            return EXPECTED, None, "marker", "a marker file, not data"
        if name.startswith("."):
            return NOT_RECOGNISED, None, "hidden_file", "hidden files are not read"
        return (
            NOT_RECOGNISED,
            None,
            "outside_data_folders",
            "data files are read from logs/, events/, transactions/",
        )
    bookkeeping = next((f for f in folders if f.startswith((".", "_"))), None)
    if bookkeeping is not None:
        return (
            NOT_RECOGNISED,
            None,
            "bookkeeping_folder",
            f"folder {bookkeeping!r} starts with '_' or '.' (archive or bookkeeping), not read",
        )
    if name.startswith("."):
        return NOT_RECOGNISED, None, "hidden_file", "hidden files are not read"
    top = folders[0]
    if top == LABELS:
        # The labeling step reads labels/*.csv exactly (pipeline.labeling.labeling).
        if len(folders) == 1 and name.endswith(".csv"):
            return EXPECTED, None, "labels", "labels, read by the labeling step"
        return NOT_RECOGNISED, None, "not_a_labels_file", "the labeling step reads labels/*.csv only"
    if top not in SOURCES:
        return (NOT_RECOGNISED, None, "outside_data_folders", f"{top!r} is not one of {', '.join(SOURCES)}")
    if name.startswith("_"):
        return NOT_RECOGNISED, top, "bookkeeping_file", "names starting with '_' are markers or bookkeeping"
    if data_format(name) is None:
        return (
            NOT_RECOGNISED,
            top,
            "unknown_suffix",
            "not .jsonl, .ndjson, .json or .csv (optionally .gz, .bz2, .zst)",
        )
    return DATA, top, "", ""


def scan_raw_dir(raw_dir: Path, ready_marker: str = "_READY") -> list[FileEntry]:
    """Every file under raw_dir, sorted by relative path, each a data file or named with its reason."""
    root = Path(raw_dir)
    markers = {*MARKERS, ready_marker}
    out = []
    for p in root.rglob("*"):
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        status, source, reason, detail = classify(rel, markers)
        fmt, compression = split_suffix(p.name) if status == DATA else (None, None)
        out.append(FileEntry(rel, p, status, source, fmt, compression, reason, detail))
    return sorted(out, key=lambda e: e.rel)


def list_data_files(raw_dir: Path, ready_marker: str = "_READY") -> list[tuple[Path, str, str]]:
    """(path, name relative to raw_dir, source) of every data file of scan_raw_dir."""
    return [(e.path, e.rel, e.source or "") for e in scan_raw_dir(raw_dir, ready_marker) if e.status == DATA]


# --- bytes: decompression, encodings, physical lines ---------------------------------------

_GZIP_MAGIC = b"\x1f\x8b"
_BZ2_MAGIC = b"BZh"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _has_magic(compression: str, head: bytes) -> bool:
    if compression == "gzip":
        return head.startswith(_GZIP_MAGIC)
    if compression == "bz2":
        return head.startswith(_BZ2_MAGIC)
    return head.startswith(_ZSTD_MAGIC) or _is_zstd_skippable(head)


def _is_zstd_skippable(head: bytes) -> bool:
    return len(head) >= 4 and head[1:4] == b"\x2a\x4d\x18" and head[0] & 0xF0 == 0x50


class _ZstdFrameCheck:
    """Follows the frame and block headers of the zstd bytes it is fed; `complete` says the data
    ended on a frame boundary. python-zstandard's streaming reader ends quietly on a truncated
    frame, so this is how a cut .zst file is told from a whole one (no decompression involved)."""

    def __init__(self) -> None:
        self._state = "magic"
        self._need = 4  # header bytes wanted by the state
        self._buf = b""
        self._skip = 0
        self._checksum = False

    @property
    def complete(self) -> bool:
        return self._state == "magic" and not self._buf and self._skip == 0

    def feed(self, data: bytes) -> None:
        pos, end = 0, len(data)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            take = min(self._need - len(self._buf), end - pos)
            self._buf += data[pos : pos + take]
            pos += take
            if len(self._buf) == self._need:
                header, self._buf = self._buf, b""
                self._advance(header)

    def _advance(self, header: bytes) -> None:
        state = self._state
        if state == "magic":
            if header == _ZSTD_MAGIC:
                self._state, self._need = "descriptor", 1
            elif _is_zstd_skippable(header):
                self._state, self._need = "skippable", 4
            else:
                raise ValueError("not a zstd frame")
        elif state == "skippable":
            self._skip = int.from_bytes(header, "little")
            self._state, self._need = "magic", 4
        elif state == "descriptor":
            fhd = header[0]
            single_segment = bool(fhd & 0x20)
            self._checksum = bool(fhd & 0x04)
            fcs = (1 if single_segment else 0, 2, 4, 8)[fhd >> 6]
            rest = (0 if single_segment else 1) + (0, 1, 2, 4)[fhd & 0x03] + fcs
            if rest:
                self._state, self._need = "frame_header", rest
            else:
                self._state, self._need = "block", 3
        elif state == "frame_header":
            self._state, self._need = "block", 3
        elif state == "block":
            value = int.from_bytes(header, "little")
            last, kind, size = value & 1, (value >> 1) & 3, value >> 3
            if kind == 3:
                raise ValueError("reserved zstd block type")
            self._skip = 1 if kind == 1 else size
            if last:
                if self._checksum:
                    self._state, self._need = "checksum", 4
                else:
                    self._state, self._need = "magic", 4
        elif state == "checksum":
            self._state, self._need = "magic", 4


class _ZstdSource:
    """The compressed file as stream_reader reads it, every byte also fed to a _ZstdFrameCheck."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.check = _ZstdFrameCheck()

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self.check.feed(data)
        return data

    def drain(self) -> None:
        while self.read(READ_CHUNK):
            pass


def _decompressed_chunks(path: Path, rel_name: str, compression: str | None, limit: int) -> Iterator[bytes]:
    """The file's bytes after decompression, in chunks of at most READ_CHUNK; BadFileError when the
    compressed data is not what the name says, truncated, corrupt or over `limit` bytes."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise BadFileError(rel_name, "cannot_read", str(exc)) from None
    with fh:
        head = fh.read(4)
        fh.seek(0)
        if compression is None:
            if head.startswith((_GZIP_MAGIC, _ZSTD_MAGIC)):
                raise BadFileError(
                    rel_name,
                    "not_the_format_its_name_says",
                    "compressed data in a file without a .gz/.zst suffix",
                )
            while chunk := fh.read(READ_CHUNK):
                yield chunk
            return
        if not head:
            return  # an empty file holds no records, compressed or not
        if not _has_magic(compression, head):
            raise BadFileError(
                rel_name,
                "not_the_format_its_name_says",
                f"the name says {compression}, the data does not start like {compression} data",
            )
        zsource = None
        if compression == "gzip":
            stream: Any = gzip.GzipFile(fileobj=fh, mode="rb")
        elif compression == "bz2":
            stream = bz2.BZ2File(fh, mode="rb")
        else:
            import zstandard

            zsource = _ZstdSource(fh)
            # stream_reader only calls read(), which _ZstdSource has.
            stream = zstandard.ZstdDecompressor().stream_reader(
                cast("IO[bytes]", zsource), read_across_frames=True, closefd=False
            )
        total = 0
        while True:
            try:
                chunk = stream.read(READ_CHUNK)
                if not chunk and zsource is not None:
                    zsource.drain()
                    if not zsource.check.complete:
                        raise EOFError("zstd data ends inside a frame")
            except EOFError as exc:
                raise BadFileError(rel_name, "truncated_compressed_file", str(exc)) from None
            except Exception as exc:  # zlib.error, OSError, zstandard.ZstdError, ValueError of the check
                raise BadFileError(
                    rel_name, "corrupt_compressed_file", f"{type(exc).__name__}: {exc}"
                ) from None
            if not chunk:
                return
            total += len(chunk)
            if total > limit:
                raise BadFileError(
                    rel_name, "decompressed_over_limit", f"more than {limit} bytes once decompressed"
                )
            yield chunk


def _utf8_chunks(chunks: Iterator[bytes], rel_name: str) -> Iterator[bytes]:
    """UTF-8 bytes of the stream: a UTF-8 BOM dropped, UTF-16 (with BOM) transcoded.

    Invalid UTF-16 (lone surrogates, an odd last byte) becomes invalid UTF-8 bytes, so only the
    records holding it are quarantined (invalid_encoding).
    """
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= 4:
            break
    if not head:
        return
    if head.startswith(codecs.BOM_UTF8):
        if head[3:]:
            yield head[3:]
        yield from chunks
    elif head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise BadFileError(rel_name, "undecodable", "UTF-32 is not supported (use UTF-8)")
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16-le" if head.startswith(codecs.BOM_UTF16_LE) else "utf-16-be"
        decoder = codecs.getincrementaldecoder(encoding)(errors="surrogatepass")
        for data in _prepend(head[2:], chunks):
            text = decoder.decode(data)
            if text:
                yield text.encode("utf-8", "surrogatepass")
        try:
            tail = decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            yield b"\xff"  # an odd last byte: never valid UTF-8, so that record is quarantined
        else:
            if tail:
                yield tail.encode("utf-8", "surrogatepass")
    else:
        yield head
        yield from chunks


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


class _Oversize:
    """A physical line longer than the record limit: only its start is kept."""

    __slots__ = ("preview",)

    def __init__(self, preview: bytes) -> None:
        self.preview = preview

    def text(self) -> str:
        return self.preview.decode("utf-8", errors="replace") + "…"


def _eol(data: bytes) -> int:
    """Index of the first CR or LF in data, -1 if none."""
    lf, cr = data.find(b"\n"), data.find(b"\r")
    if lf < 0:
        return cr
    return lf if cr < 0 or lf < cr else cr


def _too_long(line: bytes, limit: int) -> bool:
    return len(line) > limit and len(line.rstrip(b"\r\n")) > limit


def physical_lines(chunks: Iterable[bytes], limit: int) -> Iterator[bytes | _Oversize]:
    """Each physical line of a byte stream with its ending (LF, CRLF or a lone CR); a line longer
    than `limit` bytes (ending excluded) is an _Oversize, found while holding no more than about
    `limit` bytes of it plus one chunk. A CRLF split across chunks is still one ending."""
    carry: list[bytes] = []  # the start of the current line (at most a CR at its end, maybe half a CRLF)
    carry_len = 0
    skipping = False  # inside a line already known to be over the limit
    skip_preview = b""
    pending_cr = False  # the skipped line ended with a CR at a chunk's end: a LF next belongs to it
    for chunk in chunks:
        if pending_cr:
            pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if skipping:
            i = _eol(chunk)
            if i < 0:
                continue
            yield _Oversize(skip_preview)
            skipping, skip_preview = False, b""
            if chunk[i] == 13:  # CR: a CRLF ending, or one to complete in the next chunk
                if i + 1 == len(chunk):
                    pending_cr = True
                elif chunk[i + 1] == 10:
                    i += 1
            chunk = chunk[i + 1 :]
        if not chunk:
            continue
        if _eol(chunk) < 0 and not (carry and carry[-1].endswith(b"\r")):
            carry.append(chunk)
            carry_len += len(chunk)
        else:
            data = b"".join(carry) + chunk if carry else chunk
            carry, carry_len = [], 0
            lines = data.splitlines(keepends=True)
            last = lines[-1]
            if not last.endswith(b"\n"):
                # Unterminated, or a CR that may be the first half of a CRLF: wait for more bytes.
                lines.pop()
                carry, carry_len = [last], len(last)
            for line in lines:
                if len(line) > limit and _too_long(line, limit):
                    yield _Oversize(line[:RAW_PREVIEW_CHARS])
                else:
                    yield line
        if carry_len > limit + 1:
            start = b"".join(carry)
            carry, carry_len = [], 0
            if start.endswith(b"\r"):
                yield _Oversize(start[:RAW_PREVIEW_CHARS])
                pending_cr = True
            else:
                skipping, skip_preview = True, start[:RAW_PREVIEW_CHARS]
    if skipping:
        yield _Oversize(skip_preview)
    elif carry:
        line = b"".join(carry)
        yield _Oversize(line[:RAW_PREVIEW_CHARS]) if _too_long(line, limit) else line


# --- records --------------------------------------------------------------------------------


class FileReader:
    """The records of one data file, read in one streaming pass.

    Iterating yields a RawRecord per physical record; `records` counts those records as they are
    delimited (before any parsing), so accepted + quarantined can be checked against it. Raises
    BadFileError (while iterating) when the file cannot be read as a whole.
    """

    def __init__(
        self, path: Path, rel_name: str, *, max_decompressed: int | None = None, max_record: int | None = None
    ) -> None:
        self.path = Path(path)
        self.rel_name = rel_name
        self.fmt, self.compression = split_suffix(self.path.name)
        self.max_decompressed = MAX_DECOMPRESSED_BYTES if max_decompressed is None else max_decompressed
        self.max_record = MAX_RECORD_BYTES if max_record is None else max_record
        self.records = 0

    def __iter__(self) -> Iterator[RawRecord]:
        if self.fmt is None:
            raise BadFileError(
                self.rel_name,
                "unknown_suffix",
                "unsupported file type (expected .jsonl, "
                ".ndjson, .json or .csv, optionally .gz, .bz2 or .zst)",
            )
        chunks = _decompressed_chunks(self.path, self.rel_name, self.compression, self.max_decompressed)
        lines = physical_lines(_utf8_chunks(chunks, self.rel_name), self.max_record)
        return self._csv(lines) if self.fmt == "csv" else self._jsonl(lines)

    def _jsonl(self, lines: Iterator[bytes | _Oversize]) -> Iterator[RawRecord]:
        rel = self.rel_name
        for line_no, line in enumerate(lines, start=1):
            if isinstance(line, _Oversize):
                self.records += 1
                yield RawRecord(rel, line_no, None, "record_too_large", line.text())
                continue
            if not line.strip():
                continue
            self.records += 1
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                yield RawRecord(
                    rel,
                    line_no,
                    None,
                    "invalid_encoding",
                    _preview(line.decode("utf-8", errors="replace").rstrip("\r\n")),
                )
                continue
            raw = text.rstrip("\r\n")
            try:
                obj = json.loads(raw)
            except (ValueError, RecursionError):
                yield RawRecord(rel, line_no, None, "invalid_json", _preview(raw))
                continue
            if not isinstance(obj, dict):
                yield RawRecord(rel, line_no, None, "not_an_object", _preview(raw))
                continue
            yield RawRecord(rel, line_no, obj, None, _preview(raw))

    def _csv(self, lines: Iterator[bytes | _Oversize]) -> Iterator[RawRecord]:
        rel = self.rel_name
        feed = _CsvFeed(lines, self.max_record)
        reader = csv.reader(feed, strict=True)
        header: list[str] | None = None
        while True:
            feed.begin()
            error = None
            ended = False
            try:
                row = next(reader)
            except StopIteration:
                row, ended = None, True
            except csv.Error as exc:
                row, error = None, str(exc)
            if ended:
                if feed.oversize is None:
                    return  # end of file
                line_no, preview = feed.oversize[0], feed.oversize[1]
                if header is None:
                    raise BadFileError(rel, "csv_bad_header", f"line {line_no}: header over the record limit")
                self.records += 1
                yield RawRecord(rel, line_no, None, "record_too_large", preview + "…")
                continue
            pending = feed.pending
            first_line = pending[0][0]
            failed = error is not None or feed.over
            if header is None:
                if not failed and _is_blank(row):
                    continue
                header = self._header(row, failed, pending, error)
                continue
            if not failed and _is_blank(row):
                continue
            self.records += 1
            multi = len(pending) > 1
            if not failed and any(bad for _, _, bad, _ in pending):
                yield RawRecord(
                    rel, first_line, None, "invalid_encoding", _preview(_printable(_joined(pending)))
                )
            elif not failed and row is not None and len(row) == len(header):
                yield RawRecord(
                    rel, first_line, dict(zip(header, row, strict=True)), None, _preview(_joined(pending))
                )
            elif not failed and not multi:
                yield RawRecord(rel, first_line, None, "csv_column_count", _preview(_joined(pending)))
            elif multi:
                # A quote opened on the first line and the record is not one good row however far
                # it spans (to the record or field limit, or EOF): the first line alone is
                # quarantined, and the lines after it are read again as records of their own.
                if feed.over:
                    why = f"no closing quote within {self.max_record} bytes"
                elif error is not None:
                    why = f"no good row across lines {first_line}-{pending[-1][0]} ({error})"
                else:
                    why = f"lines {first_line}-{pending[-1][0]} give {len(row or [])} columns, not {len(header)}"
                yield RawRecord(
                    rel,
                    first_line,
                    None,
                    "csv_unbalanced_quote",
                    _preview(_printable(_joined(pending[:1]))),
                    why,
                )
                feed.replay(pending[1:])
            else:
                if _field_limit_error(error):
                    reason = "field_too_large"
                elif error == "unexpected end of data":
                    reason = "csv_unbalanced_quote"
                else:
                    reason = "csv_bad_quoting"
                yield RawRecord(
                    rel, first_line, None, reason, _preview(_printable(_joined(pending))), error or ""
                )

    def _header(
        self,
        row: list[str] | None,
        failed: bool,
        pending: list[tuple[int, str, bool, int]],
        error: str | None,
    ) -> list[str]:
        line_no = pending[0][0]
        if failed or row is None:
            raise BadFileError(
                self.rel_name, "csv_bad_header", f"line {line_no}: {error or 'unbalanced quote'}"
            )
        if any(bad for _, _, bad, _ in pending):
            raise BadFileError(self.rel_name, "csv_bad_header", f"line {line_no}: invalid UTF-8")
        header = [c.strip() for c in row]
        header[0] = header[0].lstrip("\ufeff")
        dupes = sorted({c for c in header if header.count(c) > 1})
        if dupes:
            raise BadFileError(self.rel_name, "csv_bad_header", f"line {line_no}: repeated columns {dupes}")
        return header


class _CsvFeed:
    """Feeds csv.reader one physical line at a time and keeps the lines of the current record.

    Each kept line is (line number, text, bad UTF-8?, byte size). The record ends early (the reader
    sees the end of its input) when it grows past the record limit: csv then reports the open
    quote, and the caller quarantines the first line and replays the others.
    """

    def __init__(self, lines: Iterator[bytes | _Oversize], limit: int) -> None:
        self._lines = lines
        self._replay: deque[tuple[int, str, bool, int]] = deque()
        self._line_no = 0
        self.limit = limit
        self.pending: list[tuple[int, str, bool, int]] = []
        self.size = 0
        self.over = False  # the record passed the limit
        self.oversize: tuple[int, str, bool, int] | None = None  # a single over-limit line

    def __iter__(self) -> _CsvFeed:
        return self

    def begin(self) -> None:
        self.pending = []
        self.size = 0
        self.over = False
        self.oversize = None

    def replay(self, items: list[tuple[int, str, bool, int]]) -> None:
        self._replay.extendleft(reversed(items))

    def _next_item(self) -> tuple[int, str, bool, int] | None:
        if self._replay:
            return self._replay.popleft()
        line = next(self._lines, None)
        if line is None:
            return None
        self._line_no += 1
        if isinstance(line, _Oversize):
            return self._line_no, line.preview.decode("utf-8", errors="replace"), False, -1
        try:
            return self._line_no, line.decode("utf-8"), False, len(line)
        except UnicodeDecodeError:
            # surrogateescape keeps the bytes so the row still parses and only it is quarantined.
            return self._line_no, line.decode("utf-8", errors="surrogateescape"), True, len(line)

    def __next__(self) -> str:
        item = self._next_item()
        if item is None:
            raise StopIteration
        self.pending.append(item)
        if item[3] < 0:
            if len(self.pending) == 1:
                self.oversize = item
            else:
                self.over = True
            raise StopIteration
        self.size += item[3]
        if self.size > self.limit and len(self.pending) > 1:
            self.over = True
            raise StopIteration
        return item[1]


def _is_blank(row: list[str] | None) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())


def _joined(pending: list[tuple[int, str, bool, int]]) -> str:
    return "".join(item[1] for item in pending).rstrip("\r\n")


def _field_limit_error(error: str | None) -> bool:
    return error is not None and error.startswith("field larger than field limit")


def _printable(text: str) -> str:
    return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def _preview(text: str) -> str:
    return text if len(text) <= RAW_PREVIEW_CHARS else text[:RAW_PREVIEW_CHARS] + "…"


def read_records(path: Path, rel_name: str) -> Iterator[RawRecord]:
    """Every record of one data file, with its 1-based physical line number; blank lines skipped."""
    yield from FileReader(path, rel_name)


# --- validation -------------------------------------------------------------------------------


class EventTypes:
    """A client's event_types: its value → canonical type, exact key first, then case-insensitively."""

    def __init__(self, mapping: Mapping[Any, Any]) -> None:
        self.exact = {str(k): str(v) for k, v in mapping.items()}
        self.folded: dict[str, str] = {}
        for k, v in self.exact.items():
            self.folded.setdefault(k.casefold(), v)

    def map(self, value: str) -> str:
        """The lowercased event type of a client value."""
        mapped = self.exact.get(value)
        if mapped is None and self.folded:
            mapped = self.folded.get(value.casefold())
        return (value if mapped is None else mapped).lower()


def normalize(
    record: dict[str, Any], client: ClientConfig, source: str, source_file: str, line: int | None = None
) -> dict[str, Any]:
    """The canonical *events* row of one raw record, or RecordError with the quarantine reason."""
    return _normalize(record, client, source, source_file, line, EventTypes(client.event_types))[0]


def _normalize(
    record: dict[str, Any],
    client: ClientConfig,
    source: str,
    source_file: str,
    line: int | None,
    event_types: EventTypes,
) -> tuple[dict[str, Any], str | None]:
    """normalize, plus the client's event type value when it maps to no canonical type."""
    rec = _apply_field_map(record, client.field_map)
    user_id = _text(rec.get("user_id"))
    if user_id is None:
        raise RecordError("missing_user_id", "no user_id")
    _check_id("user_id", user_id)
    raw_type = _text(rec.get("event_type"))
    if raw_type is None:
        raise RecordError("missing_event_type", "no event_type")
    _check_value("event_type", raw_type)
    raw_time = rec.get("event_time")
    if raw_time is None or (isinstance(raw_time, str) and not raw_time.strip()):
        raise RecordError("missing_event_time", "no event_time")
    row: dict[str, Any] = dict.fromkeys(EVENT_FIELDS)
    row["user_id"] = user_id
    for name in _TEXT_FIELDS[1:]:
        value = _text(rec.get(name))
        if value is not None:
            if name in _ID_SET:
                _check_id(name, value)
            elif not value.isprintable():
                _check_value(name, value)
        row[name] = value
    row["event_time_ms"] = parse_event_time(raw_time, client.tz)
    event_type = event_types.map(raw_type)
    row["event_type"] = event_type
    row["amount"] = _amount(rec.get("amount"))
    row["ip"] = _ip(rec.get("ip"))
    row["email_domain"] = _email_domain(rec.get("email_domain"), rec.get("email"))
    row["source"] = source
    row["source_file"] = source_file
    event_id = _text(rec.get("event_id"))
    if event_id is not None:
        _check_id("event_id", event_id)
    row["event_id"] = event_id or derived_event_id(row, line)
    return row, (None if event_type in _CANONICAL_TYPES else raw_type)


def _check_id(name: str, value: str) -> None:
    if len(value) > MAX_ID_CHARS:
        raise RecordError("id_too_long", f"{name} has {len(value)} characters (at most {MAX_ID_CHARS})")
    if not value.isprintable():  # fast path: almost every id is printable
        if any(ch < " " or ch == "\x7f" for ch in value):
            raise RecordError("bad_id_characters", f"{name} holds control characters: {_short(value)}")
        _check_value(name, value)


def _check_value(name: str, value: str) -> None:
    if value.isprintable():
        return
    if "\x00" in value:
        raise RecordError("nul_in_value", f"{name} holds a NUL character")
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise RecordError("invalid_encoding", f"{name} holds an unpaired UTF-16 surrogate")


def _apply_field_map(record: dict[str, Any], field_map: Mapping[str, str]) -> dict[str, Any]:
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
    try:
        if isinstance(value, int | float):
            number = float(value)
        elif isinstance(value, str) and _NUMBER_RE.fullmatch(value.strip()):
            number = float(value.strip())
        else:
            raise RecordError("bad_amount", f"amount is not a number: {_short(value)}")
    except OverflowError:
        raise RecordError("bad_amount", f"amount is out of range: {_short(value)}") from None
    if not math.isfinite(number):
        raise RecordError("bad_amount", f"amount is not finite: {_short(value)}")
    return number


def _ip(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    try:
        # The canonical text form, so "::0001" and "::1" become the same graph node later.
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise RecordError("bad_ip", f"not an IPv4/IPv6 address: {_short(text)}") from None


def _email_domain(domain: Any, email: Any) -> str | None:
    text = _text(domain)
    if text is not None:
        _check_value("email_domain", text)
        return text.lstrip("@").lower() or None
    address = _text(email)
    if address is None or "@" not in address:
        return None
    out = address.rsplit("@", 1)[1].strip().lower() or None
    if out is not None:
        _check_value("email", out)
    return out


def derived_event_id(row: dict[str, Any], line: int | None = None) -> str:
    """Stable id of a record without its own: sha1 of its canonical fields, its file and physical line.

    The file and line keep two identical records apart (two same-second transactions are two
    events); the same file read again gives the same ids.
    """
    key = json.dumps(
        [*(row.get(name) for name in _DERIVED_ID_FIELDS), row.get("source_file"), line], separators=(",", ":")
    )
    return "derived-" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:20]


# --- files and counts -------------------------------------------------------------------------


def _file_entry(
    rel: str, source: str | None, status: str, reason: str = "", detail: str = ""
) -> dict[str, Any]:
    return {
        "source_file": rel,
        "source": source,
        "status": status,
        "reason": reason,
        "detail": detail,
        "read": 0,
        "accepted": 0,
        "quarantined": 0,
        "reasons": {},
        "unmapped_event_types": {},
    }


def _count_capped(counter: Counter[str], value: str, n: int = 1) -> None:
    """counter[value] += n, with long values cut and at most MAX_UNMAPPED_VALUES distinct ones."""
    if len(value) > UNMAPPED_VALUE_CHARS:
        value = value[:UNMAPPED_VALUE_CHARS] + "…"
    if value not in counter and len(counter) >= MAX_UNMAPPED_VALUES:
        value = UNMAPPED_OTHER
    counter[value] += n


@dataclass
class FileTally:
    """The counts of one data file as its records go by; summary() is its entry in the stats."""

    source_file: str
    source: str
    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    unmapped_event_types: Counter[str] = field(default_factory=Counter)
    status: str = READ
    reason: str = ""
    detail: str = ""

    def check(self) -> None:
        """Raise CountError unless accepted + quarantined == read."""
        if self.accepted + self.quarantined != self.read:
            raise CountError(
                f"{self.source_file}: record counts do not reconcile: accepted {self.accepted} + "
                f"quarantined {self.quarantined} != read {self.read}"
            )

    def mark_bad(self, exc: BadFileError) -> None:
        """The file is quarantined as a whole: none of its records count."""
        self.status, self.reason, self.detail = QUARANTINED, exc.reason, exc.detail
        self.read = self.accepted = self.quarantined = 0
        self.reasons.clear()
        self.unmapped_event_types.clear()

    def summary(self) -> dict[str, Any]:
        entry = _file_entry(self.source_file, self.source, self.status, self.reason, self.detail)
        entry.update(
            read=self.read,
            accepted=self.accepted,
            quarantined=self.quarantined,
            reasons=dict(sorted(self.reasons.items())),
            unmapped_event_types=dict(sorted(self.unmapped_event_types.items())),
        )
        return entry


def iter_file(
    path: Path,
    rel_name: str,
    source: str,
    client: ClientConfig,
    tally: FileTally,
    *,
    max_decompressed: int | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """("event", events row) and ("quarantine", entry) of one data file, in file order.

    Counts go to `tally`, checked (CountError) once the file is read. Raises BadFileError when the
    file cannot be read as a whole: what it yielded before is then to be dropped (mark_bad).
    `max_decompressed` overrides MAX_DECOMPRESSED_BYTES (a job passes its own, so the limit holds
    in Python workers that do not share the job's environment, as on a resident Spark session).
    """
    reader = FileReader(Path(path), rel_name, max_decompressed=max_decompressed)
    event_types = EventTypes(client.event_types)
    for rr in reader:
        if rr.error is not None:
            tally.quarantined += 1
            tally.reasons[rr.error] += 1
            yield "quarantine", _quarantine_entry(rr, rr.error, rr.detail)
            continue
        try:
            row, unmapped = _normalize(rr.record or {}, client, source, rel_name, rr.line, event_types)
        except RecordError as exc:
            tally.quarantined += 1
            tally.reasons[exc.reason] += 1
            yield "quarantine", _quarantine_entry(rr, exc.reason, exc.detail)
            continue
        tally.accepted += 1
        if unmapped is not None:
            _count_capped(tally.unmapped_event_types, unmapped)
        yield "event", row
    tally.read = reader.records
    tally.check()


@dataclass(frozen=True)
class FileResult:
    """What one data file gave: accepted rows, quarantine entries, and its stats entry."""

    events: list[dict[str, Any]]
    quarantine: list[dict[str, Any]]
    summary: dict[str, Any]


def ingest_file(path: Path, rel_name: str, source: str, client: ClientConfig) -> FileResult:
    """iter_file gathered in memory (tests, small files); a bad file gives its quarantined summary."""
    tally = FileTally(rel_name, source)
    events: list[dict[str, Any]] = []
    quarantine: list[dict[str, Any]] = []
    try:
        for kind, item in iter_file(path, rel_name, source, client, tally):
            (events if kind == "event" else quarantine).append(item)
    except BadFileError as exc:
        tally.mark_bad(exc)
        return FileResult([], [], tally.summary())
    return FileResult(events, quarantine, tally.summary())


def process_file(
    path: Path, rel_name: str, source: str, client: ClientConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Accepted *events* rows and quarantine entries of one data file; BadFileError if it is unreadable."""
    tally = FileTally(rel_name, source)
    events: list[dict[str, Any]] = []
    quarantine: list[dict[str, Any]] = []
    for kind, item in iter_file(path, rel_name, source, client, tally):
        (events if kind == "event" else quarantine).append(item)
    return events, quarantine


def _quarantine_entry(rr: RawRecord, reason: str, detail: str) -> dict[str, Any]:
    return {
        "source_file": rr.source_file,
        "line": rr.line,
        "reason": reason,
        "detail": detail,
        "record": rr.raw,
    }


def connector_stats(
    summaries: Iterable[dict[str, Any]], others: Iterable[dict[str, Any]] = ()
) -> dict[str, Any]:
    """The connector's stats.json from the data files' summaries and the other files' entries.

    records_* count the records of the files read; a file quarantined as a whole adds none (its
    records cannot be trusted) but makes the day partial. `files` lists every file under raw/.
    """
    summaries = list(summaries)
    reasons: Counter[str] = Counter()
    unmapped: Counter[str] = Counter()
    by_source = dict.fromkeys(SOURCES, 0)
    for s in summaries:
        reasons.update(s["reasons"])
        for value, n in (s.get("unmapped_event_types") or {}).items():
            _count_capped(unmapped, value, n)
        by_source[s["source"]] = by_source.get(s["source"], 0) + s["accepted"]
    files = sorted([*summaries, *others], key=lambda f: f["source_file"])
    statuses = Counter(f.get("status", READ) for f in files)
    stats = {
        "records_read": sum(s["read"] for s in summaries),
        "records_accepted": sum(s["accepted"] for s in summaries),
        "records_quarantined": sum(s["quarantined"] for s in summaries),
        "quarantine_reasons": dict(sorted(reasons.items())),
        "data_files": len(summaries),
        "files_read": statuses[READ],
        "files_quarantined": statuses[QUARANTINED],
        "files_not_recognised": statuses[NOT_RECOGNISED],
        "partial": statuses[QUARANTINED] > 0,
        "unmapped_event_types": dict(sorted(unmapped.items())),
        "by_source": by_source,
        "files": files,
    }
    reconcile(stats)
    return stats


def reconcile(stats: dict[str, Any]) -> None:
    """Raise CountError unless accepted + quarantined == read for the day and for each listed file,
    and the day's reasons add up to its quarantined records."""
    read, acc, quar = stats["records_read"], stats["records_accepted"], stats["records_quarantined"]
    if acc + quar != read:
        raise CountError(
            f"record counts do not reconcile: accepted {acc} + quarantined {quar} != read {read}"
        )
    reasons = stats.get("quarantine_reasons")
    if reasons is not None and sum(reasons.values()) != quar:
        raise CountError(f"quarantine reasons sum to {sum(reasons.values())}, not {quar}")
    files = stats.get("files")
    if isinstance(files, list):
        for f in files:
            if f["accepted"] + f["quarantined"] != f["read"]:
                raise CountError(
                    f"{f['source_file']}: record counts do not reconcile: accepted {f['accepted']} "
                    f"+ quarantined {f['quarantined']} != read {f['read']}"
                )


def keep_bad_files(
    raw_dir: Path, dest: Path, summaries: Iterable[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Copy every file quarantined as a whole to dest/<relative path>; dest/reasons.json says why.

    The copies are hard links where the file system allows (raw files are never rewritten in place).
    """
    from fraudcore.atomic import write_json

    reasons: dict[str, dict[str, Any]] = {}
    for s in summaries:
        if s.get("status") != QUARANTINED:
            continue
        rel = s["source_file"]
        src, target = Path(raw_dir) / rel, Path(dest) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, target)
        except OSError:
            shutil.copy2(src, target)
        reasons[rel] = {"reason": s["reason"], "detail": s.get("detail", "")}
    write_json(Path(dest) / "reasons.json", dict(sorted(reasons.items())))
    return reasons
