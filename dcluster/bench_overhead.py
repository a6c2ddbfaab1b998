"""`python -m dcluster.bench_overhead`: per-job overhead of a trivial Spark job, with and without the resident session.

Runs the real service in-process on a loopback port with the real project and its smoke job
(`spark.range(n).count()`), submitted as critical work (on-demand, so eligible for the resident
session) and awaited with dcluster_client.run_job, as a Luigi task does. Each mode runs its jobs
one after another; the figures are medians.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dcluster.bench import serving
from dcluster.config import ClusterConfig
from dcluster.models import parse_iso
from dcluster.settings import DClusterSettings

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "spark-connect.sh"
PHASES = ("submit_to_running", "running_to_completed", "completed_to_client", "submit_to_client")


@contextmanager
def connect_server(folder: Path) -> Iterator[tuple[str, float]]:
    """A Spark Connect server started by scripts/spark-connect.sh on a free port; yields (url, start-up s)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "SPARK_CONNECT_PORT": str(port),
        "SPARK_CONNECT_DIR": str(folder),
        "FRAUDBATCH_VENV": str(Path(sys.executable).parent.parent),
    }
    began = time.perf_counter()
    try:
        started = subprocess.run([str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=300)
        if started.returncode != 0:
            raise RuntimeError(f"the Spark Connect server did not start: {started.stderr.strip()}")
        yield f"sc://127.0.0.1:{port}", time.perf_counter() - began
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)


def measure(
    settings: DClusterSettings, jobs: int, warmup: int, client_poll: float, out: Path, launcher: str
) -> dict[str, float]:
    """Median seconds of each phase over `jobs` smoke jobs (after `warmup` uncounted ones)."""
    from dcluster_client import DClusterClient, JobSpec, run_job

    samples: dict[str, list[float]] = {k: [] for k in PHASES}
    with serving(settings) as url:
        client = DClusterClient(url, attempts=1)
        for i in range(warmup + jobs):
            spec = JobSpec(
                client="bench",
                app="smoke",
                priority="critical",
                args=["--out", str(out / f"{launcher}-{i}.txt"), "--n", "100"],
            )
            status = run_job(client, spec, poll_interval=client_poll, timeout_s=600)
            seen = time.time()
            used = status.raw["runs"][-1].get("launcher")
            if used != launcher:
                raise RuntimeError(f"job {status.job_id} ran through {used}, expected {launcher}")
            if i < warmup:
                continue
            ts = {t["state"]: parse_iso(t["at"]).timestamp() for t in status.raw["transitions"]}
            samples["submit_to_running"].append(ts["RUNNING"] - ts["PENDING"])
            samples["running_to_completed"].append(ts["COMPLETED"] - ts["RUNNING"])
            samples["completed_to_client"].append(seen - ts["COMPLETED"])
            samples["submit_to_client"].append(seen - ts["PENDING"])
    return {k: statistics.median(v) for k, v in samples.items()}


def main(argv: list[str] | None = None) -> int:
    """Measure both modes and print a table of medians."""
    p = argparse.ArgumentParser(prog="python -m dcluster.bench_overhead", description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=5, help="counted jobs per mode")
    p.add_argument("--warmup", type=int, default=1, help="uncounted jobs per mode before them")
    p.add_argument("--poll", type=float, default=1.0, help="service poll interval (shipped default 1.0 s)")
    p.add_argument(
        "--client-poll",
        type=float,
        default=2.0,
        help="run_job poll interval (luigi.cfg [batch_tasks] poll_interval, 2 s)",
    )
    args = p.parse_args(argv)
    if args.jobs < 1 or args.warmup < 0:
        p.error("--jobs must be at least 1 and --warmup not negative")
    with tempfile.TemporaryDirectory(prefix="dcluster-bench-overhead-") as tmp:
        root = Path(tmp)
        base = DClusterSettings(
            state_dir=root / "state-submit",
            env="bench",
            poll_interval_s=args.poll,
            cluster=ClusterConfig.from_mapping({}),
        )
        print(
            f"DCluster per-job overhead: smoke job (range(100).count()), {args.jobs} jobs per mode after "
            f"{args.warmup} warm-up, service poll {args.poll:g}s, client poll {args.client_poll:g}s, "
            f"{os.cpu_count()} cores"
        )
        rows = {"spark-submit": measure(base, args.jobs, args.warmup, args.client_poll, root, "spark-submit")}
        with connect_server(root / "spark-connect") as (url, startup):
            cluster = ClusterConfig.from_mapping({"resident_session": {"enabled": True, "url": url}})
            resident = DClusterSettings(
                state_dir=root / "state-resident", env="bench", poll_interval_s=args.poll, cluster=cluster
            )
            rows["resident session"] = measure(
                resident, args.jobs, args.warmup, args.client_poll, root, "resident_session"
            )
        print(f"{'median seconds':<18}" + "".join(f"{k.replace('_to_', '->'):>22}" for k in PHASES))
        for name, row in rows.items():
            print(f"{name:<18}" + "".join(f"{row[k]:>22.3f}" for k in PHASES))
        print(f"resident session start-up (once, scripts/spark-connect.sh start): {startup:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
