"""monitor/: the day's run records, collected into one document and one results row."""
from __future__ import annotations

import json
import time

from fraudcore.atomic import write_json
from pipeline.day import ClientDay
from pipeline.warehouse import labeling_doc


def monitor(day: ClientDay) -> dict:
    """monitor/: the day's run records (latest per task) and a results row with the same."""
    date = day.date.isoformat()
    latest: dict[str, dict] = {}
    with day.tables() as tables:
        for r in sorted(tables.list_runs(day.name, date), key=lambda r: r.finished_ms):
            latest[r.task] = {"status": r.status, "duration_s": r.duration_s, "rows": r.rows,
                              "run_id": r.run_id, "message": r.message}
        doc = {"client": day.name, "date": date, "tasks": dict(sorted(latest.items())),
               "failed": sorted(t for t, r in latest.items() if r["status"] != "DONE"),
               "labeling": labeling_doc(day.paths)}
        tables.write_result(day.name, f"daily-{date}", "monitor", json.dumps(doc, sort_keys=True),
                            int(time.time() * 1000))
        meta: dict = {}
        with day.paths.output("monitor", meta) as tmp:
            write_json(tmp / "monitor.json", doc)
            meta.update(tasks=len(latest), failed=len(doc["failed"]))
    return meta
