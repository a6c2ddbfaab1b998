"""The local provider: each job is a spark-submit, python or PyFlink subprocess on this host.

It is the launcher; the capacity under each run comes from its capacity source
(providers/capacity.py): simulated by default, EC2 for the aws provider.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dcluster import statefile
from dcluster.errors import ProcessLost, UnsupportedJob
from dcluster.models import Job, JobSpec
from dcluster.policy import ON_DEMAND
from dcluster.providers.base import Provider
from dcluster.providers.capacity import CapacitySource, Lease, SimulatedCapacity
from dcluster.settings import DClusterSettings
from dcluster_client import contract

# Runs the job and leaves its exit code in a file, so a restarted service can still learn how
# a job it did not start (and so cannot wait for) has ended.
EXIT_WRAPPER = (
    '"$@"; rc=$?; printf "%s\\n" "$rc" > "$DCLUSTER_EXIT_FILE.tmp" '
    '&& mv -f "$DCLUSTER_EXIT_FILE.tmp" "$DCLUSTER_EXIT_FILE"; exit "$rc"'
)


SPARK_SUBMIT, RESIDENT_SESSION = "spark-submit", "resident_session"


@dataclass(frozen=True)
class Launch:
    """How one run starts: its argv and environment, which launcher, and a note for the job's log."""

    argv: list[str]
    env: dict[str, str]
    launcher: str  # spark-submit (or the python launcher) | resident_session
    note: str = ""


@dataclass
class LocalHandle:
    """A running job process; it leads its own process group (pgid == pid)."""

    job_id: str
    process: subprocess.Popen[bytes]
    launcher: str = SPARK_SUBMIT
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


