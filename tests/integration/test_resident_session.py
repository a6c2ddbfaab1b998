"""The resident Spark session (Spark Connect): which runs use it, same outputs, and through DCluster.

The unit tests pick launches with a real listening (or closed) loopback port standing in for the
server. The spark tests start a real Spark Connect server with scripts/spark-connect.sh (the
session-scoped `spark_connect` fixture), run the pipeline jobs from connector to result_agg_lite
on it and in local mode in the test process, and compare what they wrote.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcluster.config import CONNECT_APPS, ClusterConfig, ConfigError
from dcluster.models import JobSpec as ServiceJobSpec
from dcluster.models import JobStore
from dcluster.providers.local import RESIDENT_SESSION, SPARK_SUBMIT, LocalProvider
from dcluster.providers.standalone import StandaloneProvider
from dcluster.settings import DClusterSettings
from dcluster_client import JobSpec, run_job
from jobs.common import SPARK_REMOTE_ENV
from tests.support import REPO
from tests.support.dcluster import Service
from tests.support.pipeline import DAY_SPARK_APPS
from tests.support.stage_form import stage_form

BIN = Path(sys.executable).parent
DAY = "2025-11-21"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture()
def listening() -> Iterator[str]:
    """sc:// URL of a loopback port that accepts connections (what the provider probes)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield f"sc://127.0.0.1:{s.getsockname()[1]}"


def _closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"sc://127.0.0.1:{port}"  # nothing listens once the socket is closed


def _provider(
    tmp_path: Path, url: str, *, enabled: bool = True, cls=LocalProvider, apps: list[str] | None = None
) -> LocalProvider:
    session: dict = {"enabled": enabled, "url": url}
    if apps is not None:
        session["apps"] = apps
    cluster = ClusterConfig.from_mapping({"resident_session": session})
    return cls(
        DClusterSettings(
            state_dir=tmp_path / "state",
            spark_submit="/opt/venv/bin/spark-submit",
            python="/opt/venv/bin/python",
            cluster=cluster,
        )
    )


def _job(
    tmp_path: Path,
    *,
    app: str = "organizer",
    task_class: str = "critical",
    capacity: str = "on_demand",
    engine: str = "spark",
):
    store = JobStore(tmp_path / "jobs")
    job, _ = store.submit(
        ServiceJobSpec(client="demo", env="prod", engine=engine, app=app, args=("--x", "1")),
        task_class=task_class,
        capacity_type=capacity,
    )
    return job


# --- which runs use the resident session ------------------------------------------------------


def test_eligible_job_runs_as_a_connect_client(tmp_path: Path, listening: str, monkeypatch):
    monkeypatch.setenv(SPARK_REMOTE_ENV, "sc://elsewhere:1")  # the service's own value never leaks
    launch = _provider(tmp_path, listening).launch(_job(tmp_path))
    assert launch.launcher == RESIDENT_SESSION
    assert launch.argv == ["/opt/venv/bin/python", str(REPO / "jobs" / "run.py"), "organizer", "--x", "1"]
    assert launch.env[SPARK_REMOTE_ENV] == listening
    assert launch.note == f"running on the resident Spark session {listening}"


@pytest.mark.parametrize(
    "task_class, capacity, app, apps",
    [
        ("batch", "spot", "organizer", None),  # class not in resident_session.classes
        ("normal", "spot", "organizer", None),  # a normal job placed on spot
        ("batch", "on_demand", "connector", None),  # an allowed app, but its class is not allowed
        ("normal", "spot", "connector", None),
        ("critical", "on_demand", "connector", ["organizer"]),  # an app the configured allowlist leaves out
        ("normal", "on_demand", "connector", ["organizer"]),
    ],
)
def test_ineligible_job_goes_through_spark_submit(
    tmp_path: Path,
    listening: str,
    monkeypatch,
    task_class: str,
    capacity: str,
    app: str,
    apps: list[str] | None,
):
    monkeypatch.setenv(SPARK_REMOTE_ENV, listening)
    launch = _provider(tmp_path, listening, apps=apps).launch(
        _job(tmp_path, app=app, task_class=task_class, capacity=capacity)
    )
    assert launch.launcher == SPARK_SUBMIT
    assert launch.argv[:3] == ["/opt/venv/bin/spark-submit", "--master", "local[2]"]
    assert SPARK_REMOTE_ENV not in launch.env
    assert launch.note == ""


def test_flink_job_of_an_eligible_name_stays_on_flink(tmp_path: Path, listening: str):
    launch = _provider(tmp_path, listening).launch(_job(tmp_path, app="smoke", engine="flink"))
    assert launch.launcher == SPARK_SUBMIT
    assert launch.argv[1] == str(REPO / "jobs" / "flink" / "run.py") and SPARK_REMOTE_ENV not in launch.env


