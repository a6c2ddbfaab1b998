"""Feature computation from virtual-node records: plain functions, no I/O.

A record is one virtual-node edge joined with its node:
`{user_id, node_id, node_type, events, first_ms, last_ms, node_users, is_super}`.
The store keeps one *contribution* per (client, user_id, node_id); features are always
recomputed from the stored contributions, so they are exact whatever the arrival order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

USER = "user"
NODE = "node"

# Fields of a stored contribution, in storage order.
CONTRIBUTION_FIELDS = (
    "user_id",
    "node_id",
    "node_type",
    "events",
    "first_ms",
    "last_ms",
    "node_users",
    "is_super",
)

USER_FEATURES = (
    "connected_devices",
    "shared_attributes",
    "ip_count",
    "fingerprint_count",
    "max_node_users",
    "super_node_links",
    "nodes",
    "events",
    "first_seen_ms",
    "last_seen_ms",
)
NODE_FEATURES = ("node_type", "users", "events", "is_super")


def contribution(record: Mapping[str, Any]) -> dict:
    """The stored form of one record: exactly CONTRIBUTION_FIELDS, with plain int/bool values."""
    return {
        "user_id": str(record["user_id"]),
        "node_id": str(record["node_id"]),
        "node_type": str(record["node_type"]),
        "events": int(record["events"]),
        "first_ms": int(record["first_ms"]),
        "last_ms": int(record["last_ms"]),
        "node_users": int(record["node_users"]),
        "is_super": bool(record["is_super"]),
    }


def merge_contribution(old: Mapping[str, object] | None, new: Mapping[str, object]) -> dict:
    """Combine two sightings of the same (user, node) edge into one.

    An edge is an aggregate over its window, so the merge widens the time span and keeps the
    larger counts instead of adding them: re-pushing the same edge changes nothing, and a
    real-time push followed by the day's batch (or the other way round) ends in the same state.
    """
    new_c = contribution(new)
    if old is None:
        return new_c
    old_c = contribution(old)
    return {
        "user_id": new_c["user_id"],
        "node_id": new_c["node_id"],
        "node_type": new_c["node_type"],
        "events": max(old_c["events"], new_c["events"]),
        "first_ms": min(old_c["first_ms"], new_c["first_ms"]),
        "last_ms": max(old_c["last_ms"], new_c["last_ms"]),
        "node_users": max(old_c["node_users"], new_c["node_users"]),
        "is_super": old_c["is_super"] or new_c["is_super"],
    }


def merge_records(
    existing: Mapping[tuple[str, str], Mapping], records: Iterable[Mapping]
) -> dict[tuple[str, str], dict]:
    """Merged contributions keyed by (user_id, node_id) for every edge the records touch."""
    merged: dict[tuple[str, str], dict] = {}
    for record in records:
        key = (str(record["user_id"]), str(record["node_id"]))
        base = merged.get(key, existing.get(key))
        merged[key] = merge_contribution(base, record)
    return merged


def user_features(contributions: Iterable[Mapping[str, Any]]) -> dict:
    """Network-graph features of one user from all of its (user, node) contributions."""
    devices: set[str] = set()
    ips: set[str] = set()
    fingerprints: set[str] = set()
    shared: set[str] = set()
    supers: set[str] = set()
    nodes: set[str] = set()
    max_users = 0
    events = 0
    first_ms: int | None = None
    last_ms: int | None = None
    for c in contributions:
        node_id = str(c["node_id"])
        nodes.add(node_id)
        node_type = c["node_type"]
        if node_type == "device":
            devices.add(node_id)
        elif node_type == "ip":
            ips.add(node_id)
        elif node_type == "fingerprint":
            fingerprints.add(node_id)
        if c["is_super"]:
            # A super node (a carrier NAT, a popular browser build) links everybody; it says
            # nothing about this user's ring, so it only counts in super_node_links.
            supers.add(node_id)
        else:
            node_users = int(c["node_users"])
            max_users = max(max_users, node_users)
            if node_users > 1:
                shared.add(node_id)
        events += int(c["events"])
        first_ms = int(c["first_ms"]) if first_ms is None else min(first_ms, int(c["first_ms"]))
        last_ms = int(c["last_ms"]) if last_ms is None else max(last_ms, int(c["last_ms"]))
    return {
        "connected_devices": len(devices),
        "shared_attributes": len(shared),
        "ip_count": len(ips),
        "fingerprint_count": len(fingerprints),
        "max_node_users": max_users,
        "super_node_links": len(supers),
        "nodes": len(nodes),
        "events": events,
        "first_seen_ms": first_ms,
        "last_seen_ms": last_ms,
    }


def node_features(node_type: str, users: int, events: int, is_super: bool) -> dict:
    """Features of one node from its aggregated contributions."""
    return {"node_type": node_type, "users": int(users), "events": int(events), "is_super": bool(is_super)}


def touched(records: Iterable[Mapping[str, object]]) -> tuple[list[str], list[str]]:
    """Sorted user ids and node ids a set of records changes."""
    users: set[str] = set()
    nodes: set[str] = set()
    for r in records:
        users.add(str(r["user_id"]))
        nodes.add(str(r["node_id"]))
    return sorted(users), sorted(nodes)
