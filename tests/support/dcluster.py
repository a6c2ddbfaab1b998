"""A DCluster service on loopback, tiny job modules, and ways to wait on jobs and processes."""

from __future__ import annotations

import shutil
import socket
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn

from dcluster.api import create_app
from dcluster.models import Job
from dcluster.settings import DClusterSettings
from dcluster_client import DClusterClient, JobStatus
from tests.support import REPO

JOB_MODULES = {
    "ok.py": """
        def main(argv):
            print("ok job args=" + " ".join(argv), flush=True)
            return 0
    """,
    "boom.py": """
        import atexit


        def main(argv):
            print("boom job loading input", flush=True)
            # Spark prints shutdown noise after the traceback; the service must look past it.
            atexit.register(lambda: print("INFO ShutdownHookManager: Shutdown hook called", flush=True))
            raise ValueError("no events for syncbank on 2025-11-21")
    """,
    "sleepy.py": """
        import argparse
        import os
        import subprocess
        import sys
        import time


        def main(argv):
            p = argparse.ArgumentParser()
            p.add_argument("--seconds", type=float, default=30)
            p.add_argument("--pids", default=None)
            args = p.parse_args(argv)
            # A child process stands in for the JVM and Python workers spark-submit spawns.
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
            if args.pids:
                with open(args.pids + ".tmp", "w") as fh:
                    fh.write(f"{os.getpid()} {child.pid}")
                os.replace(args.pids + ".tmp", args.pids)
            print("sleepy job started", flush=True)
            time.sleep(args.seconds)
            child.kill()
            return 0
    """,
}


def make_project(root: Path, modules: Mapping[str, str]) -> Path:
    """A project root with the real jobs/run.py and the given job modules (name -> source)."""
    (root / "jobs").mkdir(parents=True)
    shutil.copy(REPO / "jobs" / "run.py", root / "jobs" / "run.py")
    (root / "jobs" / "__init__.py").write_text("")
    for name, source in modules.items():
        (root / "jobs" / name).write_text(textwrap.dedent(source).lstrip())
    return root


def fast_settings(state_dir: Path, project_root: Path, **changes: Any) -> DClusterSettings:
    """Settings for a test service: python launcher mode, fast polling, short grace; `changes` on top."""
    base = DClusterSettings(
        state_dir=state_dir,
        project_root=project_root,
        spark_submit=sys.executable,
        poll_interval_s=0.05,
        terminate_grace_s=3.0,
        env="test",
    )
    return replace(base, **changes)


def run_env(settings: DClusterSettings, job: Job) -> dict[str, str]:
    """The DCLUSTER_* variables the process runner gives a run of `job`, whatever its engine or launcher."""
    run = settings.state_dir / "run"
    return {
        "DCLUSTER_JOB_ID": job.job_id,
        "DCLUSTER_NAMESPACE": job.namespace,
        "DCLUSTER_ATTEMPT": "1",
        "DCLUSTER_CAPACITY_TYPE": job.capacity_type,
        "DCLUSTER_HEARTBEAT_FILE": str(run / f"{job.job_id}.heartbeat"),
        "DCLUSTER_SPOT_NOTICE_FILE": str(run / f"{job.job_id}.notice.json"),
        "DCLUSTER_CHECKPOINT_DIR": str(settings.state_dir / "checkpoints" / job.job_id),
        "DCLUSTER_EXIT_FILE": str(run / f"{job.job_id}.exit"),
    }


class Service:
    """The real app served by uvicorn on a free loopback port in a background thread."""

    def __init__(self, settings: DClusterSettings) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        port = self.sock.getsockname()[1]
        self.settings = replace(settings, port=port)
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(create_app(self.settings), log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.client = DClusterClient(self.url, timeout=10, attempts=1)

    def start(self) -> Service:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "DCluster did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
        assert not self.thread.is_alive(), "DCluster did not shut down"


def wait_for(
    client: DClusterClient, job_id: str, done: Callable[[JobStatus], bool], timeout: float = 30
) -> JobStatus:
    """Poll the job until done(status) holds."""
    deadline = time.monotonic() + timeout
    while True:
        status = client.status(job_id)
        if done(status):
            return status
        assert time.monotonic() < deadline, f"job {job_id} stuck in {status.state}: {status.raw}"
        time.sleep(0.05)


def terminal(status: JobStatus) -> bool:
    return status.is_terminal


def read_pids(path: Path, timeout: float = 20) -> list[int]:
    """The pids the sleepy job wrote (itself and its child)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, "sleepy job never wrote its pids"
        time.sleep(0.02)
    return [int(p) for p in path.read_text().split()]


def alive(pid: int) -> bool:
    """True if the process exists and is not a zombie waiting for an absent reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def gone(pids: list[int], timeout: float = 5) -> bool:
    """True once none of the processes is alive (a reparented child is reaped asynchronously)."""
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def states(status: JobStatus) -> list[str]:
    return [t["state"] for t in status.raw["transitions"]]
