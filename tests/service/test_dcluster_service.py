"""The DCluster service over real HTTP on loopback, driven by the real client.

Most jobs run in the provider's python launcher mode (launcher = this interpreter) from a
temporary project with tiny Spark-free job modules; one test runs a real spark-submit job.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from dcluster.logs import error_line
from dcluster.models import InvalidTransition, JobStore
from dcluster.models import JobSpec as ServiceJobSpec
from dcluster.providers.local import LocalProvider
from dcluster.settings import DClusterSettings
from dcluster_client import DClusterError, JobFailed, JobSpec, run_job
from tests.support import REPO
from tests.support.dcluster import (
    JOB_MODULES,
    alive,
    fast_settings,
    gone,
    make_project,
    read_pids,
    states,
    terminal,
    wait_for,
)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A project root with the real jobs/run.py and the test job modules."""
    return make_project(tmp_path / "project", JOB_MODULES)


@pytest.fixture()
def settings(tmp_path: Path, project: Path) -> DClusterSettings:
    """Fast settings in python launcher mode."""
    return fast_settings(tmp_path / "state", project)


# --- plain rules, no server --------------------------------------------------------------------


def test_settings_from_env(tmp_path: Path):
    s = DClusterSettings.from_env(
        {
            "DCLUSTER_PORT": "9100",
            "DCLUSTER_STATE_DIR": str(tmp_path),
            "DCLUSTER_JOB_TIMEOUT_S": "2.5",
            "DCLUSTER_MAX_CONCURRENT_JOBS": "4",
            "DCLUSTER_ENV": "prod",
        },
        host="0.0.0.0",
    )
    assert (s.host, s.port, s.state_dir, s.job_timeout_s, s.max_concurrent_jobs, s.env) == (
        "0.0.0.0",
        9100,
        tmp_path,
        2.5,
        4,
        "prod",
    )
    assert s.spark_submit == str(Path(sys.executable).parent / "spark-submit")
    assert (s.project_root / "jobs" / "run.py").is_file()
    with pytest.raises(ValueError, match=r"DCLUSTER_PORT='http' is not a valid int"):
        DClusterSettings.from_env({"DCLUSTER_PORT": "http"})


def test_local_provider_commands(settings: DClusterSettings, project: Path):
    provider = LocalProvider(settings)
    store = JobStore(settings.jobs_dir)
    job, _ = store.submit(
        ServiceJobSpec(client="syncbank", env="dev", engine="spark", app="ok", args=("--x", "1"))
    )
    assert provider.command(job) == [sys.executable, str(project / "jobs" / "run.py"), "ok", "--x", "1"]
    spark = LocalProvider(
        replace(settings, spark_submit="/opt/venv/bin/spark-submit", spark_master="local[1]")
    )
    assert spark.command(job) == [
        "/opt/venv/bin/spark-submit",
        "--master",
        "local[1]",
        "--conf",
        "spark.ui.enabled=false",
        str(project / "jobs" / "run.py"),
        "ok",
        "--x",
        "1",
    ]
    env = spark.environment(job)
    assert (env["PYSPARK_PYTHON"], env["PYSPARK_DRIVER_PYTHON"], env["SPARK_MASTER_SET"]) == (
        sys.executable,
        sys.executable,
        "1",
    )
    assert env["PYTHONPATH"].split(":")[0] == str(project.resolve())


def test_life_cycle_rules_are_enforced(tmp_path: Path):
    store = JobStore(tmp_path / "jobs")
    job, created = store.submit(
        ServiceJobSpec(client="syncbank", env="dev", engine="spark", app="ok", priority="critical")
    )
    assert created and job.capacity_type == "on_demand" and job.attempts == 1
    assert job.namespace == f"s-dev-syncbank-{job.job_id}" and len(job.job_id) == 12
    with pytest.raises(InvalidTransition, match=r"cannot go from PENDING to COMPLETED"):
        store.transition(job.job_id, "COMPLETED", "x")
    with pytest.raises(InvalidTransition, match=r"cannot go from PENDING to HANGING"):
        store.transition(job.job_id, "HANGING", "x")
    store.transition(job.job_id, "RUNNING", "started")
    # RUNNING -> PENDING is a reschedule after a fault (docs/adr/0006), so it is allowed.
    store.transition(job.job_id, "PENDING", "spot reclaimed; rescheduled")
    store.transition(job.job_id, "RUNNING", "started again")
    store.transition(job.job_id, "HANGING", "too long")
    with pytest.raises(InvalidTransition, match=r"cannot go from HANGING to COMPLETED"):
        store.transition(job.job_id, "COMPLETED", "x")
    done = store.transition(job.job_id, "TERMINATED", "stopped", exit_code=-15)
    assert states_of(done.transitions) == [
        "PENDING",
        "RUNNING",
        "PENDING",
        "RUNNING",
        "HANGING",
        "TERMINATED",
    ]
    with pytest.raises(InvalidTransition, match=r"allowed: nothing \(terminal\)"):
        store.transition(job.job_id, "RUNNING", "x")


