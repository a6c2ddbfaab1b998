"""The process runner: what every way of starting a job shares once its argv is known.

It starts the job's process in its own process group with its output in the job's log, leaves
the exit code in a file, keeps the heartbeat, notice and checkpoint paths the job is told
about, and names a process by pid and kernel start time so a restarted service can adopt it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcluster import statefile
from dcluster.errors import ProcessLost
from dcluster.models import Job
from dcluster.settings import DClusterSettings
from dcluster_client import contract

if TYPE_CHECKING:
    from dcluster.providers.capacity import Lease
    from dcluster.providers.launchers import Launch

# Runs the job and leaves its exit code in a file, so a restarted service can still learn how
# a job it did not start (and so cannot wait for) has ended.
EXIT_WRAPPER = (
    '"$@"; rc=$?; printf "%s\\n" "$rc" > "$DCLUSTER_EXIT_FILE.tmp" '
    '&& mv -f "$DCLUSTER_EXIT_FILE.tmp" "$DCLUSTER_EXIT_FILE"; exit "$rc"'
)


@dataclass
class LocalHandle:
    """A running job process; it leads its own process group (pgid == pid)."""

    job_id: str
    process: subprocess.Popen[bytes]
    launcher: str = "spark-submit"
    lease: Lease | None = None  # the capacity under the run

    @property
    def pid(self) -> int:
        """Process id of the launcher, which is also the group id."""
        return self.process.pid


@dataclass
class AdoptedHandle:
    """A job process started by an earlier service instance (not our child: no wait())."""

    job_id: str
    pid: int
    start_ticks: int
    lease: Lease | None = None  # the capacity under the run


Handle = LocalHandle | AdoptedHandle


class ProcessRunner:
    """Starts, watches, stops and re-adopts job processes on this host, whatever launched them."""

    def __init__(self, settings: DClusterSettings, host_env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.host_env = dict(host_env or {})  # variables every process on this host gets last

    def environment(self, job: Job, capacity_env: Mapping[str, str]) -> dict[str, str]:
        """The job's environment: the service's, plus what PySpark, jobs/ and the monitor need."""
        env = dict(os.environ)
        root = str(Path(self.settings.project_root).resolve())
        # Driver and executors must use the interpreter that has the project installed.
        env["PYSPARK_PYTHON"] = self.settings.python
        env["PYSPARK_DRIVER_PYTHON"] = self.settings.python
        # jobs.common.spark_session leaves spark.master to spark-submit when this is set.
        env[contract.SPARK_MASTER_SET_ENV] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        # Only the resident session launcher points a run at the session, never the service's own environment.
        env.pop(contract.SPARK_REMOTE_ENV, None)
        env[contract.JOB_ID_ENV] = job.job_id
        env[contract.NAMESPACE_ENV] = job.namespace
        env[contract.ATTEMPT_ENV] = str(job.attempts)
        env[contract.CAPACITY_TYPE_ENV] = job.capacity_type
        # A job may touch the heartbeat file (the monitor then expects it to stay fresh), poll the
        # notice file like EC2's spot/instance-action, and keep progress in the checkpoint folder.
        env[contract.HEARTBEAT_FILE_ENV] = str(self.run_file(job.job_id, "heartbeat"))
        env[contract.SPOT_NOTICE_FILE_ENV] = str(self.run_file(job.job_id, "notice.json"))
        env[contract.CHECKPOINT_DIR_ENV] = str(self.checkpoint_dir(job.job_id))
        env[contract.EXIT_FILE_ENV] = str(self.run_file(job.job_id, "exit"))
        env.update(capacity_env)
        env.update(self.host_env)
        return env

    def prepare(self, job: Job) -> None:
        """Fresh per-attempt files, and the folders of the log, the run files and the checkpoints."""
        self.log_path(job.job_id).parent.mkdir(parents=True, exist_ok=True)
        self.forget(job.job_id, finished=False)
        self.run_file(job.job_id, "x").parent.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir(job.job_id).mkdir(parents=True, exist_ok=True)

    def spawn(self, job: Job, launch: Launch) -> LocalHandle:
        """Start the launch in its own process group, the note first in the log, output after it."""
        with open(self.log_path(job.job_id), "ab") as log_file:
            if launch.note:
                log_file.write(f"dcluster: {launch.note}\n".encode())
                log_file.flush()
            # A new session makes the launcher a group leader, so terminate reaches the JVM and
            # Python workers it spawns, not only the launcher.
            process = subprocess.Popen(
                ["/bin/sh", "-c", EXIT_WRAPPER, "dcluster-job", *launch.argv],
                cwd=str(self.settings.project_root),
                env=launch.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return LocalHandle(job_id=job.job_id, process=process, launcher=launch.launcher)

    def poll(self, handle: Handle) -> int | None:
        """The process's exit code once it has ended; ProcessLost if an adopted one left none."""
        if isinstance(handle, LocalHandle):
            return handle.process.poll()
        if start_ticks(handle.pid) == handle.start_ticks:
            return None
        code = self.exit_status(handle.job_id)
        if code is None:
            raise ProcessLost(f"process {handle.pid} is gone and left no exit status")
        return code

    def terminate(self, handle: Handle, grace_s: float) -> int | None:
        """SIGTERM the whole group, SIGKILL it after grace_s; the launcher's exit code."""
        pgid = handle.pid
        if isinstance(handle, AdoptedHandle) and start_ticks(pgid) != handle.start_ticks:
            return self.exit_status(handle.job_id)  # the pid may belong to someone else by now
        _signal_group(pgid, signal.SIGTERM)
        if isinstance(handle, LocalHandle):
            try:
                code = handle.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(pgid, signal.SIGKILL)
                code = handle.process.wait()
        else:
            deadline = time.monotonic() + grace_s
            while start_ticks(pgid) == handle.start_ticks and time.monotonic() < deadline:
                time.sleep(0.05)
            if start_ticks(pgid) == handle.start_ticks:
                _signal_group(pgid, signal.SIGKILL)
            code = -int(signal.SIGTERM)  # not our child: the signal is the best account of its end
        # Children that outlived the launcher (e.g. Python workers) must not linger.
        _signal_group(pgid, signal.SIGKILL)
        return code

    def process_info(self, handle: Handle) -> dict[str, Any]:
        """Pid and kernel start time (together they name the process even after pid reuse), and the launcher."""
        pid = handle.pid
        if isinstance(handle, AdoptedHandle):
            return {"pid": pid, "pid_start": handle.start_ticks}
        return {"pid": pid, "pid_start": start_ticks(pid), "launcher": handle.launcher}

    def adopt(self, job_id: str, info: dict[str, Any]) -> AdoptedHandle | None:
        """The recorded process if it still runs (same pid and start time), else None."""
        pid, ticks = info.get("pid"), info.get("pid_start")
        if not isinstance(pid, int) or ticks is None or start_ticks(pid) != ticks:
            return None
        return AdoptedHandle(job_id=job_id, pid=pid, start_ticks=int(ticks))

    def log_path(self, job_id: str) -> Path:
        """{state_dir}/logs/{job_id}.log."""
        return self.settings.logs_dir / f"{job_id}.log"

    def exit_status(self, job_id: str) -> int | None:
        """The exit code the wrapper wrote when the job's process ended."""
        try:
            return int(self.run_file(job_id, "exit").read_text().strip())
        except (OSError, ValueError):
            return None

    def heartbeat_age(self, job_id: str, now: float) -> float | None:
        """Age of the heartbeat file's mtime."""
        try:
            return max(0.0, now - self.run_file(job_id, "heartbeat").stat().st_mtime)
        except OSError:
            return None

    def notify(self, job_id: str, notice: dict[str, Any]) -> None:
        """Write the notice where the job polls for it (atomically, so it never reads half)."""
        statefile.write_json(self.run_file(job_id, "notice.json"), notice)

    def checkpoint_dir(self, job_id: str) -> Path:
        """{state_dir}/checkpoints/{job_id}: kept across attempts, removed when the job ends."""
        return Path(self.settings.state_dir) / "checkpoints" / job_id

    def forget(self, job_id: str, *, finished: bool) -> None:
        """Remove the attempt's heartbeat, notice and exit files; checkpoints too once finished."""
        for name in ("heartbeat", "notice.json", "exit"):
            self.run_file(job_id, name).unlink(missing_ok=True)
        if finished:
            shutil.rmtree(self.checkpoint_dir(job_id), ignore_errors=True)

    def run_file(self, job_id: str, name: str) -> Path:
        """{state_dir}/run/{job_id}.{name}: the attempt's heartbeat, notice and exit files."""
        return Path(self.settings.state_dir) / "run" / f"{job_id}.{name}"


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (None if no live process has the pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    after_name = stat.rsplit(")", 1)[1].split()
    if after_name[0] == "Z":
        return None  # a zombie has ended; only its exit status is left
    return int(after_name[19])


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send a signal to a process group that may already be gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
