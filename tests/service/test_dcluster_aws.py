"""The EC2 client (dcluster.ec2) against a real moto server over HTTP, and the notice watcher against a fake IMDS."""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any

import pytest

from dcluster import policy
from dcluster.ec2 import (
    ON_DEMAND,
    SPOT,
    AwsCapacityError,
    Ec2Client,
    Ec2Settings,
    InterruptionWatcher,
    MetadataError,
    namespace,
)
from tests.support.aws import Ec2Wrapper, FakeImds, client_error

REGION = "us-east-1"
SPOT_MARKET = {
    "MarketType": "spot",
    "SpotOptions": {
        "MaxPrice": "0.5",
        "SpotInstanceType": "one-time",
        "InstanceInterruptionBehavior": "terminate",
    },
}


def _ec2(endpoint: str) -> Any:
    """A fresh boto3 EC2 client on the moto server (fresh, so event hooks stay per test)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name=REGION,
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def network(moto_endpoint) -> dict[str, Any]:
    """An AMI, the default subnet, a security group and a key pair that exist on the moto server."""
    ec2 = _ec2(moto_endpoint)
    ec2.create_key_pair(KeyName="dcluster-test")
    return {
        "ami_id": ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"],
        "subnet_id": ec2.describe_subnets()["Subnets"][0]["SubnetId"],
        "security_group_ids": (ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"],),
        "key_name": "dcluster-test",
    }


@pytest.fixture
def settings(moto_endpoint, network) -> Ec2Settings:
    """Settings for the moto server."""
    return Ec2Settings(region=REGION, endpoint_url=moto_endpoint, tags={"cost_centre": "fraud"}, **network)


@pytest.fixture
def job() -> dict[str, str]:
    """A job of its own, so tests sharing the moto server never see each other's instances."""
    return {"client": "syncbank", "job_id": uuid.uuid4().hex[:12], "env": "test"}


def _ns(job: dict[str, str]) -> str:
    return namespace(job["env"], job["client"], job["job_id"])


def _run_instances_params(ec2: Any) -> list[dict[str, Any]]:
    """Every RunInstances parameter set the client sends from now on (recorded before sending)."""
    sent: list[dict[str, Any]] = []
    ec2.meta.events.register(
        "provide-client-params.ec2.RunInstances",
        lambda params, **_: sent.append(json.loads(json.dumps(params, default=str))),
    )
    return sent


def _described(ec2: Any, instance_ids: list[str]) -> dict[str, dict[str, Any]]:
    resp = ec2.describe_instances(InstanceIds=instance_ids)
    return {i["InstanceId"]: i for r in resp["Reservations"] for i in r["Instances"]}


class _Refusing(Ec2Wrapper):
    """EC2 that answers `code` for launches of the listed (instance type, subnet) pairs; records every try."""

    def __init__(
        self, real: Any, refused: set[tuple[str, str]], code: str = "InsufficientInstanceCapacity"
    ) -> None:
        super().__init__(real)
        self.refused, self.code = refused, code
        self.tries: list[tuple[str, str, bool]] = []

    def run_instances(self, **kwargs: Any) -> Any:
        option = (kwargs["InstanceType"], kwargs.get("SubnetId", ""))
        self.tries.append((*option, "InstanceMarketOptions" in kwargs))
        if option in self.refused:
            raise client_error(self.code, f"No {option[0]} capacity in {option[1]}.", "RunInstances")
        return self.real.run_instances(**kwargs)


class _TwoPerPage(Ec2Wrapper):
    """Spot price history served two entries per page with NextToken, as EC2 does for long histories."""

    def __init__(self, real: Any) -> None:
        super().__init__(real)
        self.tokens: list[str | None] = []

    def describe_spot_price_history(self, **kwargs: Any) -> Any:
        token = kwargs.pop("NextToken", None)
        self.tokens.append(token)
        entries = self.real.describe_spot_price_history(**kwargs)["SpotPriceHistory"]
        start = int(token or 0)
        page: dict[str, Any] = {"SpotPriceHistory": entries[start : start + 2]}
        if start + 2 < len(entries):
            page["NextToken"] = str(start + 2)
        return page


# --------------------------------------------------------------------------- launches


def test_capacity_types_are_the_policy_ones():
    assert (SPOT, ON_DEMAND) == (policy.SPOT, policy.ON_DEMAND)


