"""The one EC2 client of DCluster (boto3): launches, spot prices, release by namespace, IMDSv2 notices.

Plain code with an injectable boto3 EC2 client, so the aws provider's capacity source calls it
and tests point it at a moto server. Every EC2 call goes through `Ec2Client._call`, which turns
a botocore failure into an `AwsCapacityError` that names the call, the region and what to check.
boto3, botocore and requests are imported on first use; nothing is read at import time.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SPOT, ON_DEMAND = "spot", "on_demand"  # the capacity types of dcluster.policy
MANAGED_BY = "dcluster"
INTERRUPTION_ACTIONS = ("terminate", "stop", "hibernate")
# Error codes that mean "AWS cannot give this capacity now", not a mistake in the settings: the
# caller falls back, and the resource manager counts them toward disabling spot for a while.
CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "MaxSpotInstanceCountExceeded",
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "SpotMaxPriceTooLow",
        "Unsupported",
        "capacity-not-available",
        "capacity-oversubscribed",
        "price-too-low",
        "not-scheduled-yet",
        "schedule-expired",
        "launch-group-constraint",
        "az-group-constraint",
        "constraint-not-fulfillable",
    }
)
_CREDENTIALS = (
    "check the AWS credentials (environment, profile or instance role) and that the "
    "dcluster service account may manage EC2 instances"
)
# (error code prefix, what to check); the first matching prefix wins.
_HINTS: tuple[tuple[str, str], ...] = (
    (
        "InsufficientInstanceCapacity",
        "AWS has no {instance_type} capacity there right now; "
        "try another zone or instance type, or on-demand",
    ),
    ("InsufficientCapacity", "AWS has no {instance_type} capacity there right now"),
    (
        "MaxSpotInstanceCountExceeded",
        "the account's spot instance limit is reached; check the EC2 spot "
        "quotas in Service Quotas and instances left running",
    ),
    ("InstanceLimitExceeded", "the account's instance limit is reached; check the EC2 quotas"),
    ("VcpuLimitExceeded", "the account's vCPU limit is reached; check the EC2 vCPU quotas"),
    ("SpotMaxPriceTooLow", "the spot price is above max_spot_price"),
    ("InvalidAMIID", "check ami_id: the image must exist in {region} and be usable by the account"),
    ("InvalidSubnetID", "check subnet_id: the subnet must exist in {region}"),
    ("InvalidGroup", "check security_group_ids: the groups must exist in the subnet's VPC"),
    ("InvalidKeyPair", "check key_name: the key pair must exist in {region}"),
    ("InvalidSpotInstanceRequestID", "the spot request id is unknown in {region}"),
    ("InvalidInstanceID", "the instance id is unknown in {region}"),
    ("AuthFailure", _CREDENTIALS),
    ("UnauthorizedOperation", _CREDENTIALS),
    ("InvalidClientTokenId", _CREDENTIALS),
    ("SignatureDoesNotMatch", _CREDENTIALS),
    ("ExpiredToken", _CREDENTIALS),
    ("RequestExpired", "check the host clock and the credentials' expiry"),
    ("RequestLimitExceeded", "EC2 throttled the account's API calls; retry later with fewer calls"),
)


def namespace(env: str, client: str, job_id: str) -> str:
    """The job's namespace, s-{env}-{client}-{jobId} (SPEC §3)."""
    return f"s-{env}-{client}-{job_id}"


class AwsCapacityError(RuntimeError):
    """An EC2 call failed; the message says which call, where, and what to check."""

    def __init__(self, message: str, *, operation: str = "", code: str = "", capacity: bool = False) -> None:
        super().__init__(message)
        self.operation = operation
        self.code = code
        self.capacity = capacity  # True: AWS had no capacity or a limit was hit (fall back, count it)


class MetadataError(RuntimeError):
    """The instance metadata service could not be read or answered something unexpected."""


