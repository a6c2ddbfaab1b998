"""Readers of stage outputs that several steps share."""

from __future__ import annotations

import json
from typing import Any

from fraudcore.paths import WorkPaths, read_json


def risk_rows(paths: WorkPaths) -> list[dict[str, Any]]:
    """risk/scores/ rows, by user id."""
    from jobs.common import read_parquet_rows

    rows = read_parquet_rows(paths.stage("risk") / "scores")
    return sorted(rows, key=lambda r: r["user_id"])


def campaigns(paths: WorkPaths) -> list[dict[str, Any]]:
    """campaigns/campaigns.json: every campaign of the day."""
    found: list[dict[str, Any]] = json.loads(
        (paths.stage("campaigns") / "campaigns.json").read_text(encoding="utf-8")
    )
    return found


def labeling_doc(paths: WorkPaths) -> dict[str, Any] | None:
    """labeling/labeling.json, or None when the day has not been labelled."""
    f = paths.stage("labeling") / "labeling.json"
    return read_json(f) if f.is_file() else None
