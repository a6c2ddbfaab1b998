"""`fraudbatch`: run a client-day, manage the embedded services, select clients for cron.

fraudbatch demo [--client demo] [--date 2025-11-21] [--events 20000]
fraudbatch run --client C --date D [--task MonitorTracker] [--local-scheduler]
fraudbatch services start|stop|status
fraudbatch clients [+name ...] [-name ...]
fraudbatch day --client C today|yesterday   (the client's date, in its timezone)
fraudbatch check --client C --date D
fraudbatch status --client C --date D [--json]   (stages done / stale / failed, what to run)
fraudbatch rerun --client C --date D [--from STAGE]   (make a stage and those after it again)
fraudbatch bench [--events 1000000]
fraudbatch maintenance [--keep-days 14]
fraudbatch jobs list|show|log|terminate …   (DCluster jobs; fraudbatch jobs --help)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from fraudbatch import days, jobs_cli, recovery, services
from fraudcore.clients import ClientConfig, ConfigError, get_client, load_registry, parse_date
from pipeline.day import ClientDay

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEMO_DATE = "2025-11-21"
BAD_ARGUMENT_EXIT = 2


def var_dir() -> Path:
    return Path(os.environ.get("FRAUDBATCH_VAR") or PROJECT_ROOT / "var")


def luigi_env() -> dict[str, str]:
    """The environment a luigi run gets: this project's luigi.cfg and a run id."""
    env = dict(os.environ)
    env.setdefault("LUIGI_CONFIG_PATH", str(PROJECT_ROOT / "luigi.cfg"))
    env.setdefault("FRAUDBATCH_RUN_ID", time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}")
    return env


def select_clients(selectors: list[str], registry: str | None = None) -> list[str]:
    """Clients chosen by cron selectors: `+a +b` only those; `-a -b` all but those; none: all."""
    names = sorted(load_registry(registry))
    plus = [s[1:] for s in selectors if s.startswith("+")]
    minus = {s[1:] for s in selectors if s.startswith("-")}
    bad = [s for s in selectors if s[:1] not in ("+", "-") or s[1:] not in names]
    if bad:
        raise ConfigError(
            f"bad client selector(s) {bad}: use +name or -name with names from {', '.join(names)}"
        )
    chosen = plus or names
    return [n for n in chosen if n not in minus]


def run_luigi(
    task: str,
    client: str,
    date: str,
    *,
    workers: int = 5,
    local_scheduler: bool = False,
    extra: list[str] | None = None,
) -> int:
    """Run one task through luigi and return luigi's exit code (the [retcode] block)."""
    argv = [
        str(BIN / "luigi"),
        "--module",
        "batch_tasks",
        task,
        "--client",
        client,
        "--date",
        date,
        "--workers",
        str(workers),
    ]
    if local_scheduler:
        argv.append("--local-scheduler")
    argv += extra or []
    print("$ " + " ".join(["luigi"] + argv[1:]), flush=True)
    return subprocess.call(argv, cwd=PROJECT_ROOT, env=luigi_env())


def client_day(client: ClientConfig, date: str) -> ClientDay:
    """The client-day of a validated client, with the pipeline's settings (luigi.cfg, FRAUDBATCH_* variables)."""
    from batch_tasks.config import settings

    return settings().client_day(client, parse_date(date))


def ensure_sample_data(day: ClientDay, events: int, seed: int) -> None:
    """Generate the client-day's sample data unless raw data is already there."""
    from pipeline.ingest import bucket_listing, raw_data_keys

    client, date = day.name, day.date.isoformat()
    if raw_data_keys(bucket_listing(day)):
        print(f"raw data for {client} {date} already present: {day.url(day.raw_prefix)}")
        return
    argv = [
        str(BIN / "fraudbatch-datagen"),
        "--client",
        client,
        "--date",
        date,
        "--events",
        str(events),
        "--seed",
        str(seed),
        "--truth-dir",
        str(var_dir() / "truth"),
    ]
    if os.environ.get("FRAUDBATCH_OBJECTSTORE_BACKEND", "local") == "local":
        argv += [
            "--objectstore-root",
            os.environ.get("FRAUDBATCH_OBJECTSTORE_ROOT") or str(var_dir() / "objectstore"),
        ]
    else:
        argv += ["--out", str(var_dir() / "datagen-staging"), "--upload"]
    print("$ " + " ".join(["fraudbatch-datagen"] + argv[1:]), flush=True)
    if subprocess.call(argv, cwd=PROJECT_ROOT) != 0:
        raise SystemExit("sample data generation failed (see above)")


def _results_paths(day: ClientDay) -> tuple[str, Path | None]:
    url = day.url(day.results_prefix)
    local = Path(url[len("file://") :]) if url.startswith("file://") else None
    return url, local