@dataclass(frozen=True)
class Ec2Settings:
    """Where and what DCluster launches on EC2."""

    region: str = "us-east-1"
    endpoint_url: str | None = None  # a VPC endpoint, or a moto server in tests; None: AWS's own
    instance_type: str = "r5.2xlarge"  # of spot launches
    on_demand_instance_type: str | None = None  # of on-demand launches; None: instance_type
    ami_id: str = ""  # image every instance boots; required before the first launch
    subnet_id: str | None = None  # None: the default VPC's subnet AWS picks
    # Tried in order when EC2 has no capacity for instance_type in subnet_id: every subnet (zone)
    # for a type, then the next type. "No capacity at all" (SPEC §3) means every option refused.
    alternative_instance_types: tuple[str, ...] = ()
    alternative_subnet_ids: tuple[str, ...] = ()  # other zones' subnets; needs subnet_id
    security_group_ids: tuple[str, ...] = ()
    key_name: str | None = None
    max_spot_price: float = 0.5  # $ per instance-hour; a market price above it goes on-demand
    product_description: str = "Linux/UNIX"  # the price series the AMI's platform pays
    tags: dict[str, str] = field(default_factory=dict)  # extra tags on everything launched (cost centre, …)
    metadata_url: str = "http://169.254.169.254"  # the instance metadata service (IMDSv2)
    user_data: str = ""  # boot script of every instance (e.g. start a Spark worker); "" = none

    def __post_init__(self) -> None:
        problems = []
        if self.max_spot_price <= 0:
            problems.append("max_spot_price must be above 0")
        if not self.metadata_url.startswith(("http://", "https://")):
            problems.append("metadata_url must be an http(s) url")
        if self.alternative_subnet_ids and not self.subnet_id:
            problems.append("alternative_subnet_ids need subnet_id (the subnet tried first)")
        if problems:
            raise ValueError("AWS capacity settings: " + "; ".join(problems))

    def launch_options(self, instance_type: str | None = None) -> list[tuple[str, str | None]]:
        """(instance type, subnet) pairs in the order launches try them; the first is the configured one."""
        types = dict.fromkeys((instance_type or self.instance_type, *self.alternative_instance_types))
        subnets = dict.fromkeys((self.subnet_id, *self.alternative_subnet_ids))
        return [(t, s) for t in types for s in subnets]


