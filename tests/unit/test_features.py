"""Plain tests (no Spark) of virtual-node values, DFE features and user statistics."""

from __future__ import annotations

import datetime as dt
import ipaddress
import math

import pytest

from fraudcore.features import (
    FEATURE_NAMES,
    USER_STATS_FIELDS,
    device_changes,
    event_hour,
    max_in_window,
    user_features,
    user_stats,
)
from fraudcore.graph import NODE_TYPES, event_nodes, ip_block, is_super, node_id, normalize_ip

DAY0 = int(dt.datetime(2024, 3, 5, tzinfo=dt.UTC).timestamp() * 1000)
MIN = 60_000


def t(h: int, m: int = 0, ms: int = 0) -> int:
    return DAY0 + h * 3_600_000 + m * MIN + ms


def ev(n: int, etype: str, when: int, **kw: object) -> dict:
    return {"event_id": f"e{n:02d}", "user_id": "u1", "event_time_ms": when, "event_type": etype, **kw}


# ---------------------------------------------------------------- graph


def test_node_types_and_ids() -> None:
    assert NODE_TYPES == ("device", "ip", "ip_block", "fingerprint", "phone", "email_domain")
    assert node_id("ip_block", "10.0.0.0/24") == "ip_block:10.0.0.0/24"
    assert is_super(3, 2) and not is_super(2, 2)


def test_event_nodes_normalises_and_skips_nulls() -> None:
    event = {
        "device_id": " Dev-1 ",
        "ip": "10.1.2.3",
        "browser_fingerprint": "AbC",
        "phone": "+1 (555) 010-0100",
        "email_domain": "@Example.COM.",
        "user_agent": "x",
    }
    assert event_nodes(event) == [
        ("device", "dev-1"),
        ("ip", "10.1.2.3"),
        ("ip_block", "10.1.2.0/24"),
        ("fingerprint", "abc"),
        ("phone", "15550100100"),
        ("email_domain", "example.com"),
    ]
    assert event_nodes({"device_id": None, "ip": "  ", "phone": "n/a", "email_domain": ""}) == []


def test_event_nodes_ipv6() -> None:
    assert event_nodes({"ip": "2001:DB8:0:0:1::2"}) == [
        ("ip", "2001:db8:0:0:1::2"),
        ("ip_block", "2001:db8::/64"),
    ]


@pytest.mark.parametrize(
    "ip",
    [
        "10.0.0.1",
        "255.255.255.255",
        "0.0.0.0",
        "::",
        "::1",
        "2001:db8::1",
        "2001:0DB8:0000:00a0::1",
        "1:0:0:1::",
        "1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7::",
        "::ffff:1.2.3.4",
        "fe80::1%eth0",
    ],
)
def test_ip_block_matches_ipaddress(ip: str) -> None:
    value = normalize_ip(ip)
    assert value is not None
    prefix = 64 if ":" in ip else 24
    assert ip_block(value) == str(ipaddress.ip_network(f"{ip.split('%')[0]}/{prefix}", strict=False))


@pytest.mark.parametrize(
    "ip",
    [
        "unknown",
        "-",
        "256.1.1.1",
        "01.2.3.4",
        "1.2.3",
        "1:2:3:4:5:6:7:8:9",
        "1::2::3",
        ":::",
        ":1:2:3:4:5:6:7",
        "12345::",
        "g::1",
        "::ff1.2.3.4",
    ],
)
def test_invalid_ips_make_no_node(ip: str) -> None:
    assert normalize_ip(ip) is None
    assert event_nodes({"ip": ip}) == []


# ---------------------------------------------------------------- features

EVENTS = [
    ev(1, "signup", t(0, 30), device_id="D1", ip="10.0.0.1", browser_fingerprint="F1"),
    ev(2, "login", t(1), device_id="d1", ip="10.0.0.1"),
    ev(3, "login_failed", t(1, 5), device_id="D2"),
    ev(4, "login", t(3, 10), device_id="D2", ip="10.0.0.2"),
    ev(5, "transaction", t(3, 20), device_id="D1", amount=10.0),
    ev(6, "transaction", t(3, 29, 59_999), amount=30.0),
    ev(7, "transaction", t(3, 30), amount=None),  # exactly 10 min after e05: a new window
    ev(8, "login", t(12), device_id="d1", browser_fingerprint="f1"),
    ev(9, "transaction", t(12, 5), amount=20.0),
    ev(10, "page_view", t(12, 10), device_id="D3"),
]
GRAPH = {"connected_devices": 5, "shared_attributes": 2, "graph_centrality": 4, "super_node_links": 1}


def test_feature_names_sorted_and_complete() -> None:
    assert FEATURE_NAMES == tuple(sorted(FEATURE_NAMES))
    assert len(FEATURE_NAMES) == 21


