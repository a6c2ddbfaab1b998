"""Readers of stage outputs that several steps share."""
from __future__ import annotations

import json

from fraudcore.paths import WorkPaths, read_json


def risk_rows(paths: WorkPaths) -> list[dict]:
    """risk/scores/ rows, by user id."""
    from jobs.common import read_parquet_rows

    rows = read_parquet_rows(paths.stage("risk") / "scores")
    return sorted(rows, key=lambda r: r["user_id"])


def campaigns(paths: WorkPaths) -> list[dict]:
    """campaigns/campaigns.json: every campaign of the day."""
    return json.loads((paths.stage("campaigns") / "campaigns.json").read_text(encoding="utf-8"))


def labeling_doc(paths: WorkPaths) -> dict | None:
    """labeling/labeling.json, or None when the day has not been labelled."""
    f = paths.stage("labeling") / "labeling.json"
    return read_json(f) if f.is_file() else None