class Ec2Client:
    """Launches, finds and terminates the EC2 instances of DCluster's runs."""

    def __init__(self, settings: Ec2Settings, ec2_client: Any | None = None) -> None:
        self.settings = settings
        self.ec2_client = ec2_client  # None: a boto3 client on first use; swappable (tests wrap it)

    @property
    def ec2(self) -> Any:
        """The boto3 EC2 client, created on first use (so the object can be built before a fork)."""
        if self.ec2_client is None:
            import boto3
            from botocore.config import Config

            self.ec2_client = boto3.client(
                "ec2",
                region_name=self.settings.region,
                endpoint_url=self.settings.endpoint_url,
                config=Config(retries={"mode": "standard", "max_attempts": 3}),
            )
        return self.ec2_client

    @property
    def where(self) -> str:
        """The region (and endpoint) calls go to, for error messages."""
        s = self.settings
        return f"EC2 in {s.region}" + (f" at {s.endpoint_url}" if s.endpoint_url else "")

    # --- prices -----------------------------------------------------------------------------

    def spot_price_history(self, hours: float = 24, instance_type: str | None = None) -> list[dict[str, Any]]:
        """Spot price changes of the last `hours` (every page), newest first, prices as floats."""
        now = dt.datetime.now(dt.UTC)
        kwargs: dict[str, Any] = {
            "InstanceTypes": [instance_type or self.settings.instance_type],
            "ProductDescriptions": [self.settings.product_description],
            "StartTime": now - dt.timedelta(hours=hours),
            "EndTime": now,
        }
        out = [
            {
                "timestamp": _iso(e["Timestamp"]),
                "availability_zone": e.get("AvailabilityZone", ""),
                "instance_type": e.get("InstanceType", ""),
                "product_description": e.get("ProductDescription", ""),
                "price": float(e["SpotPrice"]),
            }
            for page in self._pages("describe_spot_price_history", "SpotPriceHistory", **kwargs)
            for e in page
        ]
        return sorted(out, key=lambda e: e["timestamp"], reverse=True)

    def current_spot_price(self, instance_type: str | None = None) -> float | None:
        """The lowest current spot price across zones ($/h), None when EC2 quotes none."""
        # AWS includes the price in effect at StartTime, so a one-hour window holds every zone's
        # current price. The cheapest zone is the one AWS can fill; a pricier subnet zone still
        # fails at launch, which falls back as well.
        latest: dict[str, dict[str, Any]] = {}
        for entry in self.spot_price_history(hours=1, instance_type=instance_type):
            latest.setdefault(entry["availability_zone"], entry)  # newest first: the first one wins
        return min((e["price"] for e in latest.values()), default=None)

    # --- launches ---------------------------------------------------------------------------

    def launch_tags(self, *, client: str, job_id: str, env: str, capacity_type: str) -> list[dict[str, str]]:
        """EC2 tags of a job's instances: the namespace and its parts over the configured extra tags."""
        ns = namespace(env, client, job_id)
        tags = {
            "Name": ns,
            **self.settings.tags,
            "namespace": ns,
            "client": client,
            "job_id": job_id,
            "env": env,
            "capacity_type": capacity_type,
            "managed_by": MANAGED_BY,
        }
        return [{"Key": k, "Value": v} for k, v in tags.items()]

    def request_spot(self, count: int, *, client: str, job_id: str, env: str) -> list[str]:
        """Launch `count` one-time spot instances with run_instances; all or none (ClientError → error)."""
        market = {
            "MarketType": "spot",
            "SpotOptions": {
                "MaxPrice": _price_text(self.settings.max_spot_price),
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            },
        }
        return self._launch(
            count,
            self.launch_tags(client=client, job_id=job_id, env=env, capacity_type=SPOT),
            self.settings.instance_type,
            market,
        )

    def run_on_demand(self, count: int, *, client: str, job_id: str, env: str) -> list[str]:
        """Launch `count` on-demand instances with the job's tags; all or none."""
        return self._launch(
            count,
            self.launch_tags(client=client, job_id=job_id, env=env, capacity_type=ON_DEMAND),
            self.settings.on_demand_instance_type or self.settings.instance_type,
        )

    def _launch(
        self, count: int, tags: list[dict[str, str]], first_type: str, market: dict[str, Any] | None = None
    ) -> list[str]:
        """Instances of the first launch option EC2 has capacity for; one error naming every refusal.

        Only a capacity refusal moves on to the next option: a wrong AMI, subnet or credential
        would fail the same way everywhere, so it is raised at once.
        """
        self._check_launch(count, "run_instances", "launches")
        options = self.settings.launch_options(first_type)
        refusals: list[tuple[str, str | None, AwsCapacityError]] = []
        for instance_type, subnet_id in options:
            kwargs = self._run_kwargs(count, tags, instance_type, subnet_id)
            if market is not None:
                kwargs["InstanceMarketOptions"] = market
            try:
                return [i["InstanceId"] for i in self._call("run_instances", **kwargs)["Instances"]]
            except AwsCapacityError as exc:
                if not exc.capacity or len(options) == 1:
                    raise
                refusals.append((instance_type, subnet_id, exc))
        tried = "; ".join(f"{t}{f' in {s}' if s else ''}: {e.code}" for t, s, e in refusals)
        last = refusals[-1][2]
        raise AwsCapacityError(
            f"run_instances found no capacity on {self.where} for any of the {len(options)} launch options "
            f"({tried}); add instance types or subnets (alternative_instance_types, alternative_subnet_ids) "
            "or wait for capacity",
            operation="run_instances",
            code=last.code,
            capacity=True,
        )

    def _run_kwargs(
        self, count: int, tags: list[dict[str, str]], instance_type: str, subnet_id: str | None
    ) -> dict[str, Any]:
        s = self.settings
        # MinCount == MaxCount: a job gets every instance it asked for or none (nothing half-launched).
        kwargs: dict[str, Any] = {
            "ImageId": s.ami_id,
            "InstanceType": instance_type,
            "MinCount": count,
            "MaxCount": count,
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}],
        }
        kwargs.update(self._placement())
        if subnet_id:
            kwargs["SubnetId"] = subnet_id
        if s.user_data:
            kwargs["UserData"] = s.user_data  # boto3 base64-encodes it for run_instances
        return kwargs

    def _check_launch(self, count: int, operation: str, what: str) -> None:
        if count < 1:
            raise ValueError(f"instance count must be at least 1, got {count}")
        if not self.settings.ami_id:
            raise AwsCapacityError(
                f"no ami_id set for {what} on {self.where}; set the image every instance boots",
                operation=operation,
                code="NoAmi",
            )

    def _placement(self) -> dict[str, Any]:
        s = self.settings
        out: dict[str, Any] = {}
        if s.subnet_id:
            out["SubnetId"] = s.subnet_id
        if s.security_group_ids:
            out["SecurityGroupIds"] = list(s.security_group_ids)
        if s.key_name:
            out["KeyName"] = s.key_name
        return out

    # --- instances --------------------------------------------------------------------------

    def terminate(self, instance_ids: Iterable[str]) -> dict[str, str]:
        """Terminate instances; returns each one's state after the call."""
        ids = list(instance_ids)
        if not ids:
            return {}
        resp = self._call("terminate_instances", InstanceIds=ids)
        return {i["InstanceId"]: i["CurrentState"]["Name"] for i in resp.get("TerminatingInstances", [])}

    def instances(self, namespace: str, *, alive_only: bool = True) -> list[dict[str, Any]]:
        """Instances tagged with the namespace (by default those not shutting down or terminated)."""
        filters = [{"Name": "tag:namespace", "Values": [namespace]}]
        if alive_only:
            filters.append(
                {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}
            )
        out = []
        for page in self._pages("describe_instances", "Reservations", Filters=filters):
            for reservation in page:
                for i in reservation.get("Instances", []):
                    out.append(
                        {
                            "instance_id": i["InstanceId"],
                            "state": i["State"]["Name"],
                            "capacity_type": SPOT if i.get("InstanceLifecycle") == "spot" else ON_DEMAND,
                            "instance_type": i.get("InstanceType", ""),
                            "launch_time": _iso(i["LaunchTime"]) if i.get("LaunchTime") else None,
                            "private_ip": i.get("PrivateIpAddress"),
                            "spot_request_id": i.get("SpotInstanceRequestId"),
                            "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])},
                        }
                    )
        return sorted(out, key=lambda i: i["instance_id"])

    def spot_requests(self, namespace: str) -> list[dict[str, Any]]:
        """Spot requests tagged with the namespace that may still launch (open or active)."""
        resp = self._call(
            "describe_spot_instance_requests",
            Filters=[
                {"Name": "tag:namespace", "Values": [namespace]},
                {"Name": "state", "Values": ["open", "active"]},
            ],
        )
        return [
            {
                "request_id": r["SpotInstanceRequestId"],
                "state": r.get("State", ""),
                "instance_id": r.get("InstanceId"),
            }
            for r in resp.get("SpotInstanceRequests", [])
        ]

    def cancel_spot_requests(self, request_ids: list[str]) -> dict[str, str]:
        """Cancel spot requests; each one's state after the call (their instances keep running)."""
        if not request_ids:
            return {}
        resp = self._call("cancel_spot_instance_requests", SpotInstanceRequestIds=list(request_ids))
        return {
            r["SpotInstanceRequestId"]: r.get("State", "")
            for r in resp.get("CancelledSpotInstanceRequests", [])
        }

    def release(self, namespace: str, instance_ids: Iterable[str] = ()) -> list[str]:
        """Cancel the namespace's live spot requests, terminate its instances (and `instance_ids`); ids terminated."""
        requests = self.spot_requests(namespace)
        self.cancel_spot_requests([r["request_id"] for r in requests])
        # Cancelling leaves a request's instance running; the namespace lookup also finds instances
        # launched by an attempt whose ids were lost (e.g. the service died between launch and record).
        ids = {
            *instance_ids,
            *(r["instance_id"] for r in requests if r["instance_id"]),
            *(i["instance_id"] for i in self.instances(namespace)),
        }
        self.terminate(sorted(ids))
        return sorted(ids)

    # --- plumbing ---------------------------------------------------------------------------

    def _pages(self, operation: str, key: str, **kwargs: Any) -> Iterable[list[Any]]:
        """The `key` list of every page of a NextToken-paginated call."""
        token: str | None = None
        while True:
            resp = self._call(operation, **kwargs, **({"NextToken": token} if token else {}))
            yield resp.get(key, [])
            token = resp.get("NextToken")
            if not token:
                return

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """One EC2 call; a botocore failure becomes an AwsCapacityError naming where and what to check."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.ec2, operation)(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise self._error(operation, exc, kwargs.get("InstanceType")) from exc

    def _error(self, operation: str, exc: Exception, instance_type: str | None = None) -> AwsCapacityError:
        from botocore.exceptions import (
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            NoRegionError,
        )

        code, detail = type(exc).__name__, str(exc)
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code, detail = str(error.get("Code", "")) or code, str(error.get("Message", "")) or detail
        if isinstance(exc, NoCredentialsError):
            hint = _CREDENTIALS
        elif isinstance(exc, EndpointConnectionError):
            hint = f"cannot reach EC2; check endpoint_url ({self.settings.endpoint_url or 'AWS default'}) and the network"
        elif isinstance(exc, NoRegionError):
            hint = "set region"
        else:
            hint = next(
                (h for prefix, h in _HINTS if code.startswith(prefix)),
                "check the settings and the AWS limits",
            )
        hint = hint.format(
            region=self.settings.region, instance_type=instance_type or self.settings.instance_type
        )
        return AwsCapacityError(
            f"{operation} failed on {self.where}: {code}: {detail}; {hint}",
            operation=operation,
            code=code,
            capacity=code in CAPACITY_CODES,
        )


class InterruptionWatcher:
    """Reads the spot interruption notice of an instance from the metadata service (IMDSv2)."""

    TOKEN_PATH = "/latest/api/token"
    ACTION_PATH = "/latest/meta-data/spot/instance-action"

    def __init__(
        self,
        metadata_url: str = "http://169.254.169.254",
        session: Any | None = None,
        *,
        timeout_s: float = 2.0,
        token_ttl_s: int = 21600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metadata_url = metadata_url.rstrip("/")
        self._session = session
        self.timeout_s = timeout_s
        self.token_ttl_s = token_ttl_s
        self.clock = clock
        self._token: str | None = None
        self._token_expires = 0.0

    @property
    def session(self) -> Any:
        """The requests session, created on first use."""
        if self._session is None:
            import requests

            self._session = requests.Session()
        return self._session

    def poll(self) -> dict[str, str] | None:
        """The pending interruption ({"action": "terminate|stop|hibernate", "time": …}), or None."""
        body = self._get(self.ACTION_PATH)
        if body is None:
            return None
        if (
            not isinstance(body, Mapping)
            or body.get("action") not in INTERRUPTION_ACTIONS
            or not isinstance(body.get("time"), str)
        ):
            raise MetadataError(f"unexpected spot instance-action from {self.metadata_url}: {body!r}")
        return {"action": str(body["action"]), "time": str(body["time"])}

    def _get(self, path: str) -> Any | None:
        """The JSON at path, None on 404; the token is renewed once if the service rejects it."""
        resp = self._request("GET", path, {"X-aws-ec2-metadata-token": self._get_token()})
        if resp.status_code == 401:
            # The token expired early or the service restarted: ask for a new one, once.
            resp = self._request("GET", path, {"X-aws-ec2-metadata-token": self._get_token(refresh=True)})
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise MetadataError(
                f"instance metadata {self.metadata_url}{path} answered HTTP {resp.status_code}"
            )
        try:
            return json.loads(resp.text)
        except ValueError:
            raise MetadataError(
                f"instance metadata {self.metadata_url}{path} is not JSON: {resp.text[:200]!r}"
            ) from None

    def _get_token(self, refresh: bool = False) -> str:
        now = self.clock()
        if refresh or self._token is None or now >= self._token_expires:
            resp = self._request(
                "PUT", self.TOKEN_PATH, {"X-aws-ec2-metadata-token-ttl-seconds": str(self.token_ttl_s)}
            )
            if resp.status_code != 200 or not resp.text:
                raise MetadataError(
                    f"instance metadata {self.metadata_url} refused a session token "
                    f"(HTTP {resp.status_code}); check that IMDS is enabled"
                )
            self._token = resp.text.strip()
            # Renew a minute early so a token never expires between reading it and using it.
            self._token_expires = now + max(self.token_ttl_s - 60, 1)
        return str(self._token)

    def _request(self, method: str, path: str, headers: dict[str, str]) -> Any:
        import requests

        try:
            return self.session.request(
                method, self.metadata_url + path, headers=headers, timeout=self.timeout_s
            )
        except requests.RequestException as exc:
            raise MetadataError(
                f"cannot reach instance metadata at {self.metadata_url}: {exc}; on EC2 check the instance's "
                "metadata options (http-endpoint enabled, hop limit 2 or more inside containers)"
            ) from exc


def _price_text(price: float) -> str:
    """A $/h price as EC2 wants it: plain decimal, no exponent (0.5 → "0.5")."""
    return format(price, "f").rstrip("0").rstrip(".") or "0"


def _iso(value: Any) -> str:
    """A boto3 timestamp as ISO-8601 UTC with a Z suffix."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return str(value)
