"""The resource policy of DCluster: pools, strategies, task classes, faults, prices, simulation.

Defaults are the SPEC's example config; config/dcluster-config.yaml (DCLUSTER_CONFIG) overrides
them. Plain frozen dataclasses, built and checked by from_mapping(); nothing is read at import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any, TypeVar, get_type_hints

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value the service cannot use; the message names the key."""


@dataclass(frozen=True)
class OnDemandPool:
    """Never reclaimed, always available capacity; a resident pool is kept warm."""

    instance_type: str = "r5.2xlarge"
    resident_min: int = 5  # instances kept even when idle
    max_instances: int = 10  # hard cap of the pool
    price_per_hour: float = 0.504  # $ per instance-hour


@dataclass(frozen=True)
class SpotPool:
    """Cheap, reclaimable capacity obtained through spot requests that can fail or time out."""

    enabled: bool = True
    instance_type: str = "r5.2xlarge"
    max_instances: int = 20
    max_price: float = 0.5  # $ per hour; a market price above it fails the request
    request_timeout_s: float = 300.0  # an open request older than this is given up
    retry_attempts: int = 3  # failed requests per job before falling back
    fallback_to_on_demand: bool = True
    failure_threshold: int = 3  # consecutive failed requests that disable spot
    disable_cooldown_s: float = 180.0  # how long spot stays disabled before it is tried again
    interruption_notice_s: float = 120.0  # AWS gives 2 minutes between notice and reclaim


@dataclass(frozen=True)
class TaskClass:
    """How one class of work uses spot: its share (None = the job's strategy) and its retries."""

    spot_share: float | None = None
    max_attempts: int = 3  # runs of one job (reschedules after faults included)


@dataclass(frozen=True)
class Autoscaling:
    """When the on-demand pool grows and shrinks between resident_min and max_instances."""

    scale_up_utilisation: float = 0.8
    scale_down_utilisation: float = 0.3
    scale_up_cooldown_s: float = 300.0
    scale_down_cooldown_s: float = 600.0


@dataclass(frozen=True)
class Monitor:
    """Health checks of running jobs and hanging detection."""

    health_check_interval_s: float = 5.0  # heartbeat checks at most this often
    heartbeat_timeout_s: float = 120.0  # a heartbeat file older than this fails the check
    hanging_factor: float = 2.5  # HANGING past factor x the app's average duration
    hanging_min_samples: int = 3  # completed runs needed before the average is trusted
    hanging_min_s: float = 60.0  # never call a run hanging before this (start-up jitter)


@dataclass(frozen=True)
class SpotSimulation:
    """The local provider's simulated spot market."""

    available: bool = True
    price: float = 0.15  # market price $ per hour
    fulfil_delay_s: float = 0.0  # request to fulfilment
    interruption_rate_per_hour: float = 0.0  # random interruptions per running spot instance
    seed: int = 7


@dataclass(frozen=True)
class Simulation:
    """Capacity the local provider pretends to have; notice_s scales the 2-minute window down."""

    spot: SpotSimulation = field(default_factory=SpotSimulation)
    on_demand_available: bool = True
    notice_s: float | None = None  # None: spot.interruption_notice_s


# Jobs of jobs/ that run unchanged on a Spark Connect session: DataFrame API only, or no Spark at
# all (result_agg); every Spark job of the pipeline (docs/dcluster.md).
CONNECT_APPS = (
    "smoke",
    "connector",
    "organizer",
    "virtual_nodes",
    "campaign",
    "event_join",
    "result_agg",
    "rawlogconverter",
    "user_stats",
    "result_agg_lite",
)


@dataclass(frozen=True)
class ResidentSession:
    """A resident Spark Connect server in the on-demand pool that eligible jobs run on (no JVM start-up)."""

    enabled: bool = False
    url: str = "sc://127.0.0.1:15002"  # scripts/spark-connect.sh's default
    classes: tuple[str, ...] = ("critical", "normal")  # task classes allowed on it (on-demand runs only)
    apps: tuple[str, ...] = CONNECT_APPS  # jobs that run unchanged on Spark Connect
    probe_timeout_s: float = 0.5  # a server that does not accept a connection in time is down