def states_of(transitions: list[dict[str, str]]) -> list[str]:
    return [t["state"] for t in transitions]


def test_error_line_prefers_the_exception_over_later_noise():
    log = [
        "Traceback (most recent call last):",
        '  File "jobs/run.py", line 18, in main',
        "pyspark.errors.exceptions.captured.AnalysisException: [PATH_NOT_FOUND] Path does not exist",
        "25/11/21 04:01:02 INFO ShutdownHookManager: Shutdown hook called",
    ]
    assert error_line(log, 1) == (
        "pyspark.errors.exceptions.captured.AnalysisException: [PATH_NOT_FOUND] Path does not exist"
    )
    assert error_line(["usage: run.py", "run.py: error: the following arguments are required: --out"], 2) == (
        "run.py: error: the following arguments are required: --out"
    )
    assert error_line([], 137) == "exited with code 137 and wrote no log"


# --- over HTTP ---------------------------------------------------------------------------------


def test_job_runs_to_completed_with_transitions_and_log(settings: DClusterSettings, start_service):
    service = start_service(settings)
    spec = JobSpec(client="syncbank", app="ok", args=["--date", "2025-11-21"])
    done = run_job(service.client, spec, poll_interval=0.05, timeout_s=30)
    assert done.state == "COMPLETED"
    assert done.exit_code == 0
    assert done.attempts == 1
    assert done.capacity_type == "spot"
    assert done.namespace == f"s-test-syncbank-{done.job_id}"
    assert states(done) == ["PENDING", "RUNNING", "COMPLETED"]
    assert [t["reason"] for t in done.raw["transitions"]] == [
        "submitted",
        "started on the local provider (spot capacity)",
        "exit code 0",
    ]
    assert done.started_at is not None and done.finished_at is not None
    assert done.started_at <= done.finished_at
    assert done.log_tail == ["ok job args=--date 2025-11-21"]
    assert service.client.log(done.job_id) == "ok job args=--date 2025-11-21\n"
    assert (settings.state_dir / "logs" / f"{done.job_id}.log").is_file()
    assert (settings.state_dir / "jobs" / f"{done.job_id}.json").is_file()


def test_failing_job_is_failed_with_the_error_line(settings: DClusterSettings, start_service):
    service = start_service(settings)
    with pytest.raises(JobFailed) as err:
        run_job(service.client, JobSpec(client="syncbank", app="boom"), poll_interval=0.05, timeout_s=30)
    status = err.value.status
    assert status.state == "FAILED"
    assert status.exit_code == 1
    assert status.message == "ValueError: no events for syncbank on 2025-11-21"
    assert str(err.value) == (
        f"DCluster job {status.job_id} (boom) FAILED with exit code 1: "
        f"ValueError: no events for syncbank on 2025-11-21; log: GET {service.url}/cluster/job/{status.job_id}/log"
    )
    assert status.log_tail[0] == "boom job loading input"
    assert "ValueError: no events for syncbank on 2025-11-21" in status.log_tail
    assert status.log_tail[-1] == "INFO ShutdownHookManager: Shutdown hook called"
    assert states(status) == ["PENDING", "RUNNING", "FAILED"]


