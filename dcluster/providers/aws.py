"""The aws provider: each run gets its own EC2 instances (spot or on-demand), released when the run ends.

The job's process is started by the local provider's launcher on the DCluster host (its exit
code, heartbeat, notice and checkpoint files work as there). With spark-submit as the launcher
and `DCLUSTER_SPARK_MASTER` set to a Spark master, the instances join that cluster as workers
through the boot script in `aws.user_data`, so the driver runs here and the executors on the
instances bought for the run (docs/dcluster.md, "AWS provider").
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from dcluster.aws import (
    ON_DEMAND,
    SPOT,
    AwsCapacity,
    AwsCapacityError,
    AwsCapacitySettings,
    InterruptionWatcher,
    MetadataError,
)
from dcluster.config import ClusterConfig, ConfigError
from dcluster.models import Job, JobSpec
from dcluster.providers.base import CapacityUnavailable, ProcessLost, UnsupportedJob
from dcluster.providers.local import AdoptedHandle, LocalHandle, LocalProvider
from dcluster.settings import DClusterSettings

log = logging.getLogger("dcluster.providers.aws")

# Taken from the pools so that one value drives both the scheduler's decision and the EC2 call.
FROM_POOLS = {
    "instance_type": "spot.instance_type and on_demand.instance_type",
    "max_spot_price": "spot.max_price",
    "spot_request_timeout_s": "spot.request_timeout_s",
    "spot_poll_interval_s": "nothing (spot instances are launched with run_instances, which answers at once)",
}


@dataclass(frozen=True)
class AwsProviderSettings:
    """The `aws:` section of the DCluster config: where instances launch, and how the provider polls."""

    capacity: AwsCapacitySettings  # region, endpoint_url, ami_id, subnet_id, security groups, key, tags, …
    on_demand_instance_type: str  # on_demand.instance_type (capacity.instance_type is spot.instance_type)
    instances_per_job: int = 1  # instances launched for each run (all or none)
    price_cache_s: float = 60.0  # how long a spot price from describe_spot_price_history is reused
    notice_poll_interval_s: float = 5.0  # how often a spot run's instance-action notice is read (AWS: 5 s)
    capacity_retry_s: float = 60.0  # after EC2 had no on-demand capacity, no launch is tried for this long


PROVIDER_KEYS = {f.name for f in fields(AwsProviderSettings)} - {"capacity", "on_demand_instance_type"}
CAPACITY_KEYS = {f.name for f in fields(AwsCapacitySettings)} - set(FROM_POOLS)


def provider_settings(section: Mapping[str, Any], cluster: ClusterConfig) -> AwsProviderSettings:
    """The aws provider's settings from the config's `aws:` section and the pools; ConfigError names the key."""
    where = "the `aws:` section of the DCluster config (DCLUSTER_CONFIG)"
    for key in section:
        if key in FROM_POOLS:
            raise ConfigError(f"aws.{key} is not set under aws: it comes from {FROM_POOLS[key]}")
        if key not in CAPACITY_KEYS | PROVIDER_KEYS:
            raise ConfigError(f"unknown config key aws.{key}; known: {', '.join(sorted(CAPACITY_KEYS | PROVIDER_KEYS))}")
    if not str(section.get("ami_id") or "").strip():
        raise ConfigError(f"provider aws needs aws.ami_id (the image every instance boots) in {where}")
    values: dict[str, Any] = {}
    for key, raw in section.items():
        if key in ("security_group_ids", "alternative_instance_types", "alternative_subnet_ids"):
            if not isinstance(raw, list | tuple) or not all(isinstance(v, str) for v in raw):
                raise ConfigError(f"aws.{key} must be a list of {'instance types' if 'type' in key else 'ids'}")
            values[key] = tuple(raw)
        elif key == "tags":
            if not isinstance(raw, Mapping):
                raise ConfigError("aws.tags must be a mapping of tag name to value")
            values[key] = {str(k): str(v) for k, v in raw.items()}
        elif key in ("endpoint_url", "subnet_id", "key_name"):
            values[key] = None if raw in (None, "") else str(raw)
        elif key in PROVIDER_KEYS:
            try:
                values[key] = int(raw) if key == "instances_per_job" else float(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"aws.{key}={raw!r} is not a number") from None
        else:
            values[key] = str(raw)
    try:
        capacity = AwsCapacitySettings(
            instance_type=cluster.spot.instance_type, max_spot_price=cluster.spot.max_price,
            spot_request_timeout_s=cluster.spot.request_timeout_s,
            **{k: v for k, v in values.items() if k in CAPACITY_KEYS})
    except ValueError as exc:
        raise ConfigError(f"{exc} (from aws: and spot: of the DCluster config)") from None
    out = AwsProviderSettings(capacity=capacity, on_demand_instance_type=cluster.on_demand.instance_type,
                              **{k: v for k, v in values.items() if k in PROVIDER_KEYS})
    if out.instances_per_job < 1:
        raise ConfigError("aws.instances_per_job must be at least 1")
    if min(out.price_cache_s, out.notice_poll_interval_s, out.capacity_retry_s) < 0:
        raise ConfigError("aws.price_cache_s, notice_poll_interval_s and capacity_retry_s must not be negative")
    return out


class Ec2Market:
    """The Market of the aws provider: spot prices from EC2, on-demand held back after EC2 had none."""

    simulated = False

    def __init__(self, capacity: AwsCapacity, *, price_cache_s: float = 60.0, capacity_retry_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.price_cache_s = price_cache_s
        self.capacity_retry_s = capacity_retry_s
        self.clock = clock
        self._quote: tuple[float, tuple[bool, float, str]] | None = None
        self._on_demand_failed: tuple[float, str] | None = None
        self._lock = threading.Lock()

    def spot_quote(self) -> tuple[bool, float, str]:
        """(available, the lowest current spot price, reason when not); the resource manager compares it to max_price."""
        now = self.clock()
        with self._lock:
            if self._quote is not None and now - self._quote[0] < self.price_cache_s:
                return self._quote[1]
        try:
            price = self.capacity.current_spot_price()
        except AwsCapacityError as exc:
            # Not cached: the next request asks again.
            return False, 0.0, f"spot price unknown: {exc}"
        if price is None:
            quote = (False, 0.0, f"EC2 quotes no {self.capacity.settings.product_description} spot price for "
                                 f"{self.capacity.settings.instance_type} in {self.capacity.settings.region}")
        else:
            quote = (True, price, "")
        with self._lock:
            self._quote = (now, quote)
        return quote

    def fulfil_delay_s(self) -> float:
        """0: a spot launch is one run_instances call that EC2 answers at once."""
        return 0.0

    def on_demand_available(self) -> bool:
        """False for capacity_retry_s after EC2 refused on-demand capacity; True otherwise (EC2 says so only at launch)."""
        with self._lock:
            failed = self._on_demand_failed
        return failed is None or self.clock() - failed[0] >= self.capacity_retry_s

    def on_demand_refused(self, reason: str) -> None:
        """Remember that EC2 had no on-demand capacity just now."""
        with self._lock:
            self._on_demand_failed = (self.clock(), reason)

    def last_on_demand_refusal(self) -> str | None:
        """Why on-demand is held back, while it is."""
        with self._lock:
            failed = self._on_demand_failed
        return failed[1] if failed is not None and not self.on_demand_available() else None

    def interrupted(self, seconds: float) -> bool:
        """False: EC2 reclaims are read per instance from its instance-action notice (AwsProvider.interruption_notice)."""
        return False


@dataclass
class AwsHandle:
    """A run: its local process and the EC2 instances bought for it."""

    job_id: str
    namespace: str
    capacity_type: str
    instance_ids: tuple[str, ...]
    local: LocalHandle | AdoptedHandle
    watcher: InterruptionWatcher | None = None
    last_notice_poll: float = field(default=float("-inf"))

    @property
    def pid(self) -> int:
        """The launcher's pid (also its process group)."""
        return self.local.pid


