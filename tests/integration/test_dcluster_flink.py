"""Flink jobs (engine "flink") through DCluster: the provider's command, real PyFlink runs over HTTP.

The tests marked flink run jobs/flink/ in .venv-flink (make flink-env; make test creates it) and
compare the Flink user_stats job with the plain function and with the Spark job on a generated day.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import requests

from dcluster.models import JobSpec as ServiceJobSpec
from dcluster.models import JobStore
from dcluster.providers.local import LocalProvider
from dcluster.settings import DClusterSettings
from dcluster_client import DClusterError, JobFailed, JobSpec, run_job
from tests.support import REPO
from tests.support.dcluster import Service, fast_settings, gone, run_env, states, wait_for
from tests.support.flink import FLINK_PYTHON, JOB_TIMEOUT_S, expected_stats, stage
from tests.support.flink_day import CLIENT, DAY, job_args, reference_rows, write_day


@pytest.fixture()
def settings(tmp_path: Path) -> DClusterSettings:
    """The real checkout's jobs, state in a temporary folder, fast polling."""
    return fast_settings(tmp_path / "state", REPO, poll_interval_s=0.1, terminate_grace_s=5.0)


@pytest.fixture(scope="module")
def flink_python() -> Path:
    """The Flink virtual environment's interpreter; these tests fail (not skip) without it."""
    if not os.access(FLINK_PYTHON, os.X_OK):
        pytest.fail(f"{FLINK_PYTHON} is missing: run make flink-env")
    return FLINK_PYTHON


# --- provider and settings, no Flink run ------------------------------------------------------


def test_flink_command_and_environment(settings: DClusterSettings):
    provider = LocalProvider(replace(settings, flink_python="/opt/flink-venv/bin/python"))
    store = JobStore(settings.jobs_dir)
    flink, _ = store.submit(
        ServiceJobSpec(client="demo", env="dev", engine="flink", app="user_stats", args=("--date", DAY))
    )
    spark, _ = store.submit(
        ServiceJobSpec(client="demo", env="dev", engine="spark", app="user_stats", args=("--date", DAY))
    )
    assert provider.command(flink) == [
        "/opt/flink-venv/bin/python",
        str(REPO / "jobs" / "flink" / "run.py"),
        "user_stats",
        "--date",
        DAY,
    ]
    assert provider.command(spark) == [
        sys.executable,
        str(REPO / "jobs" / "run.py"),
        "user_stats",
        "--date",
        DAY,
    ]
    env = provider.environment(flink)
    assert {k: v for k, v in env.items() if k.startswith("DCLUSTER_")} == run_env(settings, flink)
    assert env["DCLUSTER_NAMESPACE"] == f"s-dev-demo-{flink.job_id}"
    # The same variables a Spark job gets, so the monitor treats both engines alike.
    assert set(provider.environment(spark)) == set(env)
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(REPO)


def test_flink_launcher_default_and_override(tmp_path: Path):
    assert (
        DClusterSettings(project_root=tmp_path).flink_launcher == tmp_path / ".venv-flink" / "bin" / "python"
    )
    s = DClusterSettings.from_env(
        {"DCLUSTER_FLINK_PYTHON": "/srv/flink/bin/python", "DCLUSTER_PROJECT_ROOT": str(tmp_path)}
    )
    assert s.flink_launcher == Path("/srv/flink/bin/python")


def test_missing_flink_venv_is_422(settings: DClusterSettings, start_service, tmp_path: Path):  # noqa: F811
    missing = tmp_path / "no-venv" / "bin" / "python"
    service = start_service(replace(settings, flink_python=str(missing)))
    answer = requests.post(
        f"{service.url}/cluster/job/submit",
        timeout=10,
        json={"client": "demo", "app": "smoke", "engine": "flink", "args": ["--out", "x"]},
    )
    assert answer.status_code == 422
    assert answer.json() == {
        "error": f"Flink jobs need the Flink virtual environment, but {missing} is missing; "
        "run make flink-env (or set DCLUSTER_FLINK_PYTHON)",
        "detail": {"engine": "flink", "provider": "local"},
    }
    with pytest.raises(DClusterError, match=r"answered 422: .*run make flink-env"):
        service.client.submit(JobSpec(client="demo", app="smoke", engine="flink"))
    # A Flink app is a module of jobs/flink/, not of jobs/.
    wrong = requests.post(
        f"{service.url}/cluster/job/submit",
        timeout=10,
        json={"client": "demo", "app": "organizer", "engine": "flink"},
    )
    assert wrong.status_code == 422
    assert wrong.json()["detail"] == [f"app 'organizer' is not a module in {REPO / 'jobs' / 'flink'}"]
    assert service.client.jobs() == []