def test_terminate_running_job_kills_its_process_group(settings: DClusterSettings, start_service, tmp_path):
    service = start_service(settings)
    pids_file = tmp_path / "pids"
    job = service.client.submit(JobSpec(client="syncbank", app="sleepy", args=["--pids", str(pids_file)]))
    pids = read_pids(pids_file)
    assert all(alive(p) for p in pids)
    assert service.client.status(job.job_id).state == "RUNNING"
    stopped = service.client.terminate(job.job_id)
    assert stopped.state == "TERMINATED"
    assert stopped.message == "terminated on request"
    assert stopped.exit_code == -15
    assert states(stopped) == ["PENDING", "RUNNING", "TERMINATED"]
    assert gone(pids), f"job processes still alive: {[p for p in pids if alive(p)]}"
    with pytest.raises(DClusterError) as err:
        service.client.terminate(job.job_id)
    assert err.value.status_code == 409
    assert str(err.value) == (
        f"DCluster POST /cluster/job/terminate/{job.job_id} answered 409: "
        f"job {job.job_id} is already TERMINATED; nothing to terminate"
    )


WAITER = """
import sys
from dcluster_client import DClusterClient, JobSpec, run_job
from dcluster_client.runner import stop_remote_work_on_sigterm

with stop_remote_work_on_sigterm():
    run_job(DClusterClient(sys.argv[1]), JobSpec(client="syncbank", app="sleepy", args=["--seconds", "120"]),
            poll_interval=0.05)
"""


