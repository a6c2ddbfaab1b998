"""Ferry logic and the FP client, without a server: batching, windows, Parquet input, retries."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from fp_ferry.client import FPClient, FPError, FPUnavailable
from fp_ferry.ferry import (
    batch_id_for,
    ferry_batches,
    ferry_realtime,
    load_virtual_node_records,
    recent_window,
)
from tests.support.stages import VIRTUAL_EDGES, VIRTUAL_NODES


def rec(i: int, last_ms: int = 0) -> dict:
    return {
        "user_id": f"u{i:03d}",
        "node_id": f"device:d{i}",
        "node_type": "device",
        "events": 1,
        "first_ms": last_ms,
        "last_ms": last_ms,
        "node_users": 1,
        "is_super": False,
    }


class FakeFP:
    """Remembers batch ids like the service does, so a second push answers duplicate."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, int]] = []
        self.realtime: list[int] = []
        self._seen: set[str] = set()

    def push_batch(self, client: str, batch_id: str, records: list[dict]) -> dict:
        self.batches.append((batch_id, len(records)))
        duplicate = batch_id in self._seen
        self._seen.add(batch_id)
        return {"batch_id": batch_id, "status": "applied", "records": len(records), "duplicate": duplicate}

    def push_realtime(self, client: str, records: list[dict]) -> dict:
        self.realtime.append(len(records))
        return {"records": len(records)}


def test_ferry_batches_splits_and_ids_are_deterministic() -> None:
    records = [rec(i) for i in range(25)]
    fake = FakeFP()
    seen: list[tuple[int, int, int]] = []
    report = ferry_batches(
        fake, "acme", dt.date(2024, 5, 1), records, batch_size=10, progress=lambda *a: seen.append(a)
    )
    assert [n for _, n in fake.batches] == [10, 10, 5]
    assert (report.mode, report.batches, report.records, report.duplicates) == ("batch", 3, 25, 0)
    assert seen == [(1, 3, 10), (2, 3, 20), (3, 3, 25)]
    ids = [b for b, _ in fake.batches]
    assert ids[0].startswith("acme-2024-05-01-b00000-") and ids[2].startswith("acme-2024-05-01-b00002-")
    assert len(set(ids)) == 3
    rerun = ferry_batches(fake, "acme", "2024-05-01", records, batch_size=10)
    assert [b for b, _ in fake.batches[3:]] == ids
    assert rerun.duplicates == 3 and json.loads(json.dumps(rerun.to_dict()))["duplicates"] == 3


def test_batch_id_depends_on_client_date_index_and_keys() -> None:
    recs = [rec(1), rec(2)]
    base = batch_id_for("acme", "2024-05-01", 0, recs)
    assert base == batch_id_for("acme", dt.date(2024, 5, 1), 0, [dict(r) for r in recs])
    assert len(base.rsplit("-", 1)[1]) == 10
    variants = {
        batch_id_for("beta", "2024-05-01", 0, recs),
        batch_id_for("acme", "2024-05-02", 0, recs),
        batch_id_for("acme", "2024-05-01", 1, recs),
        batch_id_for("acme", "2024-05-01", 0, recs[:1]),
    }
    assert base not in variants and len(variants) == 4


def test_empty_input_sends_nothing() -> None:
    fake = FakeFP()
    assert ferry_batches(fake, "acme", "2024-05-01", [], batch_size=10).batches == 0
    assert ferry_realtime(fake, "acme", []).batches == 0
    assert fake.batches == [] and fake.realtime == [] and recent_window([]) == []


def test_recent_window_is_anchored_on_newest_record() -> None:
    newest = 10_000_000
    records = [
        rec(0, newest - 3_600_001),
        rec(1, newest - 3_600_000),
        rec(2, newest - 60_000),
        rec(3, newest),
    ]
    assert [r["user_id"] for r in recent_window(records, 60)] == ["u001", "u002", "u003"]
    assert [r["user_id"] for r in recent_window(records, 1)] == ["u002", "u003"]
    assert [r["user_id"] for r in recent_window(records, 0)] == ["u003"]


def test_ferry_realtime_chunks() -> None:
    fake = FakeFP()
    report = ferry_realtime(fake, "acme", [rec(i) for i in range(1201)], chunk=500)
    assert fake.realtime == [500, 500, 201]
    assert (report.mode, report.batches, report.records) == ("realtime", 3, 1201)


def write_stage(stage: Path, nodes: list[dict], edges: list[dict]) -> None:
    """A virtual_nodes stage as Spark leaves it: part files, _SUCCESS, hidden .crc files."""
    for name, rows, schema in (("nodes", nodes, VIRTUAL_NODES), ("edges", edges, VIRTUAL_EDGES)):
        folder = stage / name
        folder.mkdir(parents=True)
        half = len(rows) // 2
        for part, chunk in enumerate((rows[:half], rows[half:])):
            pq.write_table(
                pa.Table.from_pylist(chunk, schema=schema), folder / f"part-0000{part}.snappy.parquet"
            )
        (folder / "_SUCCESS").write_text("")
        (folder / ".part-00000.snappy.parquet.crc").write_bytes(b"\x00")