@dataclass(frozen=True)
class ClusterConfig:
    """Everything the resource manager and the monitor decide by."""

    on_demand: OnDemandPool = field(default_factory=OnDemandPool)
    spot: SpotPool = field(default_factory=SpotPool)
    strategies: dict[str, float] = field(
        default_factory=lambda: {"cost_optimized": 0.7, "balanced": 0.5, "performance_optimized": 0.3}
    )
    task_classes: dict[str, TaskClass] = field(
        default_factory=lambda: {
            "critical": TaskClass(spot_share=0.0, max_attempts=3),
            "normal": TaskClass(spot_share=None, max_attempts=3),
            "batch": TaskClass(spot_share=1.0, max_attempts=5),
            "dev": TaskClass(spot_share=1.0, max_attempts=5),
        }
    )
    dev_envs: tuple[str, ...] = ("dev", "test")  # non-critical jobs of these envs are class dev
    autoscaling: Autoscaling = field(default_factory=Autoscaling)
    monitor: Monitor = field(default_factory=Monitor)
    simulation: Simulation = field(default_factory=Simulation)
    resident_session: ResidentSession = field(default_factory=ResidentSession)
    # Where the aws provider launches EC2 instances; checked by that provider when it starts
    # (dcluster.providers.aws.capacity_settings), unused by the others.
    aws: dict[str, Any] = field(default_factory=dict)

    @property
    def notice_s(self) -> float:
        """Seconds between a spot interruption notice and the reclaim."""
        sim = self.simulation.notice_s
        return self.spot.interruption_notice_s if sim is None else sim

    def checked(self) -> ClusterConfig:
        """Self, after checking the values that would make the policy meaningless."""
        problems: list[str] = []
        if not 0 <= self.on_demand.resident_min <= self.on_demand.max_instances:
            problems.append("on_demand.resident_min must be between 0 and on_demand.max_instances")
        if self.spot.max_instances < 0 or self.spot.retry_attempts < 1 or self.spot.failure_threshold < 1:
            problems.append("spot.max_instances >= 0, spot.retry_attempts >= 1, spot.failure_threshold >= 1")
        for name, share in self.strategies.items():
            if not 0 <= share <= 1:
                problems.append(f"strategies.{name} must be a share between 0 and 1")
        for name in ("cost_optimized", "balanced", "performance_optimized"):
            if name not in self.strategies:
                problems.append(f"strategies.{name} is missing")
        for name in ("critical", "normal", "batch", "dev"):
            if name not in self.task_classes:
                problems.append(f"task_classes.{name} is missing")
        for name, tc in self.task_classes.items():
            if tc.spot_share is not None and not 0 <= tc.spot_share <= 1:
                problems.append(f"task_classes.{name}.spot_share must be between 0 and 1 or null")
            if tc.max_attempts < 1:
                problems.append(f"task_classes.{name}.max_attempts must be at least 1")
        rs = self.resident_session
        if not rs.url.startswith("sc://"):
            problems.append("resident_session.url must be an sc://host:port address")
        for name in rs.classes:
            if name not in self.task_classes:
                problems.append(f"resident_session.classes: unknown task class {name}")
        if self.monitor.hanging_factor <= 1:
            problems.append("monitor.hanging_factor must be above 1")
        if problems:
            raise ConfigError("; ".join(problems))
        return self

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ClusterConfig:
        """A config from the YAML document's resource keys (unknown keys are errors)."""
        data = dict(data)
        classes = data.pop("task_classes", None)
        aws = data.pop("aws", None) or {}
        if not isinstance(aws, Mapping):
            raise ConfigError("aws must be a mapping of EC2 settings")
        base = cls()
        config = _build(cls, data, "", base)
        if classes is not None:
            if not isinstance(classes, Mapping):
                raise ConfigError("task_classes must be a mapping of class name to settings")
            merged = dict(base.task_classes)
            for name, values in classes.items():
                merged[str(name)] = _build(
                    TaskClass, values or {}, f"task_classes.{name}.", merged.get(str(name), TaskClass())
                )
            config = replace(config, task_classes=merged)
        if aws:
            config = replace(config, aws={str(k): v for k, v in aws.items()})
        return config.checked()


def _build(cls: type[T], data: Any, prefix: str, base: T) -> T:
    """A copy of base (a dataclass) with data's keys converted to the fields' types."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in known:
            raise ConfigError(f"unknown config key {prefix}{key}; known: {', '.join(sorted(known))}")
        current = getattr(base, key)
        if is_dataclass(current):
            values[key] = _build(type(current), raw or {}, f"{prefix}{key}.", current)
        else:
            values[key] = _value(f"{prefix}{key}", raw, hints[key], current)
    return replace(base, **values)  # type: ignore[type-var]


def _value(name: str, raw: Any, hint: Any, current: Any) -> Any:
    """One scalar, list or map value checked against the field's default."""
    text = str(hint)
    if raw is None:
        if "None" in text:
            return None
        raise ConfigError(f"{name} must not be empty")
    if isinstance(current, dict):
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{name} must be a mapping")
        # A strategy is written either as its share or as {spot_share: x}.
        return {str(k): float(v["spot_share"] if isinstance(v, Mapping) else v) for k, v in raw.items()}
    if isinstance(current, tuple):
        if not isinstance(raw, list | tuple):
            raise ConfigError(f"{name} must be a list")
        return tuple(str(v) for v in raw)
    if isinstance(current, bool):
        if not isinstance(raw, bool):
            raise ConfigError(f"{name} must be true or false")
        return raw
    try:
        if isinstance(current, int) and not isinstance(raw, bool):
            return int(raw)
        if isinstance(current, float) or "float" in text:
            return float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    return str(raw)