class AwsProvider(LocalProvider):
    """Buys EC2 capacity for each run (spot or on-demand, tagged with the job's namespace) and runs the launcher here."""

    name = "aws"

    def __init__(self, settings: DClusterSettings, ec2_client: Any | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(settings)
        self.aws = provider_settings(settings.cluster.aws, settings.cluster)
        self.ec2_client = ec2_client  # None: a boto3 client on first use (region and endpoint_url from aws:)
        self.clock = clock
        self.spot_capacity = AwsCapacity(self.aws.capacity, ec2_client=_SharedClient(self))
        self.on_demand_capacity = AwsCapacity(
            replace(self.aws.capacity, instance_type=self.aws.on_demand_instance_type),
            ec2_client=_SharedClient(self))
        self.market = Ec2Market(self.spot_capacity, price_cache_s=self.aws.price_cache_s,
                                capacity_retry_s=self.aws.capacity_retry_s, clock=clock)
        self._instance_ids: dict[str, tuple[str, ...]] = {}  # job id -> instances of its current run
        self._unreleased: dict[str, tuple[str, ...]] = {}  # namespace -> instances a failed release left
        self._last_error: str | None = None

    def ec2(self) -> Any:
        """The boto3 EC2 client every call uses."""
        if self.ec2_client is None:
            import boto3
            from botocore.config import Config

            c = self.aws.capacity
            self.ec2_client = boto3.client("ec2", region_name=c.region, endpoint_url=c.endpoint_url,
                                           config=Config(retries={"mode": "standard", "max_attempts": 3}))
        return self.ec2_client

    def check(self, spec: JobSpec) -> None:
        """Spark jobs only, as with the local launcher."""
        if spec.engine != "spark":
            raise UnsupportedJob(f"{spec.engine.capitalize()} is not supported by the aws provider yet")

    # --- a run --------------------------------------------------------------------------

    def start(self, job: Job) -> AwsHandle:
        """Launch the run's instances on job.capacity_type, then the job's process; CapacityUnavailable if EC2 refuses."""
        self._retry_releases()
        ids = self._acquire(job)
        self._instance_ids[job.job_id] = ids
        try:
            local = super().start(job)
        except OSError:
            self._release(job.job_id, job.namespace, ids)
            raise
        watcher = InterruptionWatcher(self._metadata_url(ids)) if job.capacity_type == SPOT else None
        return AwsHandle(job_id=job.job_id, namespace=job.namespace, capacity_type=job.capacity_type,
                         instance_ids=ids, local=local, watcher=watcher)

    def _acquire(self, job: Job) -> tuple[str, ...]:
        who = {"client": job.client, "job_id": job.job_id, "env": job.env}
        count = self.aws.instances_per_job
        if job.capacity_type == SPOT:
            try:
                ids = self.spot_capacity.request_spot(count, **who)
            except AwsCapacityError as exc:
                raise CapacityUnavailable(f"EC2 spot launch refused: {exc}") from exc
        else:
            if not self.market.on_demand_available():
                raise CapacityUnavailable(f"EC2 on-demand held back for capacity_retry_s="
                                          f"{self.aws.capacity_retry_s:g} after: {self.market.last_on_demand_refusal()}")
            try:
                ids = self.on_demand_capacity.run_on_demand(count, **who)
            except AwsCapacityError as exc:
                if exc.capacity:
                    self.market.on_demand_refused(str(exc))
                raise CapacityUnavailable(f"EC2 on-demand launch refused: {exc}") from exc
        log.info("job %s: %s instances %s launched in %s", job.job_id, job.capacity_type, ", ".join(ids),
                 job.namespace)
        return tuple(ids)

    def command(self, job: Job) -> list[str]:
        """The local provider's argv; with spark-submit, the executors on the instances are told which Python and code."""
        argv = super().command(job)
        if not self.spark_mode:
            return argv
        # Executors are started by the workers on the instances and do not inherit the job's
        # environment: the AMI must hold this interpreter and the checkout at the same paths.
        conf = ["--conf", f"spark.pyspark.python={self.settings.python}",
                "--conf", f"spark.executorEnv.PYTHONPATH={self.settings.project_root.resolve()}"]
        return [argv[0], *conf, *argv[1:]]

    def environment(self, job: Job) -> dict[str, str]:
        """The local provider's job environment plus the run's EC2 instances and region."""
        env = super().environment(job)
        env["DCLUSTER_INSTANCE_IDS"] = ",".join(self._instance_ids.get(job.job_id, ()))
        env["DCLUSTER_AWS_REGION"] = self.aws.capacity.region
        return env

    def poll(self, handle: AwsHandle) -> int | None:  # type: ignore[override]
        """The launcher's exit code once it ended (its instances then released); ProcessLost as the local provider."""
        try:
            code = super().poll(handle.local)
        except ProcessLost:
            self._release(handle.job_id, handle.namespace, handle.instance_ids)
            raise
        if code is not None:
            self._release(handle.job_id, handle.namespace, handle.instance_ids)
        return code

    def terminate(self, handle: AwsHandle, grace_s: float) -> int | None:  # type: ignore[override]
        """Stop the process as the local provider does, then release the run's instances."""
        try:
            return super().terminate(handle.local, grace_s)
        finally:
            self._release(handle.job_id, handle.namespace, handle.instance_ids)

    def process_info(self, handle: AwsHandle) -> dict[str, Any]:  # type: ignore[override]
        """Pid and start time, plus the run's instances (recorded in the run, read back by adopt)."""
        return {**super().process_info(handle.local), "ec2_instance_ids": list(handle.instance_ids),
                "namespace": handle.namespace}

    def adopt(self, job_id: str, info: dict[str, Any]) -> AwsHandle | None:
        """The run of an earlier service instance if its process lives; else its instances are released."""
        ids = tuple(str(i) for i in info.get("ec2_instance_ids") or ())
        namespace = str(info.get("namespace") or "")
        local = super().adopt(job_id, info)
        if local is None:
            if namespace:
                self._release(job_id, namespace, ids)
            return None
        self._instance_ids[job_id] = ids
        capacity = str(info.get("capacity_type") or ON_DEMAND)
        watcher = InterruptionWatcher(self._metadata_url(ids)) if capacity == SPOT else None
        return AwsHandle(job_id=job_id, namespace=namespace, capacity_type=capacity, instance_ids=ids,
                         local=local, watcher=watcher)

    # --- notices ------------------------------------------------------------------------

    def interruption_notice(self, handle: AwsHandle) -> dict[str, str] | None:
        """The instance-action notice of a spot run's instance (read at most every notice_poll_interval_s)."""
        if handle.watcher is None:
            return None
        now = self.clock()
        if now - handle.last_notice_poll < self.aws.notice_poll_interval_s:
            return None
        handle.last_notice_poll = now
        try:
            return handle.watcher.poll()
        except MetadataError as exc:
            # Logged and shown in /cluster/health, never taken for "no notice" silently.
            self._last_error = f"job {handle.job_id}: {exc}"
            log.warning("job %s: cannot read its instance-action notice: %s", handle.job_id, exc)
            return None

    def _metadata_url(self, ids: tuple[str, ...]) -> str:
        # "{instance_id}" lets a per-instance relay of the metadata service serve each run's notice.
        return self.aws.capacity.metadata_url.replace("{instance_id}", ids[0] if ids else "")

    # --- release ------------------------------------------------------------------------

    def _release(self, job_id: str, namespace: str, ids: tuple[str, ...]) -> None:
        """Terminate the run's instances and whatever else lives in its namespace; kept for a retry on failure."""
        self._instance_ids.pop(job_id, None)
        try:
            released = self.spot_capacity.release(namespace, ids)
        except AwsCapacityError as exc:
            self._unreleased[namespace] = ids
            self._last_error = f"release of {namespace} failed: {exc}"
            log.error("job %s: instances %s not released (retried at the next start): %s", job_id, ids, exc)
            return
        self._unreleased.pop(namespace, None)
        log.info("job %s: released %s", job_id, ", ".join(released) or "nothing")

    def _retry_releases(self) -> None:
        for namespace, ids in list(self._unreleased.items()):
            self._release("", namespace, ids)

    def health(self) -> dict[str, Any]:
        """Where instances launch, what runs hold, what is left to release and the last EC2 or metadata error."""
        c = self.aws.capacity
        return {"region": c.region, "endpoint_url": c.endpoint_url, "spot_instance_type": c.instance_type,
                "on_demand_instance_type": self.aws.on_demand_instance_type,
                "instances": {job: list(ids) for job, ids in self._instance_ids.items()},
                "unreleased": {ns: list(ids) for ns, ids in self._unreleased.items()},
                "on_demand_held_back": self.market.last_on_demand_refusal(), "last_error": self._last_error}


class _SharedClient:
    """Passes every EC2 call to the provider's one client (created on first use, swappable)."""

    def __init__(self, provider: AwsProvider) -> None:
        self._provider = provider

    def __getattr__(self, name: str) -> Any:
        return getattr(self._provider.ec2(), name)
