"""The launchers of the DCluster providers: the argv and environment each builds, and which one a job gets.

No process is started and no cluster or Spark Connect server is asked: the resident session's
probe is injected, and only the parts of the standalone launchers that build a run are used.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dcluster.config import ClusterConfig
from dcluster.errors import UnsupportedJob
from dcluster.models import Job, JobSpec, new_job
from dcluster.policy import ON_DEMAND, SPOT
from dcluster.providers import make_provider, provider_types
from dcluster.providers.capacity import CapacitySource, SimulatedCapacity
from dcluster.providers.launchers import (
    RESIDENT_SESSION,
    SPARK_SUBMIT,
    PyFlinkLocal,
    PythonLauncher,
    ResidentSession,
    SparkSubmitLocal,
)
from dcluster.providers.local import LocalProvider, local_launchers
from dcluster.providers.process import ProcessProvider
from dcluster.providers.runner import ProcessRunner
from dcluster.providers.standalone import (
    FLINK_CLUSTER,
    FlinkSessionCluster,
    SparkSubmitStandalone,
    StandaloneProvider,
)
from dcluster.settings import DClusterSettings
from tests.support.dcluster import run_env

SPARK_SUBMIT_PATH = "/opt/spark/bin/spark-submit"
PYTHON = "/opt/venv/bin/python"


class Probe:
    """A resident session probe that answers as told and counts its calls."""

    def __init__(self, down: str = "") -> None:
        self.down = down
        self.calls: list[tuple[str, float]] = []

    def __call__(self, url: str, timeout_s: float) -> str:
        self.calls.append((url, timeout_s))
        return self.down


class RemoteCapacity(CapacitySource):
    """Capacity whose Spark executors run on its own hosts, with variables of its own."""

    def __init__(self, settings: DClusterSettings) -> None:
        self.market = SimulatedCapacity(settings.cluster.simulation).market

    remote_executors = True

    def environment(self, job: Job) -> dict[str, str]:
        return {"DCLUSTER_INSTANCE_IDS": "i-1,i-2"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "jobs" / "flink").mkdir(parents=True)
    return project


def make_settings(tmp_path: Path, root: Path, *, resident: dict[str, Any] | None = None, **over: Any):
    flink_python = tmp_path / "flink-venv" / "bin" / "python"
    flink_python.parent.mkdir(parents=True, exist_ok=True)
    flink_python.write_text("#!/bin/sh\n")
    flink_python.chmod(0o755)
    values: dict[str, Any] = {
        "state_dir": tmp_path / "state",
        "project_root": root,
        "spark_submit": SPARK_SUBMIT_PATH,
        "spark_master": "local[3]",
        "spark_master_url": "spark://127.0.0.1:7077",
        "python": PYTHON,
        "flink_python": str(flink_python),
        "flink_cluster_url": "http://10.1.2.3:8094/",
        "cluster": ClusterConfig.from_mapping({"resident_session": resident or {"enabled": False}}),
    }
    values.update(over)
    return DClusterSettings(**values).normalized()


@pytest.fixture
def settings(tmp_path: Path, root: Path) -> DClusterSettings:
    return make_settings(tmp_path, root)


def job_for(
    engine: str = "spark", app: str = "smoke", *, task_class: str = "critical", capacity_type: str = ON_DEMAND
) -> Job:
    job = new_job(JobSpec(client="syncbank", env="dev", engine=engine, app=app, args=("--day", "2025-11-21")))
    return replace(job, task_class=task_class, capacity_type=capacity_type)


def run_vars(settings: DClusterSettings, job: Job) -> dict[str, str]:
    """The variables every launcher's run gets from the process runner."""
    return {
        "PYSPARK_PYTHON": PYTHON,
        "PYSPARK_DRIVER_PYTHON": PYTHON,
        "SPARK_MASTER_SET": "1",
        **run_env(settings, job),
    }


def added(env: dict[str, str]) -> dict[str, str]:
    """What a run's environment has that the service's own does not."""
    return {k: v for k, v in env.items() if os.environ.get(k) != v and k != "PYTHONPATH"}


# --------------------------------------------------------------------------- argv and environment