def test_on_demand_launch_runs_tagged_instances(moto_endpoint, settings, job):
    ec2 = _ec2(moto_endpoint)
    sent = _run_instances_params(ec2)
    instance_ids = Ec2Client(settings, ec2_client=ec2).run_on_demand(2, **job)

    assert len(instance_ids) == 2
    assert "InstanceMarketOptions" not in sent[0]
    assert (sent[0]["MinCount"], sent[0]["MaxCount"]) == (2, 2)
    found = Ec2Client(settings, ec2_client=ec2).instances(_ns(job))
    assert [i["instance_id"] for i in found] == sorted(instance_ids)
    ns = _ns(job)
    for inst in found:
        assert inst["capacity_type"] == ON_DEMAND
        assert inst["instance_type"] == "r5.2xlarge"
        assert inst["tags"] == {
            "Name": ns,
            "cost_centre": "fraud",
            "namespace": ns,
            "client": "syncbank",
            "job_id": job["job_id"],
            "env": "test",
            "capacity_type": "on_demand",
            "managed_by": "dcluster",
        }
    for raw in _described(ec2, instance_ids).values():
        assert "InstanceLifecycle" not in raw
        assert raw["SubnetId"] == settings.subnet_id
        assert raw["KeyName"] == "dcluster-test"
        assert [g["GroupId"] for g in raw["SecurityGroups"]] == list(settings.security_group_ids)


def test_spot_launch_runs_instances_with_spot_market_options(moto_endpoint, settings, job):
    ec2 = _ec2(moto_endpoint)
    sent = _run_instances_params(ec2)
    cap = Ec2Client(settings, ec2_client=ec2)
    instance_ids = cap.request_spot(1, **job)

    assert len(sent) == 1
    assert sent[0]["InstanceMarketOptions"] == SPOT_MARKET
    (raw,) = _described(ec2, instance_ids).values()
    assert raw["InstanceLifecycle"] == "spot"
    assert [(i["capacity_type"], i["tags"]["capacity_type"]) for i in cap.instances(_ns(job))] == [
        (SPOT, SPOT)
    ]


def test_max_price_is_sent_as_plain_decimal(moto_endpoint, settings, job):
    ec2 = _ec2(moto_endpoint)
    sent = _run_instances_params(ec2)
    from dataclasses import replace

    Ec2Client(replace(settings, max_spot_price=0.000125), ec2_client=ec2).request_spot(1, **job)
    assert sent[0]["InstanceMarketOptions"]["SpotOptions"]["MaxPrice"] == "0.000125"


def test_terminate_takes_instances_out_of_the_namespace(moto_endpoint, settings, job):
    cap = Ec2Client(settings, ec2_client=_ec2(moto_endpoint))
    ids = cap.run_on_demand(2, **job)

    assert cap.terminate(ids) == {i: "shutting-down" for i in ids}
    assert cap.instances(_ns(job)) == []
    assert {i["state"] for i in cap.instances(_ns(job), alive_only=False)} <= {"shutting-down", "terminated"}
    assert cap.terminate([]) == {}


# --------------------------------------------------------------------------- prices


def test_spot_price_history_returns_entries_newest_first(moto_endpoint, settings):
    cap = Ec2Client(settings, ec2_client=_ec2(moto_endpoint))
    history = cap.spot_price_history(hours=24)

    assert history, "moto quotes r5.2xlarge spot prices"
    assert {e["instance_type"] for e in history} == {"r5.2xlarge"}
    assert all(isinstance(e["price"], float) and e["price"] > 0 for e in history)
    assert all(e["timestamp"].endswith("Z") and e["availability_zone"].startswith(REGION) for e in history)
    assert [e["timestamp"] for e in history] == sorted((e["timestamp"] for e in history), reverse=True)
    assert cap.current_spot_price() == min(e["price"] for e in history)


def test_spot_price_history_follows_every_page(moto_endpoint, settings):
    paged = _TwoPerPage(_ec2(moto_endpoint))
    got = Ec2Client(settings, ec2_client=paged).spot_price_history()
    unpaged = Ec2Client(settings, ec2_client=_ec2(moto_endpoint)).spot_price_history()

    assert len(unpaged) > 2
    assert got == unpaged
    assert paged.tokens == [None] + [str(n) for n in range(2, len(unpaged), 2)]


@pytest.fixture(scope="module")
def second_subnet(moto_endpoint, network) -> str:
    """Another subnet of the default VPC (a second zone) on the moto server."""
    ec2 = _ec2(moto_endpoint)
    subnets = ec2.describe_subnets()["Subnets"]
    other = next(s for s in subnets if s["SubnetId"] != network["subnet_id"])
    return other["SubnetId"]