class LocalProvider(Provider):
    """Runs jobs/run.py through spark-submit in local mode or a plain launcher; jobs/flink/run.py in PyFlink."""

    name = "local"
    resident_session_capable = True  # may send jobs to the resident Spark session (Spark Connect)

    def __init__(self, settings: DClusterSettings, capacity: CapacitySource | None = None) -> None:
        self.settings = settings
        self.capacity = capacity or SimulatedCapacity(settings.cluster.simulation)
        self.market = self.capacity.market

    @property
    def spark_mode(self) -> bool:
        """True when the launcher is spark-submit; otherwise the python launcher mode is used."""
        return Path(self.settings.spark_submit).name.startswith("spark-submit")

    def check(self, spec: JobSpec) -> None:
        """Spark jobs always; Flink jobs once the Flink virtual environment exists."""
        if spec.engine == "flink":
            launcher = self.settings.flink_launcher
            if not os.access(launcher, os.X_OK):
                raise UnsupportedJob(
                    f"Flink jobs need the Flink virtual environment, but {launcher} is missing; "
                    "run make flink-env (or set DCLUSTER_FLINK_PYTHON)"
                )
        elif spec.engine != "spark":
            raise UnsupportedJob(f"{spec.engine.capitalize()} is not supported by the local provider yet")

    def command(self, job: Job) -> list[str]:
        """The argv that runs the job."""
        if job.engine == "flink":
            # PyFlink runs its own local cluster (JVM and Python workers) under this process.
            flink_run = str(Path(self.settings.project_root) / "jobs" / "flink" / "run.py")
            return [str(self.settings.flink_launcher), flink_run, job.app, *job.args]
        run_py = str(Path(self.settings.project_root) / "jobs" / "run.py")
        if not self.spark_mode:
            return [self.settings.spark_submit, run_py, job.app, *job.args]
        remote: list[str] = []
        if self.capacity.remote_executors:
            # Executors are started by the workers on the capacity's hosts and do not inherit the
            # job's environment: those hosts must hold this interpreter and the checkout at the same paths.
            remote = [
                "--conf",
                f"spark.pyspark.python={self.settings.python}",
                "--conf",
                f"spark.executorEnv.PYTHONPATH={self.settings.project_root.resolve()}",
            ]
        return [
            self.settings.spark_submit,
            *remote,
            "--master",
            self.settings.spark_master,
            "--conf",
            "spark.ui.enabled=false",
            run_py,
            job.app,
            *job.args,
        ]

    def launch(self, job: Job) -> Launch:
        """The run's argv and environment: the resident Spark session if the job may use it and it answers."""
        env = self.environment(job)
        rs = self.settings.cluster.resident_session
        eligible = (
            rs.enabled
            and self.resident_session_capable
            and self.spark_mode
            and job.engine == "spark"
            and job.task_class in rs.classes
            and job.capacity_type == ON_DEMAND
            and job.app in rs.apps
        )
        if not eligible:
            return Launch(self.command(job), env, SPARK_SUBMIT)
        down = resident_session_down(rs.url, rs.probe_timeout_s)
        if down:
            return Launch(
                self.command(job),
                env,
                SPARK_SUBMIT,
                f"resident Spark session {rs.url} does not answer ({down}); running through "
                "spark-submit instead (start it with scripts/spark-connect.sh start)",
            )
        # The job is a plain client process: the Spark work runs in the resident server's JVM.
        env[contract.SPARK_REMOTE_ENV] = rs.url
        run_py = str(Path(self.settings.project_root) / "jobs" / "run.py")
        return Launch(
            [self.settings.python, run_py, job.app, *job.args],
            env,
            RESIDENT_SESSION,
            f"running on the resident Spark session {rs.url}",
        )

    def health(self) -> dict[str, Any] | None:
        """The resident Spark session's state when it is enabled (None otherwise: nothing to report)."""
        rs = self.settings.cluster.resident_session
        if not (rs.enabled and self.resident_session_capable):
            return None
        down = resident_session_down(rs.url, rs.probe_timeout_s)
        return {
            "resident_session": {
                "url": rs.url,
                "reachable": not down,
                "error": down or None,
                "classes": list(rs.classes),
                "apps": list(rs.apps),
            }
        }

    def environment(self, job: Job) -> dict[str, str]:
        """The job's environment: the service's, plus what PySpark, jobs/ and the monitor need."""
        env = dict(os.environ)
        root = str(Path(self.settings.project_root).resolve())
        # Driver and executors must use the interpreter that has the project installed.
        env["PYSPARK_PYTHON"] = self.settings.python
        env["PYSPARK_DRIVER_PYTHON"] = self.settings.python
        # jobs.common.spark_session leaves spark.master to spark-submit when this is set.
        env[contract.SPARK_MASTER_SET_ENV] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        # Only launch() points a run at the resident session, never the service's own environment.
        env.pop(contract.SPARK_REMOTE_ENV, None)
        env[contract.JOB_ID_ENV] = job.job_id
        env[contract.NAMESPACE_ENV] = job.namespace
        env[contract.ATTEMPT_ENV] = str(job.attempts)
        env[contract.CAPACITY_TYPE_ENV] = job.capacity_type
        # A job may touch the heartbeat file (the monitor then expects it to stay fresh), poll the
        # notice file like EC2's spot/instance-action, and keep progress in the checkpoint folder.
        env[contract.HEARTBEAT_FILE_ENV] = str(self._run_file(job.job_id, "heartbeat"))
        env[contract.SPOT_NOTICE_FILE_ENV] = str(self._run_file(job.job_id, "notice.json"))
        env[contract.CHECKPOINT_DIR_ENV] = str(self.checkpoint_dir(job.job_id))
        env[contract.EXIT_FILE_ENV] = str(self._run_file(job.job_id, "exit"))
        env.update(self.capacity.environment(job))
        return env

    def start(self, job: Job) -> LocalHandle:
        """Lease the run's capacity, then launch the job in its own process group (output to its log)."""
        lease = self.capacity.acquire(job)
        try:
            handle = self._start_process(job)
        except OSError:
            self.capacity.release(lease)
            raise
        handle.lease = lease
        return handle

    def _start_process(self, job: Job) -> LocalHandle:
        log_path = self.log_path(job.job_id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.forget(job.job_id, finished=False)
        self._run_file(job.job_id, "x").parent.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir(job.job_id).mkdir(parents=True, exist_ok=True)
        launch = self.launch(job)
        with open(log_path, "ab") as log_file:
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

    def poll(self, handle: LocalHandle | AdoptedHandle) -> int | None:
        """The launcher's exit code once it has ended; ProcessLost if an adopted one left none.

        Either way the run is over, and its capacity is given back.
        """
        try:
            code = self._poll_process(handle)
        except ProcessLost:
            self._give_back(handle)
            raise
        if code is not None:
            self._give_back(handle)
        return code

    def _give_back(self, handle: LocalHandle | AdoptedHandle) -> None:
        if handle.lease is not None:
            self.capacity.release(handle.lease)

    def _poll_process(self, handle: LocalHandle | AdoptedHandle) -> int | None:
        if isinstance(handle, LocalHandle):
            return handle.process.poll()
        if _start_ticks(handle.pid) == handle.start_ticks:
            return None
        code = self.exit_status(handle.job_id)
        if code is None:
            raise ProcessLost(f"process {handle.pid} is gone and left no exit status")
        return code

    def terminate(self, handle: LocalHandle | AdoptedHandle, grace_s: float) -> int | None:
        """SIGTERM the whole group, SIGKILL it after grace_s, give the capacity back; the launcher's exit code."""
        try:
            return self._terminate_process(handle, grace_s)
        finally:
            self._give_back(handle)

    def _terminate_process(self, handle: LocalHandle | AdoptedHandle, grace_s: float) -> int | None:
        pgid = handle.pid
        if isinstance(handle, AdoptedHandle) and _start_ticks(pgid) != handle.start_ticks:
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
            while _start_ticks(pgid) == handle.start_ticks and time.monotonic() < deadline:
                time.sleep(0.05)
            if _start_ticks(pgid) == handle.start_ticks:
                _signal_group(pgid, signal.SIGKILL)
            code = -int(signal.SIGTERM)  # not our child: the signal is the best account of its end
        # Children that outlived the launcher (e.g. Python workers) must not linger.
        _signal_group(pgid, signal.SIGKILL)
        return code

    def log_path(self, job_id: str) -> Path:
        """{state_dir}/logs/{job_id}.log."""
        return self.settings.logs_dir / f"{job_id}.log"

    def process_info(self, handle: LocalHandle | AdoptedHandle) -> dict[str, Any]:
        """Pid and kernel start time (together they name the process even after pid reuse), and the launcher."""
        pid = handle.pid
        lease = self.capacity.record(handle.lease) if handle.lease is not None else {}
        if isinstance(handle, AdoptedHandle):
            return {"pid": pid, "pid_start": handle.start_ticks, **lease}
        return {"pid": pid, "pid_start": _start_ticks(pid), "launcher": handle.launcher, **lease}

    def adopt(self, job_id: str, info: dict[str, Any]) -> AdoptedHandle | None:
        """The recorded process if it still runs (same pid and start time), else None (its capacity given back)."""
        pid, ticks = info.get("pid"), info.get("pid_start")
        if not isinstance(pid, int) or ticks is None or _start_ticks(pid) != ticks:
            self.capacity.abandon(job_id, info)
            return None
        return AdoptedHandle(
            job_id=job_id, pid=pid, start_ticks=int(ticks), lease=self.capacity.readopt(job_id, info)
        )

    def interruption_notice(self, handle: LocalHandle | AdoptedHandle) -> dict[str, str] | None:
        """The capacity's own reclaim notice for the run, if it gives them (EC2's instance-action)."""
        return self.capacity.notice(handle.lease) if handle.lease is not None else None

    def exit_status(self, job_id: str) -> int | None:
        """The exit code the wrapper wrote when the job's process ended."""
        try:
            return int(self._run_file(job_id, "exit").read_text().strip())
        except (OSError, ValueError):
            return None

    def heartbeat_age(self, job_id: str, now: float) -> float | None:
        """Age of the heartbeat file's mtime."""
        try:
            return max(0.0, now - self._run_file(job_id, "heartbeat").stat().st_mtime)
        except OSError:
            return None

    def notify(self, job_id: str, notice: dict[str, Any]) -> None:
        """Write the notice where the job polls for it (atomically, so it never reads half)."""
        statefile.write_json(self._run_file(job_id, "notice.json"), notice)

    def checkpoint_dir(self, job_id: str) -> Path:
        """{state_dir}/checkpoints/{job_id}: kept across attempts, removed when the job ends."""
        return Path(self.settings.state_dir) / "checkpoints" / job_id

    def forget(self, job_id: str, *, finished: bool) -> None:
        """Remove the attempt's heartbeat, notice and exit files; checkpoints too once finished."""
        for name in ("heartbeat", "notice.json", "exit"):
            self._run_file(job_id, name).unlink(missing_ok=True)
        if finished:
            shutil.rmtree(self.checkpoint_dir(job_id), ignore_errors=True)

    def _run_file(self, job_id: str, name: str) -> Path:
        return Path(self.settings.state_dir) / "run" / f"{job_id}.{name}"


def resident_session_down(url: str, timeout_s: float) -> str:
    """Why the Spark Connect server at sc://host:port does not accept a connection ("" when it does)."""
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 15002), timeout=timeout_s
        ):
            return ""
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


def _start_ticks(pid: int) -> int | None:
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
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
