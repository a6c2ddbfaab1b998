"""The day summary of a client-day (result_agg/summary.json) from the stage outputs."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

HISTOGRAM_BUCKETS = tuple(f"{lo}-{lo + 9}" for lo in range(0, 90, 10)) + ("90-100",)
TOP_CAMPAIGNS = 10


def histogram_bucket(score: int) -> str:
    """The 10-point bucket of a 0-100 score; 100 joins 90-99 so there are exactly ten."""
    if not 0 <= int(score) <= 100:
        raise ValueError(f"risk score {score} is outside 0-100")
    return HISTOGRAM_BUCKETS[min(int(score) // 10, 9)]


def score_histogram(scores: Iterable[int]) -> dict[str, int]:
    """Users per bucket, every bucket present."""
    counts = dict.fromkeys(HISTOGRAM_BUCKETS, 0)
    for s in scores:
        counts[histogram_bucket(s)] += 1
    return counts


def build_summary(client: str, date: str, connector_stats: Mapping, organizer_stats: Mapping,
                  risk_rows: Iterable[Mapping], campaigns: list[Mapping]) -> dict:
    """summary.json (docs/architecture.md): record counts, users, flags, campaigns, histogram, top rings."""
    users = flagged = 0
    scores = []
    for r in risk_rows:
        users += 1
        flagged += bool(r["is_flagged"])
        scores.append(int(r["risk_score"]))
    rings = [c for c in campaigns if c["is_fraud_ring"]]
    # campaigns.json is already highest score first; sorting again keeps this true for any input.
    rings.sort(key=lambda c: (-int(c["score"]), str(c["campaign_id"])))
    return {
        "client": client,
        "date": str(date),
        "records_read": int(connector_stats["records_read"]),
        "records_accepted": int(connector_stats["records_accepted"]),
        "records_quarantined": int(connector_stats["records_quarantined"]),
        "quarantine_reasons": {k: int(v) for k, v in sorted((connector_stats.get("quarantine_reasons") or {}).items())},
        "duplicates": int(organizer_stats.get("duplicates", 0)),
        # The organizer calls them "late"; the summary spells out what they are.
        "late_records": int(organizer_stats.get("late_records", organizer_stats.get("late", 0))),
        "users": users,
        "flagged_users": flagged,
        "campaigns": len(campaigns),
        "fraud_rings": len(rings),
        "score_histogram": score_histogram(scores),
        "top_campaigns": [
            {"campaign_id": str(c["campaign_id"]), "size": int(c["size"]), "score": int(c["score"]),
             "signals": dict(sorted(c["signals"].items()))}
            for c in rings[:TOP_CAMPAIGNS]
        ],
    }
