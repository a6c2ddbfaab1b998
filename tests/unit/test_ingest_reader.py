"""Plain (no Spark) tests of file recognition, the streaming readers and the per-file counts on hostile input."""

from __future__ import annotations

import bz2
import gzip
import json
import tracemalloc
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudcore import ingest
from fraudcore.clients import ClientConfig
from fraudcore.ingest import (
    BadFileError,
    CountError,
    FileTally,
    RecordError,
    connector_stats,
    ingest_file,
    iter_file,
    keep_bad_files,
    normalize,
    physical_lines,
    scan_raw_dir,
)
from tests.support import hostile_corpus as hc

CLIENT = ClientConfig(name="hostile", bucket="hostile-data", event_types=hc.EVENT_TYPES)
PLAIN = ClientConfig(name="demo", bucket="demo-bucket")
BASE = {"user_id": "u1", "event_time": "2024-01-15T13:30:00Z", "event_type": "login"}


def _ingest_measured(path: Path, name: str) -> tuple[ingest.FileResult, int]:
    """ingest_file of a logs file, and the peak of Python memory it allocated (tracemalloc)."""
    tracemalloc.start()
    try:
        result = ingest_file(path, name, "logs", CLIENT)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _file(tmp_path: Path, rel: str, data: bytes) -> Path:
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _ingest(tmp_path: Path, rel: str, data: bytes, client: ClientConfig = CLIENT) -> ingest.FileResult:
    path = _file(tmp_path, rel, data)
    return ingest_file(path, rel, rel.split("/", 1)[0], client)


def _counts(result: ingest.FileResult) -> tuple:
    s = result.summary
    return s["status"], s["read"], s["accepted"], s["quarantined"], s["reasons"]


def _bad_reason(tmp_path: Path, rel: str, data: bytes) -> str:
    result = _ingest(tmp_path, rel, data)
    assert (result.events, result.quarantine) == ([], [])
    assert result.summary["status"] == "quarantined"
    return result.summary["reason"]


# --- CSV ------------------------------------------------------------------------------------


def test_unbalanced_quote_costs_only_its_own_record(tmp_path):
    result = _ingest(tmp_path, "logs/unbalanced.csv", hc.unbalanced_quote_csv(rows=3000, bad_row=3))
    assert _counts(result) == ("read", 3000, 2999, 1, {"csv_unbalanced_quote": 1})
    [q] = result.quarantine
    assert (q["line"], q["reason"]) == (4, "csv_unbalanced_quote")  # data row 3 is physical line 4
    assert q["record"].startswith('"u3,')
    users = [e["user_id"] for e in result.events]
    assert users[:3] == ["u1", "u2", "u4"] and users[-1] == "u3000"


def test_two_stray_quotes_cost_two_records(tmp_path):
    data = hc.unbalanced_quote_csv(rows=50, bad_row=10).replace(b"\nu40,", b'\n"u40,')
    result = _ingest(tmp_path, "logs/two.csv", data)
    assert _counts(result) == ("read", 50, 48, 2, {"csv_unbalanced_quote": 2})
    assert [q["line"] for q in result.quarantine] == [11, 41]


def test_unclosed_quote_over_the_record_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "MAX_RECORD_BYTES", 4096)
    result = _ingest(tmp_path, "logs/u.csv", hc.unbalanced_quote_csv(rows=500, bad_row=1))
    assert _counts(result) == ("read", 500, 499, 1, {"csv_unbalanced_quote": 1})
    assert "within 4096 bytes" in result.quarantine[0]["detail"]


def test_quoted_field_may_span_lines(tmp_path):
    data = b'user_id,event_time,event_type,user_agent\nu1,1705325400,login,"a\nb, c"\nu2,1705325400,login,x\n'
    result = _ingest(tmp_path, "logs/ok.csv", data)
    assert _counts(result) == ("read", 2, 2, 0, {})
    assert result.events[0]["user_agent"] == "a\nb, c"


def test_field_over_128_kib_is_a_record_problem(tmp_path):
    result = _ingest(tmp_path, "logs/big.csv", hc.big_field_csv(200 * 1024))
    assert _counts(result) == ("read", 3, 2, 1, {"field_too_large": 1})
    assert result.quarantine[0]["line"] == 3
    assert len(result.quarantine[0]["record"]) <= ingest.RAW_PREVIEW_CHARS + 1


