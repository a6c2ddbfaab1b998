"""EC2 capacity, and the aws provider: each run gets its own EC2 instances (spot or on-demand), released when it ends.

`Ec2Capacity` is the capacity source (providers/capacity.py) over the one EC2 client
(dcluster/ec2.py). `AwsProvider` pairs it with the local launchers: the job's process is
started on the DCluster host (its exit code, heartbeat, notice and checkpoint files work as
there). With spark-submit as the launcher
and `DCLUSTER_SPARK_MASTER` set to a Spark master, the instances join that cluster as workers
through the boot script in `aws.user_data`, so the driver runs here and the executors on the
instances bought for the run (docs/dcluster.md, "AWS provider").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from dcluster.config import ClusterConfig, ConfigError
from dcluster.ec2 import (
    ON_DEMAND,
    SPOT,
    AwsCapacityError,
    Ec2Client,
    Ec2Settings,
    InterruptionWatcher,
    MetadataError,
)
from dcluster.errors import CapacityUnavailable
from dcluster.models import Job
from dcluster.providers.capacity import CapacitySource, Lease
from dcluster.providers.launchers import ResidentSession
from dcluster.providers.local import local_launchers
from dcluster.providers.process import ProcessProvider
from dcluster.settings import DClusterSettings
from dcluster_client import contract

log = logging.getLogger("dcluster.providers.aws")

# Taken from the pools so that one value drives both the scheduler's decision and the EC2 call.
FROM_POOLS = {
    "instance_type": "spot.instance_type and on_demand.instance_type",
    "on_demand_instance_type": "on_demand.instance_type",
    "max_spot_price": "spot.max_price",
    "spot_request_timeout_s": "spot.request_timeout_s",
    "spot_poll_interval_s": "nothing (spot instances are launched with run_instances, which answers at once)",
}


@dataclass(frozen=True)
class AwsProviderSettings:
    """The `aws:` section of the DCluster config: where instances launch, and how the provider polls."""

    capacity: (
        Ec2Settings  # region, endpoint_url, ami_id, subnet_id, security groups, key, tags, instance types
    )
    instances_per_job: int = 1  # instances launched for each run (all or none)
    price_cache_s: float = 60.0  # how long a spot price from describe_spot_price_history is reused
    notice_poll_interval_s: float = 5.0  # how often a spot run's instance-action notice is read (AWS: 5 s)
    capacity_retry_s: float = 60.0  # after EC2 had no on-demand capacity, no launch is tried for this long


PROVIDER_KEYS = {f.name for f in fields(AwsProviderSettings)} - {"capacity"}
CAPACITY_KEYS = {f.name for f in fields(Ec2Settings)} - set(FROM_POOLS) - {"on_demand_instance_type"}


def provider_settings(section: Mapping[str, Any], cluster: ClusterConfig) -> AwsProviderSettings:
    """The aws provider's settings from the config's `aws:` section and the pools; ConfigError names the key."""
    where = "the `aws:` section of the DCluster config (DCLUSTER_CONFIG)"
    for key in section:
        if key in FROM_POOLS:
            raise ConfigError(f"aws.{key} is not set under aws: it comes from {FROM_POOLS[key]}")
        if key not in CAPACITY_KEYS | PROVIDER_KEYS:
            raise ConfigError(
                f"unknown config key aws.{key}; known: {', '.join(sorted(CAPACITY_KEYS | PROVIDER_KEYS))}"
            )
    if not str(section.get("ami_id") or "").strip():
        raise ConfigError(f"provider aws needs aws.ami_id (the image every instance boots) in {where}")
    values: dict[str, Any] = {}
    for key, raw in section.items():
        if key in ("security_group_ids", "alternative_instance_types", "alternative_subnet_ids"):
            if not isinstance(raw, list | tuple) or not all(isinstance(v, str) for v in raw):
                raise ConfigError(
                    f"aws.{key} must be a list of {'instance types' if 'type' in key else 'ids'}"
                )
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
        capacity = Ec2Settings(
            instance_type=cluster.spot.instance_type,
            on_demand_instance_type=cluster.on_demand.instance_type,
            max_spot_price=cluster.spot.max_price,
            **{k: v for k, v in values.items() if k in CAPACITY_KEYS},
        )
    except ValueError as exc:
        raise ConfigError(f"{exc} (from aws: and spot: of the DCluster config)") from None
    out = AwsProviderSettings(capacity=capacity, **{k: v for k, v in values.items() if k in PROVIDER_KEYS})
    if out.instances_per_job < 1:
        raise ConfigError("aws.instances_per_job must be at least 1")
    if min(out.price_cache_s, out.notice_poll_interval_s, out.capacity_retry_s) < 0:
        raise ConfigError(
            "aws.price_cache_s, notice_poll_interval_s and capacity_retry_s must not be negative"
        )
    return out


class Ec2Market:
    """The Market of the aws provider: spot prices from EC2, on-demand held back after EC2 had none."""

    simulated = False

    def __init__(
        self,
        capacity: Ec2Client,
        *,
        price_cache_s: float = 60.0,
        capacity_retry_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ec2 = capacity
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
            price = self.ec2.current_spot_price()
        except AwsCapacityError as exc:
            # Not cached: the next request asks again.
            return False, 0.0, f"spot price unknown: {exc}"
        if price is None:
            quote = (
                False,
                0.0,
                f"EC2 quotes no {self.ec2.settings.product_description} spot price for "
                f"{self.ec2.settings.instance_type} in {self.ec2.settings.region}",
            )
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


class Ec2Capacity(CapacitySource):
    """EC2 as a capacity source: instances bought per run, tagged with the job's namespace, released after it."""

    remote_executors = True  # spark-submit's executors run on the instances (through aws.user_data)

    def __init__(
        self,
        aws: AwsProviderSettings,
        ec2_client: Any | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.aws = aws
        self.clock = clock
        # The one EC2 client of every call (boto3 on first use, region and endpoint_url from aws:).
        self.ec2 = Ec2Client(aws.capacity, ec2_client=ec2_client)
        self.market = Ec2Market(
            self.ec2, price_cache_s=aws.price_cache_s, capacity_retry_s=aws.capacity_retry_s, clock=clock
        )
        self._instance_ids: dict[str, tuple[str, ...]] = {}  # job id -> instances of its current run
        self._unreleased: dict[str, tuple[str, ...]] = {}  # namespace -> instances a failed release left
        self._last_error: str | None = None

    def acquire(self, job: Job) -> Lease:
        """Launch the run's instances on job.capacity_type; CapacityUnavailable if EC2 refuses."""
        self._retry_releases()
        ids = self._launch(job)
        self._instance_ids[job.job_id] = ids
        return self._lease(job.job_id, job.namespace, job.capacity_type, ids)

    def _lease(self, job_id: str, namespace: str, capacity_type: str, ids: tuple[str, ...]) -> Lease:
        watcher = InterruptionWatcher(self._metadata_url(ids)) if capacity_type == SPOT else None
        return Lease(job_id, namespace, capacity_type, ids, watcher)

    def _launch(self, job: Job) -> tuple[str, ...]:
        who = {"client": job.client, "job_id": job.job_id, "env": job.env}
        count = self.aws.instances_per_job
        if job.capacity_type == SPOT:
            try:
                ids = self.ec2.request_spot(count, **who)
            except AwsCapacityError as exc:
                raise CapacityUnavailable(f"EC2 spot launch refused: {exc}") from exc
        else:
            if not self.market.on_demand_available():
                raise CapacityUnavailable(
                    f"EC2 on-demand held back for capacity_retry_s="
                    f"{self.aws.capacity_retry_s:g} after: {self.market.last_on_demand_refusal()}"
                )
            try:
                ids = self.ec2.run_on_demand(count, **who)
            except AwsCapacityError as exc:
                if exc.capacity:
                    self.market.on_demand_refused(str(exc))
                raise CapacityUnavailable(f"EC2 on-demand launch refused: {exc}") from exc
        log.info(
            "job %s: %s instances %s launched in %s",
            job.job_id,
            job.capacity_type,
            ", ".join(ids),
            job.namespace,
        )
        return tuple(ids)

    def environment(self, job: Job) -> dict[str, str]:
        """The run's EC2 instances and their region."""
        return {
            contract.INSTANCE_IDS_ENV: ",".join(self._instance_ids.get(job.job_id, ())),
            contract.AWS_REGION_ENV: self.aws.capacity.region,
        }

    def record(self, lease: Lease) -> dict[str, Any]:
        """The run's instances and namespace (read back by readopt)."""
        return {"ec2_instance_ids": list(lease.instance_ids), "namespace": lease.namespace}

    def readopt(self, job_id: str, info: dict[str, Any]) -> Lease:
        """The lease of a run whose process outlived a service restart."""
        ids = tuple(str(i) for i in info.get("ec2_instance_ids") or ())
        self._instance_ids[job_id] = ids
        return self._lease(
            job_id, str(info.get("namespace") or ""), str(info.get("capacity_type") or ON_DEMAND), ids
        )

    def abandon(self, job_id: str, info: dict[str, Any]) -> None:
        """The recorded run's process is gone: release its namespace."""
        namespace = str(info.get("namespace") or "")
        if namespace:
            self._release(job_id, namespace, tuple(str(i) for i in info.get("ec2_instance_ids") or ()))

    def release(self, lease: Lease) -> None:
        """Release the run's namespace."""
        self._release(lease.job_id, lease.namespace, lease.instance_ids)

    # --- notices ------------------------------------------------------------------------

    def notice(self, lease: Lease) -> dict[str, str] | None:
        """The instance-action notice of a spot run's instance (read at most every notice_poll_interval_s)."""
        if lease.watcher is None:
            return None
        now = self.clock()
        if now - lease.last_notice_poll < self.aws.notice_poll_interval_s:
            return None
        lease.last_notice_poll = now
        try:
            return lease.watcher.poll()
        except MetadataError as exc:
            # Logged and shown in /cluster/health, never taken for "no notice" silently.
            self._last_error = f"job {lease.job_id}: {exc}"
            log.warning("job %s: cannot read its instance-action notice: %s", lease.job_id, exc)
            return None

    def _metadata_url(self, ids: tuple[str, ...]) -> str:
        # "{instance_id}" lets a per-instance relay of the metadata service serve each run's notice.
        return self.aws.capacity.metadata_url.replace("{instance_id}", ids[0] if ids else "")

    # --- release ------------------------------------------------------------------------

    def _release(self, job_id: str, namespace: str, ids: tuple[str, ...]) -> None:
        """Terminate the run's instances and whatever else lives in its namespace; kept for a retry on failure."""
        self._instance_ids.pop(job_id, None)
        try:
            released = self.ec2.release(namespace, ids)
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
        return {
            "region": c.region,
            "endpoint_url": c.endpoint_url,
            "spot_instance_type": c.instance_type,
            "on_demand_instance_type": c.on_demand_instance_type,
            "instances": {job: list(ids) for job, ids in self._instance_ids.items()},
            "unreleased": {ns: list(ids) for ns, ids in self._unreleased.items()},
            "on_demand_held_back": self.market.last_on_demand_refusal(),
            "last_error": self._last_error,
        }


class AwsProvider(ProcessProvider):
    """The local launchers on EC2 capacity: each run's instances bought for it, the job's process run here."""

    def __init__(
        self,
        settings: DClusterSettings,
        ec2_client: Any | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.aws = provider_settings(settings.cluster.aws, settings.cluster)
        self.capacity: Ec2Capacity = Ec2Capacity(self.aws, ec2_client=ec2_client, clock=clock)
        super().__init__(
            settings,
            local_launchers(settings, self.capacity),
            self.capacity,
            name="aws",
            engines=("spark",),  # Flink jobs are refused at submit
            resident=ResidentSession(settings),
        )
        self.ec2 = self.capacity.ec2
