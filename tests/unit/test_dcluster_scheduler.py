"""The fault table of docs/dcluster.md, in-process: the scheduler loop on a fake clock and a fake provider.

No sockets, no processes, no sleeps: the clock is a number the test moves, the provider a
dict of runs the test scripts, so every case takes milliseconds at the shipped time scale
(300 s spot timeout, 2-minute notices, 120 s heartbeats). The HTTP tests of the service tier
(tests/service/test_dcluster_faults.py) run the same faults with real processes.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dcluster.alerts import iso
from dcluster.config import ClusterConfig
from dcluster.errors import CapacityUnavailable, JobConflict, ProcessLost
from dcluster.models import COMPLETED, FAILED, PENDING, RUNNING, TERMINATED, Job
from dcluster.policy import ON_DEMAND, SPOT
from dcluster.providers.base import Provider
from dcluster.providers.simulation import SimulatedMarket
from dcluster.service import DClusterService
from dcluster.settings import DClusterSettings

REPO = Path(__file__).resolve().parents[2]
START = 1_800_000_000.0


class FakeClock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass
class FakeRun:
    """One run the fake provider 'started': the test sets how it behaves."""

    job_id: str
    attempt: int
    capacity_type: str
    code: int | None = None  # exit code once the run ended by itself
    lost: bool = False  # the process vanished without an exit status
    heartbeat_ts: float | None = None  # last heartbeat touch (None: never touched)
    instance_action: dict[str, str] | None = (
        None  # a notice the capacity itself gives (EC2's instance-action)
    )
    notices: list[dict[str, Any]] = field(default_factory=list)  # notices the service handed to the job
    terminated: bool = False


class FakeProvider(Provider):
    """Runs nothing: each start() records a FakeRun; poll, heartbeat and notices read it back."""

    name = "fake"

    def __init__(self, settings: DClusterSettings, logs: Path) -> None:
        self.market = SimulatedMarket(settings.cluster.simulation)
        self.logs = logs
        self.runs: list[FakeRun] = []
        self.refuse: set[str] = set()  # capacity types whose launches are refused (EC2 had none)

    def current(self, job_id: str) -> FakeRun:
        return [r for r in self.runs if r.job_id == job_id][-1]

    def start(self, job: Job) -> FakeRun:
        if job.capacity_type in self.refuse:
            raise CapacityUnavailable(f"no {job.capacity_type} capacity")
        run = FakeRun(job.job_id, job.attempts, job.capacity_type)
        self.runs.append(run)
        return run

    def poll(self, handle: FakeRun) -> int | None:
        if handle.lost:
            raise ProcessLost("its host vanished")
        return handle.code

    def terminate(self, handle: FakeRun, grace_s: float) -> int | None:
        handle.terminated = True
        return -15

    def log_path(self, job_id: str) -> Path:
        return self.logs / f"{job_id}.log"

    def heartbeat_age(self, job_id: str, now: float) -> float | None:
        ts = self.current(job_id).heartbeat_ts
        return None if ts is None else now - ts

    def interruption_notice(self, handle: FakeRun) -> dict[str, str] | None:
        return handle.instance_action

    def notify(self, job_id: str, notice: dict[str, Any]) -> None:
        self.current(job_id).notices.append(notice)


@dataclass
class Cluster:
    """The service on the fake clock and provider, and a few verbs for the tests."""

    service: DClusterService
    provider: FakeProvider
    clock: FakeClock

    def tick(self, advance: float = 0.0) -> None:
        self.clock.advance(advance)
        self.service.scheduler.tick()

    def submit(self, priority: str = "normal", strategy: str = "balanced", **extra: Any) -> str:
        job, created = self.service.submit(
            {"client": "syncbank", "app": "smoke", "priority": priority, "strategy": strategy, **extra},
            actor="tester",
        )
        assert created
        return job.job_id

    def job(self, job_id: str) -> Job:
        return self.service.store.get(job_id)

    def audit(self, action: str) -> list[dict[str, Any]]:
        return self.service.audit.read(action=action)


@pytest.fixture
def state_dir(tmp_path: Path):
    """A state folder on tmpfs where the host has one: the state files are fsynced on every change."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        yield tmp_path / "state"
        return
    with tempfile.TemporaryDirectory(prefix="dcluster-unit-", dir=shm) as folder:
        yield Path(folder)