def test_csv_line_over_the_record_limit(tmp_path):
    data = (
        hc.CSV_HEADER
        + "\n"
        + "u1,"
        + "x" * (ingest.MAX_RECORD_BYTES + 10)
        + "\n"
        + hc._csv_row("u2", 2)
        + "\n"
    ).encode()
    result = _ingest(tmp_path, "logs/long.csv", data)
    assert _counts(result) == ("read", 2, 1, 1, {"record_too_large": 1})
    assert result.quarantine[0]["line"] == 2


def test_cr_only_line_endings(tmp_path):
    result = _ingest(tmp_path, "logs/cr.csv", hc.cr_only_csv())
    assert _counts(result) == ("read", 3, 3, 0, {})
    assert [e["user_agent"] for e in result.events] == ["ua", "two\rlines", "ua"]
    # Line numbers are physical lines: u2's quoted field spans lines 3 and 4.
    assert [r.line for r in ingest.read_records(tmp_path / "logs/cr.csv", "logs/cr.csv")] == [2, 3, 5]


def test_bom_and_quoted_header(tmp_path):
    result = _ingest(tmp_path, "events/bom.csv", hc.bom_quoted_header_csv())
    assert _counts(result) == ("read", 1, 1, 0, {})
    assert (result.events[0]["user_id"], result.events[0]["merchant_id"]) == ("u1", "m1")


def test_nul_byte_in_a_csv_value(tmp_path):
    data = b"user_id,event_time,event_type,user_agent\nu1,1705325400,login,a\x00b\nu2,1705325400,login,ok\n"
    result = _ingest(tmp_path, "logs/nul.csv", data)
    assert _counts(result) == ("read", 2, 1, 1, {"nul_in_value": 1})


def test_csv_header_problems_quarantine_the_file(tmp_path):
    assert _bad_reason(tmp_path, "logs/dupe.csv", b"user_id,user_id\nu1,u2\n") == "csv_bad_header"
    assert _bad_reason(tmp_path, "logs/open.csv", b'"user_id,event_time\nu1,1\n') == "csv_bad_header"


# --- JSON lines, encodings ------------------------------------------------------------------


@pytest.mark.parametrize("little_endian", [True, False])
def test_utf16_with_bom(tmp_path, little_endian):
    result = _ingest(tmp_path, "events/u16.jsonl", hc.utf16_jsonl(little_endian))
    assert _counts(result) == ("read", 2, 2, 0, {})
    assert [e["user_id"] for e in result.events] == ["u1", "üser-2"]


def test_utf16_bad_code_units_cost_their_record(tmp_path):
    text = hc._json_line("u1", 1) + "\n" + hc._json_line("u2", 2) + "\n"
    data = b"\xff\xfe" + text.encode("utf-16-le") + b"\x00\xd8" + "x\n".encode("utf-16-le") + b"y"
    result = _ingest(tmp_path, "events/u16.jsonl", data)
    # A lone surrogate, then an odd last byte: two records quarantined, none lost.
    assert _counts(result) == ("read", 4, 2, 2, {"invalid_encoding": 2})


def test_utf32_is_undecodable(tmp_path):
    assert _bad_reason(
        tmp_path, "events/u32.jsonl", b"\xff\xfe\x00\x00" + '{"a":1}\n'.encode("utf-32-le")
    ) == ("undecodable")


def test_nul_inside_values(tmp_path):
    result = _ingest(tmp_path, "logs/nul.jsonl", hc.nul_jsonl())
    assert _counts(result) == ("read", 3, 1, 2, {"invalid_json": 1, "nul_in_value": 1})
    assert [q["line"] for q in result.quarantine] == [1, 3]


def test_line_over_the_record_limit_is_not_buffered(tmp_path):
    line = b"x" * (40 << 20)  # one 40 MiB line, no newline
    path = _file(tmp_path, "logs/huge.jsonl", hc.good_jsonl(1) + line + b"\n" + hc.good_jsonl(1, offset=5))
    result, peak = _ingest_measured(path, "logs/huge.jsonl")
    assert _counts(result) == ("read", 3, 2, 1, {"record_too_large": 1})
    assert result.quarantine[0]["line"] == 2
    assert peak < 8 << 20


def test_long_user_id(tmp_path):
    result = _ingest(tmp_path, "logs/long_id.jsonl", hc.long_id_jsonl(70_000))
    assert _counts(result) == ("read", 2, 1, 1, {"id_too_long": 1})
    assert "70000 characters" in result.quarantine[0]["detail"]


