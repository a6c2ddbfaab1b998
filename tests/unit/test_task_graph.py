"""The Luigi task graph of a client-day, in-process: its wiring, its targets and the DCluster jobs it submits.

The wiring is held to docs/architecture.md "Task graph as built"; the jobs run against an
in-process DCluster that completes each one by writing the app's stage the way a Spark job does.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import luigi
import pytest
from luigi.execution_summary import LuigiStatusCode
from luigi.task import flatten
from luigi.task_register import Register

import batch_tasks
from batch_tasks import config, targets
from batch_tasks.base import SparkJobTask
from batch_tasks.targets import RawDataTarget, ResultsTarget, StageTarget
from dcluster_client.client import JobSpec, JobStatus
from fraudcore.paths import WorkPaths, done_meta
from jobs.common import job_context, job_parser
from tests.support import REPO

DAY = dt.date(2025, 3, 4)
REGISTRY = """\
clients:
  acme:
    bucket: acme-data
  critbank:
    bucket: critbank-data
    priority: critical
"""

# Each task and what its requires() returns: the table of docs/architecture.md "Task graph as built".
REQUIRES: dict[str, set[str]] = {
    "RawClientDay": set(),
    "Fetcher": {"RawClientDay"},
    "SparkConnectorRunner": {"Fetcher"},
    "Connector": {"SparkConnectorRunner"},
    "LogTimeFileOrganizer": {"Connector"},
    "VirtualNodeGenerator": {"LogTimeFileOrganizer"},
    "Rawlogconverter": {"VirtualNodeGenerator"},
    "CassandraDfeWriter": {"Rawlogconverter"},
    "UserStats": {"Rawlogconverter"},
    "Campaign": {"Rawlogconverter", "UserStats", "VirtualNodeGenerator"},
    "ResultAggLite": {"Campaign", "UserStats", "CassandraDfeWriter"},
    "EventJoinLite": {"ResultAggLite", "LogTimeFileOrganizer"},
    "ResultAgg": {"EventJoinLite"},
    "CampaignFrontendData": {"ResultAgg"},
    "FrontendDataGen": {"ResultAgg"},
    "FrontendResultGenerator": {"CampaignFrontendData", "FrontendDataGen"},
    "FrontendResultWriter": {"FrontendResultGenerator"},
    "ResultSender": {"FrontendResultWriter"},
    "Labeling": {"ResultAggLite", "Fetcher"},
    "BatchFeaturePlatformFerry": {"VirtualNodeGenerator"},
    "MonitorTracker": {"Labeling", "ResultSender", "BatchFeaturePlatformFerry"},
    "CronFeaturePlatformFerry": {"VirtualNodeGenerator"},
}

# The warehouse stage whose _DONE is each task's output (docs/architecture.md "Warehouse").
STAGES: dict[str, str] = {
    "Fetcher": "raw",
    "SparkConnectorRunner": "connector",
    "LogTimeFileOrganizer": "organized",
    "VirtualNodeGenerator": "virtual_nodes",
    "Rawlogconverter": "dfe",
    "CassandraDfeWriter": "dfe_store",
    "UserStats": "user_stats",
    "Campaign": "campaigns",
    "ResultAggLite": "risk",
    "EventJoinLite": "event_join",
    "ResultAgg": "result_agg",
    "CampaignFrontendData": "frontend_campaigns",
    "FrontendDataGen": "frontend_data",
    "FrontendResultGenerator": "frontend_report",
    "FrontendResultWriter": "results_staging",
    "ResultSender": "result_sender",
    "Labeling": "labeling",
    "BatchFeaturePlatformFerry": "ferry_batch",
    "MonitorTracker": "monitor",
    "CronFeaturePlatformFerry": "ferry_cron",
}

# The module of jobs/ each Spark task submits.
SPARK_APPS: dict[str, str] = {
    "SparkConnectorRunner": "connector",
    "LogTimeFileOrganizer": "organizer",
    "VirtualNodeGenerator": "virtual_nodes",
    "Rawlogconverter": "rawlogconverter",
    "UserStats": "user_stats",
    "Campaign": "campaign",
    "ResultAggLite": "result_agg_lite",
    "EventJoinLite": "event_join",
    "ResultAgg": "result_agg",
}
APP_STAGES = {app: STAGES[family] for family, app in SPARK_APPS.items()}

# luigi.cfg keeps the SPEC's dashed [core] keys; luigi warns about them on every build.
pytestmark = [
    pytest.mark.filterwarnings(r"ignore:Configuration \[core\] .* \(with dashes\):DeprecationWarning"),
    pytest.mark.filterwarnings(
        r"ignore:The use of the configuration \[core\] default-scheduler:DeprecationWarning"
    ),
    pytest.mark.filterwarnings(
        r"ignore:.*'(default_scheduler_host|default_scheduler_port|rpc_connect_timeout)'.*task 'core'"
    ),
]


@dataclass(frozen=True)
class Env:
    warehouse: Path
    objectstore: Path
    registry: Path


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """A warehouse, a local object store, a SQLite table store and a two-client registry, all in tmp_path."""
    registry = tmp_path / "clients.yaml"
    registry.write_text(REGISTRY, encoding="utf-8")
    e = Env(warehouse=tmp_path / "warehouse", objectstore=tmp_path / "objectstore", registry=registry)
    monkeypatch.setenv("FRAUDBATCH_CLIENTS", str(registry))
    monkeypatch.setenv("FRAUDBATCH_WAREHOUSE", str(e.warehouse))
    monkeypatch.setenv("FRAUDBATCH_OBJECTSTORE_BACKEND", "local")
    monkeypatch.setenv("FRAUDBATCH_OBJECTSTORE_ROOT", str(e.objectstore))
    monkeypatch.setenv("FRAUDBATCH_TABLES_BACKEND", "sqlite")
    monkeypatch.setenv("FRAUDBATCH_SQLITE_PATH", str(tmp_path / "tables.sqlite"))
    monkeypatch.setenv("FRAUDBATCH_RUN_ID", "run-1")
    # Tasks are cached per parameters and remember their ClientDay; listings are cached per run.
    Register.clear_instance_cache()
    targets.new_run()
    yield e
    Register.clear_instance_cache()
    targets.new_run()


def walk(*tops: luigi.Task) -> tuple[dict[str, luigi.Task], set[tuple[str, str]]]:
    """Every task reachable through requires(), by family, and the (task, required task) edges."""
    tasks: dict[str, luigi.Task] = {}
    edges: set[tuple[str, str]] = set()
    todo = list(tops)
    while todo:
        task = todo.pop()
        family = task.get_task_family()
        if family in tasks:
            assert tasks[family] is task, f"two {family} tasks in one client-day"
            continue
        tasks[family] = task
        for dep in flatten(task.requires()):
            edges.add((family, dep.get_task_family()))
            todo.append(dep)
    return tasks, edges


def whole_day(client: str = "acme") -> tuple[dict[str, luigi.Task], set[tuple[str, str]]]:
    return walk(
        batch_tasks.MonitorTracker(client=client, date=DAY),
        batch_tasks.CronFeaturePlatformFerry(client=client, date=DAY),
    )


def edges_of(requires: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(task, dep) for task, deps in requires.items() for dep in deps}


def documented_requires() -> dict[str, set[str]]:
    """The task | requires table of docs/architecture.md "Task graph as built"."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Task graph as built\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([A-Z]\w*) \|([^|\n]*)\|$", section, re.MULTILINE)
    return {task: {d.strip() for d in deps.split(",") if d.strip()} for task, deps in rows}


