"""The faults of SPEC §3 against the running service over HTTP, on the simulated spot market.

Jobs run in the python launcher mode from a temporary project; timeouts, cool-downs and the
2-minute notice are scaled down to fractions of a second through the cluster config.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests
import yaml

from dcluster.config import ClusterConfig
from dcluster.settings import DClusterSettings
from dcluster_client import DClusterClient, DClusterError, JobSpec, JobStatus
from tests.support.dcluster import (
    JOB_MODULES,
    fast_settings,
    gone,
    make_project,
    read_pids,
    states,
    terminal,
    wait_for,
)
from tests.support.dcluster_faults import FAST_CONFIG, FAULT_JOBS


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A project root with the real jobs/run.py and the test job modules."""
    return make_project(tmp_path / "project", {**JOB_MODULES, **FAULT_JOBS})


@pytest.fixture()
def settings(tmp_path: Path, project: Path) -> DClusterSettings:
    """Fast settings in python launcher mode, the policy's timings scaled down."""
    return fast_settings(tmp_path / "state", project, cluster=ClusterConfig.from_mapping(FAST_CONFIG))


def with_cluster(settings: DClusterSettings, **changes: dict) -> DClusterSettings:
    """Settings whose cluster config has extra YAML-shaped changes merged in."""
    doc = json.loads(json.dumps(FAST_CONFIG))
    for key, value in changes.items():
        doc.setdefault(key, {}).update(value)
    return replace(settings, cluster=ClusterConfig.from_mapping(doc))


def run_states(status: JobStatus) -> list[tuple[str, str]]:
    return [(r["capacity_type"], r["outcome"]) for r in status.raw["runs"]]


def test_spot_request_timeout_falls_back_to_on_demand(settings: DClusterSettings, start_service):
    service = start_service(settings)
    client = service.client
    client.sim_spot(fulfil_delay_s=30)  # the market never answers within request_timeout_s=0.5
    submitted = time.monotonic()
    job = client.submit(JobSpec(client="syncbank", app="ok", priority="batch"))
    running = wait_for(client, job.job_id, lambda s: s.state != "PENDING", timeout=10)
    fallback_s = time.monotonic() - submitted
    done = wait_for(client, job.job_id, terminal)
    assert done.state == "COMPLETED"
    assert run_states(done) == [("on_demand", "COMPLETED")]
    assert 0.5 <= fallback_s < 3.0, fallback_s
    assert running.capacity_type == "on_demand"
    history = client.spot_history(hours=1)
    assert [r["state"] for r in history["requests"]] == ["timed_out"]
    assert history["requests"][0]["job_id"] == job.job_id
    assert history["requests"][0]["reason"] == "not fulfilled within request_timeout_s=0.5"
    fallback = client.audit(action="spot_fallback")
    assert [(e["actor"], e["target"]) for e in fallback] == [("dcluster", job.job_id)]
    assert fallback[0]["detail"]["reason"].startswith("spot request timed out")


def test_three_failed_spot_requests_disable_spot_for_a_cool_down(settings: DClusterSettings, start_service):
    service = start_service(with_cluster(settings, spot={"disable_cooldown_s": 2.5}))
    client = service.client
    client.sim_spot(available=False)
    first = wait_for(client, client.submit(JobSpec(client="syncbank", app="ok")).job_id, terminal)
    assert (first.state, first.capacity_type) == ("COMPLETED", "on_demand")
    spot = client.spot_status()
    assert spot["enabled"] is False
    assert spot["consecutive_failures"] == 3
    assert spot["disabled_reason"].startswith(
        "3 consecutive failed spot requests (last: capacity-not-available); retried after "
    )
    assert [r["state"] for r in client.spot_history()["requests"]] == ["failed"] * 3
    assert [a["kind"] for a in client.alerts(open_only=True)] == ["spot_disabled"]

    # While disabled, work goes straight to on-demand without asking the market.
    client.sim_spot(available=True)
    second = wait_for(client, client.submit(JobSpec(client="syncbank", app="ok")).job_id, terminal)
    assert second.capacity_type == "on_demand"
    assert len(client.spot_history()["requests"]) == 3

    # After the cool-down spot is tried again and, now available, used.
    deadline = time.monotonic() + 10
    while not client.spot_status()["enabled"]:
        assert time.monotonic() < deadline, "spot never re-enabled"
        time.sleep(0.1)
    third = wait_for(client, client.submit(JobSpec(client="syncbank", app="ok")).job_id, terminal)
    assert (third.state, third.capacity_type) == ("COMPLETED", "spot")
    assert client.spot_status()["enabled"] is True
    assert client.alerts(open_only=True) == []
    assert client.spot_status()["consecutive_failures"] == 0


