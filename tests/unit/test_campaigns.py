"""Campaign detection: union-find, the linking rule, campaign ids, signals and the ring score."""

from __future__ import annotations

import pytest

from fraudcore.campaigns import (
    RING_MIN_SCORE,
    SIGNAL_WEIGHTS,
    build_campaign,
    campaign_id,
    campaign_score,
    campaign_signals,
    connected_components,
    densest_window,
    find_groups,
    is_fraud_ring,
    link_pairs,
    sort_campaigns,
)

T0 = 1_763_719_200_000  # 2025-11-21 10:00 UTC
MIN = 60_000


def member(uid: str, first_min: float, *, new: bool = False, velocity: int = 0, failed: float = 0.0) -> dict:
    """A member record: first activity (minutes after T0), sign-up, velocity, failed-login ratio."""
    return {
        "user_id": uid,
        "first_ms": T0 + int(first_min * MIN),
        "is_new_account": new,
        "transaction_velocity": float(velocity),
        "login_failed_ratio": failed,
    }


def node(kind: str, value: str, users: int) -> dict:
    return {"node_id": f"{kind}:{value}", "node_type": kind, "users": users}


# Old accounts, online at their own times of day, sharing the family tablet and home IP.
HOUSEHOLD = (
    [member("h1", -120, failed=0.1), member("h2", 180), member("h3", 420, velocity=1)],
    [
        node("device", "tab", 3),
        node("fingerprint", "tabfp", 3),
        node("ip", "68.1.2.3", 3),
        node("ip_block", "68.1.2.0/24", 3),
    ],
)

# One case per planted ring shape, shaped like the generator plants them.
RINGS = {
    # New accounts on one device farm, signing up within 40 minutes; sd5 is a sleeper.
    "shared_device": (
        [
            member(f"sd{i}", m, new=True, velocity=v, failed=f)
            for i, (m, v, f) in enumerate(
                [(0, 3, 0.0), (7, 5, 0.5), (14, 2, 0.0), (21, 4, 0.33), (28, 2, 0.5)]
            )
        ]
        + [member("sd5", 35, new=True)],
        [
            node("device", "farm", 6),
            node("fingerprint", "farmfp", 6),
            node("email_domain", "mailinator.com", 6),
        ],
    ),
    # Emulators: a fresh device id each, one fingerprint, IPs from one /24, sign-ups over an hour.
    "shared_fingerprint_block": (
        [
            member(f"fb{i}", m, new=True, velocity=v, failed=f)
            for i, (m, v, f) in enumerate(
                [(0, 2, 0.5), (12, 5, 0.0), (25, 3, 0.67), (41, 4, 0.0), (55, 2, 0.5)]
            )
        ],
        [node("fingerprint", "emu", 5), node("ip_block", "45.1.2.0/24", 5), node("ip", "45.1.2.7", 2)],
    ),
    # Taken-over old accounts linked pairwise (device, IP, device, ...), worked one after another.
    "chain": (
        [
            member(f"ch{i}", m, velocity=v, failed=f)
            for i, (m, v, f) in enumerate(
                [(0, 2, 0.0), (2, 3, 0.25), (5, 2, 0.4), (8, 4, 0.0), (10, 3, 0.25)]
            )
        ],
        [
            node("device", "l01", 2),
            node("fingerprint", "l01fp", 2),
            node("ip", "73.9.9.9", 2),
            node("device", "l23", 2),
            node("fingerprint", "l23fp", 2),
            node("ip", "98.7.7.7", 2),
        ],
    ),
    # Sign-ups within six minutes behind one proxy, a disposable mail domain.
    "signup_burst": (
        [
            member(f"sb{i}", m, new=True, velocity=v, failed=f)
            for i, (m, v, f) in enumerate([(0, 2, 0.5), (2, 3, 0.0), (4, 4, 0.67), (6, 2, 0.5)])
        ],
        [
            node("ip", "91.5.5.5", 4),
            node("ip_block", "91.5.5.0/24", 4),
            node("email_domain", "tempmail.dev", 4),
        ],
    ),
    # Old accounts behind one proxy, 8-15 transactions in ten minutes each.
    "velocity": (
        [
            member(f"ve{i}", m, velocity=v, failed=f)
            for i, (m, v, f) in enumerate(
                [(0, 9, 0.0), (2, 12, 0.5), (5, 8, 0.0), (7, 15, 0.4), (9, 10, 0.25)]
            )
        ],
        [node("ip", "185.3.3.3", 5), node("ip_block", "185.3.3.0/24", 5)],
    ),
}