def test_spark_submit_local(settings: DClusterSettings, root: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FRAUDBATCH_SPARK_REMOTE", "sc://leaked:1")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    job = job_for()
    launch = LocalProvider(settings).launch(job)
    assert launch.argv == [
        SPARK_SUBMIT_PATH,
        "--master",
        "local[3]",
        "--conf",
        "spark.ui.enabled=false",
        str(root / "jobs" / "run.py"),
        "smoke",
        "--day",
        "2025-11-21",
    ]
    assert (launch.launcher, launch.note) == (SPARK_SUBMIT, "")
    assert added(launch.env) == run_vars(settings, job)
    assert launch.env["PYTHONPATH"] == os.pathsep.join([str(root.resolve()), "/elsewhere"])
    assert "FRAUDBATCH_SPARK_REMOTE" not in launch.env  # only the resident session launcher sets it


def test_spark_submit_on_capacity_with_remote_executors(settings: DClusterSettings, root: Path):
    job = job_for()
    capacity = RemoteCapacity(settings)
    provider = ProcessProvider(settings, local_launchers(settings, capacity), capacity, name="aws")
    launch = provider.launch(job)
    assert launch.argv[:7] == [
        SPARK_SUBMIT_PATH,
        "--conf",
        f"spark.pyspark.python={PYTHON}",
        "--conf",
        f"spark.executorEnv.PYTHONPATH={root.resolve()}",
        "--master",
        "local[3]",
    ]
    assert added(launch.env) == {**run_vars(settings, job), "DCLUSTER_INSTANCE_IDS": "i-1,i-2"}


def test_python_launcher(tmp_path: Path, root: Path):
    settings = make_settings(tmp_path, root, spark_submit="/usr/bin/python3")
    job = job_for()
    launch = LocalProvider(settings).launch(job)
    assert launch.argv == ["/usr/bin/python3", str(root / "jobs" / "run.py"), "smoke", "--day", "2025-11-21"]
    assert (launch.launcher, launch.note) == (SPARK_SUBMIT, "")
    assert added(launch.env) == run_vars(settings, job)


def test_pyflink_local(settings: DClusterSettings, root: Path):
    job = job_for("flink", "user_stats")
    provider = LocalProvider(settings)
    launch = provider.launch(job)
    assert launch.argv == [
        str(settings.flink_launcher),
        str(root / "jobs" / "flink" / "run.py"),
        "user_stats",
        "--day",
        "2025-11-21",
    ]
    assert (launch.launcher, launch.note) == (SPARK_SUBMIT, "")
    assert added(launch.env) == run_vars(settings, job)
    assert provider.command(job) == launch.argv and provider.environment(job) == launch.env


def test_resident_session(tmp_path: Path, root: Path):
    settings = make_settings(tmp_path, root, resident={"enabled": True, "url": "sc://10.0.0.5:15002"})
    job = job_for()
    provider = ProcessProvider(
        settings,
        local_launchers(settings, SimulatedCapacity(settings.cluster.simulation)),
        SimulatedCapacity(settings.cluster.simulation),
        name="local",
        resident=ResidentSession(settings, probe=Probe()),
    )
    launch = provider.launch(job)
    assert launch.argv == [PYTHON, str(root / "jobs" / "run.py"), "smoke", "--day", "2025-11-21"]
    assert (launch.launcher, launch.note) == (
        RESIDENT_SESSION,
        "running on the resident Spark session sc://10.0.0.5:15002",
    )
    assert added(launch.env) == {**run_vars(settings, job), "FRAUDBATCH_SPARK_REMOTE": "sc://10.0.0.5:15002"}
    # command() and environment() name the job's own launcher, never the session.
    assert provider.command(job)[0] == SPARK_SUBMIT_PATH
    assert "FRAUDBATCH_SPARK_REMOTE" not in provider.environment(job)


def test_spark_submit_to_a_standalone_master_on_loopback(settings: DClusterSettings, root: Path):
    job = job_for()
    launch = StandaloneProvider(settings, ui_url="http://127.0.0.1:1").launch(job)
    assert launch.argv == [
        SPARK_SUBMIT_PATH,
        "--master",
        "spark://127.0.0.1:7077",
        "--deploy-mode",
        "client",
        "--executor-memory",
        "900m",
        "--executor-cores",
        "1",
        "--total-executor-cores",
        "2",
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        f"spark.pyspark.python={PYTHON}",
        "--conf",
        f"spark.executorEnv.PYTHONPATH={root.resolve()}",
        "--conf",
        "spark.driver.host=127.0.0.1",
        "--conf",
        "spark.driver.bindAddress=127.0.0.1",
        str(root / "jobs" / "run.py"),
        "smoke",
        "--day",
        "2025-11-21",
    ]
    assert (launch.launcher, launch.note) == (SPARK_SUBMIT, "")
    assert added(launch.env) == {**run_vars(settings, job), "SPARK_LOCAL_IP": "127.0.0.1"}


def test_spark_submit_to_a_remote_standalone_master(tmp_path: Path, root: Path):
    settings = make_settings(tmp_path, root, spark_master_url="spark://master.internal:7077")
    job = job_for()
    launcher = SparkSubmitStandalone(settings)
    assert launcher.ui_url == "http://master.internal:8090"
    argv = launcher.command(job)
    assert "spark.driver.host=127.0.0.1" not in argv and argv[2] == "spark://master.internal:7077"
    launch = StandaloneProvider(settings).launch(job)
    assert added(launch.env) == run_vars(settings, job)  # no SPARK_LOCAL_IP off loopback


def test_flink_run_to_the_session_cluster(settings: DClusterSettings, root: Path):
    job = job_for("flink", "user_stats")
    launch = StandaloneProvider(settings).launch(job)
    python = str(settings.flink_launcher)
    assert launch.argv == [
        str(settings.flink_cli),
        "run",
        "-m",
        "10.1.2.3:8094",
        "-pyclientexec",
        python,
        "-pyexec",
        python,
        "-py",
        str(root / "jobs" / "flink" / "run.py"),
        "user_stats",
        "--day",
        "2025-11-21",
    ]
    assert (launch.launcher, launch.note) == (
        FLINK_CLUSTER,
        "submitting to the Flink session cluster http://10.1.2.3:8094",
    )
    assert added(launch.env) == {
        **run_vars(settings, job),
        "SPARK_LOCAL_IP": "127.0.0.1",  # the Spark master of these settings is on loopback
        "FLINK_LOG_DIR": str(settings.logs_dir / "flink-cli"),
    }


def test_the_runner_adds_host_variables_last(settings: DClusterSettings):
    job = job_for()
    env = ProcessRunner(settings, {"SPARK_LOCAL_IP": "127.0.0.1"}).environment(
        job, {"SPARK_LOCAL_IP": "10.0.0.1", "DCLUSTER_INSTANCE_IDS": "i-1"}
    )
    assert (env["SPARK_LOCAL_IP"], env["DCLUSTER_INSTANCE_IDS"]) == ("127.0.0.1", "i-1")


# --------------------------------------------------------------------------- choice rules


def resident_provider(
    tmp_path: Path, root: Path, probe: Probe, *, enabled: bool = True, **over: Any
) -> ProcessProvider:
    session = {"enabled": enabled, "url": "sc://10.0.0.5:15002", "apps": ["smoke", "campaign"]}
    settings = make_settings(tmp_path, root, resident=session, **over)
    provider = LocalProvider(settings)
    assert provider.resident is not None
    provider.resident = ResidentSession(settings, probe=probe)
    return provider


def test_an_eligible_job_runs_on_the_resident_session(tmp_path: Path, root: Path):
    probe = Probe()
    provider = resident_provider(tmp_path, root, probe)
    assert provider.launch(job_for()).launcher == RESIDENT_SESSION
    assert provider.launch(job_for(task_class="normal", app="campaign")).launcher == RESIDENT_SESSION
    assert probe.calls == [("sc://10.0.0.5:15002", 0.5)] * 2


@pytest.mark.parametrize(
    "job",
    [
        job_for(app="user_stats"),  # the app is not listed
        job_for(task_class="batch"),  # the class is not allowed
        job_for(task_class="normal", capacity_type=SPOT),  # spot capacity
        job_for("flink"),  # not a Spark job
    ],
    ids=["app", "class", "spot", "engine"],
)
def test_an_ineligible_job_does_not_ask_the_session(tmp_path: Path, root: Path, job: Job):
    probe = Probe()
    launch = resident_provider(tmp_path, root, probe).launch(job)
    assert (launch.launcher, launch.note) == (SPARK_SUBMIT, "")
    assert probe.calls == []


def test_the_session_is_not_used_while_disabled(tmp_path: Path, root: Path):
    probe = Probe()
    provider = resident_provider(tmp_path, root, probe, enabled=False)
    assert provider.launch(job_for()).launcher == SPARK_SUBMIT
    assert provider.health() is None
    assert probe.calls == []


def test_the_python_launcher_never_uses_the_session(tmp_path: Path, root: Path):
    probe = Probe()
    provider = resident_provider(tmp_path, root, probe, spark_submit="/usr/bin/python3")
    assert provider.launch(job_for()).argv[0] == "/usr/bin/python3"
    assert probe.calls == []


def test_a_session_that_does_not_answer_falls_back_to_spark_submit(tmp_path: Path, root: Path):
    provider = resident_provider(tmp_path, root, Probe("Connection refused"))
    launch = provider.launch(job_for())
    assert launch.launcher == SPARK_SUBMIT and launch.argv[0] == SPARK_SUBMIT_PATH
    assert launch.note == (
        "resident Spark session sc://10.0.0.5:15002 does not answer (Connection refused); running "
        "through spark-submit instead (start it with scripts/spark-connect.sh start)"
    )
    assert "FRAUDBATCH_SPARK_REMOTE" not in launch.env
    assert provider.health() == {
        "resident_session": {
            "url": "sc://10.0.0.5:15002",
            "reachable": False,
            "error": "Connection refused",
            "classes": ["critical", "normal"],
            "apps": ["smoke", "campaign"],
        }
    }


def test_the_standalone_pairing_has_no_resident_session(tmp_path: Path, root: Path):
    settings = make_settings(tmp_path, root, resident={"enabled": True})
    provider = StandaloneProvider(settings)
    assert provider.resident is None
    assert provider.launch(job_for()).argv[3] == "--deploy-mode"


def test_each_engine_gets_the_launcher_of_the_mode(tmp_path: Path, root: Path, settings: DClusterSettings):
    local = LocalProvider(settings)
    assert type(local.launcher_for("spark")) is SparkSubmitLocal
    assert type(local.launcher_for("flink")) is PyFlinkLocal
    standalone = StandaloneProvider(settings)
    assert type(standalone.launcher_for("spark")) is SparkSubmitStandalone
    assert type(standalone.launcher_for("flink")) is FlinkSessionCluster
    python = make_settings(tmp_path, root, spark_submit="/usr/bin/python3")
    assert type(LocalProvider(python).launcher_for("spark")) is PythonLauncher
    assert type(StandaloneProvider(python).launcher_for("spark")) is PythonLauncher
    StandaloneProvider(python).check(
        JobSpec(client="c", env="dev", engine="spark", app="smoke")
    )  # no cluster asked


# --------------------------------------------------------------------------- refusals and pairings


def test_refusals(tmp_path: Path, root: Path, settings: DClusterSettings):
    hive = JobSpec(client="c", env="dev", engine="hive", app="x")
    with pytest.raises(UnsupportedJob, match=r"^Hive is not supported by the local provider yet$"):
        LocalProvider(settings).check(hive)
    with pytest.raises(UnsupportedJob, match=r"^Hive is not supported by the local provider yet$"):
        StandaloneProvider(settings).check(hive)
    capacity = SimulatedCapacity(settings.cluster.simulation)
    aws_like = ProcessProvider(
        settings, local_launchers(settings, capacity), capacity, name="aws", engines=("spark",)
    )
    flink = JobSpec(client="c", env="dev", engine="flink", app="x")
    with pytest.raises(UnsupportedJob, match=r"^Flink is not supported by the aws provider yet$"):
        aws_like.check(flink)
    missing = make_settings(tmp_path, root, flink_python=str(tmp_path / "nowhere" / "python"))
    with pytest.raises(
        UnsupportedJob,
        match=r"^Flink jobs need the Flink virtual environment, but .*nowhere/python is missing; "
        r"run make flink-env \(or set DCLUSTER_FLINK_PYTHON\)$",
    ):
        LocalProvider(missing).check(flink)
    LocalProvider(settings).check(flink)


def test_make_provider_pairs_by_name(settings: DClusterSettings):
    assert sorted(provider_types()) == ["aws", "local", "standalone"]
    local = make_provider(settings)
    assert (local.name, type(local)) == ("local", LocalProvider)
    standalone = make_provider(replace(settings, provider="standalone"))
    assert standalone.name == "standalone" and isinstance(standalone, StandaloneProvider)
    with pytest.raises(ValueError, match=r"unknown DCluster provider 'yarn'; known: aws, local, standalone"):
        make_provider(replace(settings, provider="yarn"))


def test_standalone_launchers_pair_with_other_capacity(settings: DClusterSettings):
    provider = StandaloneProvider(settings, capacity=RemoteCapacity(settings))
    job = job_for()
    launch = provider.launch(job)
    assert launch.argv[2] == "spark://127.0.0.1:7077"
    assert launch.env["DCLUSTER_INSTANCE_IDS"] == "i-1,i-2"
