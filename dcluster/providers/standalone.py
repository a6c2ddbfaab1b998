"""The standalone provider: each job's driver runs on this host, its executors on a Spark standalone cluster.

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

from dcluster.models import Job, JobSpec
from dcluster.providers.base import UnsupportedJob
from dcluster.providers.local import LocalProvider
from dcluster.settings import DClusterSettings

DEFAULT_UI_PORT = 8090  # scripts/spark-cluster.sh's default; 8080 is often taken on a workstation
UI_PORT_ENV = "SPARK_CLUSTER_UI_PORT"  # the same variable scripts/spark-cluster.sh reads


class ClusterUnavailable(UnsupportedJob):
    """The standalone master does not answer or has no alive worker (answered with 422 at submit)."""


class StandaloneProvider(LocalProvider):
    """Runs jobs/run.py through spark-submit in client mode against a spark:// master."""

    name = "standalone"
    resident_session_capable = False  # executors run on the standalone cluster, not a resident session
    # Sized for the workers of scripts/spark-cluster.sh (1 core, 1g each): one executor per worker,
    # leaving the worker's remaining memory for the JVM's own overhead.
    executor_memory = "900m"
    executor_cores = 1
    total_executor_cores = 2
    status_timeout_s = 3.0

    def __init__(self, settings: DClusterSettings, ui_url: str | None = None) -> None:
        super().__init__(settings)
        self.master_url = settings.spark_master_url
        self.ui_url = ui_url or _default_ui_url(self.master_url)

    def check(self, spec: JobSpec) -> None:
        """Spark jobs only, and only while the master has an alive worker (a job would wait forever)."""
        if spec.engine == "flink":
            raise UnsupportedJob("Flink jobs run on the local provider only; the standalone provider runs "
                                 "Spark jobs (start DCluster with DCLUSTER_PROVIDER=local for Flink)")
        super().check(spec)
        if not self.spark_mode:
            return  # the python launcher runs Spark-free jobs; no cluster is involved
        health = self.health()
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
        """spark-submit in client mode against the standalone master (the python launcher as is)."""
        if not self.spark_mode:
            return super().command(job)
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
            self.settings.spark_submit, "--master", self.master_url, "--deploy-mode", "client",
            "--executor-memory", self.executor_memory, "--executor-cores", str(self.executor_cores),
            "--total-executor-cores", str(self.total_executor_cores),
        ]
        for key, value in conf.items():
            argv += ["--conf", f"{key}={value}"]
        return [*argv, str(self.settings.project_root / "jobs" / "run.py"), job.app, *job.args]

    def environment(self, job: Job) -> dict[str, str]:
        """The local provider's job environment, bound to loopback when the cluster is."""
        env = super().environment(job)
        if self.loopback:
            # Without it Spark warns that the host name resolves to loopback and guesses an address.
            env["SPARK_LOCAL_IP"] = "127.0.0.1"
        return env

    @property
    def loopback(self) -> bool:
        """True when the master listens on this host's loopback interface."""
        return urlsplit(self.master_url).hostname in ("127.0.0.1", "localhost")

    def health(self) -> dict[str, Any]:
        """The master's view: reachable, status, alive workers, cores and running apps."""
        try:
            with urllib.request.urlopen(f"{self.ui_url}/json/", timeout=self.status_timeout_s) as resp:
                doc = json.load(resp)
        except (OSError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            return {"master": self.master_url, "reachable": False, "alive_workers": 0, "error": str(reason)}
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


def _default_ui_url(master_url: str) -> str:
    """The master's web UI on the master's host, port from SPARK_CLUSTER_UI_PORT (default 8090)."""
    host = urlsplit(master_url).hostname or "127.0.0.1"
    port = int(os.environ.get(UI_PORT_ENV) or DEFAULT_UI_PORT)
    return f"http://{host}:{port}"
