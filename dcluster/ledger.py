"""The cost ledger: every finished run's capacity, duration and cost, summed per client and day."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from dcluster import policy
from dcluster.models import Job

MAX_LEDGER_ROWS = 1000


def ledger_rows(
    runs: list[tuple[Job, dict[str, Any]]], *, client: str | None = None, date: str | None = None
) -> list[dict[str, Any]]:
    """One row per finished run (attempt), oldest first, filtered by client and UTC start date."""
    rows = []
    for job, run in runs:
        day = str(run.get("started_at") or "")[:10]
        if (client is not None and job.client != client) or (date is not None and day != date):
            continue
        rows.append(
            {
                "job_id": job.job_id,
                "client": job.client,
                "date": day,
                "app": job.app,
                "task_class": run.get("task_class", job.task_class),
                "attempt": run.get("attempt"),
                "capacity_type": run.get("capacity_type"),
                "instance_type": run.get("instance_type"),
                "price_per_hour": run.get("price_per_hour"),
                "seconds": run.get("seconds", 0.0),
                "cost": run.get("cost", 0.0),
                "outcome": run.get("outcome"),
                "started_at": run.get("started_at"),
            }
        )
    rows.sort(key=lambda r: (str(r["started_at"]), r["job_id"]))
    return rows


def cost_report(
    runs: list[tuple[Job, dict[str, Any]]],
    on_demand_price: float,
    *,
    client: str | None = None,
    date: str | None = None,
) -> dict[str, Any]:
    """Spot share and savings against all-on-demand per client and day, plus the SPEC's formula."""
    rows = ledger_rows(runs, client=client, date=date)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["client"], row["date"])].append(row)
    days = []
    for (c, d), group in sorted(groups.items()):
        spot_runs = sum(1 for r in group if r["capacity_type"] == policy.SPOT)
        days.append(
            {
                "client": c,
                "date": d,
                "runs": len(group),
                "spot_runs": spot_runs,
                "on_demand_runs": len(group) - spot_runs,
                **policy.savings(group, on_demand_price).to_dict(),
            }
        )
    return {
        "client": client,
        "date": date,
        "on_demand_price_per_hour": on_demand_price,
        "days": days,
        "total": policy.savings(rows, on_demand_price).to_dict(),
        "ledger": rows[-MAX_LEDGER_ROWS:],
        "ledger_rows": len(rows),
    }
