"""The resource policy and the resource manager as plain code: no server, a fake market and clock."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dcluster import policy
from dcluster.config import Autoscaling, ClusterConfig, ConfigError, Monitor
from dcluster.ledger import cost_report
from dcluster.models import JobSpec, JobStore
from dcluster.resources import ResourceManager
from dcluster.settings import DClusterSettings, load_config_file
from tests.support import REPO

CONFIG = ClusterConfig()


class FakeMarket:
    """A market whose answers the test sets."""

    simulated = True

    def __init__(self) -> None:
        self.available, self.price, self.delay, self.on_demand = True, 0.15, 0.0, True

    def spot_quote(self) -> tuple[bool, float, str]:
        return self.available, self.price, "" if self.available else "capacity-not-available"

    def fulfil_delay_s(self) -> float:
        return self.delay

    def on_demand_available(self) -> bool:
        return self.on_demand

    def interrupted(self, seconds: float) -> bool:
        return False


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("priority", "env", "expected"),
    [
        ("critical", "dev", "critical"),
        ("normal", "prod", "normal"),
        ("batch", "prod", "batch"),
        ("normal", "test", "dev"),
        ("batch", "dev", "dev"),
    ],
)
def test_task_class(priority: str, env: str, expected: str):
    assert policy.task_class(priority, env, CONFIG) == expected


@pytest.mark.parametrize(
    ("klass", "strategy", "share"),
    [
        ("critical", "cost_optimized", 0.0),
        ("normal", "cost_optimized", 0.7),
        ("normal", "balanced", 0.5),
        ("normal", "performance_optimized", 0.3),
        ("batch", "performance_optimized", 1.0),
        ("dev", "balanced", 1.0),
    ],
)
def test_spot_share_of_class_and_strategy(klass: str, strategy: str, share: float):
    assert policy.spot_share(klass, strategy, CONFIG) == share


@pytest.mark.parametrize(
    ("strategy", "spot_of_ten"), [("cost_optimized", 7), ("balanced", 5), ("performance_optimized", 3)]
)
def test_choose_capacity_converges_to_the_strategy_mix(strategy: str, spot_of_ten: int):
    mix: Counter[str] = Counter()
    target = policy.spot_share("normal", strategy, CONFIG)
    for _ in range(10):
        choice = policy.choose_capacity(
            klass="normal",
            target=target,
            running_spot=mix["spot"],
            running_on_demand=mix["on_demand"],
            spot_enabled=True,
        )
        mix[choice.capacity_type] += 1
    assert mix == Counter({"spot": spot_of_ten, "on_demand": 10 - spot_of_ten})


def test_choose_capacity_rules():
    def choose(**kw):
        base = {
            "klass": "normal",
            "target": 0.7,
            "running_spot": 0,
            "running_on_demand": 0,
            "spot_enabled": True,
        }
        return policy.choose_capacity(**{**base, **kw})

    assert choose() == policy.Choice("spot", "spot share 0/0 below target 70%")
    assert choose(target=0.0, klass="critical") == policy.Choice(
        "on_demand", "task class critical runs on on-demand only"
    )
    assert choose(target=1.0, running_spot=50).capacity_type == "spot"
    assert choose(forced="on_demand") == policy.Choice("on_demand", "on_demand required for this attempt")
    assert choose(spot_enabled=False, spot_disabled_reason="3 failures") == policy.Choice(
        "on_demand", "spot disabled (3 failures); using on-demand"
    )
    assert choose(spot_enabled=False, fallback_to_on_demand=False).capacity_type == "spot"


def test_hang_threshold_uses_the_average_once_there_are_enough_samples():
    monitor = Monitor(hanging_factor=2.5, hanging_min_samples=3, hanging_min_s=60)
    assert policy.hang_threshold([100, 200], monitor, 3600) == (3600, "job_timeout_s=3600")
    assert policy.hang_threshold([100, 200, 300], monitor, 3600) == (
        500.0,
        "2.5 x average 200.0s of 3 completed runs",
    )
    assert policy.hang_threshold([1, 2, 3], monitor, 3600)[0] == 60  # never below the floor
    assert policy.hang_threshold([3000, 3000, 3000], monitor, 3600)[0] == 3600  # nor above the timeout


def test_reschedule_policy():
    assert policy.reschedule(cause=policy.INTERRUPTED, runs_so_far=1, max_attempts=3, on_spot=True) == (
        True,
        "on_demand",
    )
    assert policy.reschedule(cause=policy.LOST, runs_so_far=1, max_attempts=3, on_spot=True) == (
        True,
        "on_demand",
    )
    assert policy.reschedule(cause=policy.UNHEALTHY, runs_so_far=1, max_attempts=3, on_spot=True) == (
        True,
        None,
    )
    assert policy.reschedule(cause=policy.HUNG, runs_so_far=3, max_attempts=3, on_spot=False) == (False, None)


def test_autoscale_thresholds_and_cooldowns():
    rules = Autoscaling()
    common = {"resident_min": 5, "max_instances": 10, "rules": rules}
    assert policy.autoscale(busy=5, total=5, now=1000, last_up=0, last_down=0, **common) == 1
    assert (
        policy.autoscale(busy=5, total=5, now=1000, last_up=800, last_down=0, **common) == 0
    )  # cooling down
    assert policy.autoscale(busy=5, total=10, now=1000, last_up=0, last_down=0, **common) == 0
    assert policy.autoscale(busy=1, total=8, now=1000, last_up=0, last_down=0, **common) == -1
    assert policy.autoscale(busy=1, total=5, now=1000, last_up=0, last_down=0, **common) == 0  # resident
    assert (
        policy.autoscale(
            busy=0, total=0, resident_min=0, max_instances=10, now=1000, last_up=0, last_down=0, rules=rules
        )
        == 0
    )


def test_savings_formula_matches_the_spec_example():
    # 70 % of the run time is batch-eligible, 70 % of that on spot, spot at half price: 24.5 %.
    runs = [
        {"seconds": 3600 * 0.49, "capacity_type": "spot", "task_class": "normal", "cost": 0.49 * 0.25},
        {"seconds": 3600 * 0.21, "capacity_type": "on_demand", "task_class": "normal", "cost": 0.21 * 0.5},
        {"seconds": 3600 * 0.30, "capacity_type": "on_demand", "task_class": "critical", "cost": 0.30 * 0.5},
    ]
    s = policy.savings(runs, on_demand_price=0.5)
    assert (s.batch_share, s.spot_share, s.spot_discount) == pytest.approx((0.7, 0.7, 0.5))
    assert s.formula == pytest.approx(0.245)
    assert s.savings_share == pytest.approx(0.245)  # measured equals the formula when prices are flat


def test_cost_report_groups_by_client_and_day(tmp_path: Path):
    store = JobStore(tmp_path)
    job, _ = store.submit(JobSpec(client="syncbank", env="prod", engine="spark", app="ok"))
    run = {
        "attempt": 1,
        "capacity_type": "spot",
        "price_per_hour": 0.15,
        "seconds": 3600.0,
        "cost": 0.15,
        "outcome": "COMPLETED",
        "started_at": "2025-11-21T01:00:00Z",
        "ended_at": "2025-11-21T02:00:00Z",
        "task_class": "normal",
    }
    store.update(
        job.job_id,
        runs=[
            run,
            {
                **run,
                "capacity_type": "on_demand",
                "cost": 0.504,
                "price_per_hour": 0.504,
                "started_at": "2025-11-22T01:00:00Z",
            },
        ],
    )
    report = cost_report(store.all_runs(), 0.504, client="syncbank")
    assert [(d["date"], d["spot_runs"], d["cost"], d["savings"]) for d in report["days"]] == [
        ("2025-11-21", 1, 0.15, 0.354),
        ("2025-11-22", 0, 0.504, 0.0),
    ]
    assert report["total"]["spot_seconds"] == 3600.0
    assert cost_report(store.all_runs(), 0.504, client="nasa")["days"] == []


def test_resource_manager_timeout_breaker_and_cooldown(tmp_path: Path):
    config = ClusterConfig.from_mapping(
        {
            "spot": {"request_timeout_s": 300, "disable_cooldown_s": 180},
            "on_demand": {"resident_min": 2, "max_instances": 3},
        }
    )
    market, clock = FakeMarket(), Clock()
    rm = ResourceManager(config, market, tmp_path / "resources.json", clock)
    rm.load()
    assert rm.pools()["on_demand"]["idle"] == 2  # the resident pool

    market.delay = 400  # never within the timeout
    req = rm.request_spot(job_id="j1")
    assert req.state == "open"
    clock.now += 299
    assert rm.poll_request(req.request_id).state == "open"
    clock.now += 1
    timed_out = rm.poll_request(req.request_id)
    assert (timed_out.state, timed_out.reason) == ("timed_out", "not fulfilled within request_timeout_s=300")

    market.delay, market.available = 0, False
    assert [rm.request_spot().state for _ in range(2)] == ["failed", "failed"]
    enabled, why = rm.spot_enabled()
    assert not enabled and why.startswith("3 consecutive failed spot requests (last: capacity-not-available)")
    assert [a.kind for a in rm.alerts(open_only=True)] == ["spot_disabled"]

    market.available = True
    clock.now += 180
    assert rm.spot_enabled() == (True, "")
    assert rm.alerts(open_only=True) == []
    ok = rm.request_spot(job_id="j2")
    assert (ok.state, ok.price) == ("fulfilled", 0.15)
    assert rm.instance(ok.instance_id).job_id == "j2"

    market.price = 0.9  # above max_price 0.5
    assert rm.request_spot().reason == "price-too-low: market 0.9 > max 0.5 $/h"

    a, _ = rm.acquire_on_demand("j3")
    b, _ = rm.acquire_on_demand("j4")
    c, _ = rm.acquire_on_demand("j5")
    assert (a.resident, b.resident, c.resident) == (True, True, False)
    assert rm.acquire_on_demand("j6") == (None, "on-demand pool full (3 instances busy)")
    rm.release(a.instance_id)
    assert rm.acquire_on_demand("j6")[0].instance_id == a.instance_id

    # Everything survives a restart of the service.
    again = ResourceManager(config, market, tmp_path / "resources.json", clock)
    again.load()
    assert again.pools() == rm.pools()
    assert [r.request_id for r in again.history(24)] == [r.request_id for r in rm.history(24)]


def test_config_file_loads_and_rejects_unknown_keys(tmp_path: Path):
    service, cluster = load_config_file(REPO / "config" / "dcluster-config.yaml")
    assert service["max_concurrent_jobs"] == 2
    assert cluster == ClusterConfig()  # the shipped file restates the SPEC's example defaults
    bad = tmp_path / "bad.yaml"
    bad.write_text("spot:\n  max_price: cheap\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: spot.max_price='cheap' is not a number"):
        load_config_file(bad)
    bad.write_text("task_classes:\n  normal: {spot_share: 1.5}\n")
    with pytest.raises(ConfigError, match=r"task_classes.normal.spot_share must be between 0 and 1 or null"):
        load_config_file(bad)
    custom = tmp_path / "custom.yaml"
    custom.write_text("service: {max_concurrent_jobs: 4}\nspot: {request_timeout_s: 1}\n")
    settings = DClusterSettings.from_env({"DCLUSTER_CONFIG": str(custom)})
    assert (settings.max_concurrent_jobs, settings.cluster.spot.request_timeout_s) == (4, 1.0)
    assert settings.cluster.spot.max_price == 0.5
    assert (
        DClusterSettings.from_env(
            {"DCLUSTER_CONFIG": str(custom), "DCLUSTER_MAX_CONCURRENT_JOBS": "3"}
        ).max_concurrent_jobs
        == 3
    )
