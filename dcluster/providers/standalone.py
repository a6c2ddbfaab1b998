"""The standalone provider: each job's driver runs on this host, its work on a standalone cluster.

Spark jobs go to a Spark standalone master (scripts/spark-cluster.sh) through spark-submit in
client mode; Flink jobs to a Flink session cluster (scripts/flink-cluster.sh) through PyFlink's
`flink run`, whose client process is the job's process here, as the Spark driver is.

The jobs read and write the warehouse by local path, in the driver and in the executors alike.
That works here because the master, the workers and DCluster share one host and so one
filesystem; a cluster across hosts needs the warehouse on a shared filesystem mounted at the
same path everywhere (docs/adr/0001, docs/adr/0007).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from dcluster.errors import UnsupportedJob
from dcluster.models import Job, JobSpec
from dcluster.providers.capacity import CapacitySource, SimulatedCapacity
from dcluster.providers.launchers import Launcher, PythonLauncher, check_flink_env, spark_mode
from dcluster.providers.process import ProcessProvider
from dcluster.settings import DClusterSettings
from dcluster_client.contract import JOB_TAG

DEFAULT_UI_PORT = 8090  # scripts/spark-cluster.sh's default; 8080 is often taken on a workstation
UI_PORT_ENV = "SPARK_CLUSTER_UI_PORT"  # the same variable scripts/spark-cluster.sh reads
STATUS_TIMEOUT_S = 3.0  # for each status request to a cluster's REST or web UI


class ClusterUnavailable(UnsupportedJob):
    """The standalone master does not answer or has no alive worker (answered with 422 at submit)."""


FLINK_CLUSTER = "flink-cluster"  # launcher name of a run submitted to the Flink session cluster
FLINK_ACTIVE = frozenset({"INITIALIZING", "CREATED", "RUNNING", "FAILING", "RESTARTING", "RECONCILING"})


class SparkSubmitStandalone(Launcher):
    """jobs/run.py through spark-submit in client mode against a spark:// standalone master."""

    # Sized for the workers of scripts/spark-cluster.sh (1 core, 1g each): one executor per worker,
    # leaving the worker's remaining memory for the JVM's own overhead.
    executor_memory = "900m"
    executor_cores = 1
    total_executor_cores = 2
    status_timeout_s = STATUS_TIMEOUT_S

    def __init__(self, settings: DClusterSettings, ui_url: str | None = None) -> None:
        super().__init__(settings)
        self.master_url = settings.spark_master_url
        self.ui_url = ui_url or _default_ui_url(self.master_url)

    def takes(self, engine: str) -> bool:
        """Spark jobs, when DCLUSTER_SPARK_SUBMIT is spark-submit."""
        return engine == "spark" and spark_mode(self.settings)

    @property
    def loopback(self) -> bool:
        """True when the master listens on this host's loopback interface."""
        return urlsplit(self.master_url).hostname in ("127.0.0.1", "localhost")

    def check(self, spec: JobSpec) -> None:
        """Only while the master answers and has an alive worker."""
        health = self.spark_health()
        if not health["reachable"]:
            raise ClusterUnavailable(
                f"the Spark standalone master {self.master_url} does not answer {self.ui_url}/json/ "
                f"({health['error']}); start it with scripts/spark-cluster.sh start"
            )
        if health["alive_workers"] < 1:
            raise ClusterUnavailable(
                f"the Spark standalone master {self.master_url} has no alive worker; "
                "start them with scripts/spark-cluster.sh start"
            )

    def command(self, job: Job) -> list[str]:
        """spark-submit in client mode against the standalone master."""
        root = str(self.settings.project_root.resolve())
        conf = {
            "spark.ui.enabled": "false",
            # Executors are started by the workers, not by spark-submit, so they do not inherit the
            # job's environment: name the interpreter and the checkout explicitly.
            "spark.pyspark.python": self.settings.python,
            "spark.executorEnv.PYTHONPATH": root,
        }
        if self.loopback:
            # A loopback cluster must reach the driver on loopback too, whatever the host's name resolves to.
            conf["spark.driver.host"] = "127.0.0.1"
            conf["spark.driver.bindAddress"] = "127.0.0.1"
        argv = [
            self.settings.spark_submit,
            "--master",
            self.master_url,
            "--deploy-mode",
            "client",
            "--executor-memory",
            self.executor_memory,
            "--executor-cores",
            str(self.executor_cores),
            "--total-executor-cores",
            str(self.total_executor_cores),
        ]
        for key, value in conf.items():
            argv += ["--conf", f"{key}={value}"]
        return [*argv, str(self.settings.project_root / "jobs" / "run.py"), job.app, *job.args]

    def health(self) -> dict[str, Any]:
        """The master's view (reported whichever launcher runs the Spark jobs)."""
        return self.spark_health()

    def spark_health(self) -> dict[str, Any]:
        """The master's view: reachable, status, alive workers, cores and running apps."""
        try:
            doc = _get_json(f"{self.ui_url}/json/", self.status_timeout_s)
        except (OSError, ValueError) as exc:
            return {"master": self.master_url, "reachable": False, "alive_workers": 0, "error": _why(exc)}
        workers = [w for w in doc.get("workers", []) if w.get("state") == "ALIVE"]
        return {
            "master": self.master_url,
            "reachable": True,
            "status": doc.get("status"),
            "alive_workers": len(workers),
            "cores": sum(int(w.get("cores", 0)) for w in workers),
            "cores_used": sum(int(w.get("coresused", 0)) for w in workers),
            "running_apps": len(doc.get("activeapps", [])),
        }


