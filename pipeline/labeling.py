"""labeling/: the day's flags against the client's labels."""

from __future__ import annotations

from typing import Any

from fraudcore.atomic import write_json
from pipeline.day import ClientDay
from pipeline.warehouse import risk_rows


def labeling(day: ClientDay) -> dict[str, Any]:
    """labeling/: precision and recall of flagged users against the client's labels, if any."""
    from fraudcore.labeling import evaluate, read_labels

    paths = day.paths
    label_files = sorted((paths.stage("raw") / "labels").glob("*.csv"))
    labels: dict[str, str] = {}
    for f in label_files:
        labels.update(read_labels(f))
    predictions = {r["user_id"]: bool(r["is_flagged"]) for r in risk_rows(paths)}
    doc: dict[str, Any] = {"label_files": len(label_files)}
    doc.update(evaluate(predictions, labels) if labels else {"labelled_users": 0, "note": "no labels"})
    meta: dict[str, Any] = {}
    with paths.output("labeling", meta) as tmp:
        write_json(tmp / "labeling.json", doc)
        meta.update({k: v for k, v in doc.items() if isinstance(v, int)})
    return meta
