"""Launchers: one object per way of starting a job's process, chosen per job by the provider.

A launcher turns a job into an argv and adds what its way of running needs to the job's
environment; the process runner (providers/runner.py) then starts and watches the process the
same way for all of them. This module holds the launchers that run everything on this host:
spark-submit in local mode, the python launcher, the resident Spark Connect session and PyFlink.
The standalone clusters' launchers are in providers/standalone.py.
"""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dcluster.errors import UnsupportedJob
from dcluster.models import Job, JobSpec
from dcluster.policy import ON_DEMAND
from dcluster.settings import DClusterSettings
from dcluster_client import contract

SPARK_SUBMIT, RESIDENT_SESSION = "spark-submit", "resident_session"


@dataclass(frozen=True)
class Launch:
    """How one run starts: its argv and environment, which launcher, and a note for the job's log."""

    argv: list[str]
    env: dict[str, str]
    launcher: str  # spark-submit (or the python launcher) | resident_session | flink-cluster
    note: str = ""


def spark_mode(settings: DClusterSettings) -> bool:
    """True when DCLUSTER_SPARK_SUBMIT is spark-submit; otherwise it is the python launcher."""
    return Path(settings.spark_submit).name.startswith("spark-submit")


class Launcher(ABC):
    """One way of starting a job's process; this base adds nothing to the environment."""

    name = SPARK_SUBMIT  # recorded as the run's `launcher`
    engine = "spark"

    def __init__(self, settings: DClusterSettings) -> None:
        self.settings = settings

    def takes(self, engine: str) -> bool:
        """Whether this launcher starts the jobs of `engine` with these settings."""
        return engine == self.engine

    def check(self, spec: JobSpec) -> None:
        """Raise UnsupportedJob when the job cannot be started this way now (checked at submit)."""
        return None

    @abstractmethod
    def command(self, job: Job) -> list[str]:
        """The argv that runs the job."""

    def environment(self, job: Job, env: dict[str, str]) -> dict[str, str]:
        """The runner's environment for the job, with what this launcher needs added."""
        return env

    def note(self) -> str:
        """The `dcluster:` line the job's log starts with ("" for none)."""
        return ""

    def launch(self, job: Job, env: dict[str, str]) -> Launch:
        """The run's argv and environment, this launcher's name and its log note."""
        return Launch(self.command(job), self.environment(job, env), self.name, self.note())

    def health(self) -> dict[str, Any] | None:
        """What this launcher's compute reports (None: nothing beyond this host)."""
        return None

    def stopped(self, job_id: str) -> None:
        """The job's process was stopped: end what it left running elsewhere."""
        return None

    @property
    def run_py(self) -> str:
        """jobs/run.py of the checkout."""
        return str(Path(self.settings.project_root) / "jobs" / "run.py")


class SparkSubmitLocal(Launcher):
    """jobs/run.py through spark-submit against DCLUSTER_SPARK_MASTER (local[*] by default)."""

    def __init__(self, settings: DClusterSettings, *, remote_executors: bool = False) -> None:
        super().__init__(settings)
        # Executors started by workers on the capacity's hosts (EC2), not by spark-submit here.
        self.remote_executors = remote_executors

    def takes(self, engine: str) -> bool:
        """Spark jobs, when DCLUSTER_SPARK_SUBMIT is spark-submit."""
        return engine == "spark" and spark_mode(self.settings)

    def command(self, job: Job) -> list[str]:
        """spark-submit --master DCLUSTER_SPARK_MASTER, no UI, jobs/run.py <app> <args>."""
        remote: list[str] = []
        if self.remote_executors:
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
            self.run_py,
            job.app,
            *job.args,
        ]


class PythonLauncher(Launcher):
    """jobs/run.py under DCLUSTER_SPARK_SUBMIT when that is not spark-submit (an interpreter)."""

    def takes(self, engine: str) -> bool:
        """Spark jobs, when DCLUSTER_SPARK_SUBMIT is not spark-submit."""
        return engine == "spark" and not spark_mode(self.settings)

    def command(self, job: Job) -> list[str]:
        """<launcher> jobs/run.py <app> <args>."""
        return [self.settings.spark_submit, self.run_py, job.app, *job.args]


class PyFlinkLocal(Launcher):
    """jobs/flink/run.py in the Flink virtual environment: PyFlink's own local cluster under the process."""

    engine = "flink"

    def check(self, spec: JobSpec) -> None:
        """Only once the Flink virtual environment exists."""
        check_flink_env(self.settings)

    def command(self, job: Job) -> list[str]:
        """<flink python> jobs/flink/run.py <app> <args>."""
        # PyFlink runs its own local cluster (JVM and Python workers) under this process.
        flink_run = str(Path(self.settings.project_root) / "jobs" / "flink" / "run.py")
        return [str(self.settings.flink_launcher), flink_run, job.app, *job.args]


class ResidentSession(Launcher):
    """The job as a plain client process of the resident Spark Connect session (its work in the server's JVM).

    Chosen only for the jobs `eligible` names and while the server answers `probe`; the
    provider starts every other Spark job with its spark-submit launcher.
    """

    name = RESIDENT_SESSION

    def __init__(self, settings: DClusterSettings, probe: Callable[[str, float], str] | None = None) -> None:
        super().__init__(settings)
        self.probe = probe or resident_session_down

    def eligible(self, job: Job) -> bool:
        """Enabled, a Spark job started by spark-submit, its class and app listed, on on-demand capacity."""
        rs = self.settings.cluster.resident_session
        return (
            rs.enabled
            and spark_mode(self.settings)
            and job.engine == "spark"
            and job.task_class in rs.classes
            and job.capacity_type == ON_DEMAND
            and job.app in rs.apps
        )

    def down(self) -> str:
        """Why the server does not answer ("" when it does)."""
        rs = self.settings.cluster.resident_session
        return self.probe(rs.url, rs.probe_timeout_s)

    def fallback_note(self, down: str) -> str:
        """The log note of an eligible run that goes through spark-submit because the server is down."""
        return (
            f"resident Spark session {self.settings.cluster.resident_session.url} does not answer "
            f"({down}); running through spark-submit instead (start it with scripts/spark-connect.sh start)"
        )

    def command(self, job: Job) -> list[str]:
        """<python> jobs/run.py <app> <args>."""
        return [self.settings.python, self.run_py, job.app, *job.args]

    def environment(self, job: Job, env: dict[str, str]) -> dict[str, str]:
        """FRAUDBATCH_SPARK_REMOTE=<url>: jobs.common.spark_session opens a session on the server."""
        env[contract.SPARK_REMOTE_ENV] = self.settings.cluster.resident_session.url
        return env

    def note(self) -> str:
        """Names the session."""
        return f"running on the resident Spark session {self.settings.cluster.resident_session.url}"

    def health(self) -> dict[str, Any] | None:
        """The session's state when it is enabled (None otherwise: nothing to report)."""
        rs = self.settings.cluster.resident_session
        if not rs.enabled:
            return None
        down = self.down()
        return {
            "resident_session": {
                "url": rs.url,
                "reachable": not down,
                "error": down or None,
                "classes": list(rs.classes),
                "apps": list(rs.apps),
            }
        }


def check_flink_env(settings: DClusterSettings) -> None:
    """UnsupportedJob unless the Flink virtual environment's interpreter exists."""
    launcher = settings.flink_launcher
    if not os.access(launcher, os.X_OK):
        raise UnsupportedJob(
            f"Flink jobs need the Flink virtual environment, but {launcher} is missing; "
            "run make flink-env (or set DCLUSTER_FLINK_PYTHON)"
        )


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