def test_user_features_exact() -> None:
    # Input order must not matter: reverse it.
    got = user_features(list(reversed(EVENTS)), GRAPH, DAY0)
    assert tuple(got) == FEATURE_NAMES
    expected = {
        "account_events": 10.0,
        "active_hours": 4.0,  # hours 0, 1, 3, 12
        "connected_devices": 5.0,
        "device_changes": 3.0,  # d1 d1 d2 d2 d1 d1 d3
        "distinct_devices": 3.0,
        "distinct_fingerprints": 1.0,  # F1 == f1
        "distinct_ips": 2.0,
        "graph_centrality": 4.0,
        "is_new_account": 1.0,
        "login_failed_ratio": 0.25,  # 1 failed / (3 + 1)
        "login_frequency": 0.75,  # 3 logins / 4 active hours
        "login_pattern_hour_entropy": math.log2(3),  # logins at 01, 03, 12
        "login_pattern_night_share": 2 / 3,
        "shared_attributes": 2.0,
        "spending_pattern_cv": math.sqrt(200 / 3) / 20,  # amounts 10, 30, 20
        "super_node_links": 1.0,
        "transaction_amount_max": 30.0,
        "transaction_amount_mean": 20.0,
        "transaction_amount_total": 60.0,
        "transaction_count": 4.0,
        "transaction_velocity": 2.0,
    }
    assert got == pytest.approx(expected, rel=1e-12)
    assert all(isinstance(v, float) for v in got.values())


def test_user_features_quiet_user_is_all_zero_but_counts() -> None:
    got = user_features([ev(1, "page_view", t(5))], {}, DAY0)
    nonzero = {k: v for k, v in got.items() if v}
    assert nonzero == {"account_events": 1.0, "active_hours": 1.0}


def test_user_features_always_finite() -> None:
    events = [
        ev(1, "transaction", t(1), amount=1e308),
        ev(2, "transaction", t(2), amount=1e308),
        ev(3, "transaction", t(3), amount=float("nan")),
        ev(4, "transaction", t(4), amount="x"),
    ]
    got = user_features(events, {"graph_centrality": float("inf")}, DAY0)
    assert all(math.isfinite(v) for v in got.values())
    assert got["transaction_count"] == 4.0
    assert got["transaction_amount_max"] == 1e308
    assert got["graph_centrality"] == 0.0


def test_hour_field_wins_over_time() -> None:
    # The organizer's hour is client-local; it is used as given.
    e = ev(1, "login", t(10), hour=2)
    assert event_hour(e, DAY0) == 2
    assert event_hour(ev(2, "login", t(23, 59)), DAY0) == 23
    assert user_features([e], {}, DAY0)["login_pattern_night_share"] == 1.0


def test_user_stats_exact() -> None:
    got = user_stats(EVENTS, DAY0)
    assert tuple(got) == USER_STATS_FIELDS
    assert got == {
        "user_id": "u1",
        "events": 10,
        "logins": 3,
        "failed_logins": 1,
        "transactions": 4,
        "amount_total": 60.0,
        "amount_max": 30.0,
        "distinct_devices": 3,
        "distinct_ips": 2,
        "distinct_fingerprints": 1,
        "first_ms": t(0, 30),
        "last_ms": t(12, 10),
        "active_hours": 4,
        "night_share": pytest.approx(2 / 3),
        "is_new_account": True,
        "max_tx_per_10min": 2,
    }
    with pytest.raises(ValueError):
        user_stats([])


def test_device_changes() -> None:
    assert device_changes([]) == 0
    assert device_changes([ev(1, "login", t(1), device_id="A")]) == 0
    a_b_a = [
        ev(3, "login", t(3), device_id="a"),
        ev(1, "login", t(1), device_id="A"),
        ev(2, "login", t(2), device_id="B"),
    ]
    assert device_changes(a_b_a) == 2
    # Same timestamp: event_id orders them, so the count is stable across input orders.
    tie = [
        ev(2, "login", t(1), device_id="B"),
        ev(1, "login", t(1), device_id="A"),
        ev(3, "login", t(2), device_id="A"),
    ]
    assert device_changes(tie) == device_changes(list(reversed(tie))) == 2


@pytest.mark.parametrize(
    ("offsets_ms", "expected"),
    [
        ([], 0),
        ([0], 1),
        ([0, 600_000], 1),  # exactly 10 minutes apart: different windows
        ([0, 599_999], 2),
        ([0, 0, 0], 3),  # identical times
        ([0, 300_000, 599_999, 600_000, 900_000], 3),
        ([900_000, 0, 300_000], 2),  # unsorted input
    ],
)
def test_velocity_window_edges(offsets_ms: list[int], expected: int) -> None:
    assert max_in_window([DAY0 + o for o in offsets_ms]) == expected