def _reference_output(client: DClusterClient, tmp_path: Path, name: str) -> bytes:
    out = tmp_path / name
    done = wait_for(
        client,
        client.submit(
            JobSpec(client="syncbank", app="steps", args=["--out", str(out)], priority="batch")
        ).job_id,
        terminal,
    )
    assert done.state == "COMPLETED"
    return out.read_bytes()


@pytest.mark.parametrize("ignore_notice", [False, True], ids=["checkpointed", "reclaimed"])
def test_spot_interruption_resumes_on_on_demand_with_identical_output(
    settings: DClusterSettings, start_service, tmp_path: Path, ignore_notice: bool
):
    service = start_service(settings)
    client = service.client
    reference = _reference_output(client, tmp_path, "reference.txt")

    out, trace = tmp_path / "interrupted.txt", tmp_path / "trace.txt"
    args = ["--out", str(out), "--trace", str(trace)] + (["--ignore-notice"] if ignore_notice else [])
    job = client.submit(JobSpec(client="syncbank", app="steps", args=args, priority="batch"))
    wait_for(client, job.job_id, lambda s: s.state == "RUNNING")
    deadline = time.monotonic() + 20
    while not trace.exists():
        assert time.monotonic() < deadline, "steps job never started"
        time.sleep(0.02)
    time.sleep(0.4)  # some of its 40 steps of 0.05 s done
    noticed = client.interrupt(job.job_id)
    notice = noticed.raw["runs"][-1]["notice"]
    assert notice["action"] == "terminate"
    assert notice["time"].endswith("Z")
    assert noticed.message.startswith("spot interruption notice: interruption notice; reclaimed at ")

    done = wait_for(client, job.job_id, terminal, timeout=20)
    assert done.state == "COMPLETED"
    assert out.read_bytes() == reference  # byte-identical to the uninterrupted run
    assert run_states(done) == [("spot", "INTERRUPTED"), ("on_demand", "COMPLETED")]
    assert states(done) == ["PENDING", "RUNNING", "PENDING", "RUNNING", "COMPLETED"]
    assert done.attempts == 2
    rescheduled = done.raw["transitions"][2]["reason"]
    lines = trace.read_text().splitlines()
    if ignore_notice:
        assert rescheduled == (
            "spot instance reclaimed after its interruption notice; "
            "rescheduled on on_demand (run 2 of at most 5)"
        )
        assert lines == ["spot from 0", "on_demand from 0"]  # killed at the deadline: starts over
    else:
        assert rescheduled == (
            "stopped after a spot interruption notice (exit code 75); "
            "rescheduled on on_demand (run 2 of at most 5)"
        )
        resumed_from = int(lines[1].split()[-1])
        assert lines[0] == "spot from 0" and 0 < resumed_from < 40  # resumed from its checkpoint
    assert not (settings.state_dir / "checkpoints" / job.job_id).exists()
    assert [e["actor"] for e in client.audit(action="spot_interruption")] == ["anonymous"]

    with pytest.raises(DClusterError) as err:
        client.interrupt(job.job_id)
    assert err.value.status_code == 409
    assert "only a job RUNNING on spot can be interrupted" in str(err.value)


def test_stale_heartbeat_fails_the_health_check_and_reschedules(settings: DClusterSettings, start_service):
    service = start_service(settings)
    job = service.client.submit(JobSpec(client="syncbank", app="heartbeat", args=["1"], priority="batch"))
    done = wait_for(service.client, job.job_id, terminal, timeout=20)
    assert done.state == "COMPLETED"
    assert states(done) == ["PENDING", "RUNNING", "PENDING", "RUNNING", "COMPLETED"]
    first = done.raw["runs"][0]
    assert first["outcome"] == "LOST"
    assert first["reason"].startswith("health check failed: heartbeat ")
    assert first["reason"].endswith("s old (heartbeat_timeout_s=0.6)")
    assert done.raw["runs"][1]["capacity_type"] == "spot"  # not a reclaim: no need to leave spot