def test_newline_in_user_id(tmp_path):
    result = _ingest(tmp_path, "logs/nl.jsonl", hc.newline_id_jsonl())
    assert _counts(result) == ("read", 2, 1, 1, {"bad_id_characters": 1})


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"device_id": "d" * 513}, "id_too_long"),
        ({"merchant_id": "m\x7f"}, "bad_id_characters"),
        ({"event_id": "e\x001"}, "bad_id_characters"),
        ({"browser_fingerprint": "f\t1"}, "bad_id_characters"),
        ({"user_agent": "a\x00b"}, "nul_in_value"),
        ({"event_type": "log\x00in"}, "nul_in_value"),
        ({"user_agent": "a\ud800b"}, "invalid_encoding"),
        ({"amount": 10**400}, "bad_amount"),
    ],
)
def test_normalize_value_limits(change, reason):
    with pytest.raises(RecordError) as err:
        normalize({**BASE, **change}, PLAIN, "logs", "f")
    assert err.value.reason == reason


def test_normalize_keeps_ids_at_the_limit_and_tabs_in_text():
    row = normalize({**BASE, "user_id": "u" * 512, "user_agent": "a\tb"}, PLAIN, "logs", "f")
    assert (len(row["user_id"]), row["user_agent"]) == (512, "a\tb")


# --- names and folders ----------------------------------------------------------------------


def test_scan_accounts_for_every_file(tmp_path):
    layout = {
        "logs/PART.JSONL": ("data", "", "jsonl", None),
        "logs/x.ndjson": ("data", "", "jsonl", None),
        "logs/2025/part.jsonl": ("data", "", "jsonl", None),
        "events/a.Json.GZ": ("data", "", "jsonl", "gzip"),
        "events/b.csv.bz2": ("data", "", "csv", "bz2"),
        "transactions/c.csv.zst": ("data", "", "csv", "zstd"),
        "logs/_archive/old.jsonl": ("not_recognised", "bookkeeping_folder", None, None),
        "events/.tmp/x.jsonl": ("not_recognised", "bookkeeping_folder", None, None),
        "logs/.hidden.jsonl": ("not_recognised", "hidden_file", None, None),
        ".DS_Store": ("not_recognised", "hidden_file", None, None),
        "logs/_SUCCESS": ("not_recognised", "bookkeeping_file", None, None),
        "logs/readme.xml": ("not_recognised", "unknown_suffix", None, None),
        "logs/x.csv.gz.part": ("not_recognised", "unknown_suffix", None, None),
        "readme.xml": ("not_recognised", "outside_data_folders", None, None),
        "exports/a.jsonl": ("not_recognised", "outside_data_folders", None, None),
        "labels/labels.csv": ("expected", "labels", None, None),
        "labels/old/labels.csv": ("not_recognised", "not_a_labels_file", None, None),
        "_DONE": ("expected", "marker", None, None),
        "_SUCCESS": ("expected", "marker", None, None),
        "_READY": ("expected", "marker", None, None),
        "_CLOSED": ("expected", "marker", None, None),
    }
    for rel in layout:
        _file(tmp_path, rel, b"")
    entries = scan_raw_dir(tmp_path, ready_marker="_CLOSED")
    assert [e.rel for e in entries] == sorted(layout)
    assert {e.rel: (e.status, e.reason, e.fmt, e.compression) for e in entries} == layout
    assert {e.rel: e.source for e in entries if e.status == "data"} == {
        "logs/PART.JSONL": "logs",
        "logs/x.ndjson": "logs",
        "logs/2025/part.jsonl": "logs",
        "events/a.Json.GZ": "events",
        "events/b.csv.bz2": "events",
        "transactions/c.csv.zst": "transactions",
    }


def test_upper_case_ndjson_and_sub_folder_files_are_read(tmp_path):
    for rel in ("logs/PART.JSONL", "logs/x.ndjson", "logs/2025/part.jsonl"):
        result = _ingest(tmp_path, rel, hc.good_jsonl(2))
        assert _counts(result) == ("read", 2, 2, 0, {})


# --- whole-file problems, compression ------------------------------------------------------


def test_truncated_gzip_gives_no_records(tmp_path):
    data = hc.truncated_gzip()
    path = _file(tmp_path, "transactions/cut.jsonl.gz", data)
    tally = FileTally("transactions/cut.jsonl.gz", "transactions")
    seen = []
    with pytest.raises(BadFileError) as err:
        for kind, _ in iter_file(path, "transactions/cut.jsonl.gz", "transactions", CLIENT, tally):
            seen.append(kind)
    assert err.value.reason == "truncated_compressed_file"
    assert "transactions/cut.jsonl.gz" in str(err.value)
    assert seen  # records did come out before the cut...
    result = ingest_file(path, "transactions/cut.jsonl.gz", "transactions", CLIENT)
    assert _counts(result) == ("quarantined", 0, 0, 0, {})  # ...and none of them count
    assert result.events == []