def test_launch_tries_every_subnet_then_the_next_type(moto_endpoint, settings, job, second_subnet):
    from dataclasses import replace

    first = settings.subnet_id
    diverse = replace(
        settings, alternative_subnet_ids=(second_subnet,), alternative_instance_types=("r5a.2xlarge",)
    )
    assert diverse.launch_options() == [
        ("r5.2xlarge", first),
        ("r5.2xlarge", second_subnet),
        ("r5a.2xlarge", first),
        ("r5a.2xlarge", second_subnet),
    ]
    ec2 = _Refusing(_ec2(moto_endpoint), {("r5.2xlarge", first), ("r5.2xlarge", second_subnet)})
    cap = Ec2Client(diverse, ec2_client=ec2)
    instance_ids = cap.request_spot(1, **job)

    # Spot stays spot: the third option, another type in the first zone, had capacity.
    assert ec2.tries == [
        ("r5.2xlarge", first, True),
        ("r5.2xlarge", second_subnet, True),
        ("r5a.2xlarge", first, True),
    ]
    described = _described(ec2.real, instance_ids)[instance_ids[0]]
    assert (described["InstanceType"], described["SubnetId"]) == ("r5a.2xlarge", first)


def test_no_capacity_for_any_option_names_every_refusal(moto_endpoint, settings, job, second_subnet):
    from dataclasses import replace

    first = settings.subnet_id
    diverse = replace(
        settings, alternative_subnet_ids=(second_subnet,), alternative_instance_types=("r5a.2xlarge",)
    )
    every = set(diverse.launch_options())
    cap = Ec2Client(diverse, ec2_client=_Refusing(_ec2(moto_endpoint), every))
    with pytest.raises(AwsCapacityError) as err:
        cap.run_on_demand(1, **job)

    assert (err.value.code, err.value.capacity, err.value.operation) == (
        "InsufficientInstanceCapacity",
        True,
        "run_instances",
    )
    assert str(err.value) == (
        f"run_instances found no capacity on EC2 in {REGION} at {settings.endpoint_url} for any of the 4 launch "
        f"options (r5.2xlarge in {first}: InsufficientInstanceCapacity; r5.2xlarge in {second_subnet}: "
        f"InsufficientInstanceCapacity; r5a.2xlarge in {first}: InsufficientInstanceCapacity; r5a.2xlarge in "
        f"{second_subnet}: InsufficientInstanceCapacity); add instance types or subnets (alternative_instance_types, "
        "alternative_subnet_ids) or wait for capacity"
    )
    assert cap.instances(_ns(job)) == []


def test_a_settings_error_is_not_retried_on_other_options(moto_endpoint, settings, job, second_subnet):
    from dataclasses import replace

    diverse = replace(
        settings, alternative_subnet_ids=(second_subnet,), alternative_instance_types=("r5a.2xlarge",)
    )
    ec2 = _Refusing(
        _ec2(moto_endpoint), {(settings.instance_type, settings.subnet_id)}, code="InvalidAMIID.Malformed"
    )
    with pytest.raises(AwsCapacityError) as err:
        Ec2Client(diverse, ec2_client=ec2).run_on_demand(1, **job)
    assert (err.value.code, err.value.capacity, len(ec2.tries)) == ("InvalidAMIID.Malformed", False, 1)
    assert "check ami_id" in str(err.value)


# --------------------------------------------------------------------------- errors


def test_launch_without_an_ami_says_what_to_set(moto_endpoint, settings, job):
    from dataclasses import replace

    cap = Ec2Client(replace(settings, ami_id=""), ec2_client=_ec2(moto_endpoint))
    with pytest.raises(AwsCapacityError, match=r"no ami_id set for launches on EC2 in us-east-1 at http://"):
        cap.run_on_demand(1, **job)


def test_unreachable_endpoint_names_the_endpoint(job):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    cap = Ec2Client(Ec2Settings(endpoint_url=url, ami_id="ami-12345678"), ec2_client=_ec2(url))
    with pytest.raises(AwsCapacityError) as err:
        cap.run_on_demand(1, **job)

    assert err.value.code == "EndpointConnectionError"
    assert err.value.capacity is False
    assert f"run_instances failed on EC2 in us-east-1 at {url}: EndpointConnectionError" in str(err.value)
    assert str(err.value).endswith(f"cannot reach EC2; check endpoint_url ({url}) and the network")


def test_settings_reject_meaningless_values():
    with pytest.raises(ValueError, match="max_spot_price must be above 0"):
        Ec2Settings(max_spot_price=0)
    with pytest.raises(ValueError, match="metadata_url must be an http"):
        Ec2Settings(metadata_url="169.254.169.254")


# --------------------------------------------------------------------------- interruption notices


NOTICE = {"action": "terminate", "time": "2026-11-26T05:12:00Z"}


def test_watcher_sees_no_notice_then_the_instance_action():
    with FakeImds() as imds:
        imds.answers[InterruptionWatcher.ACTION_PATH] = [(404, "Not Found"), (200, json.dumps(NOTICE))]
        watcher = InterruptionWatcher(imds.url)

        assert watcher.poll() is None
        assert watcher.poll() == NOTICE
        assert watcher.poll() == NOTICE  # the notice stays until the reclaim

    action = "/latest/meta-data/spot/instance-action"
    assert imds.log == [
        ("PUT", "/latest/api/token", "21600"),
        ("GET", action, "token-1"),
        ("GET", action, "token-1"),
        ("GET", action, "token-1"),
    ]