def test_a_killed_waiter_terminates_its_job_then_dies_of_the_signal(
    settings: DClusterSettings, start_service
):
    service = start_service(settings)
    waiter = subprocess.Popen(
        [sys.executable, "-c", WAITER, service.url], cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    while not [j for j in service.client.jobs() if j.state == "RUNNING"]:
        assert time.monotonic() < deadline and waiter.poll() is None, "the waiter's job never ran"
        time.sleep(0.05)
    (job,) = service.client.jobs()

    waiter.send_signal(signal.SIGTERM)
    _, stderr = waiter.communicate(timeout=30)
    assert waiter.returncode == -signal.SIGTERM  # it still dies of the signal, as its sender meant
    assert "SIGTERM: the DCluster job was asked to terminate; exiting" in stderr
    stopped = wait_for(service.client, job.job_id, lambda s: s.state == "TERMINATED")
    assert stopped.message == "terminated on request"


def test_idempotency_key_returns_active_job_then_starts_a_new_attempt(
    settings: DClusterSettings, start_service
):
    service = start_service(settings)
    body = {"client": "syncbank", "app": "sleepy", "idempotency_key": "Rawlogconverter_syncbank_2025_11_21"}
    first = requests.post(f"{service.url}/cluster/job/submit", json=body, timeout=10)
    assert first.status_code == 201
    job_id = first.json()["job_id"]
    wait_for(service.client, job_id, lambda s: s.state == "RUNNING")
    again = requests.post(f"{service.url}/cluster/job/submit", json=body, timeout=10)
    assert again.status_code == 200
    assert again.json()["job_id"] == job_id
    assert again.json()["attempts"] == 1
    service.client.terminate(job_id)
    retry = requests.post(f"{service.url}/cluster/job/submit", json=body, timeout=10)
    assert retry.status_code == 201
    assert retry.json()["job_id"] != job_id
    assert retry.json()["attempts"] == 2
    service.client.terminate(retry.json()["job_id"])


def test_slots_pending_order_and_terminating_a_pending_job(settings: DClusterSettings, start_service):
    service = start_service(replace(settings, max_concurrent_jobs=1))
    a = service.client.submit(JobSpec(client="syncbank", app="sleepy"))
    wait_for(service.client, a.job_id, lambda s: s.state == "RUNNING")
    b = service.client.submit(JobSpec(client="syncbank", app="sleepy"))
    time.sleep(0.3)  # several scheduler ticks: b must keep waiting for the slot
    assert service.client.status(b.job_id).state == "PENDING"
    health = service.client.health()
    assert (health["status"], health["provider"], health["running"], health["pending"]) == (
        "ok",
        "local",
        1,
        1,
    )
    stopped_b = service.client.terminate(b.job_id)
    assert states(stopped_b) == ["PENDING", "TERMINATED"]
    assert stopped_b.exit_code is None and stopped_b.started_at is None
    c = service.client.submit(JobSpec(client="syncbank", app="ok"))
    service.client.terminate(a.job_id)
    assert wait_for(service.client, c.job_id, terminal).state == "COMPLETED"


def test_errors_are_json(settings: DClusterSettings, start_service):
    service = start_service(settings)
    url = service.url

    unknown = requests.get(f"{url}/cluster/job/0123456789ab", timeout=10)
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "job '0123456789ab' not found", "detail": {"job_id": "0123456789ab"}}
    assert requests.get(f"{url}/cluster/job/0123456789ab/log", timeout=10).status_code == 404
    assert requests.post(f"{url}/cluster/job/terminate/0123456789ab", timeout=10).status_code == 404
    assert requests.get(f"{url}/cluster/nowhere", timeout=10).json() == {"error": "Not Found", "detail": None}

    bad = requests.post(
        f"{url}/cluster/job/submit",
        timeout=10,
        json={
            "client": "Sync Bank",
            "app": "nope",
            "priority": "urgent",
            "strategy": "cheap",
            "engine": "storm",
        },
    )
    assert bad.status_code == 422
    assert bad.json()["detail"] == [
        "client 'Sync Bank' must match ^[a-z][a-z0-9_-]{1,31}$",
        "engine 'storm' must be one of spark, flink",
        f"app 'nope' is not a module in {settings.project_root / 'jobs'}",
        "priority 'urgent' must be one of critical, normal, batch",
        "strategy 'cheap' must be one of cost_optimized, balanced, performance_optimized",
    ]
    assert bad.json()["error"].startswith("invalid job spec: client 'Sync Bank' must match")

    assert requests.post(
        f"{url}/cluster/job/submit", timeout=10, json={"client": "syncbank", "app": "run"}
    ).json()["detail"] == ["app 'run' must match ^[a-z_]+$ and name a job module of jobs/"]

    flink = requests.post(
        f"{url}/cluster/job/submit", json={"client": "syncbank", "app": "ok", "engine": "flink"}, timeout=10
    )
    assert (
        flink.status_code == 422
    )  # Flink apps are modules of jobs/flink/ (tests/integration/test_dcluster_flink.py)
    assert flink.json()["detail"] == [
        f"app 'ok' is not a module in {settings.project_root / 'jobs' / 'flink'}"
    ]

    missing = requests.post(f"{url}/cluster/job/submit", json={"app": "ok", "args": "x"}, timeout=10)
    assert missing.status_code == 422
    assert missing.json()["detail"] == ["client: Field required", "args: Input should be a valid list"]

    bad_state = requests.get(f"{url}/cluster/jobs", params={"state": "DONE"}, timeout=10)
    assert bad_state.status_code == 422
    assert bad_state.json()["error"] == (
        "state 'DONE' must be one of PENDING, RUNNING, COMPLETED, FAILED, TERMINATED, HANGING"
    )

    with pytest.raises(DClusterError, match=r"answered 422: invalid job spec: app 'ok' is not a module in"):
        service.client.submit(JobSpec(client="syncbank", app="ok", engine="flink"))

    openapi = requests.get(f"{url}/openapi.json", timeout=10).json()
    assert openapi["info"]["title"] == "DCluster"
    assert openapi["info"]["version"] == "0.1.0"
    assert {
        "/cluster/job/submit",
        "/cluster/job/terminate/{job_id}",
        "/cluster/job/{job_id}",
        "/cluster/job/{job_id}/log",
        "/cluster/jobs",
        "/cluster/health",
        "/cluster/resources/allocate",
        "/cluster/resources/spot/request",
        "/cluster/resources/fallback",
        "/cluster/resources/spot/status",
        "/cluster/resources/spot/history",
        "/cluster/resources/spot/cancel/{request_id}",
        "/cluster/alerts",
        "/cluster/costs",
        "/cluster/audit",
        "/cluster/sim",
        "/cluster/sim/spot",
        "/cluster/sim/on_demand",
        "/cluster/sim/interrupt/{job_id}",
    } == set(openapi["paths"])