def test_the_graph_from_the_top_tasks_has_exactly_the_documented_edges(env: Env) -> None:
    tasks, edges = whole_day()
    assert edges == edges_of(REQUIRES)
    # The two top tasks reach every task the package exports: none is left unwired.
    assert set(tasks) == set(REQUIRES) == set(batch_tasks.__all__)


def test_the_documented_table_is_the_tested_one() -> None:
    assert documented_requires() == REQUIRES


def test_every_task_works_on_the_same_client_day_and_writes_its_own_stage(env: Env) -> None:
    tasks, _ = whole_day()
    paths = WorkPaths(env.warehouse, "acme", DAY)
    for family, task in tasks.items():
        assert (task.client, task.date, task.paths) == ("acme", DAY, paths), family
        out = task.output()
        if family == "RawClientDay":
            assert isinstance(out, RawDataTarget)
            assert out.path == f"file://{env.objectstore / 'acme-data' / 'rawdata/acme/2025-03-04/'}"
            continue
        if family == "Connector":  # a wrapper: complete when what it wraps is
            assert out == []
            continue
        if family == "ResultSender":
            assert set(out) == {"results", "notified"}
            results = out["results"]
            assert type(results) is ResultsTarget
            assert (results.bucket, results.key) == ("acme-data", "results/acme/2025-03-04/_SUCCESS")
            out = out["notified"]
        assert type(out) is StageTarget, family
        assert (out.stage_dir, out.path) == (paths.stage(STAGES[family]), str(paths.done(STAGES[family]))), (
            family
        )
    staged = [STAGES[f] for f in tasks if f in STAGES]
    assert len(staged) == len(set(staged)) == len(STAGES)


