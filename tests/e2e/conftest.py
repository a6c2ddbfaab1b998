"""The e2e tier: whole client-days through the real services, on one platform for the whole tier.

The platform's DCluster runs the day's Spark jobs on a resident Spark session (docs/adr/0010)
on on-demand capacity, so a day costs seconds of start-up instead of a JVM per job; the
spark-submit path is covered by the standalone-cluster test here and by tests/integration.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fraudbatch import services
from tests.support import REPO
from tests.support.pipeline import BOMB_LIMIT, DAY, Platform, free_port, generate_demo_day
from tests.support.spark_connect import resident_session_config
from tests.support.tiers import mark_tier


@pytest.fixture(scope="session")
def platform(tmp_path_factory, spark_connect: str) -> Platform:
    var = tmp_path_factory.mktemp("var")
    ports = services.Ports(luigid=free_port(), dcluster=free_port(), fp=free_port())
    cfg = (REPO / "luigi.cfg").read_text(encoding="utf-8")
    cfg = cfg.replace("sqlite:///var/luigi/task-history.sqlite", f"sqlite:///{var}/luigi/task-history.sqlite")
    cfg = cfg.replace(
        "state_path = var/luigi/luigi-state.pickle", f"state_path = {var}/luigi/luigi-state.pickle"
    )
    cfg = cfg.replace("default-scheduler-port = 8082", f"default-scheduler-port = {ports.luigid}")
    cfg = cfg.replace("poll_interval = 2\n", "poll_interval = 0.5\n")
    (var / "luigi.cfg").write_text(cfg, encoding="utf-8")
    env = {
        **os.environ,
        "LUIGI_CONFIG_PATH": str(var / "luigi.cfg"),
        "FRAUDBATCH_OBJECTSTORE_ROOT": str(var / "objectstore"),
        "FRAUDBATCH_WAREHOUSE": str(var / "warehouse"),
        "FRAUDBATCH_SQLITE_PATH": str(var / "tables.sqlite"),
        # The hostile day's gzip bomb is built against this limit (DCluster's jobs read it).
        "FRAUDBATCH_MAX_DECOMPRESSED_BYTES": str(BOMB_LIMIT),
        "DCLUSTER_URL": f"http://127.0.0.1:{ports.dcluster}",
        "FP_URL": f"http://127.0.0.1:{ports.fp}",
        "DCLUSTER_CONFIG": str(resident_session_config(var, spark_connect)),
        "DCLUSTER_POLL_INTERVAL_S": "0.25",
    }
    env.pop("FRAUDBATCH_RUN_ID", None)
    report = generate_demo_day(var)
    truth = json.loads(Path(report.truth_path).read_text(encoding="utf-8"))
    specs = services.service_specs(var, ports)
    started = services.start(specs.values(), var, env=env)
    try:
        yield Platform(var=var, env=env, dcluster_url=env["DCLUSTER_URL"], truth=truth)
    finally:
        services.stop(started, var)


@pytest.fixture(scope="session")
def finished_day(platform: Platform) -> subprocess.CompletedProcess:
    """The demo client-day run once through the central scheduler; its results are also kept in
    `first_results` (later tests send the day again)."""
    run = platform.luigi("MonitorTracker", "demo", DAY, "--workers=3")
    if run.returncode == 0:
        shutil.copytree(platform.results_dir("demo", DAY), platform.var / "first-results")
    return run


@pytest.fixture(scope="session")
def first_results(platform: Platform, finished_day: subprocess.CompletedProcess) -> Path:
    """The results folder of the day's first run, as it was then."""
    assert finished_day.returncode == 0, finished_day.stderr[-4000:]
    return platform.var / "first-results"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_tier(items, Path(__file__).parent, "e2e")