def test_not_gzip_under_a_gz_name(tmp_path):
    assert _bad_reason(tmp_path, "logs/x.jsonl.gz", hc.not_gzip()) == "not_the_format_its_name_says"
    assert _bad_reason(tmp_path, "logs/y.csv.bz2", hc.not_gzip()) == "not_the_format_its_name_says"
    assert _bad_reason(tmp_path, "logs/z.jsonl.zst", gzip.compress(b"{}\n")) == "not_the_format_its_name_says"
    # And compressed data under a plain name.
    assert _bad_reason(tmp_path, "logs/w.jsonl", gzip.compress(b"{}\n")) == "not_the_format_its_name_says"


def test_corrupt_gzip(tmp_path):
    data = bytearray(gzip.compress(hc.good_jsonl(200), mtime=0))
    data[-6] ^= 0xFF  # the CRC
    assert _bad_reason(tmp_path, "logs/crc.jsonl.gz", bytes(data)) == "corrupt_compressed_file"


def test_gzip_bomb_is_refused_with_bounded_memory(tmp_path, monkeypatch):
    limit = 100 << 20
    monkeypatch.setattr(ingest, "MAX_DECOMPRESSED_BYTES", limit)
    path = _file(tmp_path, "logs/bomb.jsonl.gz", hc.gzip_bomb(limit + (1 << 20), member=16 << 20))
    assert path.stat().st_size < 1 << 20
    result, peak = _ingest_measured(path, "logs/bomb.jsonl.gz")
    assert (result.summary["status"], result.summary["reason"]) == ("quarantined", "decompressed_over_limit")
    assert peak < 64 << 20


def test_a_limit_passed_to_iter_file_wins_over_the_module_default(tmp_path):
    # A job passes its limit explicitly: workers of a resident Spark session do not see its environment.
    limit = 1 << 20
    path = _file(tmp_path, "logs/bomb.jsonl.gz", hc.gzip_bomb(limit + (1 << 20), member=1 << 20))
    tally = ingest.FileTally("logs/bomb.jsonl.gz", "logs")
    assert ingest.MAX_DECOMPRESSED_BYTES > 2 * limit
    with pytest.raises(ingest.BadFileError, match="decompress"):
        list(ingest.iter_file(path, "logs/bomb.jsonl.gz", "logs", CLIENT, tally, max_decompressed=limit))


def test_bz2_and_zstd_files(tmp_path):
    assert _counts(_ingest(tmp_path, "events/b.jsonl.bz2", hc.bz2_jsonl())) == ("read", 3, 3, 0, {})
    assert _counts(_ingest(tmp_path, "events/z.CSV.ZST", hc.zstd_csv())) == ("read", 2, 2, 0, {})
    multi = bz2.compress(hc.good_jsonl(1)) + bz2.compress(hc.good_jsonl(1, offset=1))
    assert _counts(_ingest(tmp_path, "events/m.jsonl.bz2", multi)) == ("read", 2, 2, 0, {})


def test_truncated_and_corrupt_zstd(tmp_path):
    # python-zstandard's reader ends quietly on a cut frame; the frame check must notice.
    assert _bad_reason(tmp_path, "events/cut.jsonl.zst", hc.truncated_zstd()) == "truncated_compressed_file"
    assert _bad_reason(tmp_path, "events/cut2.jsonl.zst", hc.zstd_csv()[:6]) == "truncated_compressed_file"
    assert (
        _bad_reason(tmp_path, "events/junk.jsonl.zst", hc.zstd_csv() + b"garbage!")
        == "corrupt_compressed_file"
    )


def test_empty_files_hold_no_records(tmp_path):
    for rel in ("logs/e.jsonl", "logs/e.csv", "logs/e.jsonl.gz", "logs/h.csv"):
        data = b"user_id,event_time\n" if rel == "logs/h.csv" else b""
        assert _counts(_ingest(tmp_path, rel, data)) == ("read", 0, 0, 0, {})


# --- ids and event types ---------------------------------------------------------------------