class FlinkSessionCluster(Launcher):
    """jobs/flink/run.py through PyFlink's `flink run -m` to a Flink session cluster; the client is the job's process."""

    name = FLINK_CLUSTER
    engine = "flink"
    status_timeout_s = STATUS_TIMEOUT_S

    @property
    def flink_url(self) -> str:
        """REST address of the Flink session cluster, without a trailing slash."""
        return self.settings.flink_cluster_url.rstrip("/")

    @property
    def flink_address(self) -> str:
        """host:port of the Flink session cluster's REST endpoint, as `flink run -m` takes it."""
        parts = urlsplit(self.flink_url)
        return f"{parts.hostname}:{parts.port or 8081}"

    def check(self, spec: JobSpec) -> None:
        """Only once the Flink virtual environment exists and the cluster has a registered TaskManager."""
        check_flink_env(self.settings)
        flink = self.flink_health()
        if not flink["reachable"]:
            raise ClusterUnavailable(
                f"the Flink session cluster {self.flink_url} does not answer ({flink['error']}); "
                "start it with scripts/flink-cluster.sh start"
            )
        if flink["taskmanagers"] < 1:
            raise ClusterUnavailable(
                f"the Flink session cluster {self.flink_url} has no TaskManager; "
                "start it with scripts/flink-cluster.sh start"
            )

    def command(self, job: Job) -> list[str]:
        """flink run -m <host:port> with the Flink environment's interpreter on both sides."""
        python = str(self.settings.flink_launcher)
        return [
            str(self.settings.flink_cli),
            "run",
            "-m",
            self.flink_address,
            "-pyclientexec",
            python,
            "-pyexec",
            python,
            "-py",
            str(self.settings.project_root / "jobs" / "flink" / "run.py"),
            job.app,
            *job.args,
        ]

    def environment(self, job: Job, env: dict[str, str]) -> dict[str, str]:
        """FLINK_LOG_DIR under the service's logs."""
        # The flink command line logs to FLINK_LOG_DIR, by default inside the installed package.
        env["FLINK_LOG_DIR"] = str(self.settings.logs_dir / "flink-cli")
        return env

    def note(self) -> str:
        """Names the cluster."""
        return f"submitting to the Flink session cluster {self.flink_url}"

    def health(self) -> dict[str, Any]:
        """The Flink session cluster's view under `flink_cluster`."""
        return {"flink_cluster": self.flink_health()}

    def stopped(self, job_id: str) -> None:
        """Cancel what the job left running on the cluster (see cancel_flink_jobs)."""
        self.cancel_flink_jobs(job_id)

    def cancel_flink_jobs(self, job_id: str) -> list[str]:
        """Cancel the active Flink cluster jobs of DCluster job `job_id`; their Flink ids (none if unreachable).

        The cluster keeps running a Flink job whose client went away, so the job is found by the
        tag its name carries and cancelled through the REST API.
        """
        tag = JOB_TAG.format(job_id=job_id)
        try:
            jobs = _get_json(f"{self.flink_url}/jobs/overview", self.status_timeout_s).get("jobs", [])
        except (OSError, ValueError):
            return []  # no Flink cluster here, or it is down: nothing of this job can run on it
        cancelled = []
        for entry in jobs:
            if str(entry.get("name", "")).endswith(tag) and entry.get("state") in FLINK_ACTIVE:
                request = urllib.request.Request(
                    f"{self.flink_url}/jobs/{entry['jid']}?mode=cancel", method="PATCH"
                )
                try:
                    with urllib.request.urlopen(request, timeout=self.status_timeout_s):
                        cancelled.append(str(entry["jid"]))
                except OSError:
                    continue  # finished meanwhile, or the cluster went away: nothing left to stop
        if cancelled:
            with open(self.settings.logs_dir / f"{job_id}.log", "a", encoding="utf-8") as log:
                log.write(f"dcluster: cancelled Flink job(s) {', '.join(cancelled)} on {self.flink_url}\n")
        return cancelled

    def flink_health(self) -> dict[str, Any]:
        """The Flink session cluster's view: reachable, TaskManagers, slots and running jobs."""
        try:
            doc = _get_json(f"{self.flink_url}/overview", self.status_timeout_s)
        except (OSError, ValueError) as exc:
            return {"url": self.flink_url, "reachable": False, "taskmanagers": 0, "error": _why(exc)}
        return {
            "url": self.flink_url,
            "reachable": True,
            "version": doc.get("flink-version"),
            "taskmanagers": int(doc.get("taskmanagers", 0)),
            "slots_total": int(doc.get("slots-total", 0)),
            "slots_available": int(doc.get("slots-available", 0)),
            "jobs_running": int(doc.get("jobs-running", 0)),
        }


