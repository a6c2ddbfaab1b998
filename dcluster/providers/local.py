"""The local provider: each job is a spark-submit (or python) subprocess on this host."""
from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dcluster.models import Job, JobSpec
from dcluster.providers.base import Provider, UnsupportedJob
from dcluster.settings import DClusterSettings


@dataclass
class LocalHandle:
    """A running job process; it leads its own process group (pgid == pid)."""

    job_id: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        """Process id of the launcher, which is also the group id."""
        return self.process.pid


class LocalProvider(Provider):
    """Runs jobs/run.py through spark-submit in local mode, or through a plain launcher."""

    name = "local"

    def __init__(self, settings: DClusterSettings) -> None:
        self.settings = settings

    @property
    def spark_mode(self) -> bool:
        """True when the launcher is spark-submit; otherwise the python launcher mode is used."""
        return Path(self.settings.spark_submit).name.startswith("spark-submit")

    def check(self, spec: JobSpec) -> None:
        """Only Spark jobs run locally so far."""
        if spec.engine != "spark":
            raise UnsupportedJob(f"{spec.engine.capitalize()} is not supported by the local provider yet")

    def command(self, job: Job) -> list[str]:
        """The argv that runs the job."""
        run_py = str(Path(self.settings.project_root) / "jobs" / "run.py")
        if self.spark_mode:
            return [
                self.settings.spark_submit, "--master", self.settings.spark_master,
                "--conf", "spark.ui.enabled=false", run_py, job.app, *job.args,
            ]
        return [self.settings.spark_submit, run_py, job.app, *job.args]

    def environment(self, job: Job) -> dict[str, str]:
        """The job's environment: the service's, plus what PySpark and jobs/ need."""
        env = dict(os.environ)
        root = str(Path(self.settings.project_root).resolve())
        # Driver and executors must use the interpreter that has the project installed.
        env["PYSPARK_PYTHON"] = self.settings.python
        env["PYSPARK_DRIVER_PYTHON"] = self.settings.python
        # jobs.common.spark_session leaves spark.master to spark-submit when this is set.
        env["SPARK_MASTER_SET"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        env["DCLUSTER_JOB_ID"] = job.job_id
        env["DCLUSTER_NAMESPACE"] = job.namespace
        return env

    def start(self, job: Job) -> LocalHandle:
        """Launch the job in its own process group, output appended to its log file."""
        log_path = self.log_path(job.job_id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            # A new session makes the launcher a group leader, so terminate reaches the JVM and
            # Python workers it spawns, not only the launcher.
            process = subprocess.Popen(
                self.command(job),
                cwd=str(self.settings.project_root),
                env=self.environment(job),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return LocalHandle(job_id=job.job_id, process=process)

    def poll(self, handle: LocalHandle) -> int | None:
        """The launcher's exit code once it has ended."""
        return handle.process.poll()

    def terminate(self, handle: LocalHandle, grace_s: float) -> int | None:
        """SIGTERM the whole group, SIGKILL it after grace_s; returns the launcher's exit code."""
        pgid = handle.pid
        _signal_group(pgid, signal.SIGTERM)
        try:
            code = handle.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            code = handle.process.wait()
        # Children that outlived the launcher (e.g. Python workers) must not linger.
        _signal_group(pgid, signal.SIGKILL)
        return code

    def log_path(self, job_id: str) -> Path:
        """{state_dir}/logs/{job_id}.log."""
        return self.settings.logs_dir / f"{job_id}.log"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send a signal to a process group that may already be gone."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
