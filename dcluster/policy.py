"""The resource policy as plain functions: task class, spot or on-demand, hanging, retries, savings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dcluster.config import Autoscaling, ClusterConfig, Monitor

SPOT, ON_DEMAND = "spot", "on_demand"
CAPACITY_TYPES = (SPOT, ON_DEMAND)
TASK_CLASSES = ("critical", "normal", "batch", "dev")


def task_class(priority: str, env: str, config: ClusterConfig) -> str:
    """The job's task class: critical stays critical; other work in a dev env is dev; else its priority."""
    if priority == "critical":
        return "critical"
    if env in config.dev_envs:
        return "dev"
    return priority if priority in config.task_classes else "normal"


def spot_share(klass: str, strategy: str, config: ClusterConfig) -> float:
    """Target share of the class's running jobs on spot: the class's own, else its job's strategy."""
    fixed = config.task_classes[klass].spot_share
    if fixed is not None:
        return fixed
    return config.strategies.get(strategy, config.strategies["balanced"])


@dataclass(frozen=True)
class Choice:
    """Which capacity a job should try next and why."""

    capacity_type: str
    reason: str


def choose_capacity(
    *,
    klass: str,
    target: float,
    running_spot: int,
    running_on_demand: int,
    spot_enabled: bool,
    spot_disabled_reason: str = "",
    forced: str | None = None,
    fallback_to_on_demand: bool = True,
) -> Choice:
    """Spot or on-demand for the next job of a class, keeping the class's running mix near target."""
    if forced in CAPACITY_TYPES:
        return Choice(forced, f"{forced} required for this attempt")
    if target <= 0:
        return Choice(ON_DEMAND, f"task class {klass} runs on on-demand only")
    if not spot_enabled:
        if fallback_to_on_demand:
            return Choice(ON_DEMAND, f"spot disabled ({spot_disabled_reason}); using on-demand")
        return Choice(SPOT, f"spot disabled ({spot_disabled_reason}); waiting for spot (no fallback)")
    if target >= 1:
        return Choice(SPOT, f"task class {klass} runs on spot")
    total = running_spot + running_on_demand + 1
    # Pick the side that leaves the class's share closest to its target; ties go to spot (cheaper).
    with_spot = abs((running_spot + 1) / total - target)
    with_od = abs(running_spot / total - target)
    if with_spot <= with_od:
        return Choice(SPOT, f"spot share {running_spot}/{total - 1} below target {target:.0%}")
    return Choice(ON_DEMAND, f"spot share {running_spot}/{total - 1} at target {target:.0%}")


def hang_threshold(durations: Iterable[float], monitor: Monitor, job_timeout_s: float) -> tuple[float, str]:
    """Seconds after which a run is HANGING, and how that limit was found."""
    samples = [d for d in durations if d >= 0]
    if len(samples) < monitor.hanging_min_samples:
        # Too few completed runs for a trustworthy average: only the hard timeout applies.
        return job_timeout_s, f"job_timeout_s={job_timeout_s:g}"
    average = sum(samples) / len(samples)
    limit = max(monitor.hanging_min_s, monitor.hanging_factor * average)
    # The hard timeout still applies to an app whose average is very long.
    limit = min(limit, job_timeout_s)
    return limit, f"{monitor.hanging_factor:g} x average {average:.1f}s of {len(samples)} completed runs"


# Why an attempt ended without the job's own verdict; each reschedules by policy.
INTERRUPTED, LOST, UNHEALTHY, HUNG = "interrupted", "lost", "unhealthy", "hanging"


def reschedule(*, cause: str, runs_so_far: int, max_attempts: int, on_spot: bool) -> tuple[bool, str | None]:
    """(reschedule?, capacity to force on the next attempt) after an attempt ended by a fault."""
    if runs_so_far >= max_attempts:
        return False, None
    # A reclaimed spot job resumes on capacity that cannot be reclaimed (SPEC: migrate to on-demand).
    if cause == INTERRUPTED or (on_spot and cause == LOST):
        return True, "on_demand"
    return True, None