@pytest.mark.parametrize(("client", "priority"), [("acme", "normal"), ("critbank", "critical")])
def test_every_spark_task_submits_its_app_for_its_client_day(env: Env, client: str, priority: str) -> None:
    tasks, _ = whole_day(client)
    spark = {f: t for f, t in tasks.items() if isinstance(t, SparkJobTask)}
    assert set(spark) == set(SPARK_APPS)
    for family, task in spark.items():
        assert task.job_spec() == JobSpec(
            client=client,
            env="dev",
            engine="spark",
            app=SPARK_APPS[family],
            args=[
                "--client",
                client,
                "--date",
                "2025-03-04",
                "--warehouse",
                str(env.warehouse),
                "--registry",
                str(env.registry),
            ],
            priority=priority,
            strategy="cost_optimized",
            idempotency_key=task.task_id,
        ), family
        assert task.resources == {"spark_jobs": 1}
    assert len({t.task_id for t in spark.values()}) == len(spark)


class FakeDCluster:
    """DCluster in-process: records each job and completes it at once, writing its stage as the job would."""

    def __init__(self) -> None:
        self.submitted: list[JobSpec] = []

    def submit(self, spec: JobSpec) -> JobStatus:
        self.submitted.append(spec)
        # The job's own argument parsing, so the args are ones a real job accepts.
        ctx = job_context(job_parser(spec.app), list(spec.args))
        assert ctx.args.client == spec.client
        with ctx.paths.output(APP_STAGES[spec.app], {"rows": 1}) as tmp:
            if spec.app == "rawlogconverter":
                write_vectors(tmp / "vectors")  # what CassandraDfeWriter reads
        return JobStatus(
            job_id=f"job-{len(self.submitted)}", state="COMPLETED", app=spec.app, client=spec.client
        )

    def status(self, job_id: str) -> JobStatus:
        raise AssertionError(f"polled {job_id}: every job completes on submit")