def test_identical_transactions_without_id_stay_two(tmp_path):
    first = _ingest(tmp_path, "transactions/twins.csv", hc.twin_transactions_csv())
    a, b = (e["event_id"] for e in first.events)
    assert a != b and a.startswith("derived-")
    again = ingest_file(tmp_path / "transactions/twins.csv", "transactions/twins.csv", "transactions", CLIENT)
    assert [e["event_id"] for e in again.events] == [a, b]


def test_event_types_mapping_and_unmapped_counts(tmp_path):
    result = _ingest(tmp_path, "events/types.jsonl", hc.event_types_jsonl())
    assert [e["event_type"] for e in result.events] == [
        "login",
        "login",
        "transaction",
        "transaction",
        "signup",
        "login",
        "weird_type",
        "weird_type",
        "other",
    ]
    assert result.summary["unmapped_event_types"] == {"Other": 1, "weird_type": 2}
    more = _ingest(tmp_path, "logs/more.jsonl", hc._json_line("u1", 1, "weird_type").encode() + b"\n")
    stats = connector_stats([result.summary, more.summary])
    assert stats["unmapped_event_types"] == {"Other": 1, "weird_type": 3}


def test_event_types_exact_key_wins_over_case_insensitive():
    client = ClientConfig(name="c", bucket="b", event_types={"Login": "login", "LOGIN": "login_failed"})
    assert normalize({**BASE, "event_type": "LOGIN"}, client, "logs", "f")["event_type"] == "login_failed"
    assert normalize({**BASE, "event_type": "login"}, client, "logs", "f")["event_type"] == "login"


def test_unmapped_values_are_capped(tmp_path):
    lines = "".join(
        hc._json_line(f"u{i}", i, f"type-{i}") + "\n" for i in range(ingest.MAX_UNMAPPED_VALUES + 50)
    )
    result = _ingest(
        tmp_path, "events/many.jsonl", lines.encode() + hc._json_line("u", 1, "t" * 500).encode()
    )
    unmapped = result.summary["unmapped_event_types"]
    assert len(unmapped) == ingest.MAX_UNMAPPED_VALUES + 1
    assert unmapped[ingest.UNMAPPED_OTHER] == 51
    assert sum(unmapped.values()) == result.summary["accepted"] == ingest.MAX_UNMAPPED_VALUES + 51


# --- counts ---------------------------------------------------------------------------------


def test_a_lost_record_is_an_internal_error(tmp_path, monkeypatch):
    real = ingest.FileReader._jsonl

    def losing(self, lines):
        for i, rr in enumerate(real(self, lines)):
            if i != 1:
                yield rr

    monkeypatch.setattr(ingest.FileReader, "_jsonl", losing)
    with pytest.raises(CountError, match=r"logs/a\.jsonl: record counts do not reconcile"):
        _ingest(tmp_path, "logs/a.jsonl", hc.good_jsonl(3))


def test_keep_bad_files(tmp_path):
    raw, dest = tmp_path / "raw", tmp_path / "stage" / "bad_files"
    _file(raw, "logs/x.jsonl.gz", b"not gzip")
    summaries = [
        {
            "source_file": "logs/x.jsonl.gz",
            "status": "quarantined",
            "reason": "not_the_format_its_name_says",
            "detail": "d",
        },
        {"source_file": "logs/ok.jsonl", "status": "read", "reason": "", "detail": ""},
    ]
    assert keep_bad_files(raw, dest, summaries) == {
        "logs/x.jsonl.gz": {"reason": "not_the_format_its_name_says", "detail": "d"}
    }
    assert (dest / "logs" / "x.jsonl.gz").read_bytes() == b"not gzip"
    assert json.loads((dest / "reasons.json").read_text()) == {
        "logs/x.jsonl.gz": {"reason": "not_the_format_its_name_says", "detail": "d"}
    }
    assert not (dest / "logs" / "ok.jsonl").exists()


def test_hostile_corpus_day(tmp_path, monkeypatch):
    limit = 8 << 20
    monkeypatch.setattr(ingest, "MAX_DECOMPRESSED_BYTES", limit)
    expected = hc.write_hostile_corpus(tmp_path, decompressed_limit=limit)
    client = ClientConfig(name="hostile", **expected["client"])
    entries = scan_raw_dir(tmp_path, client.ready_marker)
    summaries = [ingest_file(e.path, e.rel, e.source, client).summary for e in entries if e.status == "data"]
    stats = connector_stats(summaries, [e.summary() for e in entries if e.status != "data"])
    keys = ("status", "reason", "read", "accepted", "quarantined", "reasons")
    assert {f["source_file"]: {k: f[k] for k in keys} for f in stats["files"]} == {
        rel: {k: e[k] for k in keys} for rel, e in expected["files"].items()
    }
    assert {k: stats[k] for k in expected["totals"]} == expected["totals"]
    assert stats["unmapped_event_types"] == expected["unmapped_event_types"]
    assert stats["partial"] is expected["partial"] is True