def autoscale(
    *,
    busy: int,
    total: int,
    resident_min: int,
    max_instances: int,
    now: float,
    last_up: float,
    last_down: float,
    rules: Autoscaling,
) -> int:
    """+1 to add an on-demand instance, -1 to release an idle one, 0 to leave the pool alone."""
    utilisation = busy / total if total else 0.0  # an empty pool is grown by resident_min, not here
    if (
        utilisation > rules.scale_up_utilisation
        and total < max_instances
        and now - last_up >= rules.scale_up_cooldown_s
    ):
        return 1
    if (
        utilisation < rules.scale_down_utilisation
        and total > resident_min
        and busy < total
        and now - last_down >= rules.scale_down_cooldown_s
    ):
        return -1
    return 0


def attempt_cost(seconds: float, price_per_hour: float) -> float:
    """Cost of one attempt of `seconds` on capacity priced per hour."""
    return max(0.0, seconds) / 3600.0 * price_per_hour


@dataclass(frozen=True)
class Savings:
    """Spot usage and savings of a set of attempts, and the SPEC's formula for them."""

    seconds: float
    spot_seconds: float
    cost: float
    on_demand_cost: float
    batch_share: float  # share of run time of work allowed on spot (not critical)
    spot_share: float  # share of that work that ran on spot
    spot_discount: float  # 1 - average spot price / on-demand price

    @property
    def savings(self) -> float:
        """Dollars saved against running everything on on-demand."""
        return self.on_demand_cost - self.cost

    @property
    def savings_share(self) -> float:
        """Measured savings as a share of the all-on-demand cost."""
        return self.savings / self.on_demand_cost if self.on_demand_cost else 0.0

    @property
    def formula(self) -> float:
        """SPEC §3: savings = batch share x spot share x spot discount."""
        return self.batch_share * self.spot_share * self.spot_discount

    def to_dict(self) -> dict[str, object]:
        """The JSON form of the costs report."""
        return {
            "seconds": round(self.seconds, 3),
            "spot_seconds": round(self.spot_seconds, 3),
            "cost": round(self.cost, 6),
            "on_demand_cost": round(self.on_demand_cost, 6),
            "savings": round(self.savings, 6),
            "savings_share": round(self.savings_share, 4),
            "formula": {
                "batch_share": round(self.batch_share, 4),
                "spot_share": round(self.spot_share, 4),
                "spot_discount": round(self.spot_discount, 4),
                "savings": round(self.formula, 4),
                "text": "savings = batch share x spot share x spot discount",
            },
        }


def savings(runs: Iterable[Mapping[str, object]], on_demand_price: float) -> Savings:
    """Savings of attempts (dicts with seconds, capacity_type, cost, task_class)."""
    seconds = spot_seconds = cost = od_cost = flexible = spot_cost = 0.0
    for run in runs:
        s = float(run.get("seconds") or 0.0)  # type: ignore[arg-type]
        seconds += s
        cost += float(run.get("cost") or 0.0)  # type: ignore[arg-type]
        od_cost += attempt_cost(s, on_demand_price)
        if run.get("task_class") != "critical":
            flexible += s
        if run.get("capacity_type") == SPOT:
            spot_seconds += s
            # Price x time, not the rounded cost: short runs cost fractions of a micro-dollar,
            # and rounding those would skew the discount.
            price = run.get("price_per_hour")
            spot_cost += (s / 3600 * float(price)) if price is not None else float(run.get("cost") or 0.0)  # type: ignore[arg-type]
    spot_od = spot_seconds / 3600 * on_demand_price
    return Savings(
        seconds=seconds,
        spot_seconds=spot_seconds,
        cost=cost,
        on_demand_cost=od_cost,
        batch_share=flexible / seconds if seconds else 0.0,
        spot_share=spot_seconds / flexible if flexible else 0.0,
        spot_discount=1 - spot_cost / spot_od if spot_od else 0.0,
    )