@pytest.mark.parametrize(
    "app", ["connector", "virtual_nodes", "rawlogconverter", "user_stats", "result_agg_lite"]
)
def test_normal_on_demand_job_is_eligible(tmp_path: Path, listening: str, app: str):
    launch = _provider(tmp_path, listening).launch(_job(tmp_path, task_class="normal", app=app))
    assert launch.launcher == RESIDENT_SESSION


def test_connector_runs_as_a_connect_client(tmp_path: Path, listening: str):
    launch = _provider(tmp_path, listening).launch(_job(tmp_path, app="connector"))
    assert launch.launcher == RESIDENT_SESSION
    assert launch.argv == ["/opt/venv/bin/python", str(REPO / "jobs" / "run.py"), "connector", "--x", "1"]
    assert launch.env[SPARK_REMOTE_ENV] == listening


def test_disabled_or_standalone_never_uses_it(tmp_path: Path, listening: str):
    assert _provider(tmp_path, listening, enabled=False).launch(_job(tmp_path)).launcher == SPARK_SUBMIT
    assert _provider(tmp_path, listening, enabled=False).health() is None
    standalone = _provider(tmp_path, listening, cls=StandaloneProvider)
    assert standalone.launch(_job(tmp_path)).launcher == SPARK_SUBMIT


def test_server_down_falls_back_to_spark_submit_with_a_note(tmp_path: Path):
    url = _closed_url()
    provider = _provider(tmp_path, url)
    launch = provider.launch(_job(tmp_path))
    assert launch.launcher == SPARK_SUBMIT
    assert launch.argv[0] == "/opt/venv/bin/spark-submit"
    assert SPARK_REMOTE_ENV not in launch.env
    assert launch.note.startswith(f"resident Spark session {url} does not answer (")
    assert "scripts/spark-connect.sh start" in launch.note
    health = provider.health()["resident_session"]
    assert (health["url"], health["reachable"]) == (url, False) and health["error"]


def test_health_reports_a_reachable_session(tmp_path: Path, listening: str):
    health = _provider(tmp_path, listening).health()["resident_session"]
    assert health == {
        "url": listening,
        "reachable": True,
        "error": None,
        "classes": ["critical", "normal"],
        "apps": list(CONNECT_APPS),
    }


def test_config_is_checked():
    with pytest.raises(ConfigError, match="resident_session.classes: unknown task class vip"):
        ClusterConfig.from_mapping({"resident_session": {"classes": ["vip"]}})
    with pytest.raises(ConfigError, match="resident_session.url must be an sc://"):
        ClusterConfig.from_mapping({"resident_session": {"url": "http://127.0.0.1:15002"}})
    shipped = DClusterSettings.from_env({}).cluster.resident_session
    assert shipped.enabled is False and shipped.classes == ("critical", "normal")
    assert shipped.apps == CONNECT_APPS and "connector" in shipped.apps


# --- real jobs on a real Spark Connect server ---------------------------------------------------


def _on_connect(url: str, app: str, warehouse: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, SPARK_REMOTE_ENV: url, "PYTHONPATH": str(REPO)}
    # A relative warehouse from another folder: the server must still write where the job means.
    argv = [
        sys.executable,
        str(REPO / "jobs" / "run.py"),
        app,
        "--client",
        "demo",
        "--date",
        DAY,
        "--warehouse",
        os.path.relpath(warehouse, cwd),
    ]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def raw_day(tmp_path_factory) -> Path:
    """A warehouse holding the raw files of a generated demo client-day."""
    from datagen.generator import generate_client_day
    from fraudcore.clients import get_client

    base = tmp_path_factory.mktemp("resident-day")
    demo = get_client("demo")
    report = generate_client_day(
        demo, dt.date.fromisoformat(DAY), base / "bucket", events=2000, seed=11, truth_dir=base / "truth"
    )
    warehouse = base / "warehouse"
    shutil.copytree(report.root, warehouse / "demo" / DAY / "raw")
    return warehouse


@pytest.mark.spark
def test_connect_jobs_write_what_local_mode_writes(
    spark, spark_connect: str, raw_day: Path, tmp_path: Path, monkeypatch
):
    # Local mode runs in this process on the shared session (the code spark-submit runs); the
    # Connect runs are processes of their own, as DCluster starts them.
    from jobs import run

    local, remote = tmp_path / "local", tmp_path / "remote"
    shutil.copytree(raw_day, local)
    shutil.copytree(raw_day, remote)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.delenv(SPARK_REMOTE_ENV, raising=False)
    for app in DAY_SPARK_APPS[: DAY_SPARK_APPS.index("event_join")]:
        assert run.main([app, "--client", "demo", "--date", DAY, "--warehouse", str(local)]) == 0, app
        b = _on_connect(spark_connect, app, remote, elsewhere)
        assert b.returncode == 0, b.stderr[-3000:]
        assert "SparkContext" not in b.stderr  # no JVM of its own: the work ran on the server
    for stage in ("connector", "organized", "virtual_nodes", "dfe", "user_stats", "campaigns", "risk"):
        want = stage_form(local / "demo" / DAY / stage)
        got = stage_form(remote / "demo" / DAY / stage)
        assert any(name.endswith(".parquet") for name in want), want.keys()
        assert got == want, stage


