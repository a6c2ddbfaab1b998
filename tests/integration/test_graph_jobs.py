"""Spark tests of the graph jobs: virtual_nodes, rawlogconverter and user_stats on a tiny client-day."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from pathlib import Path

import pytest

from fraudcore.features import FEATURE_NAMES, USER_STATS_FIELDS
from fraudcore.graph import event_nodes, node_id
from fraudcore.ingest import EVENT_FIELDS
from jobs.common import read_parquet_rows

pytestmark = pytest.mark.spark

CLIENT = "ringco"
DATE = "2024-03-05"
DAY0 = int(dt.datetime(2024, 3, 5, tzinfo=dt.UTC).timestamp() * 1000)
THRESHOLD = 2


def t(h: int, m: int = 0) -> int:
    return DAY0 + h * 3_600_000 + m * 60_000


def _event(n: int, user: str, etype: str, when: int, **kw: object) -> dict:
    row = dict.fromkeys(EVENT_FIELDS)
    row.update(
        event_id=f"e{n:02d}",
        user_id=user,
        event_time_ms=when,
        event_type=etype,
        source="events",
        source_file="events/part-0.jsonl",
        **kw,
    )
    return row


# u1/u2 share a device, an IPv4 /24 and an e-mail domain; u3-u5 share an IP, its /24 and a
# domain with 3 users each (super at threshold 2); u6/u7 share an IPv6 /64; u8 has no attributes.
EVENTS = [
    _event(
        1,
        "u1",
        "signup",
        t(1),
        device_id="D1",
        ip="10.0.0.1",
        browser_fingerprint="FP1",
        email_domain="Example.com",
        phone="+1 555-0100",
    ),
    _event(2, "u1", "login", t(2), device_id="d1", ip="10.0.0.1"),
    _event(3, "u1", "transaction", t(2, 10), device_id="D1", amount=10.0, currency="USD"),
    _event(4, "u1", "transaction", t(2, 15), device_id="DSHARED", amount=30.0, currency="USD"),
    _event(
        5,
        "u2",
        "login",
        t(3),
        device_id="DSHARED",
        ip="10.0.0.2",
        browser_fingerprint="FP2",
        email_domain="example.com",
    ),
    _event(6, "u2", "transaction", t(3, 30), amount=100.0),
    _event(7, "u3", "login", t(4), device_id="D3", ip="192.168.1.9", email_domain="gmail.com"),
    _event(8, "u4", "login", t(5), device_id="D4", ip="192.168.1.9", email_domain="Gmail.com"),
    _event(9, "u5", "login", t(6), device_id="D5", ip="192.168.1.9", email_domain="gmail.com"),
    _event(10, "u6", "login", t(7), device_id="D6", ip="2001:db8::1", phone="555-0199"),
    _event(11, "u7", "login_failed", t(8), device_id="D7", ip="2001:DB8:0:0:1::2"),
    _event(12, "u8", "page_view", t(9)),
]


def _write_organized(root: Path, events: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    s, i64, f64 = pa.string(), pa.int64(), pa.float64()
    types = {"event_time_ms": i64, "amount": f64}
    schema = pa.schema([(f, types.get(f, s)) for f in EVENT_FIELDS] + [("hour", pa.int32())])
    rows = [{**e, "hour": (e["event_time_ms"] - DAY0) // 3_600_000} for e in events]
    pq.write_to_dataset(pa.Table.from_pylist(rows, schema=schema), str(root), partition_cols=["hour"])


@pytest.fixture(scope="module")
def day(spark, tmp_path_factory):
    """A warehouse with the organized events above, after running the three jobs once."""
    from jobs import rawlogconverter, user_stats, virtual_nodes

    base = tmp_path_factory.mktemp("graphjobs")
    registry = base / "clients.yaml"
    registry.write_text(
        "defaults:\n  timezone: UTC\n  super_node_threshold: 50\n"
        f"clients:\n  {CLIENT}:\n    bucket: ringco-data\n    super_node_threshold: {THRESHOLD}\n",
        encoding="utf-8",
    )
    warehouse = base / "wh"
    _write_organized(warehouse / CLIENT / DATE / "organized" / "events", EVENTS)
    argv = ["--client", CLIENT, "--date", DATE, "--warehouse", str(warehouse), "--registry", str(registry)]
    codes = {m.APP: m.main(argv) for m in (virtual_nodes, rawlogconverter, user_stats)}
    return {"root": warehouse / CLIENT / DATE, "codes": codes, "argv": argv}


def _reference_graph(events: list[dict]) -> tuple[list[dict], list[dict]]:
    """Nodes and edges recomputed in plain Python from fraudcore.graph.event_nodes."""
    edges: dict[tuple[str, str], dict] = {}
    for e in events:
        for ntype, value in event_nodes(e):
            key = (e["user_id"], node_id(ntype, value))
            cur = edges.setdefault(
                key,
                {
                    "user_id": key[0],
                    "node_id": key[1],
                    "node_type": ntype,
                    "events": 0,
                    "first_ms": e["event_time_ms"],
                    "last_ms": e["event_time_ms"],
                },
            )
            cur["events"] += 1
            cur["first_ms"] = min(cur["first_ms"], e["event_time_ms"])
            cur["last_ms"] = max(cur["last_ms"], e["event_time_ms"])
    nodes: dict[str, dict] = defaultdict(dict)
    for (_, nid), edge in sorted(edges.items()):
        n = nodes[nid] or {
            "node_id": nid,
            "node_type": edge["node_type"],
            "node_value": nid.split(":", 1)[1],
            "users": 0,
            "events": 0,
        }
        n["users"] += 1
        n["events"] += edge["events"]
        nodes[nid] = n
    out_nodes = [{**n, "is_super": n["users"] > THRESHOLD} for _, n in sorted(nodes.items())]
    return out_nodes, [edges[k] for k in sorted(edges)]


def test_jobs_succeed(day) -> None:
    assert day["codes"] == {"virtual_nodes": 0, "rawlogconverter": 0, "user_stats": 0}
    for stage in ("virtual_nodes", "dfe", "user_stats"):
        assert (day["root"] / stage / "_DONE").is_file()


def test_virtual_nodes_exact(day) -> None:
    vn = day["root"] / "virtual_nodes"
    nodes = read_parquet_rows(vn / "nodes")
    edges = read_parquet_rows(vn / "edges")
    ref_nodes, ref_edges = _reference_graph(EVENTS)
    # Written in a deterministic order, identical to the plain-Python reference.
    assert nodes == ref_nodes
    assert edges == ref_edges
    by_id = {n["node_id"]: n for n in nodes}
    assert {nid for nid, n in by_id.items() if n["is_super"]} == {
        "ip:192.168.1.9",
        "ip_block:192.168.1.0/24",
        "email_domain:gmail.com",
    }
    assert by_id["device:dshared"] == {
        "node_id": "device:dshared",
        "node_type": "device",
        "node_value": "dshared",
        "users": 2,
        "events": 2,
        "is_super": False,
    }
    assert by_id["ip_block:2001:db8::/64"]["users"] == 2
    assert by_id["device:d1"]["events"] == 3
    assert {
        "user_id": "u1",
        "node_id": "ip:10.0.0.1",
        "node_type": "ip",
        "events": 2,
        "first_ms": t(1),
        "last_ms": t(2),
    } in edges
    stats = json.loads((vn / "stats.json").read_text())
    assert stats == {
        "nodes": {"device": 7, "email_domain": 2, "fingerprint": 2, "ip": 5, "ip_block": 3, "phone": 2},
        "super_nodes": {"device": 0, "email_domain": 1, "fingerprint": 0, "ip": 1, "ip_block": 1, "phone": 0},
        "edges": 31,
        "users": 7,
        "super_node_threshold": THRESHOLD,
    }


def test_dfe_vectors(day) -> None:
    rows = read_parquet_rows(day["root"] / "dfe" / "vectors")
    assert [r["user_id"] for r in rows] == [f"u{i}" for i in range(1, 9)]
    assert all(r["window_start_ms"] == DAY0 for r in rows)
    vec = {r["user_id"]: dict(r["features"]) for r in rows}
    assert all(sorted(v) == list(FEATURE_NAMES) for v in vec.values())
    assert vec["u1"] == {
        "account_events": 4.0,
        "active_hours": 2.0,
        "connected_devices": 2.0,
        "device_changes": 1.0,
        "distinct_devices": 2.0,
        "distinct_fingerprints": 1.0,
        "distinct_ips": 1.0,
        "graph_centrality": 1.0,
        "is_new_account": 1.0,
        "login_failed_ratio": 0.0,
        "login_frequency": 0.5,
        "login_pattern_hour_entropy": 0.0,
        "login_pattern_night_share": 1.0,
        "shared_attributes": 3.0,
        "spending_pattern_cv": 0.5,
        "super_node_links": 0.0,
        "transaction_amount_max": 30.0,
        "transaction_amount_mean": 20.0,
        "transaction_amount_total": 40.0,
        "transaction_count": 2.0,
        "transaction_velocity": 2.0,
    }
    graph_part = ("connected_devices", "graph_centrality", "shared_attributes", "super_node_links")
    assert [vec["u3"][k] for k in graph_part] == [1.0, 0.0, 0.0, 3.0]
    assert [vec["u6"][k] for k in graph_part] == [2.0, 1.0, 1.0, 0.0]
    assert [vec["u8"][k] for k in graph_part] == [0.0, 0.0, 0.0, 0.0]
    stats = json.loads((day["root"] / "dfe" / "stats.json").read_text())
    assert (stats["users"], stats["features_per_vector"]) == (8, len(FEATURE_NAMES))


def test_user_stats_rows(day) -> None:
    rows = read_parquet_rows(day["root"] / "user_stats" / "stats")
    assert [r["user_id"] for r in rows] == [f"u{i}" for i in range(1, 9)]
    assert tuple(rows[0]) == USER_STATS_FIELDS
    assert rows[0] == {
        "user_id": "u1",
        "events": 4,
        "logins": 1,
        "failed_logins": 0,
        "transactions": 2,
        "amount_total": 40.0,
        "amount_max": 30.0,
        "distinct_devices": 2,
        "distinct_ips": 1,
        "distinct_fingerprints": 1,
        "first_ms": t(1),
        "last_ms": t(2, 15),
        "active_hours": 2,
        "night_share": 1.0,
        "is_new_account": True,
        "max_tx_per_10min": 2,
    }
    assert rows[7] == {
        "user_id": "u8",
        "events": 1,
        "logins": 0,
        "failed_logins": 0,
        "transactions": 0,
        "amount_total": 0.0,
        "amount_max": 0.0,
        "distinct_devices": 0,
        "distinct_ips": 0,
        "distinct_fingerprints": 0,
        "first_ms": t(9),
        "last_ms": t(9),
        "active_hours": 1,
        "night_share": 0.0,
        "is_new_account": False,
        "max_tx_per_10min": 0,
    }
    stats = json.loads((day["root"] / "user_stats" / "stats.json").read_text())
    assert stats == {
        "users": 8,
        "totals": {"events": 12, "logins": 6, "failed_logins": 1, "transactions": 3, "amount_total": 140.0},
    }


def test_spark_node_values_agree_with_reference(spark) -> None:
    from jobs.common import events_schema
    from jobs.virtual_nodes import event_node_rows

    ips = [
        "10.0.0.1",
        " 10.0.0.1\t",
        "255.255.255.255",
        "256.1.1.1",
        "01.2.3.4",
        "unknown",
        "",
        "::",
        "::1",
        "2001:DB8::1",
        "0001:0db8:0000:00a0::1",
        "1:0:0:1::",
        "1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7::",
        "1:2:3:4:5:6:7:8:9",
        "1::2::3",
        ":::",
        ":1:2:3:4:5:6:7",
        "12345::",
        "::ffff:1.2.3.4",
        "::ff1.2.3.4",
        "fe80::1%eth0",
        None,
    ]
    others = [
        ("Dev-1 ", "AbC", "+1 (555) 010-0100", "@Example.COM."),
        ("\n", " ", "n/a", "user@Mail.com"),
        (None, None, None, None),
        ("x", "\x0bFP\x0c", "12", "  "),
    ]
    events = []
    for n, ip in enumerate(ips):
        dev, fp, phone, dom = others[n % len(others)]
        events.append(
            _event(
                n,
                f"u{n:02d}",
                "login",
                t(1),
                ip=ip,
                device_id=dev,
                browser_fingerprint=fp,
                phone=phone,
                email_domain=dom,
            )
        )
    df = spark.createDataFrame([tuple(e[f] for f in EVENT_FIELDS) for e in events], events_schema())
    got = sorted((r["user_id"], r["node_type"], r["node_value"]) for r in event_node_rows(df).collect())
    want = sorted((e["user_id"], nt, v) for e in events for nt, v in event_nodes(e))
    assert got == want


def test_missing_input_fails_with_message(day, tmp_path, capsys) -> None:
    from jobs import rawlogconverter

    argv = list(day["argv"])
    argv[argv.index("--warehouse") + 1] = str(tmp_path)
    assert rawlogconverter.main(argv) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("rawlogconverter: error: FileNotFoundError: virtual nodes not found")
