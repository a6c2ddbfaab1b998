"""The FP service over real HTTP on loopback, driven by the real FPClient."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import uvicorn

from featureplatform.api import create_app
from featureplatform.service import TTLCache
from featureplatform.settings import FPSettings
from fp_ferry.client import FPClient, FPError
from fp_ferry.ferry import ferry_batches


def edge(
    user: str, node: str, events: int, first: int, last: int, users: int, is_super: bool = False
) -> dict:
    return {
        "user_id": user,
        "node_id": node,
        "node_type": node.split(":", 1)[0],
        "events": events,
        "first_ms": first,
        "last_ms": last,
        "node_users": users,
        "is_super": is_super,
    }


# Three users; ip:1.1.1.1 is a super node (3 users over a threshold of 2).
BATCH_A = [
    edge("u1", "device:d1", 3, 1000, 5000, 2),
    edge("u1", "device:d2", 2, 2000, 3000, 1),
    edge("u1", "ip:1.1.1.1", 4, 1000, 6000, 3, True),
    edge("u1", "email_domain:x.com", 1, 1500, 1500, 1),
    edge("u2", "device:d1", 1, 7000, 7000, 2),
]
BATCH_B = [
    edge("u2", "ip:1.1.1.1", 2, 6500, 8000, 3, True),
    edge("u2", "fingerprint:f1", 5, 6000, 9000, 2),
    edge("u3", "ip:1.1.1.1", 1, 10000, 10000, 3, True),
    edge("u3", "ip:2.2.2.2", 2, 9000, 11000, 1),
    edge("u3", "fingerprint:f1", 3, 9500, 12000, 2),
]

EXPECTED = {
    "u1": {
        "connected_devices": 2,
        "shared_attributes": 1,
        "ip_count": 1,
        "fingerprint_count": 0,
        "max_node_users": 2,
        "super_node_links": 1,
        "nodes": 4,
        "events": 10,
        "first_seen_ms": 1000,
        "last_seen_ms": 6000,
    },
    "u2": {
        "connected_devices": 1,
        "shared_attributes": 2,
        "ip_count": 1,
        "fingerprint_count": 1,
        "max_node_users": 2,
        "super_node_links": 1,
        "nodes": 3,
        "events": 8,
        "first_seen_ms": 6000,
        "last_seen_ms": 9000,
    },
    "u3": {
        "connected_devices": 0,
        "shared_attributes": 1,
        "ip_count": 2,
        "fingerprint_count": 1,
        "max_node_users": 2,
        "super_node_links": 1,
        "nodes": 3,
        "events": 6,
        "first_seen_ms": 9000,
        "last_seen_ms": 12000,
    },
    "ip:1.1.1.1": {"node_type": "ip", "users": 3, "events": 7, "is_super": True},
    "device:d1": {"node_type": "device", "users": 2, "events": 4, "is_super": False},
    "fingerprint:f1": {"node_type": "fingerprint", "users": 2, "events": 8, "is_super": False},
}


@contextlib.contextmanager
def running_fp(db: Path, **overrides: object) -> Iterator[str]:
    """Serve a fresh FP app on a free loopback port in a background thread; yield its base URL."""
    app = create_app(FPSettings(db_path=db, **overrides))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "FP server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def fp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    db = tmp_path_factory.mktemp("fp") / "features.sqlite"
    with running_fp(db, batch_size_max=20, realtime_max_records=10) as url:
        yield url


@pytest.fixture()
def fp(fp_url: str) -> FPClient:
    return FPClient(fp_url, attempts=1)


def features_of(fp: FPClient, client: str, entity: str) -> dict:
    doc = fp.features(client, entity)
    assert doc is not None, f"no features for {entity}"
    return doc["features"]


def test_batch_ingest_then_exact_features(fp: FPClient) -> None:
    first = fp.push_batch("acme", "acme-b1", BATCH_A)
    assert first["status"] == "applied" and first["duplicate"] is False and first["records"] == 5
    fp.push_batch("acme", "acme-b2", BATCH_B)
    for entity, expected in EXPECTED.items():
        assert features_of(fp, "acme", entity) == expected, entity
    doc = fp.features("acme", "u2")
    assert doc["entity_type"] == "user" and doc["source"] == "batch" and doc["updated_at"].endswith("Z")
    status = fp.batch_status("acme", "acme-b2")
    assert status["status"] == "applied" and status["records"] == 5
    assert fp.batch_status("acme", "never-sent") is None


def test_batches_combine_per_user_in_any_order(fp: FPClient) -> None:
    # Same edges as above, u1's split over two batches and sent in reverse order.
    fp.push_batch("orderco", "o-1", BATCH_B + BATCH_A[2:])
    fp.push_batch("orderco", "o-2", BATCH_A[:2])
    for entity, expected in EXPECTED.items():
        assert features_of(fp, "orderco", entity) == expected, entity


def test_same_batch_id_is_applied_once(fp: FPClient) -> None:
    first = fp.push_batch("idem", "idem-b1", BATCH_A)
    before = features_of(fp, "idem", "u1")
    again = fp.push_batch("idem", "idem-b1", BATCH_A)
    assert again["duplicate"] is True
    assert {k: again[k] for k in ("batch_id", "status", "records", "edges")} == {
        k: first[k] for k in ("batch_id", "status", "records", "edges")
    }
    # Re-sent edges under a new id do not double-count either: edges merge, they do not add.
    fp.push_batch("idem", "idem-b1-copy", BATCH_A)
    assert features_of(fp, "idem", "u1") == before == EXPECTED["u1"]
    assert features_of(fp, "idem", "device:d1")["events"] == 4


def test_oversize_batch_is_413_with_message(fp: FPClient) -> None:
    records = [edge(f"u{i:02d}", "device:d", 1, 1, 2, 21) for i in range(21)]
    with pytest.raises(FPError) as err:
        fp.push_batch("big", "big-b1", records)
    assert err.value.status == 413 and "limit is 20" in err.value.message
    assert fp.batch_status("big", "big-b1") is None
    with pytest.raises(FPError) as err:
        fp.push_realtime("big", records[:11])
    assert err.value.status == 413


def test_unknown_entity_is_json_404(fp: FPClient, fp_url: str) -> None:
    assert fp.features("acme", "nobody") is None
    resp = requests.get(f"{fp_url}/fp/v1/features/acme/nobody", timeout=5)
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("application/json")
    assert "nobody" in resp.json()["error"]


def test_invalid_body_and_client_are_json_errors(fp: FPClient) -> None:
    bad = dict(BATCH_A[0])
    del bad["last_ms"]
    with pytest.raises(FPError) as err:
        fp.push_batch("acme", "bad-1", [bad])
    assert err.value.status == 422 and "last_ms" in err.value.message
    with pytest.raises(FPError) as err:
        fp.push_batch("Not A Client", "bad-2", BATCH_A)
    assert err.value.status == 422 and "invalid client" in err.value.message


def test_realtime_ingest_and_cache_invalidation(fp: FPClient) -> None:
    answer = fp.push_realtime("live", BATCH_B)
    assert answer["records"] == 5 and answer["users"] == 2 and answer["elapsed_ms"] >= 0
    assert fp.features("live", "u3")["source"] == "realtime"
    assert features_of(fp, "live", "u3") == EXPECTED["u3"]  # now cached
    # A node id with a slash travels escaped and still addresses one entity.
    fp.push_realtime("live", [edge("u3", "device:a/b", 1, 20000, 20000, 1)])
    after = features_of(fp, "live", "u3")
    assert after["connected_devices"] == 1 and after["last_seen_ms"] == 20000 and after["nodes"] == 4
    assert features_of(fp, "live", "device:a/b")["users"] == 1


def test_metrics_count_ingest_reads_and_cache_hits(tmp_path: Path) -> None:
    with running_fp(tmp_path / "m.sqlite") as url:
        fp = FPClient(url, attempts=1)
        fp.push_batch("acme", "m-1", BATCH_A)
        fp.push_batch("acme", "m-1", BATCH_A)
        fp.push_realtime("acme", BATCH_B[:2])
        fp.features("acme", "u1")
        fp.features("acme", "u1")
        fp.features("acme", "ghost")
        m = fp.metrics()
        assert fp.health()["status"] == "ok"
        spec = requests.get(f"{url}/openapi.json", timeout=5).json()
    assert m["records_ingested"] == 7 and m["batch_records"] == 5 and m["realtime_records"] == 2
    assert m["batches_applied"] == 1 and m["batches_duplicate"] == 1 and m["realtime_requests"] == 1
    assert m["feature_reads"] == 3 and m["cache_hits"] == 1 and m["cache_misses"] == 2
    assert m["features_not_found"] == 1
    assert m["stored"]["batches"] == 1 and m["stored"]["contributions"] == 7
    assert spec["info"]["title"] == "Feature Platform" and spec["info"]["version"]
    assert "/fp/v1/ingest/batch" in spec["paths"]


def test_ferry_rerun_applies_nothing_twice(fp: FPClient) -> None:
    records = sorted(BATCH_A + BATCH_B, key=lambda r: (r["user_id"], r["node_id"]))
    first = ferry_batches(fp, "ferryco", "2024-05-01", records, batch_size=4)
    rerun = ferry_batches(fp, "ferryco", "2024-05-01", records, batch_size=4)
    assert (first.batches, first.records, first.duplicates) == (3, 10, 0)
    assert (rerun.batches, rerun.records, rerun.duplicates) == (3, 10, 3)
    for entity, expected in EXPECTED.items():
        assert features_of(fp, "ferryco", entity) == expected, entity


def test_ttl_cache_expires_and_ignores_stale_loads() -> None:
    now = [0.0]
    cache = TTLCache(60, clock=lambda: now[0])
    cache.put(("c", "e"), {"v": 1})
    now[0] = 59.9
    assert cache.get(("c", "e")) == {"v": 1}
    now[0] = 60.0
    assert cache.get(("c", "e")) is None
    epoch = cache.epoch
    cache.invalidate([("c", "other")])
    cache.put(("c", "e"), {"v": "stale"}, epoch)
    assert cache.get(("c", "e")) is None


def test_feature_reads_are_audited_and_setting_changes_recorded(tmp_path: Path) -> None:
    db = tmp_path / "features.sqlite"
    audit = tmp_path / "audit.jsonl"
    with running_fp(db) as url:
        FPClient(url, attempts=1).push_batch("acme", "acme-b1", BATCH_A)
        assert requests.get(f"{url}/fp/v1/features/acme/u1", headers={"X-Actor": "risk-api"}, timeout=5).ok
        assert requests.get(f"{url}/fp/v1/features/acme/nobody", timeout=5).status_code == 404
    with running_fp(db, cache_ttl_seconds=30.0) as url:  # restarted with one setting changed
        assert requests.get(f"{url}/fp/v1/health", timeout=5).ok
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [
        (e["action"], e["actor"], e["target"], e["detail"]) for e in entries if e["action"] == "data_access"
    ] == [
        ("data_access", "risk-api", "acme/u1", {"found": True, "entity_type": "user"}),
        ("data_access", "anonymous", "acme/nobody", {"found": False, "status": 404}),
    ]
    changes = [e for e in entries if e["action"] == "config_change"]
    assert [c["detail"]["first_start"] for c in changes] == [True, False]
    assert changes[0]["detail"]["added"]["batch_size_max"] == 10000
    assert changes[1]["detail"]["changed"] == {"cache_ttl_seconds": {"from": 60.0, "to": 30.0}}
