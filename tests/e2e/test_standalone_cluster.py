"""The client-day on a real standalone cluster gives the local platform's results, byte for byte.

A master and two workers (scripts/spark-cluster.sh, on free ports and a temporary folder so a
cluster the user runs is left alone) run the day two ways:
- the resident Spark session (scripts/spark-connect.sh with the cluster as its master) takes every
  Spark job of the whole day, as the e2e platform's session does on local[2]: one application
  whose executors live on the workers, so the day pays executor start-up once;
- DCluster's "standalone" provider submits one job, the Rawlogconverter with its Python per-user
  functions, with spark-submit as an application of its own, on the stage the day left.
The results that depend only on the data must match the e2e platform's first run, and the
spark-submit stage the session's.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from dcluster.models import JobSpec
from dcluster.providers import UnsupportedJob, make_provider
from dcluster.providers.local import RESIDENT_SESSION, SPARK_SUBMIT
from dcluster.providers.standalone import UI_PORT_ENV
from dcluster.settings import DClusterSettings
from dcluster_client import JobSpec as ClientJobSpec
from dcluster_client import run_job
from fraudbatch import clusters, services
from fraudbatch.clusters import SPARK_CLUSTER
from fraudcore.clients import get_client
from tests.support.dcluster import Service
from tests.support.pipeline import (
    DAY,
    DAY_SPARK_APPS,
    REPO,
    free_port,
    generate_demo_day,
    risk_rows,
    run_luigi,
)
from tests.support.spark_connect import ConnectServer, resident_session_config, spark_connect_server
from tests.support.stage_form import stage_form

# A client-day and a spark-submit application on 2 shared cores take minutes.
LONG_TIMEOUT_S = 900


@dataclass(frozen=True)
class Cluster:
    """A running standalone cluster and the environment that points scripts and DCluster at it."""

    master_url: str
    ui_url: str
    env: dict[str, str]


@dataclass(frozen=True)
class DayRun:
    """The client-day's run on the cluster."""

    returncode: int
    stderr: str
    seconds: float
    results: Path
    warehouse: Path
    jobs: list[dict]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    """A master and two workers started by scripts/spark-cluster.sh, stopped after the module."""
    port, ui_port = free_port(), free_port()
    env = {
        "SPARK_CLUSTER_DIR": str(tmp_path_factory.mktemp("spark-cluster")),
        "SPARK_CLUSTER_PORT": str(port),
        "SPARK_CLUSTER_UI_PORT": str(ui_port),
    }
    try:
        SPARK_CLUSTER.start(env)
        yield Cluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}", env)
    finally:
        SPARK_CLUSTER.stop(env)