def test_jobs_list_filters_newest_first(settings: DClusterSettings, start_service):
    service = start_service(settings)
    submitted = [
        service.client.submit(JobSpec(client=c, app=a))
        for c, a in [("syncbank", "ok"), ("nasa", "ok"), ("syncbank", "boom"), ("syncbank", "ok")]
    ]
    for job in submitted:
        wait_for(service.client, job.job_id, terminal)
    ids = [j.job_id for j in submitted]
    assert [j.job_id for j in service.client.jobs()] == ids[::-1]
    assert [j.job_id for j in service.client.jobs(client="syncbank")] == [ids[3], ids[2], ids[0]]
    assert [j.job_id for j in service.client.jobs(client="syncbank", app="ok")] == [ids[3], ids[0]]
    assert [j.job_id for j in service.client.jobs(state="FAILED")] == [ids[2]]
    assert [j.job_id for j in service.client.jobs(client="sofi")] == []


def test_state_survives_restart(settings: DClusterSettings, start_service, tmp_path: Path):
    first = start_service(settings)
    done = run_job(first.client, JobSpec(client="syncbank", app="ok"), poll_interval=0.05, timeout_s=30)
    pids_file = tmp_path / "pids"
    sleepy = first.client.submit(JobSpec(client="syncbank", app="sleepy", args=["--pids", str(pids_file)]))
    pids = read_pids(pids_file)
    first.stop()  # a clean shutdown (SIGTERM) terminates what is running
    assert gone(pids)

    # What a crash leaves behind: a job recorded RUNNING, and one still PENDING.
    store = JobStore(settings.jobs_dir)
    store.load()
    crashed, _ = store.submit(
        ServiceJobSpec(client="nasa", env="test", engine="spark", app="ok"), task_class="dev"
    )
    store.transition(crashed.job_id, "RUNNING", "started")
    queued, _ = store.submit(ServiceJobSpec(client="nasa", env="test", engine="spark", app="ok"))

    second = start_service(settings)
    assert second.client.status(done.job_id).raw == done.raw
    after = second.client.status(sleepy.job_id)
    assert (after.state, after.message) == ("TERMINATED", "service shutting down")
    # Its process is gone without an exit status: the health check fails and the job reruns.
    lost = wait_for(second.client, crashed.job_id, terminal)
    assert lost.state == "COMPLETED"
    assert states(lost) == ["PENDING", "RUNNING", "PENDING", "RUNNING", "COMPLETED"]
    assert lost.raw["transitions"][2]["reason"] == (
        "health check failed after a service restart: process gone without exit status; "
        "rescheduled on on_demand (run 2 of at most 5)"
    )
    assert lost.attempts == 2
    assert wait_for(second.client, queued.job_id, terminal).state == "COMPLETED"


def test_hanging_job_is_marked_and_terminated(settings: DClusterSettings, start_service, tmp_path: Path):
    # One run allowed: the hanging job is terminated, not rescheduled (see test_dcluster_faults).
    classes = {k: replace(v, max_attempts=1) for k, v in settings.cluster.task_classes.items()}
    service = start_service(
        replace(settings, job_timeout_s=0.5, cluster=replace(settings.cluster, task_classes=classes))
    )
    pids_file = tmp_path / "pids"
    job = service.client.submit(JobSpec(client="syncbank", app="sleepy", args=["--pids", str(pids_file)]))
    pids = read_pids(pids_file)
    final = wait_for(service.client, job.job_id, terminal)
    assert final.state == "TERMINATED"
    assert states(final) == ["PENDING", "RUNNING", "HANGING", "TERMINATED"]
    hanging = final.raw["transitions"][2]["reason"]
    assert hanging.startswith("running ") and hanging.endswith("s, longer than job_timeout_s=0.5")
    assert final.message == f"terminated as hanging: {hanging}"
    assert gone(pids)


@pytest.mark.spark
def test_real_spark_submit_smoke_job(tmp_path: Path, start_service):
    real = DClusterSettings(state_dir=tmp_path / "state", poll_interval_s=0.2, env="test")
    assert Path(real.spark_submit).name == "spark-submit" and Path(real.spark_submit).exists()
    service = start_service(real)
    out = tmp_path / "out" / "count.txt"
    done = run_job(
        service.client,
        JobSpec(client="syncbank", app="smoke", args=["--out", str(out)]),
        poll_interval=0.5,
        timeout_s=240,
    )
    assert done.state == "COMPLETED"
    assert done.exit_code == 0
    assert out.read_text() == "1000\n"
    assert "smoke: counted 1000" in service.client.log(done.job_id)