def standalone_launchers(
    settings: DClusterSettings, ui_url: str | None = None
) -> tuple[SparkSubmitStandalone, PythonLauncher, FlinkSessionCluster]:
    """spark-submit to the standalone master, the python launcher (Spark-free jobs), `flink run -m`."""
    return SparkSubmitStandalone(settings, ui_url), PythonLauncher(settings), FlinkSessionCluster(settings)


def loopback_env(spark: SparkSubmitStandalone) -> dict[str, str]:
    """SPARK_LOCAL_IP=127.0.0.1 for every job while the master is on loopback ({} otherwise)."""
    # Without it Spark warns that the host name resolves to loopback and guesses an address.
    return {"SPARK_LOCAL_IP": "127.0.0.1"} if spark.loopback else {}


class StandaloneProvider(ProcessProvider):
    """The standalone clusters' launchers, on simulated capacity unless one is given.

    Spark jobs go to the master, Flink jobs to the session cluster; a job's process (the Spark
    driver, the Flink client) runs on this host.
    """

    def __init__(
        self, settings: DClusterSettings, ui_url: str | None = None, capacity: CapacitySource | None = None
    ) -> None:
        self.spark, python, self.flink = standalone_launchers(settings, ui_url)
        super().__init__(
            settings,
            [self.spark, python, self.flink],
            capacity or SimulatedCapacity(settings.cluster.simulation),
            name="standalone",
            host_env=loopback_env(self.spark),
            refusal_name="local",  # engines without a launcher are refused as the local provider does
        )

    @property
    def master_url(self) -> str:
        """The spark:// master."""
        return self.spark.master_url

    @property
    def ui_url(self) -> str:
        """The master's web UI."""
        return self.spark.ui_url

    @property
    def flink_url(self) -> str:
        """REST address of the Flink session cluster."""
        return self.flink.flink_url

    def spark_health(self) -> dict[str, Any]:
        """The master's view."""
        return self.spark.spark_health()

    def flink_health(self) -> dict[str, Any]:
        """The Flink session cluster's view."""
        return self.flink.flink_health()

    def cancel_flink_jobs(self, job_id: str) -> list[str]:
        """Cancel the active Flink cluster jobs of DCluster job `job_id`."""
        return self.flink.cancel_flink_jobs(job_id)


def _get_json(url: str, timeout_s: float) -> dict[str, Any]:
    """GET a JSON document; OSError when it does not answer, ValueError when it is not JSON."""
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.load(resp)


def _why(exc: Exception) -> str:
    """What a failed status request ran into: a URL error's reason, else the error itself."""
    return str(exc.reason if isinstance(exc, urllib.error.URLError) else exc)


def _default_ui_url(master_url: str) -> str:
    """The master's web UI on the master's host, port from SPARK_CLUSTER_UI_PORT (default 8090)."""
    host = urlsplit(master_url).hostname or "127.0.0.1"
    port = int(os.environ.get(UI_PORT_ENV) or DEFAULT_UI_PORT)
    return f"http://{host}:{port}"
