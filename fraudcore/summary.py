"""The day summary of a client-day (result_agg/summary.json) from the stage outputs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

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


def other_day_fields(organizer_stats: Mapping[str, Any]) -> dict[str, Any]:
    """Records this day sent to other client-local days and received from them, in total and per date.

    other_days is {date: {"sent": n, "received": m}}: sent are records of `date` found in this
    day's files (now in that day's inbox), received are this day's records found in `date`'s files.
    """
    sent = {str(k): int(v) for k, v in (organizer_stats.get("other_days") or {}).items()}
    received = {str(k): int(v) for k, v in (organizer_stats.get("from_inbox") or {}).items()}
    return {
        "records_to_other_days": sum(sent.values()),
        "records_from_other_days": sum(received.values()),
        "other_days": {
            d: {"sent": sent.get(d, 0), "received": received.get(d, 0)}
            for d in sorted(set(sent) | set(received))
        },
    }


FILES_LISTED = 100  # quarantined / not recognised files named in the summary (all are in the connector stats)


def input_file_fields(connector_stats: Mapping[str, Any]) -> dict[str, Any]:
    """What happened to the day's files: counts by outcome, the files set aside or not read, and why.

    Every file under rawdata/{client}/{date}/ is in the connector's stats; the summary names the
    ones a person must look at (quarantined whole, or not recognised) and counts the rest.
    """
    listed = connector_stats.get("files")
    files = [f for f in listed if isinstance(f, Mapping)] if isinstance(listed, list) else []

    def named(status: str) -> list[dict[str, Any]]:
        return [
            {"source_file": str(f["source_file"]), "reason": str(f.get("reason") or "")}
            for f in files
            if f.get("status") == status
        ][:FILES_LISTED]

    return {
        "partial": bool(connector_stats.get("partial", False)),
        "files_read": int(connector_stats.get("files_read", sum(f.get("status") == "read" for f in files))),
        "files_quarantined": named("quarantined"),
        "files_not_recognised": named("not_recognised"),
        "unmapped_event_types": {
            str(k): int(v) for k, v in sorted((connector_stats.get("unmapped_event_types") or {}).items())
        },
    }


def build_summary(
    client: str,
    date: str,
    connector_stats: Mapping[str, Any],
    organizer_stats: Mapping[str, Any],
    risk_rows: Iterable[Mapping[str, Any]],
    campaigns: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
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
        "quarantine_reasons": {
            k: int(v) for k, v in sorted((connector_stats.get("quarantine_reasons") or {}).items())
        },
        **input_file_fields(connector_stats),
        "duplicates": int(organizer_stats.get("duplicates", 0)),
        **other_day_fields(organizer_stats),
        "users": users,
        "flagged_users": flagged,
        "campaigns": len(campaigns),
        "fraud_rings": len(rings),
        "score_histogram": score_histogram(scores),
        "top_campaigns": [
            {
                "campaign_id": str(c["campaign_id"]),
                "size": int(c["size"]),
                "score": int(c["score"]),
                "signals": dict(sorted(c["signals"].items())),
            }
            for c in rings[:TOP_CAMPAIGNS]
        ],
    }
