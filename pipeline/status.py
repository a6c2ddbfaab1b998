"""Where a client-day stands (each stage done, stale, failed or missing), and invalidating stages.

A stage is done when it was made from the day's current input, stale when it was made from an
older snapshot of the bucket (the next run makes it again), failed when its task's latest run
failed, and missing otherwise. Invalidation moves a stage and every stage after it aside, so
the next run makes them again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fraudcore import snapshot
from fraudcore.clients import ConfigError
from fraudcore.paths import STAGES, WorkPaths, done_meta, is_done
from pipeline.day import ClientDay
from pipeline.ingest import list_input
from pipeline.layout import MANIFEST, SUCCESS

if TYPE_CHECKING:
    from storage.model import RunRecord


@dataclass
class StageState:
    stage: str
    task: str
    state: str  # done | stale | failed | missing
    message: str = ""


@dataclass
class DayStatus:
    client: str
    date: str
    stages: list[StageState]
    changes: snapshot.Changes
    fetched: bool
    final: dict[str, Any]
    partial: bool
    files_quarantined: list[dict[str, Any]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return all(s.state == "done" for s in self.stages if s.task != "-")

    def next_step(self) -> str:
        """The command a person should run now, with why."""
        day = f"--client {self.client} --date {self.date}"
        failed = [s for s in self.stages if s.state == "failed"]
        if failed:
            return (
                f"{failed[0].task} failed: fix the cause named above (for a bad file, replace or remove "
                f"it in the bucket), then `fraudbatch run {day}`; the day fetches what changed. To make "
                f"a stage again from scratch: `fraudbatch rerun {day} --from {failed[0].stage}`"
            )
        if not self.fetched:
            return f"not fetched yet: `fraudbatch run {day}` (or wait for the cron run)"
        if self.changes or any(s.state == "stale" for s in self.stages):
            return (
                f"the bucket changed since the last fetch: the next scheduled run re-ingests it, or "
                f"now: `fraudbatch run {day}`"
            )
        if not self.complete:
            return f"unfinished: `fraudbatch run {day}`"
        return "nothing to do: every stage is current" + (
            "" if self.final.get("final") else " (provisional until the day closes)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "date": self.date,
            "complete": self.complete,
            "partial": self.partial,
            **self.final,
            "changes": {
                "added": list(self.changes.added),
                "changed": list(self.changes.changed),
                "removed": list(self.changes.removed),
            },
            "stages": [vars(s) for s in self.stages],
            "files_quarantined": self.files_quarantined,
            "results": self.results,
            "next": self.next_step(),
        }


def day_status(
    day: ClientDay, tasks: Mapping[str, str], runs: Iterable[RunRecord] = (), now: dt.datetime | None = None
) -> DayStatus:
    """Where the client-day stands.

    `tasks` maps each stage folder to the task family that writes it; `runs` are the day's run
    records (storage.model.RunRecord), of which the latest per task counts.
    """
    paths = day.paths
    listing = list_input(day, now=now)
    raw = done_meta(paths.stage("raw"))
    fetched = snapshot.from_doc(raw.get("snapshot"))
    changes = snapshot.diff(fetched, listing) if raw else snapshot.Changes()
    current = raw.get("input") if raw and not changes else None
    latest: dict[str, RunRecord] = {}
    for r in sorted(runs, key=lambda r: r.finished_ms or 0):
        latest[r.task] = r
    stages = []
    for stage in STAGES:
        task = tasks.get(stage, "-")
        run = latest.get(task)
        if run is not None and run.status == "FAILED":
            stages.append(
                StageState(stage, task, "failed", run.message.splitlines()[-1] if run.message else "")
            )
        elif is_done(paths.stage(stage)):
            made = done_meta(paths.stage(stage)).get("input")
            stages.append(StageState(stage, task, "done" if made and made == current else "stale"))
        elif task != "-":
            stages.append(StageState(stage, task, "missing"))
    # Ferry in real-time mode and labels are optional branches; show them only when they ran.
    stages = [s for s in stages if not (s.state == "missing" and s.stage in ("ferry_cron",))]
    connector = paths.stage("connector") / "stats.json"
    stats = json.loads(connector.read_text(encoding="utf-8")) if connector.is_file() else {}
    quarantined = [
        {"source_file": f["source_file"], "reason": f.get("reason", "")}
        for f in stats.get("files") or []
        if isinstance(f, dict) and f.get("status") == "quarantined"
    ]
    keys = [f.key for f in listing]
    return DayStatus(
        day.name,
        day.date.isoformat(),
        stages,
        changes,
        bool(raw),
        snapshot.closure(day.client, day.date, keys, now or dt.datetime.now(dt.UTC)).as_dict(),
        bool(stats.get("partial")),
        quarantined,
        sent_results(day, current),
    )


def sent_results(day: ClientDay, current: str | None) -> dict[str, Any]:
    """The results in the client's bucket: sent, url, version, final, and whether made from `current`."""
    from storage.errors import ObjectNotFound

    prefix = day.results_prefix
    url = day.url(prefix)
    try:
        manifest = json.loads(day.store.get_bytes(day.bucket, prefix + MANIFEST))
    except (ObjectNotFound, ValueError):
        return {"sent": False, "url": url}
    return {
        "sent": day.store.exists(day.bucket, prefix + SUCCESS),
        "url": url,
        "version": manifest.get("version"),
        "final": manifest.get("final"),
        "current": manifest.get("input_snapshot") == current and current is not None,
    }


def invalidate(paths: WorkPaths, from_stage: str) -> list[str]:
    """Move aside `from_stage` and every stage after it (last first); the names removed.

    Each folder is renamed to a hidden sibling in one step, so a reader sees a stage whole or
    not at all, and then deleted. raw/ invalidated means every file is downloaded again.
    """
    if from_stage not in STAGES:
        raise ConfigError(f"unknown stage {from_stage!r}; stages: {', '.join(STAGES)}")
    chosen = list(STAGES[STAGES.index(from_stage) :])
    removed = []
    for stage in reversed(chosen):
        folder = paths.stage(stage)
        if folder.exists():
            aside = folder.parent / f".{stage}.invalidated-{uuid.uuid4().hex[:8]}"
            os.replace(folder, aside)
            shutil.rmtree(aside, ignore_errors=True)
            removed.append(stage)
    return list(reversed(removed))
