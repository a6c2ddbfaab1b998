"""The DFE feature vector and the day statistics of one user, from that user's events of a client-day.

Event semantics shared by both: a login is an event of type "login" (successful), a failed login
is "login_failed", a transaction is "transaction"; amounts count when they are finite numbers.
An event's hour is its client-timezone hour: the `hour` field the organizer writes, or else the
hours elapsed since the client-day start. Devices, IPs and fingerprints are the normalised node
values of fraudcore.graph, so "distinct" here matches the virtual-node graph.

Feature definitions (every value a finite float):
  account_events              number of events
  active_hours                number of distinct hours with at least one event
  login_frequency             logins / active_hours (0 when no active hours)
  login_failed_ratio          failed logins / (logins + failed logins), 0 when neither
  login_pattern_night_share   share of logins in hours 00-05, 0 when no logins
  login_pattern_hour_entropy  Shannon entropy (bits) of the login hour distribution, 0 when no logins
  transaction_count           number of transactions
  transaction_amount_total    sum of transaction amounts
  transaction_amount_mean     mean transaction amount, 0 when no amounts
  transaction_amount_max      largest transaction amount, 0 when no amounts
  transaction_velocity        most transactions in any half-open 10-minute window [t, t + 10 min)
  spending_pattern_cv         population std / mean of amounts, 0 when < 2 amounts or mean 0
  device_changes              switches between consecutive distinct devices, events in time order
  distinct_devices            distinct device nodes
  distinct_ips                distinct ip nodes (valid IPv4/IPv6 addresses)
  distinct_fingerprints       distinct fingerprint nodes
  is_new_account              1 when the user signed up that day, else 0
  connected_devices           distinct devices of the user and of the users it reaches (graph)
  shared_attributes           the user's non-super nodes shared with at least one other user (graph)
  graph_centrality            distinct other users sharing a non-super node (user-user degree) (graph)
  super_node_links            super nodes the user is linked to (graph)
The graph values are computed from the virtual-node graph by the caller and passed in.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from fraudcore.graph import normalize_device, normalize_fingerprint, normalize_ip

HOUR_MS = 3_600_000
VELOCITY_WINDOW_MS = 600_000
NIGHT_HOURS = range(0, 6)

GRAPH_KEYS = ("connected_devices", "graph_centrality", "shared_attributes", "super_node_links")

FEATURE_NAMES = tuple(
    sorted(
        (
            "account_events",
            "active_hours",
            "connected_devices",
            "device_changes",
            "distinct_devices",
            "distinct_fingerprints",
            "distinct_ips",
            "graph_centrality",
            "is_new_account",
            "login_failed_ratio",
            "login_frequency",
            "login_pattern_hour_entropy",
            "login_pattern_night_share",
            "shared_attributes",
            "spending_pattern_cv",
            "super_node_links",
            "transaction_amount_max",
            "transaction_amount_mean",
            "transaction_amount_total",
            "transaction_count",
            "transaction_velocity",
        )
    )
)

# Column order of the *user_stats* dataset (docs/architecture.md).
USER_STATS_FIELDS = (
    "user_id",
    "events",
    "logins",
    "failed_logins",
    "transactions",
    "amount_total",
    "amount_max",
    "distinct_devices",
    "distinct_ips",
    "distinct_fingerprints",
    "first_ms",
    "last_ms",
    "active_hours",
    "night_share",
    "is_new_account",
    "max_tx_per_10min",
)


def event_hour(event: dict[str, Any], day_start_ms: int | None = None) -> int:
    """The event's client-timezone hour (0-23)."""
    hour = event.get("hour")
    if hour is not None:
        return int(hour)
    t = int(event["event_time_ms"])
    # Without the organizer's hour, count hours from the client-day start (UTC when unknown).
    base = day_start_ms if day_start_ms is not None else 0
    return ((t - base) // HOUR_MS) % 24


def _finite(value: object) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)  # type: ignore[arg-type]  # whatever float() refuses is not a number here
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def time_ordered(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events by time; event_id breaks ties so the order never depends on input order."""
    return sorted(events, key=lambda e: (int(e["event_time_ms"]), str(e.get("event_id") or "")))


def device_changes(events: Iterable[dict[str, Any]]) -> int:
    """How often the device switches between consecutive events that carry one, in time order."""
    devices = [d for d in (normalize_device(e.get("device_id")) for e in time_ordered(events)) if d]
    return sum(1 for prev, cur in zip(devices, devices[1:], strict=False) if cur != prev)


def max_in_window(times_ms: Iterable[int], window_ms: int = VELOCITY_WINDOW_MS) -> int:
    """Most timestamps inside any half-open window [t, t + window_ms)."""
    ts = sorted(int(t) for t in times_ms)
    best = start = 0
    for end, t in enumerate(ts):
        while t - ts[start] >= window_ms:
            start += 1
        best = max(best, end - start + 1)
    return best


def hour_entropy(hours: Iterable[int]) -> float:
    """Shannon entropy in bits of an hour distribution; 0 for none or a single hour."""
    counts = Counter(hours)
    n = sum(counts.values())
    if n == 0:
        return 0.0
    h = -sum((c / n) * math.log2(c / n) for c in counts.values())
    return h if h > 0 else 0.0


def _sum(values: list[float]) -> float:
    try:
        return math.fsum(values)
    except OverflowError:
        # Only absurd amounts get here; the caller turns the non-finite result into 0.
        return math.inf


def coefficient_of_variation(values: list[float]) -> float:
    """Population standard deviation over mean; 0 for fewer than two values or a zero mean."""
    if len(values) < 2:
        return 0.0
    mean = _sum(values) / len(values)
    if mean == 0 or not math.isfinite(mean):
        return 0.0
    var = _sum([(v - mean) * (v - mean) for v in values]) / len(values)
    cv = math.sqrt(var) / abs(mean)
    return cv if math.isfinite(cv) else 0.0


class _Day:
    """What both the feature vector and the day statistics read from one user's events."""

    def __init__(self, events: list[dict[str, Any]], day_start_ms: int | None) -> None:
        self.events = events
        hours = [event_hour(e, day_start_ms) for e in events]
        types = [str(e.get("event_type") or "") for e in events]
        self.active_hours = len(set(hours))
        self.login_hours = [h for h, t in zip(hours, types, strict=True) if t == "login"]
        self.failed_logins = types.count("login_failed")
        txs = [e for e, t in zip(events, types, strict=True) if t == "transaction"]
        self.tx_times = [int(e["event_time_ms"]) for e in txs]
        self.amounts = [a for a in (_finite(e.get("amount")) for e in txs) if a is not None]
        self.is_new_account = "signup" in types
        self.devices = {d for d in (normalize_device(e.get("device_id")) for e in events) if d}
        self.ips = {i for i in (normalize_ip(e.get("ip")) for e in events) if i}
        self.fingerprints = {
            f for f in (normalize_fingerprint(e.get("browser_fingerprint")) for e in events) if f
        }

    @property
    def logins(self) -> int:
        return len(self.login_hours)

    @property
    def night_share(self) -> float:
        if not self.login_hours:
            return 0.0
        return sum(1 for h in self.login_hours if h in NIGHT_HOURS) / len(self.login_hours)


def user_features(events: list[dict[str, Any]], graph: dict[str, Any], day_start_ms: int) -> dict[str, float]:
    """The DFE feature vector of one user for one client-day, keyed by FEATURE_NAMES in order."""
    day = _Day(list(events), day_start_ms)
    logins, failed = day.logins, day.failed_logins
    amounts = day.amounts
    total = _sum(amounts)
    values = {
        "account_events": len(day.events),
        "active_hours": day.active_hours,
        "login_frequency": logins / day.active_hours if day.active_hours else 0.0,
        "login_failed_ratio": failed / (logins + failed) if logins + failed else 0.0,
        "login_pattern_night_share": day.night_share,
        "login_pattern_hour_entropy": hour_entropy(day.login_hours),
        "transaction_count": len(day.tx_times),
        "transaction_amount_total": total,
        "transaction_amount_mean": total / len(amounts) if amounts else 0.0,
        "transaction_amount_max": max(amounts) if amounts else 0.0,
        "transaction_velocity": max_in_window(day.tx_times),
        "spending_pattern_cv": coefficient_of_variation(amounts),
        "device_changes": device_changes(day.events),
        "distinct_devices": len(day.devices),
        "distinct_ips": len(day.ips),
        "distinct_fingerprints": len(day.fingerprints),
        "is_new_account": 1.0 if day.is_new_account else 0.0,
    }
    for key in GRAPH_KEYS:
        values[key] = (graph or {}).get(key) or 0
    out: dict[str, float] = {}
    for name in FEATURE_NAMES:
        x = _finite(values[name])
        # A sum of huge amounts can overflow; a vector must never carry inf/NaN downstream.
        out[name] = x if x is not None else 0.0
    return out


def user_stats(events: list[dict[str, Any]], day_start_ms: int | None = None) -> dict[str, Any]:
    """One *user_stats* row (docs/architecture.md) for one user's events of a client-day."""
    if not events:
        raise ValueError("user_stats needs at least one event")
    day = _Day(list(events), day_start_ms)
    times = [int(e["event_time_ms"]) for e in day.events]
    total = _sum(day.amounts)
    return {
        "user_id": str(day.events[0]["user_id"]),
        "events": len(day.events),
        "logins": day.logins,
        "failed_logins": day.failed_logins,
        "transactions": len(day.tx_times),
        "amount_total": total if math.isfinite(total) else 0.0,
        "amount_max": max(day.amounts) if day.amounts else 0.0,
        "distinct_devices": len(day.devices),
        "distinct_ips": len(day.ips),
        "distinct_fingerprints": len(day.fingerprints),
        "first_ms": min(times),
        "last_ms": max(times),
        "active_hours": day.active_hours,
        "night_share": day.night_share,
        "is_new_account": day.is_new_account,
        "max_tx_per_10min": max_in_window(day.tx_times),
    }
