"""The same client-day on the local platform and on a real standalone cluster gives identical results.

A master and two workers (scripts/spark-cluster.sh, on free ports and a temporary folder so a
cluster the user runs is left alone) take the jobs of DCluster's "standalone" provider. The
small client-day of the e2e platform (tests/e2e/conftest.py) runs again through this provider
in its own var folder, and the results that depend only on the data must match byte for byte.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from datagen.generator import generate_client_day
from dcluster.models import JobSpec
from dcluster.providers import UnsupportedJob, make_provider
from dcluster.settings import DClusterSettings
from fraudbatch import clusters, services
from fraudbatch.clusters import SPARK_CLUSTER
from fraudcore.clients import get_client
from tests.support.pipeline import BIN, DAY, EVENTS, REPO, free_port, risk_rows

# Two whole client-days on 2 shared cores take minutes; the slow part is JVM start-up per job.
LONG_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Cluster:
    """A running standalone cluster and the environment that points scripts and DCluster at it."""

    master_url: str
    ui_url: str
    env: dict[str, str]


@dataclass(frozen=True)
class DayRun:
    """One provider's run of the client-day."""

    provider: str
    returncode: int
    stderr: str
    seconds: float
    results: Path


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


def _run_day(var: Path, provider_env: dict[str, str]) -> DayRun:
    """Generate the client-day under var, start DCluster and FP, run ResultSender, stop them."""
    ports = services.Ports(luigid=free_port(), dcluster=free_port(), fp=free_port())
    env = {
        **os.environ,
        "LUIGI_CONFIG_PATH": str(REPO / "luigi.cfg"),
        "FRAUDBATCH_OBJECTSTORE_ROOT": str(var / "objectstore"),
        "FRAUDBATCH_WAREHOUSE": str(var / "warehouse"),
        "FRAUDBATCH_SQLITE_PATH": str(var / "tables.sqlite"),
        "DCLUSTER_URL": f"http://127.0.0.1:{ports.dcluster}",
        "FP_URL": f"http://127.0.0.1:{ports.fp}",
        **provider_env,
    }
    env.pop("FRAUDBATCH_RUN_ID", None)
    demo = get_client("demo")
    generate_client_day(
        demo,
        dt.date.fromisoformat(DAY),
        var / "objectstore" / demo.bucket,
        events=EVENTS,
        seed=5,
        malformed_rate=0.01,
        truth_dir=var / "truth",
    )
    specs = services.service_specs(var, ports)
    started = services.start([specs["dcluster"], specs["fp"]], var, env=env)
    try:
        t0 = time.monotonic()
        run = subprocess.run(
            [
                str(BIN / "luigi"),
                "--module",
                "batch_tasks",
                "ResultSender",
                "--client=demo",
                f"--date={DAY}",
                "--local-scheduler",
                "--workers=2",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=1500,
        )
        seconds = time.monotonic() - t0
        jobs = requests.get(f"{env['DCLUSTER_URL']}/cluster/jobs", params={"limit": 1000}, timeout=10).json()
    finally:
        services.stop(started, var)
    (var / "luigi.stderr.log").write_text(run.stderr, encoding="utf-8")
    (var / "dcluster-jobs.json").write_text(json.dumps(jobs, indent=1), encoding="utf-8")
    results = var / "objectstore" / demo.bucket / "results" / "demo" / DAY
    return DayRun(provider_env["DCLUSTER_PROVIDER"], run.returncode, run.stderr, seconds, results)


@pytest.fixture(scope="module")
def standalone_run(tmp_path_factory, cluster: Cluster) -> DayRun:
    """The client-day through the standalone provider, on the module's cluster."""
    return _run_day(
        tmp_path_factory.mktemp("var-standalone"),
        {"DCLUSTER_PROVIDER": "standalone", "DCLUSTER_SPARK_MASTER_URL": cluster.master_url, **cluster.env},
    )


def _master(cluster: Cluster) -> dict:
    return requests.get(f"{cluster.ui_url}/json/", timeout=10).json()


@pytest.mark.spark
@pytest.mark.e2e
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
@pytest.mark.e2e
@pytest.mark.timeout(LONG_TIMEOUT_S)
def test_standalone_run_uses_both_workers(cluster: Cluster, standalone_run: DayRun) -> None:
    assert standalone_run.returncode == 0, standalone_run.stderr[-4000:]
    apps = {a["name"]: a for a in _master(cluster)["completedapps"]}
    # Every Spark job of the day ran as a cluster application with an executor on each worker.
    for app in (
        "connector",
        "organizer",
        "virtual_nodes",
        "rawlogconverter",
        "user_stats",
        "campaign",
        "result_agg_lite",
        "event_join",
    ):
        assert app in apps, f"{app} never reached the cluster; apps: {sorted(apps)}"
        assert apps[app]["cores"] == 2 and apps[app]["state"] == "FINISHED", apps[app]


@pytest.mark.spark
@pytest.mark.e2e
@pytest.mark.timeout(LONG_TIMEOUT_S)
def test_results_are_identical_to_the_local_run(first_results: Path, standalone_run: DayRun) -> None:
    # first_results: the same generated day through the local provider (tests/e2e/conftest.py).
    assert standalone_run.returncode == 0, standalone_run.stderr[-4000:]
    compared = clusters.comparable_results(first_results)
    assert "risk_scores/risk_scores.csv.gz" in compared and len(compared) >= 4
    assert len(risk_rows(first_results)) > 0
    assert clusters.diff_results(first_results, standalone_run.results) == []
    print(f"standalone {standalone_run.seconds:.0f}s")


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