def write_vectors(folder: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir()
    table = pa.table(
        {
            "user_id": ["u1"],
            "window_start_ms": pa.array([1741046400000], pa.int64()),
            "features": pa.array([[("logins", 2.0)]], pa.map_(pa.string(), pa.float64())),
        }
    )
    pq.write_table(table, folder / "part-00000.parquet")


def write_raw_day(objectstore: Path) -> None:
    prefix = objectstore / "acme-data" / "rawdata" / "acme" / "2025-03-04"
    for name, record in [
        ("logs/app-01.jsonl", {"user_id": "u1", "event_time": "2025-03-04T08:00:00Z", "event_type": "login"}),
        (
            "transactions/tx-01.jsonl",
            {
                "user_id": "u1",
                "event_time": "2025-03-04T08:05:00Z",
                "event_type": "transaction",
                "amount": 12.5,
                "currency": "USD",
            },
        ),
    ]:
        (prefix / name).parent.mkdir(parents=True, exist_ok=True)
        (prefix / name).write_text(json.dumps(record) + "\n", encoding="utf-8")


def build(*tasks: luigi.Task) -> LuigiStatusCode:
    # One worker in this process, completeness checked in it too: no sockets, no forks.
    result = luigi.build(
        list(tasks), local_scheduler=True, workers=1, parallel_scheduling=False, detailed_summary=True
    )
    return result.status


def spark_ancestors(task: luigi.Task) -> set[str]:
    found: set[str] = set()
    for dep in flatten(task.requires()):
        if isinstance(dep, SparkJobTask):
            found.add(dep.task_id)
        found |= spark_ancestors(dep)
    return found


def test_the_day_runs_through_every_spark_stage_on_a_fake_dcluster(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_raw_day(env.objectstore)
    fake = FakeDCluster()
    monkeypatch.setattr(config.dcluster, "client", lambda self: fake)
    top = batch_tasks.ResultAgg(client="acme", date=DAY)
    tasks, _ = walk(top)

    assert build(top) == LuigiStatusCode.SUCCESS

    # Each Spark task submitted once, exactly the spec it states, after the Spark jobs it depends on.
    by_key = {t.task_id: t for t in tasks.values()}
    order = [spec.idempotency_key for spec in fake.submitted]
    assert sorted(spec.app for spec in fake.submitted) == sorted(SPARK_APPS.values())
    for position, spec in enumerate(fake.submitted):
        task = by_key[spec.idempotency_key]
        assert spec == task.job_spec()
        assert spark_ancestors(task) <= set(order[:position]), spec.app
    # Every stage was made from the raw snapshot the Fetcher took, and every task left a run record.
    paths = WorkPaths(env.warehouse, "acme", DAY)
    input_id = paths.input_id()
    assert input_id and sorted((paths.stage("raw")).rglob("*.jsonl")) == [
        paths.stage("raw") / "logs" / "app-01.jsonl",
        paths.stage("raw") / "transactions" / "tx-01.jsonl",
    ]
    for family in tasks:
        if family in STAGES and family != "Fetcher":
            assert done_meta(paths.stage(STAGES[family]))["input"] == input_id, family
    assert done_meta(paths.stage("dfe_store"))["rows"] == 1
    with tasks["Fetcher"].day.tables() as store:
        runs = store.list_runs("acme", DAY)
        assert store.count_dfe("acme") == 1
    assert sorted((r.task, r.status) for r in runs) == sorted(
        (f, "DONE") for f in tasks if f != "RawClientDay"
    )

    # A new run of the same day finds every stage current: nothing is submitted again.
    Register.clear_instance_cache()
    targets.new_run()
    submitted = len(fake.submitted)
    assert build(batch_tasks.ResultAgg(client="acme", date=DAY)) == LuigiStatusCode.SUCCESS
    assert len(fake.submitted) == submitted

    # A file landing makes every stage stale: the next run submits each job again under the same key.
    (env.objectstore / "acme-data" / "rawdata" / "acme" / "2025-03-04" / "logs" / "app-02.jsonl").write_text(
        "{}\n", encoding="utf-8"
    )
    Register.clear_instance_cache()
    targets.new_run()
    assert build(batch_tasks.ResultAgg(client="acme", date=DAY)) == LuigiStatusCode.SUCCESS
    assert sorted(spec.idempotency_key for spec in fake.submitted[submitted:]) == sorted(order)
    assert WorkPaths(env.warehouse, "acme", DAY).input_id() not in (None, input_id)
