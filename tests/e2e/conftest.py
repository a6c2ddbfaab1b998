"""The e2e tier: whole client-days through the real services; one platform per test module."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import pytest

from datagen.generator import generate_client_day
from fraudbatch import services
from fraudcore.clients import get_client
from tests.support import REPO
from tests.support.pipeline import BOMB_LIMIT, DAY, EVENTS, Platform, free_port
from tests.support.tiers import mark_tier


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Platform:
    var = tmp_path_factory.mktemp("var")
    ports = services.Ports(luigid=free_port(), dcluster=free_port(), fp=free_port())
    cfg = (REPO / "luigi.cfg").read_text(encoding="utf-8")
    cfg = cfg.replace("sqlite:///var/luigi/task-history.sqlite", f"sqlite:///{var}/luigi/task-history.sqlite")
    cfg = cfg.replace(
        "state_path = var/luigi/luigi-state.pickle", f"state_path = {var}/luigi/luigi-state.pickle"
    )
    cfg = cfg.replace("default-scheduler-port = 8082", f"default-scheduler-port = {ports.luigid}")
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
    }
    env.pop("FRAUDBATCH_RUN_ID", None)
    demo = get_client("demo")
    report = generate_client_day(
        demo,
        dt.date.fromisoformat(DAY),
        var / "objectstore" / demo.bucket,
        events=EVENTS,
        seed=5,
        malformed_rate=0.01,
        truth_dir=var / "truth",
    )
    truth = json.loads(Path(report.truth_path).read_text(encoding="utf-8"))
    specs = services.service_specs(var, ports)
    started = services.start(specs.values(), var, env=env)
    try:
        yield Platform(var=var, env=env, dcluster_url=env["DCLUSTER_URL"], truth=truth)
    finally:
        services.stop(started, var)


@pytest.fixture(scope="module")
def finished_day(platform: Platform) -> subprocess.CompletedProcess:
    """The demo client-day run once through the central scheduler."""
    return platform.luigi("MonitorTracker", "demo", DAY, "--workers=3")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_tier(items, Path(__file__).parent, "e2e")
