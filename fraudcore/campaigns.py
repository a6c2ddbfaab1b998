"""Campaign (fraud-ring) detection: link accounts through shared nodes, group them, score each group.

The graph is users and the non-super virtual nodes they use. Super-nodes (carrier NAT IPs,
default fingerprints) are pruned before anything here runs: they link crowds, not rings. Two
users are linked by one shared *strong* node or by two shared *weak* nodes; each connected
component of the links is a campaign, scored from named 0-1 signals.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from typing import Any

# A device, browser fingerprint, phone number or single IP is personal enough that sharing one
# already ties two accounts together.
STRONG_NODE_TYPES = frozenset({"device", "fingerprint", "phone", "ip"})
# A /24 block or a mail domain alone is too common to link two people (neighbours on one ISP,
# colleagues on one corporate domain); only two of them together are evidence.
WEAK_NODE_TYPES = frozenset({"ip_block", "email_domain"})
WEAK_LINKS_REQUIRED = 2
# New accounts whose first activity is this close together and that share a weak node are linked.
CO_SIGNUP_WINDOW_MS = 30 * 60 * 1000

# Households are 2-4 people; size starts counting at 2 and saturates at 7 members. Under the
# linking rule above, ordinary users almost never form groups beyond a household.
SIZE_FLOOR = 2
SIZE_SPAN = 5
# Densest sign-up (and first-activity) window: a scripted ring registers or wakes its accounts
# within minutes, while the people of a household come online at their own times of day.
BURST_WINDOW_MS = 30 * 60 * 1000
# Transactions per 10 minutes from which an account is moving money at machine speed.
VELOCITY_MIN = 5.0
# Two people of a household online in the same half hour is common; three accounts starting
# together is not.
LOCKSTEP_MIN = 3
# Mean failed-login ratio at which the signal saturates: ordinary users mistype a password now
# and then (a few percent of logins); a group where a quarter of logins fail is guessing.
FAILED_RATIO_FULL = 0.25
# Members on the most shared device: 2 (a couple) counts nothing, 6 or more saturates; a
# household of 3-4 on one tablet stays in the lower half. The busiest device, not the mean, so
# a ring run from one phone is not diluted by the pairs of a chain around it.
DEVICE_FLOOR = 2.0
DEVICE_SPAN = 4.0

# Weight of each signal in the 0-100 campaign score (they sum to 100). Calibrated on generated
# client-days: households share a tablet, its fingerprint and a home IP, so the structural
# signals they also carry (shared_fingerprint, device_concentration) weigh little; what only
# rings show weighs most: more members than a household (size), acting in the same half hour
# (lockstep), moving money at machine speed (velocity), failing logins (failed_login). A ring
# needs two or three of these to reach RING_MIN_SCORE; households stay in the 10-35 range.
SIGNAL_WEIGHTS: dict[str, int] = {
    "size": 30,
    "lockstep": 20,
    "velocity": 15,
    "failed_login": 15,
    "new_account_share": 5,
    "signup_burst": 5,
    "shared_fingerprint": 5,
    "device_concentration": 5,
}
SIGNALS = tuple(SIGNAL_WEIGHTS)

# A campaign is a fraud ring from this score on, and only with at least three members: a pair
# of accounts is too little to call a ring, whatever it does.
RING_MIN_SCORE = 50
RING_MIN_SIZE = 3


def connected_components(pairs: Iterable[tuple[str, str]], nodes: Iterable[str] = ()) -> list[list[str]]:
    """Connected components of the pairs (plus isolated nodes): sorted members, sorted by first member."""
    parent: dict[str, str] = {}
    size: dict[str, int] = {}

    def find(x: str) -> str:
        if x not in parent:
            parent[x] = x
            size[x] = 1
            return x
        root = x
        while parent[root] != root:
            root = parent[root]
        # Path compression: point every node on the way straight at the root.
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for n in nodes:
        find(n)
    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        # Union by size keeps the trees shallow, so finds stay near-constant.
        if size[ra] < size[rb]:
            ra, rb = rb, ra
        parent[rb] = ra
        size[ra] += size[rb]

    groups: dict[str, list[str]] = {}
    for x in parent:
        groups.setdefault(find(x), []).append(x)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: g[0])


def link_pairs(
    node_users: Mapping[str, Iterable[str]],
    node_types: Mapping[str, str],
    new_accounts: Mapping[str, int] | None = None,
) -> set[tuple[str, str]]:
    """User pairs (a < b) linked by one shared strong node or WEAK_LINKS_REQUIRED shared weak nodes.

    A single shared weak node also links two *new* accounts (`new_accounts`: user -> first
    activity, ms) whose first activity lies within CO_SIGNUP_WINDOW_MS: a mail domain alone is
    too common to tie two people together, but two accounts created minutes apart on the same
    throwaway domain is how sign-up bursts behind rotating proxies look.

    `node_users` must hold non-super nodes only; the caller prunes super-nodes, which also bounds
    each user list (and so the pairs per node) by the client's super-node threshold.
    """
    strong: set[tuple[str, str]] = set()
    weak: Counter[tuple[str, str]] = Counter()
    for node, users in node_users.items():
        kind = node_types.get(node)
        if kind not in STRONG_NODE_TYPES and kind not in WEAK_NODE_TYPES:
            continue
        pairs = combinations(sorted(set(users)), 2)
        if kind in STRONG_NODE_TYPES:
            strong.update(pairs)
        else:
            weak.update(pairs)
    new = new_accounts or {}
    co_signup = {
        (a, b) for a, b in weak if a in new and b in new and abs(new[a] - new[b]) <= CO_SIGNUP_WINDOW_MS
    }
    return strong | co_signup | {p for p, n in weak.items() if n >= WEAK_LINKS_REQUIRED}


def campaign_id(client: str, date: object, members: Iterable[str]) -> str:
    """Stable campaign id: "cmp-" + sha1(client|date|smallest member)[:12]."""
    key = f"{client}|{date}|{min(members)}"
    return "cmp-" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def member_record(stats: Mapping[str, Any] | None, features: Mapping[str, Any] | None) -> dict[str, Any]:
    """One member as campaign_signals reads it: the user_stats row over the DFE features."""
    return {**(features or {}), **(stats or {})}


def _number(value: object) -> float:
    """A numeric field as float; missing or null counts as 0."""
    if value is None or isinstance(value, str):
        return 0.0
    number = float(value)  # type: ignore[arg-type]
    return 0.0 if math.isnan(number) else number


def member_velocity(member: Mapping[str, Any]) -> float:
    """Peak transactions per 10 minutes: the DFE feature, else the user_stats count."""
    if member.get("transaction_velocity") is not None:
        return _number(member["transaction_velocity"])
    return _number(member.get("max_tx_per_10min"))


def member_failed_ratio(member: Mapping[str, Any]) -> float:
    """Share of failed logins: the DFE feature, else computed from the user_stats counts."""
    if member.get("login_failed_ratio") is not None:
        return min(1.0, max(0.0, _number(member["login_failed_ratio"])))
    failed = _number(member.get("failed_logins"))
    attempts = failed + _number(member.get("logins"))
    return failed / attempts if attempts else 0.0


def is_new(member: Mapping[str, Any]) -> bool:
    """Whether the member signed up that day."""
    return bool(member.get("is_new_account"))


def densest_window(times: Iterable[int], width_ms: int) -> int:
    """Most times falling in any window [t, t + width_ms)."""
    ts = sorted(times)
    best = 0
    lo = 0
    for hi, t in enumerate(ts):
        while t - ts[lo] >= width_ms:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def campaign_signals(
    members: Sequence[Mapping[str, Any]], shared_nodes: Sequence[Mapping[str, Any]]
) -> dict[str, float]:
    """The named 0-1 signals of one group of accounts.

    `members` are member_record dicts; `shared_nodes` are the group's shared non-super nodes as
    `{node_id, node_type, users}`, where `users` counts the group's members on that node.
    """
    n = len(members)
    if n == 0:
        return {name: 0.0 for name in SIGNALS}
    # A new account's first event of the day is its sign-up.
    signups = [int(_number(m.get("first_ms"))) for m in members if is_new(m)]
    burst = densest_window(signups, BURST_WINDOW_MS)
    together = densest_window((int(_number(m.get("first_ms"))) for m in members), BURST_WINDOW_MS)
    fingerprints = [int(s["users"]) for s in shared_nodes if s["node_type"] == "fingerprint"]
    devices = [int(s["users"]) for s in shared_nodes if s["node_type"] == "device"]
    per_device = max(devices) if devices else 0
    signals = {
        "size": min(1.0, max(0.0, (n - SIZE_FLOOR) / SIZE_SPAN)),
        "new_account_share": sum(is_new(m) for m in members) / n,
        # One sign-up is not a burst; it takes at least two in the same window.
        "signup_burst": burst / n if burst >= 2 else 0.0,
        # Lock-step: the same for every member's first activity of the day, new or old accounts.
        "lockstep": together / n if together >= LOCKSTEP_MIN else 0.0,
        "velocity": sum(member_velocity(m) >= VELOCITY_MIN for m in members) / n,
        "failed_login": min(1.0, sum(member_failed_ratio(m) for m in members) / n / FAILED_RATIO_FULL),
        "shared_fingerprint": min(1.0, max(fingerprints) / n) if fingerprints else 0.0,
        "device_concentration": min(1.0, max(0.0, (per_device - DEVICE_FLOOR) / DEVICE_SPAN)),
    }
    return {k: round(v, 4) for k, v in signals.items()}


def campaign_score(signals: Mapping[str, float]) -> int:
    """0-100: the SIGNAL_WEIGHTS-weighted sum of the signals, rounded half up."""
    total = sum(
        weight * min(1.0, max(0.0, float(signals.get(name, 0.0)))) for name, weight in SIGNAL_WEIGHTS.items()
    )
    return max(0, min(100, math.floor(total + 0.5)))


def is_fraud_ring(size: int, score: int) -> bool:
    """A campaign is a fraud ring with at least RING_MIN_SIZE members and RING_MIN_SCORE points."""
    return size >= RING_MIN_SIZE and score >= RING_MIN_SCORE


def group_nodes(
    groups: list[list[str]], node_users: Mapping[str, Iterable[str]], node_types: Mapping[str, str]
) -> list[list[dict[str, Any]]]:
    """Per group, its shared nodes (used by two or more of its members) as {node_id, node_type, users}."""
    where = {u: i for i, g in enumerate(groups) for u in g}
    out: list[list[dict[str, Any]]] = [[] for _ in groups]
    for node in sorted(node_users):
        per_group = Counter(where[u] for u in set(node_users[node]) if u in where)
        for gi, count in sorted(per_group.items()):
            if count >= 2:
                out[gi].append({"node_id": node, "node_type": node_types.get(node, ""), "users": count})
    return out


def find_groups(
    node_users: Mapping[str, Iterable[str]],
    node_types: Mapping[str, str],
    new_accounts: Mapping[str, int] | None = None,
) -> list[tuple[list[str], list[dict[str, Any]]]]:
    """Groups of two or more linked users, each with its shared nodes, sorted by first member."""
    pairs = link_pairs(node_users, node_types, new_accounts)
    groups = [g for g in connected_components(pairs) if len(g) >= 2]
    return list(zip(groups, group_nodes(groups, node_users, node_types), strict=True))


def build_campaign(
    client: str, date: object, members: Sequence[Mapping[str, Any]], shared_nodes: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """One *campaign* record (docs/architecture.md) from its member records and shared nodes."""
    ids = sorted(str(m["user_id"]) for m in members)
    signals = campaign_signals(members, shared_nodes)
    score = campaign_score(signals)
    return {
        "campaign_id": campaign_id(client, date, ids),
        "size": len(ids),
        "score": score,
        "is_fraud_ring": is_fraud_ring(len(ids), score),
        "signals": signals,
        "members": ids,
        "nodes": sorted(str(s["node_id"]) for s in shared_nodes),
    }


def sort_campaigns(campaigns: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Campaigns by score, highest first, ties by campaign id."""
    return sorted(campaigns, key=lambda c: (-int(c["score"]), str(c["campaign_id"])))