@pytest.mark.spark
def test_sessions_are_isolated_and_stop_leaves_the_server(spark_connect: str):
    # Each process opens its own session: the first sets a setting and a temp view and stops its
    # session; the second must see neither, and the server must still answer it.
    code = f"""
import sys
from pyspark.sql import SparkSession
url = {spark_connect!r}
a = SparkSession.builder.remote(url).getOrCreate()
a.conf.set("spark.sql.shuffle.partitions", "3")
a.range(2).createOrReplaceTempView("leftover")
a.stop()
b = SparkSession.builder.remote(url).getOrCreate()
print(b.conf.get("spark.sql.shuffle.partitions"), [t.name for t in b.catalog.listTables()], b.range(5).count())
b.stop()
"""
    env = {**os.environ}
    env.pop(SPARK_REMOTE_ENV, None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[-2] == "8 [] 5"  # the server's default, no view, and it still runs


@pytest.mark.spark
def test_terminated_job_cancels_its_queries_on_the_server(spark_connect: str):
    # DCluster terminates with SIGTERM. The job's query (endless at this size) must stop with it,
    # or it keeps the server's two cores and the next job waits behind it for minutes.
    endless = """
from jobs.common import spark_session
spark = spark_session("endless")
print("query started", flush=True)
spark.range(10**13, numPartitions=2).selectExpr("sum(id * 7 % 13)").collect()
"""
    env = {**os.environ, SPARK_REMOTE_ENV: spark_connect, "PYTHONPATH": str(REPO)}
    job = subprocess.Popen([sys.executable, "-c", endless], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert job.stdout is not None and job.stdout.readline().strip() == "query started"
        time.sleep(3)  # let the query reach the executors
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        job.kill()
    began = time.monotonic()
    nxt = subprocess.run(
        [
            sys.executable,
            "-c",
            "from jobs.common import spark_session\nprint(spark_session('next').range(10).count())",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert nxt.returncode == 0 and nxt.stdout.strip().endswith("10"), nxt.stderr[-2000:]
    assert time.monotonic() - began < 60


@pytest.mark.spark
def test_dcluster_runs_critical_jobs_on_the_resident_session(spark_connect: str, tmp_path: Path):
    cluster = ClusterConfig.from_mapping({"resident_session": {"enabled": True, "url": spark_connect}})
    settings = DClusterSettings(
        state_dir=tmp_path / "state", poll_interval_s=0.1, env="prod", cluster=cluster
    )
    assert Path(settings.spark_submit).name == "spark-submit"
    service = Service(settings).start()
    try:
        health = service.client.health()
        assert health["cluster"]["resident_session"]["reachable"] is True
        out = tmp_path / "count.txt"
        done = run_job(
            service.client,
            JobSpec(client="demo", app="smoke", priority="critical", args=["--out", str(out), "--n", "1234"]),
            poll_interval=0.2,
            timeout_s=300,
        )
        assert (done.state, done.capacity_type) == ("COMPLETED", "on_demand")
        assert done.raw["runs"][-1]["launcher"] == RESIDENT_SESSION
        assert out.read_text() == "1234\n"
        log = service.client.log(done.job_id)
        assert f"dcluster: running on the resident Spark session {spark_connect}" in log
        assert "SparkContext" not in log
        # The smoke job ends with spark.stop(): on a Connect client that releases its own session only.
        assert service.client.health()["cluster"]["resident_session"]["reachable"] is True
    finally:
        service.stop()


@pytest.mark.spark
def test_dcluster_falls_back_to_spark_submit_when_the_server_is_down(tmp_path: Path):
    url = _closed_url()
    cluster = ClusterConfig.from_mapping({"resident_session": {"enabled": True, "url": url}})
    settings = DClusterSettings(
        state_dir=tmp_path / "state", poll_interval_s=0.1, env="prod", cluster=cluster
    )
    service = Service(settings).start()
    try:
        assert service.client.health()["cluster"]["resident_session"]["reachable"] is False
        out = tmp_path / "count.txt"
        done = run_job(
            service.client,
            JobSpec(client="demo", app="smoke", priority="critical", args=["--out", str(out)]),
            poll_interval=0.2,
            timeout_s=300,
        )
        assert done.state == "COMPLETED" and done.raw["runs"][-1]["launcher"] == SPARK_SUBMIT
        assert out.read_text() == "1000\n"
        log = service.client.log(done.job_id)
        assert f"dcluster: resident Spark session {url} does not answer" in log
        assert "SparkContext" in log  # a JVM of its own
    finally:
        service.stop()
