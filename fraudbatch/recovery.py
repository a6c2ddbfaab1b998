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
import json
import os
import sys
from pathlib import Path

from fraudcore.clients import ConfigError
from fraudcore.paths import STAGES
from pipeline.day import ClientDay
from pipeline.status import DayStatus, day_status, invalidate

# Exit code of a wrapper or `fraudbatch run` whose day completed but had files set aside.
PARTIAL_EXIT = 15


def stage_tasks() -> dict[str, str]:
    """Stage folder -> Luigi task family, for the tasks that write a stage."""
    import batch_tasks

    out = {}
    for name in batch_tasks.__all__:
        cls = getattr(batch_tasks, name)
        if getattr(cls, "stage", "") and cls.stage not in out:
            out[cls.stage] = name
    return out


def format_status(st: DayStatus) -> str:
    """The status as a person reads it."""
    width = max(len(s.stage) for s in st.stages) if st.stages else 5
    lines = [
        f"{st.client} {st.date}: "
        + ("final" if st.final.get("final") else "provisional")
        + f" ({st.final.get('final_reason')})"
        + (", PARTIAL: files were set aside" if st.partial else "")
    ]
    marks = {"done": "done ", "stale": "STALE", "failed": "FAILED", "missing": "-    "}
    for s in st.stages:
        lines.append(
            f"  {s.stage:<{width}}  {marks[s.state]:<6} {s.task}" + (f"  {s.message}" if s.message else "")
        )
    lines.append(
        "input: " + (st.changes.describe() + " since the last fetch" if st.fetched else "not fetched")
    )
    for f in st.files_quarantined:
        lines.append(f"  set aside: {f['source_file']} ({f['reason']})")
    r = st.results
    lines.append(
        f"results: {r['url']} "
        + (
            f"version {r.get('version')}, " + ("current" if r.get("current") else "from an older input")
            if r.get("sent")
            else "not sent"
        )
    )
    lines.append("next: " + st.next_step())
    return "\n".join(lines)


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


def client_day(client_name: str, date: str) -> ClientDay:
    """The client-day named on the command line, from the pipeline's settings."""
    from batch_tasks.config import settings

    return settings().resolve(client_name, date)


def status_of(client_name: str, date: str) -> DayStatus:
    day = client_day(client_name, date)
    with day.tables() as tables:
        runs = tables.list_runs(day.name, day.date.isoformat())
    return day_status(day, stage_tasks(), runs)


def cmd_status(args: argparse.Namespace) -> int:
    st = status_of(args.client, args.date)
    print(json.dumps(st.as_dict(), indent=2, sort_keys=True) if args.json else format_status(st))
    return PARTIAL_EXIT if args.partial_exit and st.partial else 0


def cmd_rerun(args: argparse.Namespace) -> int:
    from fraudbatch.cli import run_luigi

    stage = resolve_stage(args.from_stage)
    removed = invalidate(client_day(args.client, args.date).paths, stage)
    print(
        f"invalidated {args.client} {args.date} from {stage}: "
        + (", ".join(removed) if removed else "nothing was there yet"),
        flush=True,
    )
    return run_luigi(
        args.task, args.client, args.date, workers=args.workers, local_scheduler=args.local_scheduler
    )


def add_parsers(sub) -> None:
    os.environ.setdefault("LUIGI_CONFIG_PATH", str(Path(__file__).resolve().parent.parent / "luigi.cfg"))
    s = sub.add_parser(
        "status",
        help="each stage of a client-day (done / stale / failed), the input "
        "against the fetched snapshot, and what to run",
    )
    s.add_argument("--client", required=True)
    s.add_argument("--date", required=True)
    s.add_argument("--json", action="store_true", help="the status as JSON")
    s.add_argument(
        "--partial-exit",
        action="store_true",
        help=f"exit {PARTIAL_EXIT} when the day is partial (files set aside); the cron wrappers use it",
    )
    s.set_defaults(func=cmd_status)
    r = sub.add_parser("rerun", help="invalidate a stage and everything after it, then run the day again")
    r.add_argument("--client", required=True)
    r.add_argument("--date", required=True)
    r.add_argument(
        "--from",
        dest="from_stage",
        default="raw",
        help=f"first stage to make again (default raw: fetch everything): {', '.join(STAGES)}",
    )
    r.add_argument("--task", default="MonitorTracker", help="the task to run afterwards")
    r.add_argument("--workers", type=int, default=5)
    r.add_argument("--local-scheduler", action="store_true")
    r.set_defaults(func=cmd_rerun)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: fraudbatch status|rerun …")
