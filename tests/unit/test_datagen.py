"""The sample client-day generator: contract layout, determinism, planted truth, malformed records."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
from collections import defaultdict
from pathlib import Path

import pytest

from datagen.cli import main, upload_client_day
from datagen.generator import FORMATS, generate_client_day
from fraudcore.clients import CANONICAL_FIELDS, get_client

DAY = dt.date(2025, 11, 21)


def _generate(tmp: Path, client: str = "demo", events: int = 2000, seed: int = 7, **kw):
    return generate_client_day(
        get_client(client),
        DAY,
        tmp / "out",
        events=events,
        seed=seed,
        malformed_rate=kw.pop("malformed_rate", 0.01),
        truth_dir=tmp / "truth",
        **kw,
    )


def _text(path: Path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.name.endswith(".gz") else data).decode("utf-8")


def _parse_time(value) -> int:
    """Epoch ms of a contract event_time, or ValueError."""
    if isinstance(value, bool) or value is None:
        raise ValueError("no time")
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int):
        return value * 1000 if value < 10**11 else value
    if not isinstance(value, str):
        raise ValueError("bad type")
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("no zone")
    return round(parsed.timestamp() * 1000)


def _strict_read(root: Path, field_map: dict[str, str]):
    """Yield (relative file, line, record or None) for every record read; None when a strict reader rejects it."""
    for folder in ("logs", "events", "transactions"):
        for path in sorted((root / folder).iterdir()):
            rel = f"{folder}/{path.name}"
            lines = _text(path).split("\n")
            assert lines[-1] == "", f"{rel} must end with a newline"
            lines = lines[:-1]
            assert all(line.strip() for line in lines), f"{rel} has a blank line"
            if ".csv" in path.name:
                rows = list(csv.reader(io.StringIO("\n".join(lines) + "\n")))
                header, body = rows[0], rows[1:]
                assert len(body) == len(lines) - 1  # one data row per physical line
                items = [
                    (n + 2, dict(zip(header, row, strict=True)) if len(row) == len(header) else None)
                    for n, row in enumerate(body)
                ]
                items = [
                    (n, {k: v for k, v in r.items() if v != ""} if r is not None else None) for n, r in items
                ]
            else:
                items = []
                for n, line in enumerate(lines, start=1):
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError:
                        obj = None
                    items.append((n, obj if isinstance(obj, dict) else None))
            for line_no, raw in items:
                rec = None
                if raw is not None:
                    rec = {field_map.get(k, k): v for k, v in raw.items()}
                    try:
                        if not isinstance(rec.get("user_id"), str) or not rec["user_id"]:
                            raise ValueError("user")
                        if not rec.get("event_type"):
                            raise ValueError("type")
                        rec["event_time_ms"] = _parse_time(rec.get("event_time"))
                        if "amount" in rec:
                            amount = rec["amount"]
                            if isinstance(amount, bool) or not isinstance(amount, (int, float, str)):
                                raise ValueError("amount")
                            rec["amount"] = float(amount)
                    except ValueError:
                        rec = None
                yield rel, line_no, rec


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    report = _generate(tmp)
    truth = json.loads(report.truth_path.read_text())
    records = list(_strict_read(report.root, {}))
    return report, truth, records


def test_layout_and_every_format_in_every_folder(demo):
    report, truth, _ = demo
    assert report.root.parts[-3:] == ("rawdata", "demo", "2025-11-21")
    for folder in ("logs", "events", "transactions"):
        names = sorted(p.name for p in (report.root / folder).iterdir())
        assert names == [f"part-{k:04d}.{FORMATS[k % 4]}" for k in range(8)]
    assert {Path(f).parent.name for f in map(str, report.files)} == {
        "logs",
        "events",
        "transactions",
        "labels",
    }
    assert len(report.files) == 25 == truth["totals"]["data_files"] + 1
    assert not (report.truth_path.is_relative_to(report.root.parents[2]))  # truth lives outside the data


def test_record_counts_and_malformed_match_a_strict_reader(demo):
    report, truth, records = demo
    assert len(records) == 2000 == report.records == truth["expected"]["records_read"]
    rejected = sorted((f"rawdata/demo/2025-11-21/{rel}", line) for rel, line, rec in records if rec is None)
    assert len(rejected) == 20 == report.malformed == truth["malformed"]["total"]
    assert sum(truth["malformed"]["by_kind"].values()) == 20
    assert report.malformed_by_kind == truth["malformed"]["by_kind"]
    assert rejected == [(m["file"], m["line"]) for m in truth["malformed"]["records"]]
    kinds = {m["kind"] for m in truth["malformed"]["records"]}
    assert len(kinds) >= 3
    assert report.valid_records == 1980 == truth["expected"]["records_accepted"]


def test_event_times_duplicates_late_and_missing_ids(demo):
    report, truth, records = demo
    start, end = truth["day_window_ms"]
    valid = [r for _, _, r in records if r is not None]
    late = [r for r in valid if r["event_time_ms"] < start]
    assert len(late) == report.late == truth["totals"]["late"] == 4
    assert all(start - 6 * 3600 * 1000 <= r["event_time_ms"] for r in late)
    assert all(r["event_time_ms"] < end for r in valid)
    ids = defaultdict(int)
    for r in valid:
        if "event_id" in r:
            ids[r["event_id"]] += 1
    dups = sorted(e for e, n in ids.items() if n > 1)
    assert dups == truth["duplicates"]["event_ids"] and len(dups) == report.duplicates == 6
    assert all(ids[e] == 2 for e in dups)
    assert sum(1 for r in valid if "event_id" not in r) == report.missing_event_id > 0
    spellings = {
        type(r["event_time"]).__name__ + (r["event_time"][-1] if isinstance(r["event_time"], str) else "")
        for r in valid
    }
    assert {"int", "strZ"} <= spellings and any(s.startswith("str") and s != "strZ" for s in spellings)
    assert {len(str(r["event_time"])) for r in valid if isinstance(r["event_time"], int)} == {10, 13}
    assert sorted(f for f in {"logs", "events", "transactions"}) == sorted(truth["totals"]["by_source"])
    for r in valid:
        if r["event_type"] == "transaction":
            assert r["amount"] > 0 and r["currency"] and r["merchant_id"]


def test_rings_households_and_labels_match_the_data(demo):
    report, truth, records = demo
    valid = [r for _, _, r in records if r is not None]
    users = {r["user_id"] for r in valid}
    assert len(users) == truth["expected"]["users"] == report.users == 60
    rings = truth["rings"]
    assert sorted(r["shape"] for r in rings.values()) == sorted(
        ["chain", "shared_device", "shared_fingerprint_block", "signup_burst", "velocity"]
    )
    by_user = defaultdict(list)
    for r in valid:
        by_user[r["user_id"]].append(r)
    for ring in rings.values():
        assert 5 <= len(ring["members"]) <= 40 and set(ring["members"]) <= users
        if ring["shape"] in ("shared_device", "shared_fingerprint_block", "signup_burst"):
            assert all(any(e["event_type"] == "signup" for e in by_user[u]) for u in ring["members"])
        if ring["shape"] == "shared_device":
            assert ring["sleepers"]
            for u in ring["members"]:
                assert {e["device_id"] for e in by_user[u]} <= set(ring["devices"])
        if ring["shape"] == "shared_fingerprint_block":
            block = ring["ip_block"].rsplit(".", 1)[0] + "."
            for u in ring["members"]:
                assert {e["browser_fingerprint"] for e in by_user[u]} == set(ring["fingerprints"])
                assert all(e["ip"].startswith(block) for e in by_user[u])
        if ring["shape"] == "velocity":
            tx_counts = [sum(e["event_type"] == "transaction" for e in by_user[u]) for u in ring["members"]]
            assert min(tx_counts) >= 8
    assert truth["households"]
    for house in truth["households"]:
        assert 2 <= len(house["members"]) <= 4
        for u in house["members"]:
            assert house["device_id"] in {e["device_id"] for e in by_user[u]}
            assert not any(e["event_type"] == "signup" for e in by_user[u])

    lines = (report.root / "labels" / "labels.csv").read_text().splitlines()
    assert lines[0] == "user_id,label"
    labels = dict(line.split(",") for line in lines[1:])
    assert len(labels) == len(lines) - 1 == report.labels == truth["labels"]["rows"]
    assert set(labels.values()) == {"fraud", "legit"} and set(labels) <= users
    members = {u for ring in rings.values() for u in ring["members"]}
    assert {u for u, lab in labels.items() if lab == "fraud"} == set(labels) & members
    assert 0.2 <= len(labels) / len(users) <= 0.5


def test_same_arguments_give_identical_bytes_and_a_new_seed_differs(tmp_path, demo):
    report, _, _ = demo
    again = _generate(tmp_path / "a")
    other = _generate(tmp_path / "b", seed=8)

    def snapshot(rep):
        files = {p.relative_to(rep.root).as_posix(): p.read_bytes() for p in rep.files}
        return files, rep.truth_path.read_bytes()

    assert snapshot(again) == snapshot(report)
    assert snapshot(other)[0] != snapshot(report)[0]


def test_field_map_is_applied_for_syncbank(tmp_path):
    report = _generate(tmp_path, client="syncbank", events=1000)
    keys = set()
    for path in report.files:
        if path.parent.name == "labels":
            continue
        text = _text(path)
        if ".csv" in path.name:
            keys |= set(text.split("\n", 1)[0].split(","))
        else:
            for line in text.splitlines():
                try:
                    keys |= set(json.loads(line))
                except json.JSONDecodeError:
                    pass
    assert {"customer_id", "ts", "action"} <= keys
    assert not {"user_id", "event_time", "event_type"} & keys
    assert keys <= set(CANONICAL_FIELDS) | {"customer_id", "ts", "action"}
    fm = get_client("syncbank").field_map
    assert sum(1 for _, _, r in _strict_read(report.root, fm) if r is None) == report.malformed == 10


def test_carrier_ips_are_super_nodes_at_20000_events(tmp_path):
    report = _generate(tmp_path, events=20000, malformed_rate=0.0)
    truth = json.loads(report.truth_path.read_text())
    assert report.malformed == 0
    start = truth["day_window_ms"][0]
    users_by_ip = defaultdict(set)
    for _, _, r in _strict_read(report.root, {}):
        assert r is not None
        if r["event_time_ms"] >= start:
            users_by_ip[r["ip"]].add(r["user_id"])
    carrier = truth["carrier_nat"]
    assert len(carrier["ips"]) >= 2
    for ip in carrier["ips"]:
        assert len(users_by_ip[ip]) == carrier["users_per_ip"][ip] > 50
    # Only the carrier addresses are super-nodes: a ring proxy or a household stays below the threshold.
    assert max(len(u) for ip, u in users_by_ip.items() if ip not in carrier["ips"]) <= 40


def test_cli_writes_into_a_local_object_store_root(tmp_path, capsys):
    rc = main(
        [
            "--client",
            "demo",
            "--date",
            "2025-11-21",
            "--events",
            "1000",
            "--seed",
            "3",
            "--quiet",
            "--objectstore-root",
            str(tmp_path / "os"),
            "--truth-dir",
            str(tmp_path / "truth"),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "Generated 1,000 records for demo 2025-11-21" in out and "malformed" in out
    root = tmp_path / "os" / "demo-bucket" / "rawdata" / "demo" / "2025-11-21"
    assert (root / "labels" / "labels.csv").is_file() and len(list((root / "logs").iterdir())) == 8
    assert (tmp_path / "truth" / "demo" / "2025-11-21" / "truth.json").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--client", "nosuch", "--date", "2025-11-21"], "unknown client 'nosuch'"),
        (["--client", "demo", "--date", "2025-11-31"], "invalid date '2025-11-31'"),
        (["--client", "demo", "--date", "21-11-2025"], "invalid date '21-11-2025'"),
    ],
)
def test_cli_rejects_bad_client_or_date_with_exit_2(tmp_path, capsys, argv, message):
    assert main(argv + ["--quiet", "--out", str(tmp_path / "o"), "--truth-dir", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fraudbatch-datagen: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_upload_puts_every_file_under_its_rawdata_key(tmp_path):
    report = _generate(tmp_path, events=1000)

    class Store:
        def __init__(self) -> None:
            self.puts: list[tuple[str, str, bytes]] = []

        def put_file(self, bucket: str, key: str, path: Path) -> None:
            self.puts.append((bucket, key, Path(path).read_bytes()))

    store = Store()
    assert upload_client_day(report, "demo-bucket", store) == 25
    keys = sorted(k for _, k, _ in store.puts)
    assert keys[0] == "rawdata/demo/2025-11-21/events/part-0000.jsonl"
    assert "rawdata/demo/2025-11-21/labels/labels.csv" in keys
    assert {b for b, _, _ in store.puts} == {"demo-bucket"}
    assert all(data == (tmp_path / "out" / key).read_bytes() for _, key, data in store.puts)
