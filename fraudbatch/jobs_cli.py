"""`fraudbatch jobs …`: DCluster's jobs from a terminal, for the operator on call (docs/operations.md).

    fraudbatch jobs list [--client C] [--state HANGING] [--app campaign] [--limit 50]
    fraudbatch jobs show ID          state, capacity, attempts, times, transitions, log tail
    fraudbatch jobs log ID           the whole log
    fraudbatch jobs terminate ID     asks for confirmation (--yes to skip); X-Actor is --as or $USER

The service is DCLUSTER_URL, else http://127.0.0.1:8091 (the [dcluster] default of luigi.cfg);
--url overrides both.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from dcluster_client.client import DClusterClient, DClusterError, JobStatus
from fraudcore.audit import current_user

DEFAULT_URL = "http://127.0.0.1:8091"
COLUMNS = ("job_id", "client", "app", "state", "capacity", "attempts", "started", "exit", "message")


def add_parser(sub: Any) -> None:
    """Register `jobs` and its actions on the fraudbatch command line."""
    j = sub.add_parser(
        "jobs",
        help="list, inspect and terminate DCluster jobs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"DCluster base URL (default: $DCLUSTER_URL or {DEFAULT_URL})")
    actions = j.add_subparsers(dest="action", required=True)
    ls = actions.add_parser("list", help="jobs, newest first", parents=[common])
    ls.add_argument("--client")
    ls.add_argument(
        "--state",
        type=str.upper,
        choices=("PENDING", "RUNNING", "HANGING", "COMPLETED", "FAILED", "TERMINATED"),
    )
    ls.add_argument("--app", help="job module, e.g. campaign")
    ls.add_argument("--capacity", choices=("spot", "on_demand"))
    ls.add_argument("--limit", type=int, default=50)
    for name, text in (("show", "one job in detail"), ("log", "one job's whole log")):
        a = actions.add_parser(name, help=text, parents=[common])
        a.add_argument("job_id")
    t = actions.add_parser("terminate", help="stop a job (asks for confirmation)", parents=[common])
    t.add_argument("job_id")
    t.add_argument("--yes", action="store_true", help="do not ask")
    t.add_argument("--as", dest="actor", help="your name in the audit log (default: $USER)")
    j.set_defaults(func=run)


def run(args: argparse.Namespace, *, ask: Callable[[str], str] = input) -> int:
    """Carry out one `jobs` action; 0 on success, 1 when DCluster refused or could not be reached."""
    url = args.url or os.environ.get("DCLUSTER_URL") or DEFAULT_URL
    actor = getattr(args, "actor", None) or current_user()
    client = DClusterClient(url, timeout=10, attempts=1, actor=actor)
    try:
        if args.action == "list":
            jobs = client.jobs(
                client=args.client,
                state=args.state,
                app=args.app,
                capacity=args.capacity,
                limit=str(args.limit),
            )
            print(table([row(j) for j in jobs]) if jobs else "no jobs match")
        elif args.action == "show":
            print(describe(client.status(args.job_id)))
        elif args.action == "log":
            sys.stdout.write(client.log(args.job_id))
        elif args.action == "terminate":
            job = client.status(args.job_id)
            if job.is_terminal:
                print(f"job {job.job_id} is already {job.state}; nothing to terminate", file=sys.stderr)
                return 1
            if not args.yes:
                answer = ask(
                    f"terminate {job.job_id} ({job.client} {job.app}, {job.state} on "
                    f"{job.capacity_type or 'no capacity yet'})? [y/N] "
                )
                if answer.strip().lower() not in ("y", "yes"):
                    print("not terminated")
                    return 1
            done = client.terminate(args.job_id)
            print(f"job {done.job_id} {done.state} (exit code {done.exit_code}); audit actor {actor}")
    except DClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def row(job: JobStatus) -> tuple[str, ...]:
    """One job as the cells of COLUMNS."""
    started = (job.started_at or "")[:19].replace("T", " ")
    message = job.message if len(job.message) <= 60 else job.message[:57] + "..."
    exit_code = "" if job.exit_code is None else str(job.exit_code)
    return (
        job.job_id,
        job.client,
        job.app,
        job.state,
        job.capacity_type,
        str(job.attempts),
        started,
        exit_code,
        message,
    )


def table(rows: Sequence[Sequence[str]]) -> str:
    """Rows under COLUMNS, each column as wide as its widest cell."""
    widths = [max(len(c) for c in col) for col in zip(COLUMNS, *rows, strict=True)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        for cells in (COLUMNS, *rows)
    ]
    return "\n".join(lines)


def describe(job: JobStatus) -> str:
    """A job in detail: identity, state, capacity, times, its transitions and the end of its log."""
    raw = job.raw
    lines = [
        f"job        {job.job_id} ({job.namespace})",
        f"what       {job.client} {job.app} ({raw.get('engine', 'spark')}, {raw.get('priority', '')}, "
        f"{raw.get('strategy', '')})",
        f"state      {job.state}" + (f", exit code {job.exit_code}" if job.exit_code is not None else ""),
        f"capacity   {job.capacity_type or '-'}, attempt {job.attempts}",
        f"started    {job.started_at or '-'}",
        f"finished   {job.finished_at or '-'}",
    ]
    if job.message:
        lines.append(f"message    {job.message}")
    transitions = raw.get("transitions") or []
    if transitions:
        lines.append("history")
        lines += [
            f"  {t.get('at', '')}  {t.get('state', '')}  {t.get('reason', '')}".rstrip() for t in transitions
        ]
    if job.log_tail:
        lines.append("log tail")
        lines += [f"  {line}" for line in job.log_tail[-15:]]
    return "\n".join(lines)