def test_process_killed_from_outside_is_rescheduled(settings: DClusterSettings, start_service):
    service = start_service(settings)
    # Run 1 sleeps a minute (so it is surely still running when killed); run 2 finishes at once.
    job = service.client.submit(
        JobSpec(client="syncbank", app="napper", args=["0.05", "1"], priority="batch")
    )
    running = wait_for(service.client, job.job_id, lambda s: s.state == "RUNNING")
    launcher = running.raw["runs"][0]["pid"]
    os.killpg(launcher, signal.SIGKILL)  # what the OOM killer or a vanished host looks like
    done = wait_for(service.client, job.job_id, terminal, timeout=20)
    assert done.state == "COMPLETED"
    assert done.raw["runs"][0]["reason"] == "health check failed: killed by signal 9 the service did not send"
    assert run_states(done) == [("spot", "LOST"), ("on_demand", "COMPLETED")]


def test_hanging_after_its_average_is_terminated_and_rescheduled(settings: DClusterSettings, start_service):
    service = start_service(
        with_cluster(settings, task_classes={"dev": {"max_attempts": 2}}, monitor={"hanging_min_s": 2.0})
    )
    client = service.client
    for _ in range(3):  # the sample the average comes from
        assert (
            wait_for(client, client.submit(JobSpec(client="syncbank", app="napper")).job_id, terminal).state
            == "COMPLETED"
        )
    hung_once = client.submit(JobSpec(client="syncbank", app="napper", args=["0.05", "1"]))
    done = wait_for(client, hung_once.job_id, terminal, timeout=20)
    assert done.state == "COMPLETED"
    assert states(done) == ["PENDING", "RUNNING", "HANGING", "PENDING", "RUNNING", "COMPLETED"]
    hanging = done.raw["transitions"][2]["reason"]
    assert hanging.startswith("running ") and "longer than 2.5 x average " in hanging
    assert hanging.endswith("s of 3 completed runs")
    assert done.raw["runs"][0]["outcome"] == "HANGING"

    always = client.submit(JobSpec(client="syncbank", app="napper", args=["0.05", "1", "2"]))
    final = wait_for(client, always.job_id, terminal, timeout=20)
    assert final.state == "TERMINATED"
    assert states(final) == ["PENDING", "RUNNING", "HANGING", "PENDING", "RUNNING", "HANGING", "TERMINATED"]
    assert final.message.startswith("terminated as hanging: running ")
    assert final.message.endswith("; gave up after 2 runs (max_attempts=2)")


def test_no_capacity_at_all_queues_the_job_and_alerts(settings: DClusterSettings, start_service):
    service = start_service(settings)
    client = service.client
    client.sim_spot(available=False)
    client.sim_on_demand(False)
    job = client.submit(JobSpec(client="syncbank", app="ok"))
    waiting = wait_for(client, job.job_id, lambda s: s.message.startswith("waiting in queue: no capacity"))
    assert waiting.state == "PENDING"
    assert waiting.message == (
        "waiting in queue: no capacity (on-demand: on-demand launch failed: insufficient capacity; spot: "
        + client.spot_status()["disabled_reason"]
        + ")"
    )
    time.sleep(0.3)
    assert client.status(job.job_id).state == "PENDING"
    alerts = client.alerts(open_only=True)
    assert sorted(a["kind"] for a in alerts) == ["no_capacity", "spot_disabled"]
    assert client.health()["status"] == "degraded"

    client.sim_on_demand(True)  # recovery
    done = wait_for(client, job.job_id, terminal)
    assert (done.state, done.capacity_type) == ("COMPLETED", "on_demand")
    assert [a["kind"] for a in client.alerts(open_only=True)] == ["spot_disabled"]
    resolved = [a for a in client.alerts() if a["kind"] == "no_capacity"]
    assert resolved[0]["resolved_at"] is not None and resolved[0]["count"] >= 1


