"""monitor/: the day's run records, collected into one document and one results row."""

from __future__ import annotations

import json
import time
from typing import Any

from fraudcore.atomic import write_json
from pipeline.day import ClientDay
from pipeline.warehouse import labeling_doc


def monitor(day: ClientDay) -> dict[str, Any]:
    """monitor/: the day's run records (latest per task) and a results row with the same."""
    date = day.date.isoformat()
    latest: dict[str, dict[str, Any]] = {}
    with day.tables() as tables:
        for r in sorted(tables.list_runs(day.name, date), key=lambda r: r.finished_ms or 0):
            latest[r.task] = {
                "status": r.status,
                "duration_s": r.duration_s,
                "rows": r.rows,
                "run_id": r.run_id,
                "message": r.message,
            }
        failed = sorted(t for t, r in latest.items() if r["status"] != "DONE")
        doc = {
            "client": day.name,
            "date": date,
            "tasks": dict(sorted(latest.items())),
            "failed": failed,
            "labeling": labeling_doc(day.paths),
        }
        tables.write_result(
            day.name, f"daily-{date}", "monitor", json.dumps(doc, sort_keys=True), int(time.time() * 1000)
        )
        meta: dict[str, Any] = {}
        with day.paths.output("monitor", meta) as tmp:
            write_json(tmp / "monitor.json", doc)
            meta.update(tasks=len(latest), failed=len(failed))
    return meta
