"""The whole client-day on the Cassandra table store gives the same results as on the embedded store.

Reuses the platform of test_pipeline_e2e (services, generated client-day, the SQLite run) and runs the
same flow again in a fresh var folder with FRAUDBATCH_TABLES_BACKEND=cassandra.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fraudbatch.clusters import RUN_FIELDS
from fraudcore.clients import get_client
from storage.cassandra_store import CassandraTableStore
from tests.support.cassandra import fresh_keyspace
from tests.support.pipeline import CHECK_RESULTS, DAY, Platform, risk_rows

pytestmark = [pytest.mark.e2e, pytest.mark.cassandra]

KEYSPACE = "fraud_e2e"


@pytest.fixture(scope="module")
def cassandra_day(platform: Platform, finished_day, cassandra_node, tmp_path_factory):  # noqa: F811
    """The demo client-day run again on Cassandra, from a fresh var folder holding the same raw data."""
    assert finished_day.returncode == 0, finished_day.stderr[-3000:]
    var = tmp_path_factory.mktemp("var-cassandra")
    bucket = get_client("demo").bucket
    raw = Path("rawdata") / "demo" / DAY
    shutil.copytree(platform.var / "objectstore" / bucket / raw, var / "objectstore" / bucket / raw)
    settings = fresh_keyspace(cassandra_node, KEYSPACE, f"{KEYSPACE}_fp")
    env = {
        **platform.env,
        "FRAUDBATCH_TABLES_BACKEND": "cassandra",
        "FRAUDBATCH_CASSANDRA_PORT": str(settings.cassandra_port),
        "FRAUDBATCH_CASSANDRA_KEYSPACE": KEYSPACE,
        "FRAUDBATCH_OBJECTSTORE_ROOT": str(var / "objectstore"),
        "FRAUDBATCH_WAREHOUSE": str(var / "warehouse"),
        "FRAUDBATCH_SQLITE_PATH": str(var / "unused.sqlite"),
    }
    run = Platform(var=var, env=env, dcluster_url=platform.dcluster_url, truth=platform.truth).luigi(
        # Own scheduler and lock folder: luigid and the pid lock still hold the SQLite run of the
        # same task ids, and would not hand those tasks out again.
        "MonitorTracker",
        "demo",
        DAY,
        "--workers=3",
        "--local-scheduler",
        f"--lock-pid-dir={var / 'lock'}",
    )
    return var, settings, run


def test_cassandra_run_meets_the_contract_and_equals_the_sqlite_run(
    platform: Platform,  # noqa: F811
    cassandra_day,
) -> None:
    var, settings, run = cassandra_day
    assert run.returncode == 0, run.stderr[-4000:]
    sqlite_results = platform.results_dir("demo", DAY)
    results = var / "objectstore" / get_client("demo").bucket / "results" / "demo" / DAY
    check = subprocess.run([sys.executable, str(CHECK_RESULTS), str(results)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    risk = "risk_scores/risk_scores.csv.gz"
    assert (results / risk).read_bytes() == (sqlite_results / risk).read_bytes()
    summary = json.loads((results / "reports" / "summary.json").read_text())
    sqlite_summary = json.loads((sqlite_results / "reports" / "summary.json").read_text())
    volatile = set(RUN_FIELDS)  # input_snapshot among them: the two runs listed two copies of the files
    assert {k: v for k, v in summary.items() if k not in volatile} == {
        k: v for k, v in sqlite_summary.items() if k not in volatile
    }
    assert summary["users"] == len(risk_rows(results))


def test_dfe_rows_and_run_records_live_in_cassandra(cassandra_day) -> None:
    var, settings, run = cassandra_day
    assert run.returncode == 0
    users = json.loads(
        (
            var
            / "objectstore"
            / get_client("demo").bucket
            / "results"
            / "demo"
            / DAY
            / "reports"
            / "summary.json"
        ).read_text()
    )["users"]
    with CassandraTableStore(settings) as store:
        assert store.count_dfe("demo") == users
        tasks = {r.task: r.status for r in store.list_runs("demo", DAY)}
    assert tasks.get("CassandraDfeWriter") == "DONE" and tasks.get("ResultSender") == "DONE"
    monitor = json.loads((var / "warehouse" / "demo" / DAY / "monitor" / "monitor.json").read_text())
    assert monitor["failed"] == []