@pytest.fixture(scope="module")
def cluster_session(tmp_path_factory, cluster: Cluster) -> Iterator[ConnectServer]:
    """A Spark Connect server whose master is the module's cluster."""
    # A worker offers 1024 MiB; an executor of Spark's default 1 GiB plus overhead would never start.
    with spark_connect_server(
        tmp_path_factory.mktemp("cluster-session"),
        SPARK_CONNECT_MASTER=cluster.master_url,
        SPARK_CONNECT_EXECUTOR_MEMORY="900m",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def cluster_day(tmp_path_factory, cluster_session: ConnectServer) -> DayRun:
    """Generate the client-day, start DCluster and FP with the cluster's session, run ResultSender."""
    var = tmp_path_factory.mktemp("var-cluster")
    ports = services.Ports(luigid=free_port(), dcluster=free_port(), fp=free_port())
    env = {
        **os.environ,
        "LUIGI_CONFIG_PATH": str(REPO / "luigi.cfg"),
        "FRAUDBATCH_OBJECTSTORE_ROOT": str(var / "objectstore"),
        "FRAUDBATCH_WAREHOUSE": str(var / "warehouse"),
        "FRAUDBATCH_SQLITE_PATH": str(var / "tables.sqlite"),
        "DCLUSTER_URL": f"http://127.0.0.1:{ports.dcluster}",
        "FP_URL": f"http://127.0.0.1:{ports.fp}",
        "DCLUSTER_CONFIG": str(resident_session_config(var, cluster_session.url)),
        "DCLUSTER_POLL_INTERVAL_S": "0.25",
    }
    env.pop("FRAUDBATCH_RUN_ID", None)
    generate_demo_day(var)
    specs = services.service_specs(var, ports)
    started = services.start([specs["dcluster"], specs["fp"]], var, env=env)
    try:
        t0 = time.monotonic()
        run = run_luigi(
            env, "ResultSender", "demo", DAY, "--local-scheduler", "--workers=2", timeout=LONG_TIMEOUT_S
        )
        seconds = time.monotonic() - t0
        jobs = requests.get(f"{env['DCLUSTER_URL']}/cluster/jobs", params={"limit": 1000}, timeout=10).json()
    finally:
        services.stop(started, var)
    (var / "luigi.stderr.log").write_text(run.stderr, encoding="utf-8")
    (var / "dcluster-jobs.json").write_text(json.dumps(jobs, indent=1), encoding="utf-8")
    results = var / "objectstore" / get_client("demo").bucket / "results" / "demo" / DAY
    listed = jobs["jobs"] if isinstance(jobs, dict) else jobs
    return DayRun(run.returncode, run.stderr, seconds, results, var / "warehouse", listed)


def _master(cluster: Cluster) -> dict:
    return requests.get(f"{cluster.ui_url}/json/", timeout=10).json()


@pytest.mark.spark
@pytest.mark.timeout(LONG_TIMEOUT_S)
def test_script_starts_two_alive_workers_and_is_idempotent(cluster: Cluster) -> None:
    ok, summary = SPARK_CLUSTER.status(cluster.env)
    assert ok, summary
    workers = [w for w in _master(cluster)["workers"] if w["state"] == "ALIVE"]
    assert [(w["cores"], w["memory"]) for w in workers] == [(1, 1024), (1, 1024)]
    log = SPARK_CLUSTER.start(cluster.env)  # a second start finds everything running
    assert "already running" in log and "started" not in log
    assert len([w for w in _master(cluster)["workers"] if w["state"] == "ALIVE"]) == 2


@pytest.mark.spark
@pytest.mark.timeout(LONG_TIMEOUT_S)
def test_every_spark_job_of_the_day_ran_on_the_cluster(cluster: Cluster, cluster_day: DayRun) -> None:
    assert cluster_day.returncode == 0, cluster_day.stderr[-4000:]
    launchers = {job["app"]: job["runs"][-1]["launcher"] for job in cluster_day.jobs}
    for app in DAY_SPARK_APPS:
        assert launchers.get(app) == RESIDENT_SESSION, launchers
    # The session is one application of the cluster, with an executor on each worker.
    apps = [a for a in _master(cluster)["activeapps"] if a["name"] == "Spark Connect server"]
    assert len(apps) == 1 and apps[0]["cores"] == 2, _master(cluster)["activeapps"]
    assert [w["coresused"] for w in _master(cluster)["workers"] if w["state"] == "ALIVE"] == [1, 1]


@pytest.mark.spark
@pytest.mark.timeout(LONG_TIMEOUT_S)
def test_results_are_identical_to_the_local_run(first_results: Path, cluster_day: DayRun) -> None:
    # first_results: the same generated day on the e2e platform's local[2] session (conftest.py).
    assert cluster_day.returncode == 0, cluster_day.stderr[-4000:]
    compared = clusters.comparable_results(first_results)
    assert "risk_scores/risk_scores.csv.gz" in compared and len(compared) >= 4
    assert len(risk_rows(first_results)) > 0
    assert clusters.diff_results(first_results, cluster_day.results) == []
    print(f"cluster day {cluster_day.seconds:.0f}s")


@pytest.mark.spark
@pytest.mark.timeout(LONG_TIMEOUT_S)
def test_a_spark_submit_application_writes_what_the_session_wrote(
    cluster: Cluster, cluster_session: ConnectServer, cluster_day: DayRun, tmp_path: Path, monkeypatch
) -> None:
    assert cluster_day.returncode == 0, cluster_day.stderr[-4000:]
    # The session holds every core of the cluster while it lives; an application would wait forever.
    cluster_session.stop()
    warehouse = tmp_path / "warehouse"
    shutil.copytree(cluster_day.warehouse / "demo" / DAY, warehouse / "demo" / DAY)
    shutil.rmtree(warehouse / "demo" / DAY / "dfe")
    monkeypatch.setenv(UI_PORT_ENV, cluster.env["SPARK_CLUSTER_UI_PORT"])
    settings = DClusterSettings.from_env(
        {
            "DCLUSTER_PROVIDER": "standalone",
            "DCLUSTER_SPARK_MASTER_URL": cluster.master_url,
            "DCLUSTER_STATE_DIR": str(tmp_path / "dcluster"),
            "DCLUSTER_POLL_INTERVAL_S": "0.25",
        }
    )
    service = Service(settings).start()
    try:
        args = ["--client", "demo", "--date", DAY, "--warehouse", str(warehouse)]
        spec = ClientJobSpec(client="demo", app="rawlogconverter", priority="critical", args=args)
        done = run_job(service.client, spec, poll_interval=0.25, timeout_s=300)
        log = service.client.log(done.job_id)
    finally:
        service.stop()
    assert done.state == "COMPLETED", log[-4000:]
    assert done.raw["runs"][-1]["launcher"] == SPARK_SUBMIT
    app = {a["name"]: a for a in _master(cluster)["completedapps"]}.get("rawlogconverter")
    assert app is not None and app["cores"] == 2 and app["state"] == "FINISHED", app
    want = stage_form(cluster_day.warehouse / "demo" / DAY / "dfe")
    assert any(name.endswith(".parquet") for name in want), want.keys()
    assert stage_form(warehouse / "demo" / DAY / "dfe") == want


def test_standalone_command_targets_the_master() -> None:
    settings = DClusterSettings.from_env(
        {"DCLUSTER_PROVIDER": "standalone", "DCLUSTER_SPARK_MASTER_URL": "spark://127.0.0.1:7999"}
    )
    provider = make_provider(settings)
    assert provider.name == "standalone"
    argv = provider.command(SimpleNamespace(engine="spark", app="smoke", args=["--client", "demo"]))  # type: ignore[arg-type]
    assert argv[1:5] == ["--master", "spark://127.0.0.1:7999", "--deploy-mode", "client"]
    assert argv[argv.index("--executor-memory") + 1] == "900m"
    assert argv[argv.index("--total-executor-cores") + 1] == "2"
    assert argv[-4:] == [str(settings.project_root / "jobs" / "run.py"), "smoke", "--client", "demo"]
    assert "spark.executorEnv.PYTHONPATH=" + str(settings.project_root.resolve()) in argv


def test_submit_is_refused_while_no_master_answers() -> None:
    settings = DClusterSettings.from_env({"DCLUSTER_PROVIDER": "standalone"})
    provider = type(make_provider(settings))(settings, ui_url=f"http://127.0.0.1:{free_port()}")
    spec = JobSpec(client="demo", env="dev", engine="spark", app="smoke")
    with pytest.raises(UnsupportedJob, match="does not answer .*scripts/spark-cluster.sh start"):
        provider.check(spec)
    assert provider.health()["reachable"] is False


def _fake_results(folder: Path, *, run_id: str, graph: str) -> Path:
    (folder / "risk_scores").mkdir(parents=True)
    (folder / "risk_scores" / "risk_scores.csv.gz").write_bytes(b"\x1f\x8bsame")
    (folder / "frontend_data" / "campaign_graphs").mkdir(parents=True)
    (folder / "frontend_data" / "campaigns.json").write_text("[]", encoding="utf-8")
    (folder / "frontend_data" / "campaign_graphs" / "cmp-1.json").write_text(graph, encoding="utf-8")
    (folder / "reports").mkdir()
    summary = {"users": 3, "run_id": run_id, "code_version": run_id, "stage_seconds": {"total": len(run_id)}}
    (folder / "reports" / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return folder


def test_comparison_ignores_run_fields_but_not_data(tmp_path: Path) -> None:
    a = _fake_results(tmp_path / "a", run_id="r1", graph='{"nodes": 1}')
    same = _fake_results(tmp_path / "b", run_id="run-2", graph='{"nodes": 1}')
    other = _fake_results(tmp_path / "c", run_id="r1", graph='{"nodes": 2}')
    assert clusters.diff_results(a, same) == []
    assert clusters.diff_results(a, other) == [
        "frontend_data/campaign_graphs/cmp-1.json: differs (12 vs 12 bytes)"
    ]
