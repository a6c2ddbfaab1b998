"""Per-user risk: named rules over user stats, DFE features and the user's campaign."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fraudcore.campaigns import VELOCITY_MIN, member_failed_ratio, member_record, member_velocity

# Points of each individual rule. One rule alone never reaches the default flag threshold (70):
# it takes several independent signs, or membership of a fraud ring, to flag a user.
RULE_POINTS: dict[str, int] = {
    "HIGH_TX_VELOCITY": 30,  # >= VELOCITY_MIN transactions in 10 minutes: scripted spending
    "NEW_ACCOUNT_SPEND": 25,  # signed up today and already transacting: the fraud cash-out shape
    "FAILED_LOGINS": 20,  # mostly failed logins: credential stuffing or account takeover
    "MANY_DEVICES": 15,  # more devices in a day than one person carries
    "SHARED_DEVICE": 10,  # a non-super device other accounts use too (weak: families share)
    "NIGHT_ACTIVITY": 10,  # most activity at night (client time): weak, shift workers exist
}
# A fraud-ring member scores its campaign's score (or its own, if higher) plus this bonus. The
# ring threshold (50) plus the bonus reaches the default flag threshold (70), so every member
# of a ring is flagged at it, including dormant "sleeper" accounts with no risky activity of
# their own.
RING_MEMBER = "RING_MEMBER"
RING_MEMBER_BONUS = 20

FAILED_LOGIN_RATIO_MIN = 0.5
FAILED_LOGINS_MIN = 3
MANY_DEVICES_MIN = 4
NIGHT_SHARE_MIN = 0.5
# Below this many events a night share is noise (one late login is not a pattern).
NIGHT_EVENTS_MIN = 5


def _num(value: object) -> float:
    """A numeric field as float; missing or null counts as 0."""
    try:
        return float(value) if value is not None else 0.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def _night_share(record: Mapping[str, Any]) -> float:
    """Share of the user's activity at night: user_stats, else the DFE login pattern."""
    if record.get("night_share") is not None:
        return _num(record["night_share"])
    return _num(record.get("login_pattern_night_share"))


def rule_hits(stats: Mapping[str, Any], features: Mapping[str, Any] | None) -> list[str]:
    """Codes of the individual rules the user trips, sorted."""
    r = member_record(stats, features)
    hits = []
    if member_velocity(r) >= VELOCITY_MIN:
        hits.append("HIGH_TX_VELOCITY")
    spent = _num(r.get("transactions")) > 0 or _num(r.get("transaction_amount_total")) > 0
    if bool(r.get("is_new_account")) and spent:
        hits.append("NEW_ACCOUNT_SPEND")
    failed = r.get("failed_logins")
    if member_failed_ratio(r) >= FAILED_LOGIN_RATIO_MIN and (
        failed is None or _num(failed) >= FAILED_LOGINS_MIN
    ):
        hits.append("FAILED_LOGINS")
    if _num(r.get("distinct_devices")) >= MANY_DEVICES_MIN:
        hits.append("MANY_DEVICES")
    if _num(r.get("shared_devices")) >= 1:
        hits.append("SHARED_DEVICE")
    if _night_share(r) >= NIGHT_SHARE_MIN and _num(r.get("events")) >= NIGHT_EVENTS_MIN:
        hits.append("NIGHT_ACTIVITY")
    return sorted(hits)


def score_user(
    stats: Mapping[str, Any],
    features: Mapping[str, Any] | None,
    campaign: Mapping[str, Any] | None,
    flag_threshold: int,
) -> tuple[int, bool, list[str]]:
    """(risk 0-100, is_flagged, sorted reason codes) of one user.

    `stats` is the user's *user_stats* row, optionally with `shared_devices` (non-super devices
    the user shares with other accounts); `features` the user's DFE features; `campaign` the
    *campaign* record the user belongs to, or None.
    """
    reasons = rule_hits(stats, features)
    score = sum(RULE_POINTS[code] for code in reasons)
    if campaign is not None and campaign.get("is_fraud_ring"):
        reasons = sorted([*reasons, RING_MEMBER])
        score = max(score, int(campaign["score"])) + RING_MEMBER_BONUS
    score = max(0, min(100, score))
    return score, score >= flag_threshold, reasons


def risk_row(
    stats: Mapping[str, Any],
    features: Mapping[str, Any] | None,
    campaign: Mapping[str, Any] | None,
    flag_threshold: int,
) -> dict[str, Any]:
    """One row of risk/scores: campaign_id is set only when the user's campaign is a fraud ring."""
    score, flagged, reasons = score_user(stats, features, campaign, flag_threshold)
    ring = campaign if campaign is not None and campaign.get("is_fraud_ring") else None
    return {
        "user_id": str(stats["user_id"]),
        "risk_score": score,
        "is_flagged": flagged,
        "campaign_id": str(ring["campaign_id"]) if ring is not None else "",
        "reason_codes": ";".join(reasons),
    }


def merge_windows(vectors: Iterable[Mapping[str, float] | None]) -> dict[str, float]:
    """One feature dict from a user's DFE windows: the largest value of each feature.

    Risk lives in the worst window of the day (the burst of transactions, the failed-login
    spree), so the maximum is kept rather than the last or the mean.
    """
    out: dict[str, float] = {}
    for vec in vectors:
        for name, value in (vec or {}).items():
            if value is None:
                continue
            out[name] = max(out.get(name, float(value)), float(value))
    return out