# ----------------------------------------------------------------------------- union-find


def test_components_sorted_with_isolated_nodes():
    pairs = [("b", "a"), ("e", "d"), ("d", "c")]
    assert connected_components(pairs, nodes=["z", "a"]) == [["a", "b"], ["c", "d", "e"], ["z"]]


def test_components_follow_chains_and_merges():
    pairs = [("u1", "u2"), ("u2", "u3"), ("u3", "u4"), ("x1", "x2"), ("x2", "u4"), ("y", "y")]
    assert connected_components(pairs) == [["u1", "u2", "u3", "u4", "x1", "x2"], ["y"]]


def test_long_chain_is_one_component():
    ids = [f"u{i:05d}" for i in range(20_000)]
    pairs = list(zip(ids[1:], ids[:-1], strict=True))
    assert connected_components(pairs) == [ids]


def test_components_of_nothing():
    assert connected_components([]) == []


# ----------------------------------------------------------------------------- linking rule


def test_one_shared_ip_block_does_not_link():
    assert link_pairs({"ip_block:10.0.0.0/24": ["a", "b"]}, {"ip_block:10.0.0.0/24": "ip_block"}) == set()


def test_ip_block_and_email_domain_together_link():
    nodes = {"ip_block:10.0.0.0/24": ["b", "a", "c"], "email_domain:corp.example": ["a", "b"]}
    types = {"ip_block:10.0.0.0/24": "ip_block", "email_domain:corp.example": "email_domain"}
    assert link_pairs(nodes, types) == {("a", "b")}


@pytest.mark.parametrize("kind", ["device", "fingerprint", "phone", "ip"])
def test_one_strong_node_links_every_pair(kind):
    assert link_pairs({f"{kind}:x": ["c", "a", "b", "a"]}, {f"{kind}:x": kind}) == {
        ("a", "b"),
        ("a", "c"),
        ("b", "c"),
    }


def test_unknown_node_types_are_ignored():
    assert link_pairs({"merchant:m1": ["a", "b"]}, {"merchant:m1": "merchant"}) == set()


def test_chain_shape_is_one_group_and_weak_only_pair_is_not():
    node_users = {
        "device:d12": ["u1", "u2"],
        "ip:1.1.1.1": ["u2", "u3"],
        "device:d34": ["u3", "u4"],
        "ip_block:5.5.5.0/24": ["u4", "w1"],  # one weak node: w1 stays out
    }
    types = {k: k.split(":", 1)[0] for k in node_users}
    groups = find_groups(node_users, types)
    assert [g for g, _ in groups] == [["u1", "u2", "u3", "u4"]]
    assert groups[0][1] == [
        {"node_id": "device:d12", "node_type": "device", "users": 2},
        {"node_id": "device:d34", "node_type": "device", "users": 2},
        {"node_id": "ip:1.1.1.1", "node_type": "ip", "users": 2},
    ]


def test_sleeper_sharing_only_the_ring_device_joins_the_ring():
    node_users = {
        "device:farm": ["r1", "r2", "r3", "sleeper"],
        "fingerprint:farmfp": ["r1", "r2", "r3"],
        "ip:9.9.9.9": ["r1", "r2"],
        "device:tablet": ["h1", "h2"],
    }
    types = {k: k.split(":", 1)[0] for k in node_users}
    groups = find_groups(node_users, types)
    assert [g for g, _ in groups] == [["h1", "h2"], ["r1", "r2", "r3", "sleeper"]]
    assert [n["node_id"] for n in groups[1][1]] == ["device:farm", "fingerprint:farmfp", "ip:9.9.9.9"]


# ----------------------------------------------------------------------------- ids


def test_campaign_id_is_stable_and_keyed_by_smallest_member():
    cid = campaign_id("syncbank", "2025-11-21", ["u3", "u1", "u2"])
    assert cid == "cmp-66d1c6cf08d8"
    assert campaign_id("syncbank", "2025-11-21", ["u1", "u9"]) == cid
    assert campaign_id("sofi", "2025-11-21", ["u1"]) != cid
    assert campaign_id("syncbank", "2025-11-22", ["u1"]) != cid


# ----------------------------------------------------------------------------- signals and score


def test_weights_sum_to_100():
    assert sum(SIGNAL_WEIGHTS.values()) == 100


def test_densest_window_is_half_open():
    assert densest_window([30, 0, 29], 30) == 2  # 0 and 30 are a full window apart
    assert densest_window([0, 10, 29, 30, 31], 30) == 4
    assert densest_window([], 30) == 0