def test_resource_endpoints_costs_and_audit(settings: DClusterSettings, start_service):
    service = start_service(settings)
    url = service.url
    client = DClusterClient(url, attempts=1, actor="ops-alice")

    # Explicit allocation: 10 prod instances of normal work at cost_optimized = 7 spot + 3 on-demand.
    allocated = client.allocate(10, priority="normal", strategy="cost_optimized", env="prod")
    assert (allocated["task_class"], allocated["spot"], allocated["on_demand"]) == ("normal", 7, 3)
    assert [r["state"] for r in allocated["spot_requests"]] == ["fulfilled"] * 7
    assert allocated["pools"]["spot"]["idle"] == 7 and allocated["pools"]["on_demand"]["idle"] == 3
    critical = client.allocate(2, priority="critical")
    assert (critical["spot"], critical["on_demand"]) == (0, 2)

    # A spot request that stays open can be cancelled once; unknown ids are 404.
    client.sim_spot(fulfil_delay_s=30)
    [req] = client.request_spot()
    assert req["state"] == "open"
    assert [r["request_id"] for r in client.spot_status()["open_requests"]] == [req["request_id"]]
    assert client.cancel_spot_request(req["request_id"])["state"] == "cancelled"
    with pytest.raises(DClusterError) as err:
        client.cancel_spot_request(req["request_id"])
    assert (err.value.status_code, str(err.value).endswith("is already cancelled; nothing to cancel")) == (
        409,
        True,
    )
    missing = requests.post(f"{url}/cluster/resources/spot/cancel/sir-nothere", timeout=10)
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "spot request 'sir-nothere' not found",
        "detail": {"request_id": "sir-nothere"},
    }
    client.sim_spot(fulfil_delay_s=0)

    # Jobs take the warm spot instances first; the ledger costs every run.
    jobs = [
        client.submit(JobSpec(client=c, app="ok", priority=p))
        for c, p in [("syncbank", "batch"), ("syncbank", "critical"), ("nasa", "batch")]
    ]
    for job in jobs:
        wait_for(client, job.job_id, terminal)
    assert [j.job_id for j in client.jobs(capacity="on_demand")] == [jobs[1].job_id]
    assert [j.job_id for j in client.jobs(client="syncbank", capacity="spot", module="ok")] == [
        jobs[0].job_id
    ]
    bad = requests.get(f"{url}/cluster/jobs", params={"capacity": "reserved"}, timeout=10)
    assert (bad.status_code, bad.json()["error"]) == (
        422,
        "capacity 'reserved' must be one of spot, on_demand",
    )

    costs = client.costs(client="syncbank")
    [day] = costs["days"]
    assert (day["client"], day["runs"], day["spot_runs"], day["on_demand_runs"]) == ("syncbank", 2, 1, 1)
    spot_row, od_row = sorted(costs["ledger"], key=lambda r: r["capacity_type"], reverse=True)
    assert (spot_row["price_per_hour"], od_row["price_per_hour"]) == (0.15, 0.504)
    assert spot_row["cost"] == pytest.approx(spot_row["seconds"] / 3600 * 0.15, abs=1e-6)
    assert day["savings"] == pytest.approx(day["on_demand_cost"] - day["cost"], abs=1e-6)
    formula = day["formula"]
    assert formula["spot_discount"] == pytest.approx(1 - 0.15 / 0.504, abs=1e-3)
    assert formula["savings"] == pytest.approx(
        formula["batch_share"] * formula["spot_share"] * formula["spot_discount"], abs=1e-3
    )
    assert client.costs(date="1999-01-01")["days"] == []
    assert requests.get(f"{url}/cluster/costs", params={"date": "yesterday"}, timeout=10).status_code == 422

    # Cluster-wide fallback: spot off for a while, then a pending job cannot be moved twice.
    fell = client.fallback(duration_s=60, reason="frequent reclaims in us-east-1a")
    assert fell["scope"] == "cluster" and fell["spot"]["enabled"] is False
    later = wait_for(
        client, client.submit(JobSpec(client="nasa", app="ok", priority="batch")).job_id, terminal
    )
    assert later.capacity_type == "on_demand"
    with pytest.raises(DClusterError) as err:
        client.fallback(later.job_id)
    assert err.value.status_code == 409

    audit = client.audit(actor="ops-alice")
    actions = [e["action"] for e in reversed(audit)]
    assert actions[:4] == ["allocate", "allocate", "sim_spot", "spot_request"]
    assert {"spot_cancel", "job_submit", "spot_fallback"} <= set(actions)
    submit = client.audit(action="job_submit", target=jobs[0].job_id)[0]
    assert submit["actor"] == "ops-alice" and submit["detail"]["task_class"] == "dev"
    assert (settings.state_dir / "audit.jsonl").is_file()
    terminated = client.submit(JobSpec(client="nasa", app="sleepy"))
    requests.post(f"{url}/cluster/job/terminate/{terminated.job_id}", timeout=10)  # no X-Actor
    assert client.audit(action="job_terminate")[0]["actor"] == "anonymous"