def cmd_demo(args: argparse.Namespace) -> int:
    client = _validate(args.client, args.date)
    os.environ.setdefault("FRAUDBATCH_OBJECTSTORE_ROOT", str(var_dir() / "objectstore"))
    day = client_day(client, args.date)
    ensure_sample_data(day, args.events, args.seed)
    if os.environ.get("FRAUDBATCH_TABLES_BACKEND") == "cassandra":
        # The Cassandra table store needs its local node up and the schema applied (README "Cassandra").
        subprocess.run([str(PROJECT_ROOT / "scripts" / "cassandra.sh"), "start"], check=True)
        subprocess.run([sys.executable, "-m", "storage.migrations"], cwd=PROJECT_ROOT, check=True)
    specs = services.service_specs(var_dir())
    started = services.start(specs.values(), var_dir(), env=luigi_env())
    try:
        if _already_complete(args.client, args.date, "MonitorTracker"):
            print(
                f"{args.client} {args.date} is already complete: nothing to do (to make it again: "
                f"fraudbatch rerun --client {args.client} --date {args.date})"
            )
        code = run_luigi("MonitorTracker", args.client, args.date, workers=args.workers)
    finally:
        services.stop(started, var_dir())
    url, local = _results_paths(day)
    if code == 0:
        print(f"\nresults: {url}")
        if local is not None:
            print(f"report:  {local / 'reports' / 'report.html'}")
            print(f"summary: {local / 'reports' / 'summary.json'}")
            print(day_outcome(json.loads((local / "reports" / "summary.json").read_text(encoding="utf-8"))))
    else:
        print(
            f"\nthe run failed with exit code {code}; see the task log above, and "
            f"`fraudbatch status --client {args.client} --date {args.date}` for what to run"
        )
    return code


def day_outcome(summary: dict) -> str:
    """The day in two lines, from its summary.json: records in and out, users flagged, time per stage."""
    s = summary
    stages = s.get("stage_seconds") or {}
    timing = ", ".join(f"{k} {v:g}" for k, v in stages.items() if k != "total" and v)
    return (
        f"{s['client']} {s['date']}: {s['records_read']:,} records read, {s['records_accepted']:,} accepted, "
        f"{s['records_quarantined']:,} quarantined; {s['users']:,} users, {s['flagged_users']:,} flagged, "
        f"{s.get('fraud_rings', 0)} fraud rings among {s['campaigns']} campaigns\n"
        f"seconds: {stages.get('total', 0):g} in total ({timing})"
    )