@pytest.fixture
def make_cluster(tmp_path: Path, state_dir: Path):
    def make(**config: Any) -> Cluster:
        shipped = {"on_demand": {"resident_min": 0}, **config}
        settings = DClusterSettings(
            state_dir=state_dir,
            project_root=REPO,
            env="test",
            max_concurrent_jobs=4,
            cluster=ClusterConfig.from_mapping(shipped),
        )
        clock = FakeClock()
        provider = FakeProvider(settings, state_dir / "logs")
        service = DClusterService(settings, provider=provider, clock=clock)
        service.open()
        return Cluster(service, provider, clock)

    return make


# --------------------------------------------------------------------------- spot requests


def test_spot_request_timeout_falls_back_to_on_demand(make_cluster):
    c = make_cluster(simulation={"spot": {"fulfil_delay_s": 10_000}})
    job_id = c.submit(priority="batch")
    c.tick()
    assert c.job(job_id).state == PENDING and c.job(job_id).spot_request_id

    c.tick(299.0)
    assert c.job(job_id).state == PENDING  # not yet: request_timeout_s is 300
    c.tick(2.0)

    job = c.job(job_id)
    assert (job.state, job.capacity_type) == (RUNNING, ON_DEMAND)
    (request,) = c.service.resources.history(1)
    assert request.state == "timed_out"
    (fallback,) = c.audit("spot_fallback")
    assert fallback["actor"] == "dcluster" and "spot request timed out" in fallback["detail"]["reason"]


def test_three_failed_spot_requests_disable_spot_for_a_cool_down(make_cluster):
    c = make_cluster(simulation={"spot": {"available": False}})
    job_id = c.submit(priority="normal", strategy="cost_optimized")
    for _ in range(3):
        c.tick(1.0)

    job = c.job(job_id)
    assert (job.state, job.capacity_type) == (RUNNING, ON_DEMAND)  # retry_attempts=3, then on-demand
    enabled, why = c.service.resources.spot_enabled()
    assert not enabled and "3 consecutive failed spot requests" in why
    assert [a.kind for a in c.service.resources.alerts(open_only=True)] == ["spot_disabled"]
    # While disabled, new work goes straight to on-demand without a request.
    other = c.submit(priority="normal", strategy="cost_optimized")
    c.tick(1.0)
    assert c.job(other).capacity_type == ON_DEMAND and len(c.service.resources.history(1)) == 3

    c.tick(180.0)  # disable_cooldown_s
    assert c.service.resources.spot_enabled() == (True, "")
    assert c.service.resources.alerts(open_only=True) == []


def test_a_refused_spot_launch_counts_as_a_failed_request(make_cluster):
    c = make_cluster()
    c.provider.refuse.add(SPOT)
    job_id = c.submit(priority="batch")
    c.tick()

    job = c.job(job_id)
    assert (job.state, job.runs, job.spot_failures) == (PENDING, [], 1)
    assert c.service.resources.history(1)[0].reason == "no spot capacity"


# --------------------------------------------------------------------------- spot reclaim


def _running_on_spot(c: Cluster) -> str:
    job_id = c.submit(priority="batch")
    c.tick()
    assert (c.job(job_id).state, c.job(job_id).capacity_type) == (RUNNING, SPOT)
    return job_id