def test_household_signals_and_score():
    signals = campaign_signals(*HOUSEHOLD)
    assert signals == {
        "size": 0.2,
        "new_account_share": 0.0,
        "signup_burst": 0.0,
        "lockstep": 0.0,
        "velocity": 0.0,
        "failed_login": 0.1333,
        "shared_fingerprint": 1.0,
        "device_concentration": 0.25,
    }
    # 30*0.2 + 15*0.1333 + 5*1.0 + 5*0.25 = 14.25
    assert campaign_score(signals) == 14
    assert campaign_score(signals) < RING_MIN_SCORE - 30


def test_household_of_four_online_together_stays_below_ring():
    members = [member(f"h{i}", 5 * i, failed=0.1) for i in range(4)]
    nodes = [node("device", "tab", 4), node("fingerprint", "tabfp", 4), node("ip", "68.1.2.3", 4)]
    # Even all four online in one half hour: 30*0.4 + 20*1 + 15*0.4 + 5 + 5*0.5 = 45.5
    assert campaign_score(campaign_signals(members, nodes)) == 46
    assert not is_fraud_ring(4, 46)


@pytest.mark.parametrize(
    ("shape", "score"),
    [
        ("shared_device", 76),
        ("shared_fingerprint_block", 61),
        ("chain", 51),
        ("signup_burst", 57),
        ("velocity", 67),
    ],
)
def test_every_ring_shape_scores_as_a_ring(shape, score):
    members, nodes = RINGS[shape]
    assert campaign_score(campaign_signals(members, nodes)) == score
    assert is_fraud_ring(len(members), score)


def test_shared_device_ring_signals_count_the_sleeper():
    signals = campaign_signals(*RINGS["shared_device"])
    assert signals == {
        "size": 0.8,
        "new_account_share": 1.0,
        "signup_burst": 0.8333,
        "lockstep": 0.8333,
        "velocity": 0.1667,
        "failed_login": 0.8867,
        "shared_fingerprint": 1.0,
        "device_concentration": 1.0,
    }


def test_velocity_falls_back_to_user_stats_and_failed_ratio_to_counts():
    members = [
        {"user_id": "a", "first_ms": T0, "max_tx_per_10min": 6, "logins": 1, "failed_logins": 3},
        {"user_id": "b", "first_ms": T0 + 90 * MIN, "max_tx_per_10min": 1, "logins": 4, "failed_logins": 0},
    ]
    signals = campaign_signals(members, [])
    assert signals["velocity"] == 0.5
    assert signals["failed_login"] == 1.0  # mean ratio 0.375 saturates at 0.25


def test_pairs_are_never_rings():
    assert not is_fraud_ring(2, 100)
    assert is_fraud_ring(3, 50)
    assert not is_fraud_ring(3, 49)


def test_empty_group_has_zero_signals():
    assert campaign_score(campaign_signals([], [])) == 0


def test_build_and_sort_campaigns():
    ring = build_campaign("demo", "2025-11-21", *RINGS["velocity"])
    home = build_campaign("demo", "2025-11-21", *HOUSEHOLD)
    assert ring == {
        "campaign_id": campaign_id("demo", "2025-11-21", ["ve0"]),
        "size": 5,
        "score": 67,
        "is_fraud_ring": True,
        "signals": campaign_signals(*RINGS["velocity"]),
        "members": ["ve0", "ve1", "ve2", "ve3", "ve4"],
        "nodes": ["ip:185.3.3.3", "ip_block:185.3.3.0/24"],
    }
    assert home["is_fraud_ring"] is False
    tie = dict(home, campaign_id="cmp-000000000000", score=14)
    assert [c["campaign_id"] for c in sort_campaigns([home, ring, tie])] == [
        ring["campaign_id"],
        "cmp-000000000000",
        home["campaign_id"],
    ]


def test_new_accounts_created_together_on_one_weak_node_are_linked() -> None:
    nodes = {"email_domain:burner.example": ["a", "b", "c"]}
    types = {"email_domain:burner.example": "email_domain"}
    minute = 60_000
    together = {"a": 0, "b": 5 * minute}
    assert link_pairs(nodes, types, together) == {("a", "b")}
    # An old account (c) or a new one created hours later is not linked by the domain alone.
    apart = {"a": 0, "b": 31 * minute}
    assert link_pairs(nodes, types, apart) == set()
    assert link_pairs(nodes, types) == set()