def _already_complete(client: str, date: str, task: str) -> bool:
    env = luigi_env()
    probe = (
        f"import batch_tasks as b, datetime as d; "
        f"print(b.{task}(client={client!r}, date=d.date.fromisoformat({date!r})).complete())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    return out.stdout.strip().endswith("True")


def cmd_run(args: argparse.Namespace) -> int:
    """One luigi run; 15 (recovery.PARTIAL_EXIT) when it succeeded but files were set aside."""
    _validate(args.client, args.date)
    code = run_luigi(
        args.task, args.client, args.date, workers=args.workers, local_scheduler=args.local_scheduler
    )
    hint = f"fraudbatch status --client {args.client} --date {args.date}"
    if code != 0:
        print(
            f"the run failed with exit code {code}: `{hint}` shows which stage and what to run",
            file=sys.stderr,
        )
        return code
    st = recovery.status_of(args.client, args.date)
    if st.partial:
        names = ", ".join(f"{f['source_file']} ({f['reason']})" for f in st.files_quarantined[:5])
        print(
            f"the day is partial: files were set aside: {names}. Replace them in the bucket and the next "
            f"run reads them; `{hint}` lists them all",
            file=sys.stderr,
        )
        return recovery.PARTIAL_EXIT
    return 0


def cmd_services(args: argparse.Namespace) -> int:
    specs = services.service_specs(var_dir())
    chosen = [specs[n] for n in (args.names or list(specs))]
    if args.action == "start":
        services.start(chosen, var_dir(), env=luigi_env())
    elif args.action == "stop":
        services.stop([s.name for s in chosen], var_dir())
    else:
        for name, up in services.status(chosen).items():
            print(f"{name}: {'up' if up else 'down'}")
    return 0


def cmd_clients(args: argparse.Namespace) -> int:
    print("\n".join(select_clients(args.selectors)))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    _validate(args.client, args.date)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Generate a large client-day and run the whole pipeline on it, printing time per stage."""
    bench_var = var_dir() / "bench"
    if args.fresh and bench_var.exists():
        shutil.rmtree(bench_var)
    env_over = {
        "FRAUDBATCH_OBJECTSTORE_ROOT": str(bench_var / "objectstore"),
        "FRAUDBATCH_WAREHOUSE": str(bench_var / "warehouse"),
        "FRAUDBATCH_SQLITE_PATH": str(bench_var / "tables.sqlite"),
    }
    os.environ.update(env_over)
    day = client_day(get_client(args.client), args.date)
    t0 = time.monotonic()
    ensure_sample_data(day, args.events, args.seed)
    gen_s = time.monotonic() - t0
    specs = services.service_specs(var_dir())
    started = services.start([specs["dcluster"], specs["fp"]], var_dir(), env=luigi_env())
    try:
        t1 = time.monotonic()
        code = run_luigi("MonitorTracker", args.client, args.date, workers=args.workers, local_scheduler=True)
        wall = time.monotonic() - t1
    finally:
        services.stop(started, var_dir())
    if code != 0:
        print(f"benchmark run failed with exit code {code}")
        return code
    _, local = _results_paths(day)
    summary = json.loads((local / "reports" / "summary.json").read_text()) if local else {}
    print(
        f"\nbenchmark: {args.events} events requested, {summary.get('records_read')} records read, "
        f"{summary.get('users')} users, {summary.get('flagged_users')} flagged, "
        f"{summary.get('campaigns')} campaigns"
    )
    print(f"{'stage':<22}{'seconds':>10}")
    for stage, secs in (summary.get("stage_seconds") or {}).items():
        print(f"{stage:<22}{secs:>10.1f}")
    print(f"{'generation':<22}{gen_s:>10.1f}")
    print(f"{'pipeline wall time':<22}{wall:>10.1f}")
    return 0


def cmd_maintenance(args: argparse.Namespace) -> int:
    """Remove warehouse client-days older than --keep-days (results stay in the client's bucket)."""
    from batch_tasks.config import batch_tasks

    os.environ.setdefault("LUIGI_CONFIG_PATH", str(PROJECT_ROOT / "luigi.cfg"))
    root = batch_tasks().warehouse_path()
    cutoff = dt.date.today() - dt.timedelta(days=args.keep_days)
    removed = 0
    for day_dir in sorted(root.glob("*/*")):
        try:
            day = dt.date.fromisoformat(day_dir.name)
        except ValueError:
            continue
        if day < cutoff:
            shutil.rmtree(day_dir)
            removed += 1
            print(f"removed {day_dir}")
    print(f"maintenance: {removed} client-day folder(s) older than {cutoff} removed from {root}")
    return 0


def _validate(client: str, date: str) -> ClientConfig:
    """The client's registry entry; a bad client or date exits 2 with one line."""
    try:
        config = get_client(client)
        parse_date(date)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(BAD_ARGUMENT_EXIT) from None
    return config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fraudbatch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="generate sample data if needed, start services, run a whole client-day")
    d.add_argument("--client", default="demo")
    d.add_argument("--date", default=DEMO_DATE)
    d.add_argument("--events", type=int, default=20000)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--workers", type=int, default=3)
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("run", help="run one task of a client-day through luigi")
    r.add_argument("--client", required=True)
    r.add_argument("--date", required=True)
    r.add_argument("--task", default="MonitorTracker")
    r.add_argument("--workers", type=int, default=5)
    r.add_argument("--local-scheduler", action="store_true")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("services", help="start/stop/status of luigid, DCluster and FP")
    s.add_argument("action", choices=("start", "stop", "status"))
    s.add_argument("names", nargs="*", choices=("luigid", "dcluster", "fp", []), default=[])
    s.set_defaults(func=cmd_services)

    c = sub.add_parser("clients", help="print the clients a cron selector (+name / -name) chooses")
    c.add_argument("selectors", nargs=argparse.REMAINDER)
    c.set_defaults(func=cmd_clients)

    k = sub.add_parser("check", help="validate a client and a date (exit 2 with a message if bad)")
    k.add_argument("--client", required=True)
    k.add_argument("--date", required=True)
    k.set_defaults(func=cmd_check)

    b = sub.add_parser("bench", help="generate a large client-day and time every stage")
    b.add_argument("--client", default="demo")
    b.add_argument("--date", default="2025-11-22")
    b.add_argument("--events", type=int, default=1_000_000)
    b.add_argument("--seed", type=int, default=11)
    b.add_argument("--workers", type=int, default=3)
    b.add_argument("--fresh", action="store_true", help="delete earlier benchmark data first")
    b.set_defaults(func=cmd_bench)

    m = sub.add_parser("maintenance", help="daily cleanup of old warehouse data")
    m.add_argument("--keep-days", type=int, default=14)
    m.set_defaults(func=cmd_maintenance)

    days.add_parser(sub)
    recovery.add_parsers(sub)
    jobs_cli.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BAD_ARGUMENT_EXIT


if __name__ == "__main__":
    sys.exit(main())