def test_a_job_that_checkpoints_on_the_notice_resumes_on_on_demand(make_cluster):
    c = make_cluster()
    job_id = _running_on_spot(c)
    c.service.interrupt(job_id, actor="tester")
    (notice,) = c.provider.current(job_id).notices
    assert notice == {"action": "terminate", "time": iso(START + 120.0)}

    c.provider.current(job_id).code = 75  # checkpointed and exited
    c.tick(5.0)  # rescheduled, and placed again in the same tick
    job = c.job(job_id)
    assert (job.state, job.capacity_type, job.attempts) == (RUNNING, ON_DEMAND, 2)
    assert (job.runs[0]["outcome"], job.runs[0]["exit_code"]) == ("INTERRUPTED", 75)
    c.provider.current(job_id).code = 0
    c.tick(1.0)
    job = c.job(job_id)
    assert job.state == COMPLETED
    assert [r["capacity_type"] for r in job.runs] == [SPOT, ON_DEMAND]
    assert [e["detail"]["cause"] for e in c.audit("job_reschedule")] == ["interrupted"]


def test_a_job_that_ignores_the_notice_is_stopped_at_the_reclaim_time(make_cluster):
    c = make_cluster()
    job_id = _running_on_spot(c)
    c.service.interrupt(job_id)
    first = c.provider.current(job_id)

    c.tick(119.0)
    assert c.job(job_id).state == RUNNING and not first.terminated
    c.tick(1.0)

    assert first.terminated
    job = c.job(job_id)
    assert (job.runs[0]["outcome"], job.runs[0]["exit_code"]) == ("INTERRUPTED", -15)
    assert (job.state, job.capacity_type) == (RUNNING, ON_DEMAND)


def test_the_capacitys_own_notice_sets_the_reclaim_time(make_cluster):
    c = make_cluster()
    job_id = _running_on_spot(c)
    c.provider.current(job_id).instance_action = {"action": "terminate", "time": iso(START + 30.0)}
    c.tick(1.0)

    run = c.job(job_id).runs[-1]
    assert run["notice"]["reclaim_ts"] == START + 30.0
    assert [e["detail"]["source"] for e in c.audit("spot_interruption")] == ["instance-action"]
    c.tick(29.0)
    assert [r["capacity_type"] for r in c.job(job_id).runs] == [SPOT, ON_DEMAND]


def test_only_a_job_running_on_spot_can_be_interrupted(make_cluster):
    c = make_cluster()
    job_id = c.submit(priority="critical")
    c.tick()
    with pytest.raises(JobConflict, match="only a job RUNNING on spot"):
        c.service.interrupt(job_id)


# --------------------------------------------------------------------------- health checks


def test_a_stale_heartbeat_fails_the_health_check_and_reschedules(make_cluster):
    c = make_cluster()
    job_id = c.submit(priority="critical")
    c.tick()
    c.provider.current(job_id).heartbeat_ts = c.clock.now

    c.tick(120.0)  # heartbeat_timeout_s: exactly at the limit is still healthy
    assert c.job(job_id).state == RUNNING
    c.tick(5.0)  # health_check_interval_s later it is too old

    job = c.job(job_id)
    assert (job.state, job.runs[0]["outcome"], len(job.runs)) == (RUNNING, "LOST", 2)
    assert "heartbeat 125.0s old" in job.runs[0]["reason"]
    assert [r.terminated for r in c.provider.runs] == [True, False]


def test_a_vanished_process_is_lost_and_rescheduled(make_cluster):
    c = make_cluster()
    job_id = c.submit(priority="critical")
    c.tick()
    c.provider.current(job_id).lost = True
    c.tick(1.0)

    job = c.job(job_id)
    assert (job.state, job.runs[0]["outcome"], len(job.runs)) == (RUNNING, "LOST", 2)
    assert job.runs[0]["reason"] == "health check failed: its host vanished"


def test_a_kill_the_service_did_not_send_is_lost_and_a_lost_spot_run_moves_to_on_demand(make_cluster):
    c = make_cluster()
    job_id = _running_on_spot(c)
    c.provider.current(job_id).code = -9
    c.tick(1.0)

    job = c.job(job_id)
    assert job.runs[0]["reason"] == "health check failed: killed by signal 9 the service did not send"
    assert [r["capacity_type"] for r in job.runs] == [SPOT, ON_DEMAND]


