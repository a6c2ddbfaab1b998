"""The run that makes a client-day: its id, the code version, and the seconds each task took."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.day import ClientDay

if TYPE_CHECKING:
    from storage.model import TableStore


@dataclass(frozen=True)
class RunInfo:
    """What the day's summary and manifest say about the run that made them."""

    run_id: str
    code_version: str
    task_seconds: Mapping[str, float] = field(default_factory=dict)
    """Seconds of the latest successful run of every task of the day so far."""


def latest_task_seconds(tables: TableStore, day: ClientDay) -> dict[str, float]:
    """Seconds of the latest successful run of every task of the client-day, from its run records."""
    out: dict[str, float] = {}
    for r in sorted(tables.list_runs(day.name, day.date.isoformat()), key=lambda r: r.finished_ms or 0):
        if r.status == "DONE" and r.duration_s is not None:
            out[r.task] = r.duration_s
    return out


def run_info(day: ClientDay, run_id: str) -> RunInfo:
    """This run's RunInfo, with the task seconds read from the table store now."""
    with day.tables() as tables:
        seconds = latest_task_seconds(tables, day)
    return RunInfo(run_id, code_version(), seconds)


def code_version() -> str:
    """The package version plus the git commit when run from a checkout."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("fraudbatch")
    except PackageNotFoundError:
        v = "0+unknown"
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{v}+{sha}" if sha else v