def test_luigi_task_submits_its_engine(monkeypatch: pytest.MonkeyPatch):
    from batch_tasks.aggregation import UserStats
    from dcluster_client import runner

    class FlinkUserStats(UserStats):
        engine = "flink"

    submitted: list[JobSpec] = []
    monkeypatch.setattr(
        runner,
        "run_job",
        lambda client, spec, **kw: (
            submitted.append(spec) or type("Done", (), {"job_id": "abc123def456", "state": "COMPLETED"})()
        ),
    )
    for task_class in (FlinkUserStats, UserStats):
        task = task_class(client=CLIENT, date=dt.date.fromisoformat(DAY))
        task.set_status_message = lambda message: None  # a Luigi worker sets this callback
        task.run()
    assert [(s.engine, s.app) for s in submitted] == [("flink", "user_stats"), ("spark", "user_stats")]
    # Each engine's jobs count against their own Luigi resource ([resources] in luigi.cfg).
    day = {"client": CLIENT, "date": dt.date.fromisoformat(DAY)}
    assert FlinkUserStats(**day).process_resources() == {"flink_jobs": 1}
    assert UserStats(**day).process_resources() == {"spark_jobs": 1}


# --- real PyFlink jobs --------------------------------------------------------------------------


@pytest.mark.flink
def test_flink_jobs_import_without_pyspark(flink_python: Path):
    code = (
        "import sys, jobs.flink.user_stats, jobs.flink.smoke; "
        "import importlib.util as u; print(u.find_spec('pyspark') is None, 'pyspark' in sys.modules)"
    )
    out = subprocess.run(
        [str(flink_python), "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == ["True", "False"]
    usage = subprocess.run(
        [str(flink_python), str(REPO / "jobs" / "flink" / "run.py"), "common"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (usage.returncode, usage.stderr.strip()) == (
        2,
        "usage: jobs/flink/run.py <app> [args]; app is a module of jobs/flink/",
    )


@pytest.mark.flink
def test_flink_smoke_job_through_dcluster(
    flink_python: Path,
    settings: DClusterSettings,
    start_service,  # noqa: F811
    tmp_path: Path,
):
    service = start_service(settings)
    out = tmp_path / "out" / "count.txt"
    started = time.monotonic()
    done = run_job(
        service.client,
        JobSpec(client="demo", engine="flink", app="smoke", args=["--out", str(out)]),
        poll_interval=0.2,
        timeout_s=JOB_TIMEOUT_S,
    )
    print(f"Flink smoke job through DCluster, submit to COMPLETED: {time.monotonic() - started:.1f}s")
    assert (done.state, done.exit_code, states(done)) == ("COMPLETED", 0, ["PENDING", "RUNNING", "COMPLETED"])
    assert out.read_text() == "1000\n"
    assert done.log_tail[-1] == "smoke: counted 1000 with Flink"
    assert not (settings.state_dir / "run" / f"{done.job_id}.exit").exists()  # read, then cleared


@pytest.fixture(scope="module")
def flink_day(tmp_path_factory: pytest.TempPathFactory, flink_python: Path) -> dict:
    """A generated day whose user_stats stage the Flink job wrote through a real DCluster service."""
    tmp = tmp_path_factory.mktemp("flink_day")
    warehouse = tmp / "warehouse"
    write_day(warehouse)
    service = Service(
        DClusterSettings(state_dir=tmp / "state", project_root=REPO, poll_interval_s=0.1, env="test")
    ).start()
    try:
        done = run_job(
            service.client,
            JobSpec(client=CLIENT, engine="flink", app="user_stats", args=job_args(warehouse)),
            poll_interval=0.2,
            timeout_s=JOB_TIMEOUT_S,
        )
        log = service.client.log(done.job_id)
    finally:
        service.stop()
    return {"warehouse": warehouse, "status": done, "log": log}


@pytest.mark.flink
def test_flink_user_stats_through_dcluster_equals_plain_function(flink_day: dict):
    done, warehouse = flink_day["status"], flink_day["warehouse"]
    assert (done.state, done.exit_code, states(done)) == ("COMPLETED", 0, ["PENDING", "RUNNING", "COMPLETED"])
    expected = reference_rows(warehouse)
    assert len(expected) == 40
    out = stage(warehouse, "user_stats")
    assert pq.read_table(str(out / "stats")).to_pylist() == expected
    assert json.loads((out / "stats.json").read_text()) == expected_stats(expected)
    assert json.loads((out / "_DONE").read_text())["users"] == 40
    assert sorted(p.name for p in out.parent.iterdir()) == ["organized", "user_stats"]  # no temp folder left
    summary = (
        f"user_stats {CLIENT} {DAY}: users=40 events={sum(r['events'] for r in expected)} "
        f"transactions={sum(r['transactions'] for r in expected)}"
    )
    assert done.log_tail[-1].startswith(summary + " (")
    assert summary in flink_day["log"]


@pytest.mark.flink
@pytest.mark.spark
def test_flink_user_stats_equals_spark_job(flink_day: dict, spark, tmp_path: Path):
    from jobs import user_stats

    warehouse = tmp_path / "warehouse"
    shutil.copytree(stage(flink_day["warehouse"], "organized"), stage(warehouse, "organized"))
    assert user_stats.main(job_args(warehouse)) == 0
    by_spark, by_flink = stage(warehouse, "user_stats"), stage(flink_day["warehouse"], "user_stats")
    spark_table = pq.read_table(str(by_spark / "stats"))
    flink_table = pq.read_table(str(by_flink / "stats"))
    assert flink_table.schema.equals(spark_table.schema, check_metadata=False)
    assert flink_table.to_pylist() == spark_table.to_pylist()
    assert (by_flink / "stats.json").read_bytes() == (by_spark / "stats.json").read_bytes()


@pytest.mark.flink
def test_failing_flink_job_is_failed_with_the_worker_error(
    flink_python: Path, settings: DClusterSettings, start_service, tmp_path: Path
):  # noqa: F811
    warehouse = tmp_path / "warehouse"
    write_day(warehouse, users=5)
    bad = stage(warehouse, "organized") / "events" / "hour=5" / "part-00099.parquet"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text("not parquet\n")
    service = start_service(settings)
    with pytest.raises(JobFailed) as err:
        run_job(
            service.client,
            JobSpec(client=CLIENT, engine="flink", app="user_stats", args=job_args(warehouse)),
            poll_interval=0.2,
            timeout_s=JOB_TIMEOUT_S,
        )
    status = err.value.status
    assert (status.state, status.exit_code, states(status)) == ("FAILED", 1, ["PENDING", "RUNNING", "FAILED"])
    cause = f"pyarrow.lib.ArrowInvalid: Could not open Parquet input source '{bad}': Parquet magic bytes not found"
    assert status.message.startswith(f"user_stats: error: {cause}")
    assert status.log_tail[-1] == status.message
    assert sorted(p.name for p in stage(warehouse, "organized").parent.iterdir()) == ["organized"]


def group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, command name) of the live processes in a process group."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append((int(stat.parent.name), name))
    return out


@pytest.mark.flink
def test_terminating_a_flink_job_stops_its_jvm_and_workers(
    flink_python: Path, settings: DClusterSettings, start_service, tmp_path: Path
):  # noqa: F811
    service = start_service(settings)
    job = service.client.submit(
        JobSpec(
            client="demo",
            engine="flink",
            app="smoke",
            args=["--out", str(tmp_path / "count.txt"), "--pause-s", "300"],
        )
    )
    running = wait_for(service.client, job.job_id, lambda s: s.state == "RUNNING", timeout=60)
    pgid = running.raw["runs"][-1]["pid"]
    # Wait until Flink's JVM has started a Python worker for the paused map (the job is really running).
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while sum(1 for _, name in group_members(pgid) if name.startswith("python")) < 2:
        assert time.monotonic() < deadline, f"no Flink Python worker in group {pgid}: {group_members(pgid)}"
        time.sleep(0.2)
    members = group_members(pgid)
    assert any(name == "java" for _, name in members), members
    stopped = service.client.terminate(job.job_id)
    assert (stopped.state, stopped.exit_code, states(stopped)) == (
        "TERMINATED",
        -15,
        ["PENDING", "RUNNING", "TERMINATED"],
    )
    assert gone([pid for pid, _ in members], timeout=10), group_members(pgid)
    assert not (tmp_path / "count.txt").exists()