def _node(node_id: str, users: int, events: int, is_super: bool) -> dict:
    node_type, _, value = node_id.partition(":")
    row = {"node_id": node_id, "node_type": node_type, "node_value": value}
    return {**row, "users": users, "events": events, "is_super": is_super}


def _edge(user_id: str, node_id: str, events: int, first_ms: int, last_ms: int) -> dict:
    row = {"user_id": user_id, "node_id": node_id, "node_type": node_id.partition(":")[0]}
    return {**row, "events": events, "first_ms": first_ms, "last_ms": last_ms}


def test_load_virtual_node_records_joins_and_sorts(tmp_path: Path) -> None:
    nodes = [_node("ip:1.1.1.1", 3, 9, True), _node("device:d1", 2, 4, False)]
    edges = [
        _edge("u2", "device:d1", 1, 5, 6),
        _edge("u1", "ip:1.1.1.1", 4, 1, 9),
        _edge("u1", "device:d1", 3, 2, 3),
    ]
    write_stage(tmp_path / "virtual_nodes", nodes, edges)
    assert load_virtual_node_records(tmp_path / "virtual_nodes") == [
        {**_edge("u1", "device:d1", 3, 2, 3), "node_users": 2, "is_super": False},
        {**_edge("u1", "ip:1.1.1.1", 4, 1, 9), "node_users": 3, "is_super": True},
        {**_edge("u2", "device:d1", 1, 5, 6), "node_users": 2, "is_super": False},
    ]


def test_load_virtual_node_records_refuses_dangling_edges(tmp_path: Path) -> None:
    write_stage(tmp_path / "vn", [], [_edge("u1", "ip:9.9.9.9", 1, 1, 1)] * 2)
    with pytest.raises(ValueError, match="ip:9.9.9.9"):
        load_virtual_node_records(tmp_path / "vn")
    with pytest.raises(FileNotFoundError):
        load_virtual_node_records(tmp_path / "missing")


class FailingSession:
    """A session whose first `failures` requests cannot connect; then answers `response`."""

    def __init__(self, failures: int, response: requests.Response | None = None) -> None:
        self.failures = failures
        self.response = response
        self.calls: list[tuple[str, str]] = []

    def request(self, method: str, url: str, **kwargs: object) -> requests.Response:
        self.calls.append((method, url))
        if len(self.calls) <= self.failures:
            raise requests.ConnectionError("connection refused")
        assert self.response is not None
        return self.response


def response(status: int, body: object) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp._content = json.dumps(body).encode()
    resp.headers["Content-Type"] = "application/json"
    return resp


def test_client_retries_then_raises_unavailable() -> None:
    session = FailingSession(failures=99)
    sleeps: list[float] = []
    fp = FPClient("http://fp.test:8092/", session=session, attempts=4, backoff_s=0.5, sleep=sleeps.append)
    with pytest.raises(FPUnavailable) as err:
        fp.push_batch("acme", "b1", [])
    assert len(session.calls) == 4 and sleeps == [0.5, 1.0, 2.0]
    assert session.calls[0] == ("POST", "http://fp.test:8092/fp/v1/ingest/batch")
    message = str(err.value)
    assert "http://fp.test:8092 is unreachable" in message and "fp-server" in message
    assert "[fp] url in luigi.cfg" in message


def test_client_recovers_after_transient_failures() -> None:
    session = FailingSession(failures=2, response=response(200, {"status": "ok"}))
    fp = FPClient("http://fp.test", session=session, attempts=4, sleep=lambda _: None)
    assert fp.health() == {"status": "ok"} and len(session.calls) == 3


def test_client_maps_http_errors_and_404() -> None:
    fp = FPClient("http://fp.test", session=FailingSession(0, response(413, {"error": "limit is 10000"})))
    with pytest.raises(FPError) as err:
        fp.push_batch("acme", "b1", [])
    assert err.value.status == 413 and err.value.message == "limit is 10000"
    assert not isinstance(err.value, FPUnavailable)
    missing = FailingSession(0, response(404, {"error": "no features"}))
    assert FPClient("http://fp.test", session=missing).features("acme", "ip:1.2.3.4/24") is None
    assert missing.calls == [("GET", "http://fp.test/fp/v1/features/acme/ip%3A1.2.3.4%2F24")]
    with pytest.raises(FPError) as err:
        FPClient("http://fp.test", session=FailingSession(0, response(500, {"error": "boom"}))).batch_status(
            "a", "b"
        )
    assert err.value.status == 500