# --------------------------------------------------------------------------- hangs


def test_without_history_a_run_hangs_after_job_timeout_s(make_cluster):
    c = make_cluster()
    job_id = c.submit(priority="critical")
    c.tick()
    c.tick(3600.0)
    assert c.job(job_id).state == RUNNING
    c.tick(1.0)

    job = c.job(job_id)
    assert [t["state"] for t in job.transitions][-3:] == ["HANGING", "PENDING", "RUNNING"]
    assert "longer than job_timeout_s=3600" in job.runs[0]["reason"]


def test_a_run_far_past_its_apps_average_hangs_and_the_last_attempt_is_terminated(make_cluster):
    c = make_cluster(task_classes={"critical": {"max_attempts": 2}})
    for _ in range(3):  # hanging_min_samples completed runs of 100 s
        done = c.submit(priority="critical")
        c.tick()
        c.provider.current(done).code = 0
        c.tick(100.0)
        assert c.job(done).state == COMPLETED
    job_id = c.submit(priority="critical")
    c.tick()
    for _ in range(2):
        c.tick(250.0)  # 2.5 x the 100 s average: not yet
        assert c.job(job_id).state == RUNNING
        c.tick(1.0)  # the first hang reschedules (and starts the second run), the second gives up

    job = c.job(job_id)
    assert job.state == TERMINATED
    assert job.message.endswith("gave up after 2 runs (max_attempts=2)")
    assert "2.5 x average 100.0s of 3 completed runs" in job.runs[-1]["reason"]


# --------------------------------------------------------------------------- capacity


def test_no_capacity_at_all_queues_the_job_and_alerts_until_it_starts(make_cluster):
    c = make_cluster(simulation={"on_demand_available": False, "spot": {"available": False}})
    job_id = c.submit(priority="critical")
    c.tick()

    job = c.job(job_id)
    assert job.state == PENDING and job.message.startswith("waiting in queue: no capacity")
    assert [a.kind for a in c.service.resources.alerts(open_only=True)] == ["no_capacity"]

    c.service.sim_on_demand(True)
    c.tick(1.0)
    assert c.job(job_id).state == RUNNING
    assert c.service.resources.alerts(open_only=True) == []


def test_a_full_slot_count_queues_without_an_alert(make_cluster):
    c = make_cluster()
    ids = [c.submit(priority="critical") for _ in range(5)]
    c.tick()

    assert [c.job(i).state for i in ids] == [RUNNING] * 4 + [PENDING]
    assert c.job(ids[-1]).message == "waiting for a free job slot"
    assert c.service.resources.alerts() == []


# --------------------------------------------------------------------------- the job's own verdict


def test_a_non_zero_exit_fails_at_once_with_the_logs_reason(make_cluster):
    c = make_cluster()
    job_id = c.submit(priority="critical")
    c.tick()
    log = c.provider.log_path(job_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(
        "Traceback (most recent call last):\nValueError: no rows for 2025-11-21\n"
        "INFO ShutdownHookManager: deleting temp dirs\n"
    )
    c.provider.current(job_id).code = 3
    c.tick(2.0)

    job = c.job(job_id)
    assert (job.state, job.exit_code, job.attempts) == (FAILED, 3, 1)
    assert job.message == "ValueError: no rows for 2025-11-21"
    assert job.runs[-1]["seconds"] == 2.0


def test_terminate_stops_the_run_and_is_audited(make_cluster):
    c = make_cluster()
    job_id = c.submit(priority="critical")
    c.tick()
    c.tick(10.0)
    job = c.service.terminate(job_id, actor="tester")

    assert (job.state, job.exit_code) == (TERMINATED, -15)
    assert job.runs[-1]["cost"] == round(10 / 3600 * 0.504, 8)
    (entry,) = c.audit("job_terminate")
    assert (entry["actor"], entry["detail"]["state_before"]) == ("tester", RUNNING)
    with pytest.raises(JobConflict, match="already TERMINATED"):
        c.service.terminate(job_id)
