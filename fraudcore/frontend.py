"""Frontend data of a client-day: campaign list, campaign graphs, hourly timeline, score distribution."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Score buckets of 10 points; the last one also holds 100 so a perfect score has a home.
BUCKETS: tuple[tuple[str, int, int], ...] = tuple(
    (f"{lo}-{lo + 9}", lo, lo + 9) for lo in range(0, 90, 10)
) + (("90-100", 90, 100),)

# Layout radii: users on an outer ring, attribute nodes on an inner ring, so every
# user→node line crosses the middle and shared nodes stand out.
_USER_RADIUS = 0.45
_NODE_RADIUS = 0.22
_COORD_DIGITS = 4


def top_signals(signals: Mapping[str, float], n: int = 3) -> list[str]:
    """Names of the n strongest signals, strongest first, ties by name."""
    ranked = sorted(signals.items(), key=lambda kv: (-float(kv[1]), kv[0]))
    return [name for name, _ in ranked[:n]]


def campaign_list(campaigns: list[dict[str, Any]]) -> dict[str, Any]:
    """Campaign list for the frontend, highest score first, ties by campaign id."""
    items = []
    for c in campaigns:
        members = c.get("members") or []
        nodes = c.get("nodes") or []
        items.append(
            {
                "campaign_id": str(c["campaign_id"]),
                "size": int(c.get("size", len(members))),
                "score": c["score"],
                "is_fraud_ring": bool(c.get("is_fraud_ring", False)),
                "top_signals": top_signals(c.get("signals") or {}),
                "members_count": len(members),
                "shared_nodes_count": len(nodes),
            }
        )
    items.sort(key=lambda i: (-float(i["score"]), i["campaign_id"]))
    return {"campaigns": items, "count": len(items)}


def _ring(count: int, radius: float) -> list[tuple[float, float]]:
    """Evenly spaced points on a circle around (0.5, 0.5), first at the top, clockwise."""
    if count == 1 and radius < _USER_RADIUS:
        return [(0.5, 0.5)]  # a single attribute node sits in the centre
    points = []
    for i in range(count):
        angle = -math.pi / 2 + 2 * math.pi * i / count
        x = round(0.5 + radius * math.cos(angle), _COORD_DIGITS)
        y = round(0.5 + radius * math.sin(angle), _COORD_DIGITS)
        # round() may yield -0.0; normalise so the JSON is identical on every platform
        points.append((x + 0.0, y + 0.0))
    return points


def _node_kind(node_id: str, info: Mapping[str, Any] | None, edge_type: str | None) -> str:
    """Attribute node type from its node info, else its edges, else its "{type}:" prefix."""
    if info and info.get("node_type"):
        return str(info["node_type"])
    if edge_type:
        return edge_type
    return node_id.split(":", 1)[0]


def campaign_graph(
    campaign: dict[str, Any], edges: list[dict[str, Any]], node_info: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Graph of one campaign: member users and their shared non-super attribute nodes, laid out."""
    members = sorted({str(u) for u in campaign.get("members") or []})
    member_set = set(members)
    # The campaign's own node list is authoritative; node_info may still veto a super node
    # (a node that became super after the campaign was cut must not be drawn as shared).
    shared = sorted(
        str(n)
        for n in set(campaign.get("nodes") or [])
        if not (node_info.get(str(n)) or {}).get("is_super", False)
    )
    shared_set = set(shared)

    weights: dict[tuple[str, str], int] = {}
    edge_types: dict[str, str] = {}
    for e in edges:
        user, node = str(e["user_id"]), str(e["node_id"])
        if user in member_set and node in shared_set:
            weights[(user, node)] = weights.get((user, node), 0) + int(e.get("events") or 0)
            if e.get("node_type"):
                edge_types.setdefault(node, str(e["node_type"]))

    nodes: list[dict[str, object]] = []
    for uid, (x, y) in zip(members, _ring(len(members), _USER_RADIUS), strict=True):
        nodes.append({"id": uid, "kind": "user", "label": uid, "x": x, "y": y})
    for nid, (x, y) in zip(shared, _ring(len(shared), _NODE_RADIUS), strict=True):
        info = node_info.get(nid) or {}
        label = info.get("node_value") or (nid.split(":", 1)[1] if ":" in nid else nid)
        shared_node: dict[str, object] = {
            "id": nid,
            "kind": _node_kind(nid, info, edge_types.get(nid)),
            "label": str(label),
            "x": x,
            "y": y,
        }
        if "users" in info:
            shared_node["users"] = int(info["users"])
        nodes.append(shared_node)

    links = [{"source": u, "target": n, "weight": w} for (u, n), w in sorted(weights.items())]
    return {
        "campaign_id": str(campaign["campaign_id"]),
        "score": campaign.get("score"),
        "is_fraud_ring": bool(campaign.get("is_fraud_ring", False)),
        "nodes": nodes,
        "links": links,
        "users_count": len(members),
        "shared_nodes_count": len(shared),
    }


def _hour_counts(values: Iterable[int], what: str) -> list[int]:
    """Validate one 24-hour series of non-negative counts."""
    counts = [int(v) for v in values]
    if len(counts) != 24:
        raise ValueError(f"{what} must have 24 hourly values, got {len(counts)}")
    if any(v < 0 for v in counts):
        raise ValueError(f"{what} has a negative count")
    return counts


def hourly_timeline(per_hour_events: list[int], per_hour_flagged: list[int], tz_name: str) -> dict[str, Any]:
    """24 hourly points (client timezone) of all events and events of flagged users."""
    try:
        ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {tz_name!r}") from exc
    events = _hour_counts(per_hour_events, "per_hour_events")
    flagged = _hour_counts(per_hour_flagged, "per_hour_flagged")
    for hour, (e, f) in enumerate(zip(events, flagged, strict=True)):
        if f > e:
            raise ValueError(f"hour {hour}: {f} flagged events exceed {e} events")
    points = [
        {"hour": h, "events": e, "flagged_events": f}
        for h, (e, f) in enumerate(zip(events, flagged, strict=True))
    ]
    return {
        "timezone": tz_name,
        "points": points,
        "total_events": sum(events),
        "total_flagged_events": sum(flagged),
    }


def bucket_of(score: int) -> str:
    """Name of the 10-point bucket holding a 0-100 score."""
    if not 0 <= score <= 100:
        raise ValueError(f"risk score {score} is outside 0-100")
    return BUCKETS[min(int(score) // 10, 9)][0]


def score_distribution(scores: list[int], flag_threshold: int) -> dict[str, Any]:
    """Users per 10-point score bucket, and how many reach the flag threshold."""
    counts = {name: 0 for name, _, _ in BUCKETS}
    flagged = 0
    for s in scores:
        counts[bucket_of(s)] += 1
        flagged += s >= flag_threshold  # a score equal to the threshold is flagged
    return {
        "buckets": [
            {"bucket": name, "low": lo, "high": hi, "count": counts[name]} for name, lo, hi in BUCKETS
        ],
        "total": len(scores),
        "flagged": flagged,
        "flag_threshold": flag_threshold,
    }
