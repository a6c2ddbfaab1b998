"""`fraudbatch status` and `fraudbatch rerun`: where a client-day stands, and how to run it again.

    fraudbatch status --client C --date D [--json]
    fraudbatch rerun --client C --date D [--from STAGE] [--task MonitorTracker] [--local-scheduler]

status lists every stage of the day as done (made from the day's current input), stale (made
from an older snapshot of the bucket: the next run makes it again), failed (its latest run
failed) or missing, then the input listing against the fetched snapshot, whether the day is
final and complete, and the command to run. rerun invalidates a stage and every stage after it
(the warehouse folders are moved aside, the last stage first) and runs the day again.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fraudcore import snapshot
from fraudcore.clients import ClientConfig, ConfigError
from fraudcore.paths import STAGES, WorkPaths, done_meta, is_done

# Exit code of a wrapper or `fraudbatch run` whose day completed but had files set aside.
PARTIAL_EXIT = 15


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
    final: dict
    partial: bool
    files_quarantined: list[dict] = field(default_factory=list)
    results: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return all(s.state == "done" for s in self.stages if s.task != "-")

    def next_step(self) -> str:
        """The command a person should run now, with why."""
        day = f"--client {self.client} --date {self.date}"
        failed = [s for s in self.stages if s.state == "failed"]
        if failed:
            return (f"{failed[0].task} failed: fix the cause named above (for a bad file, replace or remove "
                    f"it in the bucket), then `fraudbatch run {day}`; the day fetches what changed. To make "
                    f"a stage again from scratch: `fraudbatch rerun {day} --from {failed[0].stage}`")
        if not self.fetched:
            return f"not fetched yet: `fraudbatch run {day}` (or wait for the cron run)"
        if self.changes or any(s.state == "stale" for s in self.stages):
            return (f"the bucket changed since the last fetch: the next scheduled run re-ingests it, or "
                    f"now: `fraudbatch run {day}`")
        if not self.complete:
            return f"unfinished: `fraudbatch run {day}`"
        return "nothing to do: every stage is current" + ("" if self.final.get("final") else
                                                           " (provisional until the day closes)")

    def as_dict(self) -> dict:
        return {
            "client": self.client, "date": self.date, "complete": self.complete, "partial": self.partial,
            **self.final, "changes": {"added": list(self.changes.added), "changed": list(self.changes.changed),
                                      "removed": list(self.changes.removed)},
            "stages": [vars(s) for s in self.stages], "files_quarantined": self.files_quarantined,
            "results": self.results, "next": self.next_step(),
        }


def stage_tasks() -> dict[str, str]:
    """Stage folder -> Luigi task family, for the tasks that write a stage."""
    import batch_tasks

    out = {}
    for name in batch_tasks.__all__:
        cls = getattr(batch_tasks, name)
        if getattr(cls, "stage", "") and cls.stage not in out:
            out[cls.stage] = name
    return out


def day_status(client: ClientConfig, day: dt.date, paths: WorkPaths, store, runs: Iterable = (),
               now: dt.datetime | None = None) -> DayStatus:
    """Where the client-day stands; `runs` are its run records (storage.tables.RunRecord)."""
    from fraudbatch import steps

    listing = steps.list_input(store, client, day, paths, now=now)
    raw = done_meta(paths.stage("raw"))
    fetched = snapshot.from_doc(raw.get("snapshot"))
    changes = snapshot.diff(fetched, listing) if raw else snapshot.Changes()
    current = raw.get("input") if raw and not changes else None
    latest: dict[str, object] = {}
    for r in sorted(runs, key=lambda r: r.finished_ms):
        latest[r.task] = r
    tasks = stage_tasks()
    stages = []
    for stage in STAGES:
        task = tasks.get(stage, "-")
        run = latest.get(task)
        if run is not None and run.status == "FAILED":
            stages.append(StageState(stage, task, "failed", run.message.splitlines()[-1] if run.message else ""))
        elif is_done(paths.stage(stage)):
            made = done_meta(paths.stage(stage)).get("input")
            stages.append(StageState(stage, task, "done" if made and made == current else "stale"))
        elif task != "-":
            stages.append(StageState(stage, task, "missing"))
    # Ferry in real-time mode and labels are optional branches; show them only when they ran.
    stages = [s for s in stages if not (s.state == "missing" and s.stage in ("ferry_cron",))]
    connector = paths.stage("connector") / "stats.json"
    stats = json.loads(connector.read_text(encoding="utf-8")) if connector.is_file() else {}
    quarantined = [{"source_file": f["source_file"], "reason": f.get("reason", "")}
                   for f in stats.get("files") or [] if isinstance(f, dict) and f.get("status") == "quarantined"]
    keys = [f.key for f in listing]
    return DayStatus(client.name, day.isoformat(), stages, changes, bool(raw),
                     snapshot.closure(client, day, keys, now or dt.datetime.now(dt.UTC)).as_dict(),
                     bool(stats.get("partial")), quarantined, _results(store, client, day, current))


def _results(store, client: ClientConfig, day: dt.date, current: str | None) -> dict:
    from fraudbatch import steps
    from storage.errors import ObjectNotFound

    prefix = steps.results_prefix(client, day)
    try:
        manifest = json.loads(store.get_bytes(client.bucket, prefix + "_manifest.json"))
    except (ObjectNotFound, ValueError):
        return {"sent": False, "url": store.url(client.bucket, prefix)}
    return {"sent": store.exists(client.bucket, prefix + "_SUCCESS"), "url": store.url(client.bucket, prefix),
            "version": manifest.get("version"), "final": manifest.get("final"),
            "current": manifest.get("input_snapshot") == current and current is not None}


def format_status(st: DayStatus) -> str:
    """The status as a person reads it."""
    width = max(len(s.stage) for s in st.stages) if st.stages else 5
    lines = [f"{st.client} {st.date}: " + ("final" if st.final.get("final") else "provisional")
             + f" ({st.final.get('final_reason')})" + (", PARTIAL: files were set aside" if st.partial else "")]
    marks = {"done": "done ", "stale": "STALE", "failed": "FAILED", "missing": "-    "}
    for s in st.stages:
        lines.append(f"  {s.stage:<{width}}  {marks[s.state]:<6} {s.task}" + (f"  {s.message}" if s.message else ""))
    lines.append("input: " + (st.changes.describe() + " since the last fetch" if st.fetched else "not fetched"))
    for f in st.files_quarantined:
        lines.append(f"  set aside: {f['source_file']} ({f['reason']})")
    r = st.results
    lines.append(f"results: {r['url']} " + (f"version {r.get('version')}, " + ("current" if r.get("current") else
                                            "from an older input") if r.get("sent") else "not sent"))
    lines.append("next: " + st.next_step())
    return "\n".join(lines)


def invalidate(paths: WorkPaths, from_stage: str) -> list[str]:
    """Move aside `from_stage` and every stage after it (last first); the names removed.

    Each folder is renamed to a hidden sibling in one step, so a reader sees a stage whole or
    not at all, and then deleted. raw/ invalidated means every file is downloaded again.
    """
    if from_stage not in STAGES:
        raise ConfigError(f"unknown stage {from_stage!r}; stages: {', '.join(STAGES)}")
    chosen = list(STAGES[STAGES.index(from_stage):])
    removed = []
    for stage in reversed(chosen):
        folder = paths.stage(stage)
        if folder.exists():
            aside = folder.parent / f".{stage}.invalidated-{uuid.uuid4().hex[:8]}"
            os.replace(folder, aside)
            shutil.rmtree(aside, ignore_errors=True)
            removed.append(stage)
    return list(reversed(removed))


def resolve_stage(name: str) -> str:
    """A stage folder name, from a stage name or the task that writes it (Connector -> connector)."""
    if name in STAGES:
        return name
    by_task = {task.lower(): stage for stage, task in stage_tasks().items()}
    aliases = {"connector": "connector", "sparkconnectorrunner": "connector", "fetcher": "raw"}
    found = by_task.get(name.lower()) or aliases.get(name.lower())
    if not found:
        raise ConfigError(f"unknown stage {name!r}; stages: {', '.join(STAGES)} (or their tasks' names)")
    return found


# --- command line -----------------------------------------------------------------------------

def _context(client_name: str, date: str):
    from batch_tasks.config import batch_tasks, objectstore, tables
    from fraudcore.clients import get_client, parse_date

    cfg = get_client(client_name, batch_tasks().registry_path())
    day = parse_date(date)
    return cfg, day, WorkPaths(batch_tasks().warehouse_path(), cfg.name, day), objectstore().store(), tables()


def status_of(client_name: str, date: str) -> DayStatus:
    cfg, day, paths, store, tables = _context(client_name, date)
    table_store = tables.store()
    try:
        runs = table_store.list_runs(cfg.name, day.isoformat())
    finally:
        table_store.close()
    return day_status(cfg, day, paths, store, runs)


def cmd_status(args: argparse.Namespace) -> int:
    st = status_of(args.client, args.date)
    print(json.dumps(st.as_dict(), indent=2, sort_keys=True) if args.json else format_status(st))
    return PARTIAL_EXIT if args.partial_exit and st.partial else 0


def cmd_rerun(args: argparse.Namespace) -> int:
    from fraudbatch.cli import run_luigi

    stage = resolve_stage(args.from_stage)
    _cfg, _day, paths, _store, _tables = _context(args.client, args.date)
    removed = invalidate(paths, stage)
    print(f"invalidated {args.client} {args.date} from {stage}: "
          + (", ".join(removed) if removed else "nothing was there yet"), flush=True)
    return run_luigi(args.task, args.client, args.date, workers=args.workers,
                     local_scheduler=args.local_scheduler)


def add_parsers(sub) -> None:
    os.environ.setdefault("LUIGI_CONFIG_PATH", str(Path(__file__).resolve().parent.parent / "luigi.cfg"))
    s = sub.add_parser("status", help="each stage of a client-day (done / stale / failed), the input "
                                      "against the fetched snapshot, and what to run")
    s.add_argument("--client", required=True)
    s.add_argument("--date", required=True)
    s.add_argument("--json", action="store_true", help="the status as JSON")
    s.add_argument("--partial-exit", action="store_true",
                   help=f"exit {PARTIAL_EXIT} when the day is partial (files set aside); the cron wrappers use it")
    s.set_defaults(func=cmd_status)
    r = sub.add_parser("rerun", help="invalidate a stage and everything after it, then run the day again")
    r.add_argument("--client", required=True)
    r.add_argument("--date", required=True)
    r.add_argument("--from", dest="from_stage", default="raw",
                   help=f"first stage to make again (default raw: fetch everything): {', '.join(STAGES)}")
    r.add_argument("--task", default="MonitorTracker", help="the task to run afterwards")
    r.add_argument("--workers", type=int, default=5)
    r.add_argument("--local-scheduler", action="store_true")
    r.set_defaults(func=cmd_rerun)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: fraudbatch status|rerun …")