# --- a crash of the service itself -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server_process(tmp_path: Path, project: Path) -> Iterator[Callable[[], tuple[subprocess.Popen, str]]]:
    """Starts dcluster-server as its own process (so a test can SIGKILL it); all are stopped after."""
    config = tmp_path / "dcluster-config.yaml"
    config.write_text(yaml.safe_dump({**FAST_CONFIG, "service": {"poll_interval_s": 0.05}}))
    env = {
        **os.environ,
        "DCLUSTER_CONFIG": str(config),
        "DCLUSTER_PROJECT_ROOT": str(project),
        "DCLUSTER_SPARK_SUBMIT": sys.executable,
        "DCLUSTER_ENV": "test",
    }
    procs: list[subprocess.Popen] = []
    port = free_port()

    def start() -> tuple[subprocess.Popen, str]:
        argv = [
            str(Path(sys.executable).parent / "dcluster-server"),
            "--port",
            str(port),
            "--state-dir",
            str(tmp_path / "state"),
            "--log-level",
            "warning",
        ]
        proc = subprocess.Popen(
            argv,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "server.log", "ab"),
        )  # noqa: SIM115 - the child owns it
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/cluster/health", timeout=1)
                return proc, url
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "server.log"
                ).read_text()
                time.sleep(0.1)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def test_crashed_service_readopts_live_jobs_and_reschedules_lost_ones(server_process, tmp_path: Path):
    proc, url = server_process()
    client = DClusterClient(url, attempts=1)
    pids_file, gate = tmp_path / "pids", tmp_path / "gate"
    survivor = client.submit(JobSpec(client="syncbank", app="gated", args=[str(gate)]))
    victim = client.submit(
        JobSpec(client="syncbank", app="sleepy", args=["--seconds", "0.5", "--pids", str(pids_file)])
    )
    for job in (survivor, victim):
        wait_for(client, job.job_id, lambda s: s.state == "RUNNING")
    victim_pids = read_pids(pids_file)
    os.kill(proc.pid, signal.SIGKILL)  # a crash: nothing is cleaned up, the jobs keep running
    proc.wait()
    victim_launcher = json.loads((tmp_path / "state" / "jobs" / f"{victim.job_id}.json").read_text())["runs"][
        0
    ]["pid"]
    os.killpg(victim_launcher, signal.SIGKILL)  # this one dies while nobody watches
    assert gone(victim_pids)

    _, url = server_process()
    client = DClusterClient(url, attempts=1)
    adopted = client.status(survivor.job_id)
    assert adopted.state == "RUNNING"
    assert adopted.message.startswith("re-adopted after a service restart (pid ")
    gate.touch()
    done = wait_for(client, survivor.job_id, terminal, timeout=20)
    assert (done.state, done.exit_code) == ("COMPLETED", 0)  # its exit code, read from the exit file
    assert states(done) == ["PENDING", "RUNNING", "COMPLETED"]
    assert "gate open on spot" in client.log(survivor.job_id)

    rerun = wait_for(client, victim.job_id, terminal, timeout=20)
    assert rerun.state == "COMPLETED"
    assert rerun.raw["runs"][0]["reason"] == (
        "health check failed after a service restart: process gone without exit status"
    )
    assert run_states(rerun) == [("spot", "LOST"), ("on_demand", "COMPLETED")]