# --- physical lines and properties -----------------------------------------------------------


def test_physical_lines_across_chunks():
    assert list(physical_lines([b"a\r", b"\nb\rc", b"\r\n", b"d"], 100)) == [b"a\r\n", b"b\r", b"c\r\n", b"d"]
    out = list(physical_lines([b"x" * 60, b"x" * 60 + b"\r", b"\nz\n"], 100))
    assert [type(o).__name__ for o in out] == ["_Oversize", "bytes"] and out[1] == b"z\n"
    out = list(physical_lines([b"ok\n" + b"y" * 150, b"y" * 150, b"\r", b"\nlast"], 100))
    assert [o if isinstance(o, bytes) else "big" for o in out] == [b"ok\n", "big", b"last"]


_line_bytes = st.one_of(
    st.binary(max_size=400),
    st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"bb", b"\x00"]), max_size=60).map(b"".join),
)


@settings(max_examples=500, deadline=None)
@given(data=_line_bytes, cuts=st.lists(st.integers(0, 400), max_size=8), limit=st.sampled_from([1, 3, 1000]))
def test_physical_lines_match_splitlines(data, cuts, limit):
    """However the bytes are cut into chunks: the lines of bytes.splitlines, those over the limit flagged."""
    bounds = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    got = [line if isinstance(line, bytes) else "over" for line in physical_lines(chunks, limit)]
    assert got == [
        line if len(line.rstrip(b"\r\n")) <= limit else "over" for line in data.splitlines(keepends=True)
    ]


_TOKENS = [
    b'"',
    b",",
    b"\n",
    b"\r",
    b"\r\n",
    b"\x00",
    b"\xff",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b" ",
    b"u1",
    b"1705325400",
    b"login",
    b"{",
    b"}",
    b":",
    b'"user_id"',
    b"user_id,event_time,event_type\n",
    b'{"user_id": "u", "event_time": 1705325400, "event_type": "x"}\n',
    b"\\",
    b"[]",
    b"\t",
]
_hostile_bytes = st.one_of(
    st.binary(max_size=600), st.lists(st.sampled_from(_TOKENS), max_size=80).map(b"".join)
)


def _outcome(path: Path, name: str) -> tuple[str, list]:
    """('bad', reason) or ('read', [(kind, line, reason or event_id)...]) of iter_file, its counts checked."""
    tally = FileTally(name, "logs")
    out = []
    try:
        for kind, item in iter_file(path, name, "logs", CLIENT, tally):
            out.append(
                (kind, item["source_file"], item.get("line"), item.get("reason") or item.get("event_id"))
            )
    except BadFileError as exc:
        return "bad", [exc.reason]
    summary = tally.summary()
    assert summary["accepted"] == sum(1 for o in out if o[0] == "event")
    assert summary["quarantined"] == sum(1 for o in out if o[0] == "quarantine")
    assert summary["accepted"] + summary["quarantined"] == summary["read"]
    return "read", out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=_hostile_bytes,
    name=st.sampled_from(["logs/x.jsonl", "logs/x.csv", "logs/x.csv.gz", "logs/x.ndjson"]),
    compress=st.booleans(),
    chunk=st.sampled_from([1, 3, 7, 64]),
)
def test_any_bytes_give_counts_that_add_up(tmp_path, data, name, compress, chunk):
    """For any bytes the reader raises only BadFileError, accepted + quarantined == read, and the
    records do not depend on where the stream is cut into chunks."""
    if name.endswith(".gz") and compress:
        data = gzip.compress(data, mtime=0)
    path = tmp_path / "x" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    with (
        mock.patch.object(ingest, "MAX_RECORD_BYTES", 48),
        mock.patch.object(ingest, "MAX_DECOMPRESSED_BYTES", 4096),
    ):
        whole = _outcome(path, name)
        with mock.patch.object(ingest, "READ_CHUNK", chunk):
            got = _outcome(path, name)
    # A bad file may show one problem or another first (a bad header before the cut, say).
    assert got == whole if whole[0] == "read" else got[0] == "bad"
