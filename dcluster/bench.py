"""`python -m dcluster.bench`: throughput, spot-fallback time and per-job overhead of the service.

Runs the real service in-process on a loopback port with trivial Spark-free jobs (python
launcher mode) from a temporary project, so the figures measure DCluster, not Spark start-up.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from dcluster.config import ClusterConfig
from dcluster.models import parse_iso
from dcluster.settings import DClusterSettings

TRIVIAL_JOB = """
import time


def main(argv):
    print(f"END {time.time():.6f}", flush=True)
    return 0
"""


@contextmanager
def serving(settings: DClusterSettings) -> Iterator[str]:
    """The service on a free loopback port for the duration of the block; yields its URL."""
    import uvicorn

    from dcluster.api import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(replace(settings, port=port)), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def project(root: Path) -> Path:
    """A project with the real jobs/run.py and a trivial job module."""
    jobs = root / "jobs"
    jobs.mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parent.parent / "jobs" / "run.py", jobs / "run.py")
    (jobs / "__init__.py").write_text("")
    (jobs / "trivial.py").write_text(TRIVIAL_JOB)
    return root


def _wait(client, job_id: str, poll: float, timeout: float = 120.0):
    """Poll until the job is terminal; returns (status, monotonic-free wall time it was first seen)."""
    deadline = time.monotonic() + timeout
    while True:
        status = client.status(job_id)
        if status.is_terminal:
            return status, time.time()
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} still {status.state} after {timeout:g}s")
        time.sleep(poll)


def throughput(settings: DClusterSettings, jobs: int) -> dict[str, float]:
    """Accepted and finished jobs per hour for `jobs` trivial jobs submitted at once."""
    from dcluster_client import DClusterClient, JobSpec

    with serving(settings) as url:
        client = DClusterClient(url, attempts=1)
        start = time.perf_counter()
        ids = [
            client.submit(JobSpec(client="bench", app="trivial", priority="batch")).job_id
            for _ in range(jobs)
        ]
        accepted = time.perf_counter() - start
        for job_id in ids:
            status, _ = _wait(client, job_id, 0.05)
            assert status.state == "COMPLETED", status.raw
        finished = time.perf_counter() - start
    return {
        "jobs": jobs,
        "accepted_per_hour": jobs / accepted * 3600,
        "finished_per_hour": jobs / finished * 3600,
        "wall_s": finished,
    }


def overhead(settings: DClusterSettings, jobs: int, client_poll: float) -> dict[str, float]:
    """Median submit->RUNNING, process end->COMPLETED and process end->client sees it, in seconds."""
    from dcluster_client import DClusterClient, JobSpec

    to_running, to_completed, to_client = [], [], []
    with serving(settings) as url:
        client = DClusterClient(url, attempts=1)
        for _ in range(jobs):
            job = client.submit(JobSpec(client="bench", app="trivial", priority="batch"))
            status, seen = _wait(client, job.job_id, client_poll)
            ts = {t["state"]: parse_iso(t["at"]).timestamp() for t in status.raw["transitions"]}
            end = float(
                next(ln.split()[1] for ln in client.log(job.job_id).splitlines() if ln.startswith("END "))
            )
            to_running.append(ts["RUNNING"] - ts["PENDING"])
            to_completed.append(ts["COMPLETED"] - end)
            to_client.append(seen - end)
    return {
        "submit_to_running_s": statistics.median(to_running),
        "exit_to_completed_s": statistics.median(to_completed),
        "exit_to_client_s": statistics.median(to_client),
    }


def fallback_time(settings: DClusterSettings, timeout_s: float) -> dict[str, float]:
    """Seconds from submit to RUNNING on on-demand when the spot request never gets fulfilled."""
    from dcluster_client import DClusterClient, JobSpec

    cfg = ClusterConfig.from_mapping(
        {"spot": {"request_timeout_s": timeout_s}, "simulation": {"spot": {"fulfil_delay_s": 3600}}}
    )
    with serving(replace(settings, cluster=cfg)) as url:
        client = DClusterClient(url, attempts=1)
        job = client.submit(JobSpec(client="bench", app="trivial", priority="batch"))
        status, _ = _wait(client, job.job_id, 0.05)
    ts = {t["state"]: parse_iso(t["at"]).timestamp() for t in status.raw["transitions"]}
    assert status.capacity_type == "on_demand", status.raw
    took = ts["RUNNING"] - ts["PENDING"]
    return {
        "request_timeout_s": timeout_s,
        "submit_to_on_demand_s": took,
        "fallback_overhead_s": took - timeout_s,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the three benchmarks and print their figures."""
    p = argparse.ArgumentParser(prog="python -m dcluster.bench", description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=30, help="trivial jobs for the throughput run")
    p.add_argument("--overhead-jobs", type=int, default=5, help="sequential jobs for the overhead run")
    p.add_argument(
        "--poll",
        type=float,
        nargs="*",
        default=[0.05, 1.0],
        help="scheduler poll intervals to measure (1.0 is the shipped default)",
    )
    p.add_argument("--slots", type=int, default=2, help="max_concurrent_jobs")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dcluster-bench-") as tmp:
        root = project(Path(tmp) / "project")
        base = DClusterSettings(
            state_dir=Path(tmp) / "state",
            project_root=root,
            spark_submit=sys.executable,
            max_concurrent_jobs=args.slots,
            env="bench",
            cluster=ClusterConfig.from_mapping({}),
        )
        print(f"DCluster bench: trivial python-launcher jobs, {args.slots} slots, on {sys.platform}")
        for poll in args.poll:
            s = replace(base, poll_interval_s=poll, state_dir=Path(tmp) / f"state-t{poll}")
            t = throughput(s, args.jobs)
            print(
                f"poll {poll:>5.2f}s  throughput: {t['jobs']} jobs in {t['wall_s']:.1f}s -> accepted "
                f"{t['accepted_per_hour']:,.0f}/h, finished {t['finished_per_hour']:,.0f}/h"
            )
            o = overhead(
                replace(s, state_dir=Path(tmp) / f"state-o{poll}"), args.overhead_jobs, client_poll=0.05
            )
            print(
                f"poll {poll:>5.2f}s  overhead (median of {args.overhead_jobs}): submit->RUNNING "
                f"{o['submit_to_running_s']:.3f}s, job exit->COMPLETED {o['exit_to_completed_s']:.3f}s, "
                f"job exit->client sees it {o['exit_to_client_s']:.3f}s (client polls every 0.05s)"
            )
        f = fallback_time(replace(base, poll_interval_s=0.05, state_dir=Path(tmp) / "state-f"), timeout_s=2.0)
        print(
            f"spot timeout fallback: request_timeout_s={f['request_timeout_s']:g} -> RUNNING on on-demand "
            f"after {f['submit_to_on_demand_s']:.3f}s (overhead {f['fallback_overhead_s']:.3f}s past the timeout)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
