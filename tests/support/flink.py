"""The Flink job tests' interpreter, time limit and expected stage contents."""

from __future__ import annotations

from pathlib import Path

from tests.support import REPO
from tests.support.flink_day import CLIENT, DAY

FLINK_PYTHON = REPO / ".venv-flink" / "bin" / "python"


JOB_TIMEOUT_S = 300  # a PyFlink job takes ~10 s alone; far longer on a loaded 2-core machine


def stage(warehouse: Path, name: str) -> Path:
    return warehouse / CLIENT / DAY / name


def expected_stats(rows: list[dict]) -> dict:
    totals = {f: sum(r[f] for r in rows) for f in ("events", "logins", "failed_logins", "transactions")}
    totals["amount_total"] = sum(r["amount_total"] for r in rows)  # quarters: exact in any order
    return {"users": len(rows), "totals": totals}