def test_watcher_renews_a_rejected_token_once():
    with FakeImds() as imds:
        imds.answers[InterruptionWatcher.ACTION_PATH] = [(200, json.dumps(NOTICE))]
        watcher = InterruptionWatcher(imds.url, token_ttl_s=300)
        assert watcher.poll() == NOTICE
        imds.valid_token = "rotated"  # e.g. the metadata service restarted

        assert watcher.poll() == NOTICE

    action = "/latest/meta-data/spot/instance-action"
    assert imds.log == [
        ("PUT", "/latest/api/token", "300"),
        ("GET", action, "token-1"),
        ("GET", action, "token-1"),
        ("PUT", "/latest/api/token", "300"),
        ("GET", action, "token-2"),
    ]


def test_watcher_renews_the_token_before_its_ttl_runs_out():
    now = [0.0]
    with FakeImds() as imds:
        watcher = InterruptionWatcher(imds.url, token_ttl_s=120, clock=lambda: now[0])
        watcher.poll()
        now[0] = 59.0
        watcher.poll()
        now[0] = 60.0
        watcher.poll()

    assert [(m, t) for m, _, t in imds.log] == [
        ("PUT", "120"),
        ("GET", "token-1"),
        ("GET", "token-1"),
        ("PUT", "120"),
        ("GET", "token-2"),
    ]


def test_watcher_rejects_a_malformed_notice():
    with FakeImds() as imds:
        imds.answers[InterruptionWatcher.ACTION_PATH] = [(200, json.dumps({"action": "reboot"}))]
        with pytest.raises(MetadataError, match="unexpected spot instance-action"):
            InterruptionWatcher(imds.url).poll()


def test_watcher_without_a_metadata_service_says_what_to_check():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(
        MetadataError, match=r"cannot reach instance metadata at http://127\.0\.0\.1:\d+: .*hop limit"
    ):
        InterruptionWatcher(url, timeout_s=1.0).poll()


# --------------------------------------------------------------------------- release


def test_release_cancels_the_namespaces_spot_requests_and_terminates_its_instances(
    moto_endpoint, settings, job
):
    ec2 = _ec2(moto_endpoint)
    cap = Ec2Client(settings, ec2_client=ec2)
    other = {**job, "job_id": uuid.uuid4().hex[:12]}
    # A spot request left in the namespace (e.g. by an older service), opened directly on EC2.
    tags = cap.launch_tags(capacity_type=SPOT, **job)
    resp = ec2.request_spot_instances(
        SpotPrice="0.5",
        InstanceCount=1,
        Type="one-time",
        LaunchSpecification={"ImageId": settings.ami_id, "InstanceType": settings.instance_type},
        TagSpecifications=[{"ResourceType": "spot-instances-request", "Tags": tags}],
    )
    request_ids = [r["SpotInstanceRequestId"] for r in resp["SpotInstanceRequests"]]
    on_demand = cap.run_on_demand(1, **job)
    kept = cap.run_on_demand(1, **other)
    (requested,) = ec2.describe_spot_instance_requests(SpotInstanceRequestIds=request_ids)[
        "SpotInstanceRequests"
    ]
    assert cap.spot_requests(_ns(job)) == [
        {"request_id": request_ids[0], "state": "active", "instance_id": requested["InstanceId"]}
    ]
    cancelled: list[list[str]] = []
    ec2.meta.events.register(
        "provide-client-params.ec2.CancelSpotInstanceRequests",
        lambda params, **_: cancelled.append(params["SpotInstanceRequestIds"]),
    )

    released = cap.release(_ns(job))

    assert released == sorted([requested["InstanceId"], *on_demand])
    assert cancelled == [request_ids]
    assert cap.spot_requests(_ns(job)) == []
    assert cap.instances(_ns(job)) == []
    assert [
        i["instance_id"] for i in cap.instances(_ns(other))
    ] == kept  # another job's namespace is left alone
    assert cap.release(_ns(job)) == []


def test_user_data_goes_with_the_launch(moto_endpoint, settings, job):
    from dataclasses import replace

    ec2 = _ec2(moto_endpoint)
    sent = _run_instances_params(ec2)
    cap = Ec2Client(replace(settings, user_data="#!/bin/sh\necho worker\n"), ec2_client=ec2)
    (instance_id,) = cap.run_on_demand(1, **job)

    assert sent[0]["UserData"] == "#!/bin/sh\necho worker\n"
    attr = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    assert (
        attr["UserData"]["Value"] == "IyEvYmluL3NoCmVjaG8gd29ya2VyCg=="
    )  # base64 of the script, as EC2 keeps it
