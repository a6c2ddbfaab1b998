"""The aws provider end to end: the real DCluster service over HTTP, EC2 on a moto server, notices from a fake IMDS.

Jobs run in the python launcher mode from a temporary project (no Spark); the policy's timings
are scaled down as in the fault tests.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from dcluster.alerts import iso
from dcluster.config import ClusterConfig, ConfigError
from dcluster.ec2 import Ec2Client, Ec2Settings, InterruptionWatcher
from dcluster.providers import make_provider, provider_types
from dcluster.providers.aws import AwsProvider, Ec2Market, provider_settings
from dcluster.settings import DClusterSettings
from dcluster_client import DClusterClient, JobSpec, JobStatus
from tests.support.aws import FakeImds, NoSpotCapacity
from tests.support.dcluster import (
    JOB_MODULES,
    REPO,
    Service,
    fast_settings,
    make_project,
    states,
    terminal,
    wait_for,
)
from tests.support.dcluster_faults import FAST_CONFIG, FAULT_JOBS

REGION = "us-east-1"
MOTO_SPOT_PRICE = 0.00001  # what moto quotes for every spot price in its history

EC2_JOB = """
    import os
    import time


    def main(argv):
        print("instances", os.environ["DCLUSTER_INSTANCE_IDS"], os.environ["DCLUSTER_CAPACITY_TYPE"], flush=True)
        deadline = time.monotonic() + 60
        while argv and not os.path.exists(argv[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        return 0
"""


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A project root with the real jobs/run.py and the small job modules of the service tests."""
    return make_project(tmp_path / "project", {**JOB_MODULES, **FAULT_JOBS, "instance_ids.py": EC2_JOB})


def _ec2(endpoint: str) -> Any:
    import boto3

    return boto3.client("ec2", endpoint_url=endpoint, region_name=REGION)


@pytest.fixture(scope="module")
def aws_section(moto_endpoint) -> dict[str, Any]:
    """An `aws:` config section for the moto server: an AMI, a subnet and a security group that exist there."""
    ec2 = _ec2(moto_endpoint)
    return {
        "region": REGION,
        "endpoint_url": moto_endpoint,
        "ami_id": ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"],
        "subnet_id": ec2.describe_subnets()["Subnets"][0]["SubnetId"],
        "security_group_ids": [ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]],
        "tags": {"cost_centre": "fraud"},
        "user_data": "#!/bin/sh\necho join the spark cluster\n",
        "price_cache_s": 0,
        "notice_poll_interval_s": 0,
    }


@pytest.fixture()
def settings(tmp_path: Path, project: Path, aws_section: dict[str, Any]) -> DClusterSettings:
    """Fast service settings with provider aws."""
    return _settings(tmp_path, project, aws_section)


def _settings(
    tmp_path: Path, project: Path, aws: dict[str, Any], **cluster: dict[str, Any]
) -> DClusterSettings:
    doc = json.loads(json.dumps(FAST_CONFIG))
    for key, value in cluster.items():
        doc.setdefault(key, {}).update(value)
    return fast_settings(
        tmp_path / "state", project, provider="aws", cluster=ClusterConfig.from_mapping({**doc, "aws": aws})
    )


def _provider(service: Service) -> AwsProvider:
    provider = service.server.config.app.state.service.provider
    assert isinstance(provider, AwsProvider)
    return provider


def _instances(endpoint: str, namespace: str, alive_only: bool = False) -> list[dict[str, Any]]:
    """The job's instances as EC2 describes them (terminated ones too unless alive_only)."""
    cap = Ec2Client(Ec2Settings(region=REGION, endpoint_url=endpoint), ec2_client=_ec2(endpoint))
    return cap.instances(namespace, alive_only=alive_only)


def _gate_job(client: DClusterClient, gate: Path, **spec: Any) -> JobStatus:
    job = client.submit(JobSpec(client="syncbank", app="instance_ids", args=[str(gate)], **spec))
    return wait_for(client, job.job_id, lambda s: s.state != "PENDING", timeout=15)


def _runs(status: JobStatus) -> list[tuple[str, str]]:
    return [(r["capacity_type"], r["outcome"]) for r in status.raw["runs"]]


# --------------------------------------------------------------------------- settings


def test_the_registry_builds_the_aws_provider_on_an_ec2_market(settings: DClusterSettings):
    assert provider_types()["aws"] is AwsProvider
    provider = make_provider(settings)

    assert isinstance(provider, AwsProvider)
    assert isinstance(provider.market, Ec2Market) and provider.market.simulated is False
    capacity = provider.ec2.settings
    # The pools drive the instance types and the price, so the scheduler and EC2 agree on them.
    assert (capacity.instance_type, capacity.max_spot_price) == ("r5.2xlarge", 0.5)
    assert capacity.security_group_ids == (settings.cluster.aws["security_group_ids"][0],)
    assert provider.ec2.settings.on_demand_instance_type == settings.cluster.on_demand.instance_type


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"region": REGION},
            "provider aws needs aws.ami_id (the image every instance boots) in the `aws:` section "
            "of the DCluster config (DCLUSTER_CONFIG)",
        ),
        (
            {"ami_id": "ami-1", "max_spot_price": 0.2},
            "aws.max_spot_price is not set under aws: it comes from spot.max_price",
        ),
        (
            {"ami_id": "ami-1", "subnet": "x"},
            "unknown config key aws.subnet; known: alternative_instance_types, "
            "alternative_subnet_ids, ami_id, capacity_retry_s, endpoint_url, "
            "instances_per_job, key_name, metadata_url, notice_poll_interval_s, "
            "price_cache_s, product_description, region, security_group_ids, subnet_id, "
            "tags, user_data",
        ),
        ({"ami_id": "ami-1", "security_group_ids": "sg-1"}, "aws.security_group_ids must be a list of ids"),
        (
            {"ami_id": "ami-1", "alternative_instance_types": "r5a.2xlarge"},
            "aws.alternative_instance_types must be a list of instance types",
        ),
        (
            {"ami_id": "ami-1", "alternative_subnet_ids": ["subnet-2"]},
            "AWS capacity settings: alternative_subnet_ids need subnet_id (the subnet tried first) "
            "(from aws: and spot: of the DCluster config)",
        ),
        (
            {"ami_id": "ami-1", "metadata_url": "169.254.169.254"},
            "AWS capacity settings: metadata_url must be an http(s) url (from aws: and spot: of the DCluster config)",
        ),
    ],
)
def test_bad_aws_sections_name_the_key(section: dict[str, Any], message: str):
    with pytest.raises(ConfigError) as err:
        provider_settings(section, ClusterConfig())
    assert str(err.value) == message


def test_the_server_stops_at_start_with_one_line_when_the_ami_is_missing(tmp_path: Path, monkeypatch, capsys):
    from dcluster.server import main

    config = tmp_path / "dcluster.yaml"
    config.write_text(yaml.safe_dump({"aws": {"region": "eu-west-1", "subnet_id": "subnet-1"}}))
    monkeypatch.setenv("DCLUSTER_CONFIG", str(config))
    monkeypatch.setenv("DCLUSTER_PROVIDER", "aws")
    monkeypatch.setenv("DCLUSTER_STATE_DIR", str(tmp_path / "state"))

    assert main([]) == 2
    err = capsys.readouterr().err
    assert err == (
        "dcluster-server: provider aws needs aws.ami_id (the image every instance boots) in the "
        "`aws:` section of the DCluster config (DCLUSTER_CONFIG)\n"
    )


def test_the_shipped_example_aws_section_is_accepted():
    doc = yaml.safe_load((REPO / "config" / "dcluster-config.aws-example.yaml").read_text())
    cluster = ClusterConfig.from_mapping(doc)
    aws = provider_settings(cluster.aws, cluster)
    assert aws.capacity.ami_id.startswith("ami-")
    assert aws.capacity.user_data.startswith("#!")
    assert cluster.on_demand.resident_min == 0


def test_spark_submit_tells_the_executors_on_the_instances_which_python_and_code(settings: DClusterSettings):
    from dataclasses import replace

    from dcluster.models import new_job, validate_spec

    spark = replace(
        settings,
        spark_submit="/opt/spark/bin/spark-submit",
        spark_master="spark://master.internal:7077",
        python="/opt/venv/bin/python",
    )
    spec = validate_spec(
        {"client": "syncbank", "app": "ok", "args": ["--day", "2025-11-21"]},
        project_root=settings.project_root,
        default_env="test",
    )
    argv = make_provider(spark).command(new_job(spec))

    root = settings.project_root.resolve()
    assert argv == [
        "/opt/spark/bin/spark-submit",
        "--conf",
        "spark.pyspark.python=/opt/venv/bin/python",
        "--conf",
        f"spark.executorEnv.PYTHONPATH={root}",
        "--master",
        "spark://master.internal:7077",
        "--conf",
        "spark.ui.enabled=false",
        str(settings.project_root / "jobs" / "run.py"),
        "ok",
        "--day",
        "2025-11-21",
    ]


# --------------------------------------------------------------------------- the market


def test_the_ec2_market_quotes_the_price_history_and_caches_it(moto_endpoint, aws_section):
    now = [0.0]
    ec2 = _ec2(moto_endpoint)
    cap = Ec2Client(Ec2Settings(region=REGION, endpoint_url=moto_endpoint, ami_id="ami-1"), ec2_client=ec2)
    market = Ec2Market(cap, price_cache_s=60, capacity_retry_s=30, clock=lambda: now[0])
    calls: list[str] = []
    ec2.meta.events.register("before-call.ec2.DescribeSpotPriceHistory", lambda **_: calls.append("x"))

    assert market.spot_quote() == (True, MOTO_SPOT_PRICE, "")
    now[0] = 59.0
    assert market.spot_quote() == (True, MOTO_SPOT_PRICE, "")
    assert len(calls) == 1
    now[0] = 60.0
    market.spot_quote()
    assert len(calls) == 2
    assert (market.fulfil_delay_s(), market.interrupted(3600)) == (0.0, False)

    assert market.on_demand_available()
    market.on_demand_refused("InsufficientInstanceCapacity")
    assert not market.on_demand_available()
    assert market.last_on_demand_refusal() == "InsufficientInstanceCapacity"
    now[0] = 90.0
    assert market.on_demand_available() and market.last_on_demand_refusal() is None


# --------------------------------------------------------------------------- end to end


def test_a_job_runs_on_a_spot_instance_tagged_with_its_namespace_which_is_terminated_after(
    settings: DClusterSettings, start_service, moto_endpoint, tmp_path: Path
):
    client = start_service(settings).client
    gate = tmp_path / "gate"
    running = _gate_job(client, gate, priority="batch")
    assert (running.state, running.capacity_type) == ("RUNNING", "spot")

    (inst,) = _instances(moto_endpoint, running.namespace, alive_only=True)
    assert inst["capacity_type"] == "spot"
    assert inst["state"] in ("pending", "running")
    assert {
        k: inst["tags"][k] for k in ("namespace", "job_id", "client", "env", "capacity_type", "cost_centre")
    } == {
        "namespace": f"s-test-syncbank-{running.job_id}",
        "job_id": running.job_id,
        "client": "syncbank",
        "env": "test",
        "capacity_type": "spot",
        "cost_centre": "fraud",
    }
    user_data = _ec2(moto_endpoint).describe_instance_attribute(
        InstanceId=inst["instance_id"], Attribute="userData"
    )
    assert user_data["UserData"]["Value"]  # the boot script went with the launch
    assert running.raw["runs"][0]["ec2_instance_ids"] == [inst["instance_id"]]

    gate.touch()
    done = wait_for(client, running.job_id, terminal)
    assert done.state == "COMPLETED"
    assert _runs(done) == [("spot", "COMPLETED")]
    assert f"instances {inst['instance_id']} spot" in "\n".join(done.log_tail)
    assert _instances(moto_endpoint, done.namespace, alive_only=True) == []
    (gone,) = _instances(moto_endpoint, done.namespace)
    assert gone["state"] in ("shutting-down", "terminated")
    ledger = client.costs()
    assert [(r["job_id"], r["capacity_type"], r["price_per_hour"]) for r in ledger["ledger"]] == [
        (done.job_id, "spot", MOTO_SPOT_PRICE)
    ]


def test_terminating_a_job_terminates_its_instance(
    settings: DClusterSettings, start_service, moto_endpoint, tmp_path: Path
):
    client = start_service(settings).client
    running = _gate_job(client, tmp_path / "never", priority="critical")
    (inst,) = _instances(moto_endpoint, running.namespace, alive_only=True)
    assert (running.capacity_type, inst["capacity_type"]) == ("on_demand", "on_demand")

    done = client.terminate(running.job_id)
    assert done.state == "TERMINATED"
    assert _instances(moto_endpoint, running.namespace, alive_only=True) == []


def test_a_spot_price_above_max_price_runs_the_job_on_on_demand(
    tmp_path: Path, project: Path, aws_section, start_service, moto_endpoint
):
    cheap = _settings(tmp_path, project, aws_section, spot={"max_price": MOTO_SPOT_PRICE / 10})
    client = start_service(cheap).client
    job = client.submit(JobSpec(client="syncbank", app="ok", priority="batch"))
    done = wait_for(client, job.job_id, terminal, timeout=20)

    assert done.state == "COMPLETED"
    assert _runs(done) == [("on_demand", "COMPLETED")]
    assert [i["capacity_type"] for i in _instances(moto_endpoint, done.namespace)] == ["on_demand"]
    assert _instances(moto_endpoint, done.namespace, alive_only=True) == []
    history = client.spot_history(hours=1)["requests"]
    assert [(r["state"], r["reason"]) for r in history] == [
        ("failed", f"price-too-low: market {MOTO_SPOT_PRICE:g} > max {MOTO_SPOT_PRICE / 10:g} $/h")
    ] * 3
    assert [(r["job_id"], r["capacity_type"]) for r in client.costs()["ledger"]] == [
        (done.job_id, "on_demand")
    ]


def test_ec2_refusing_spot_falls_back_to_on_demand_and_disables_spot(
    settings: DClusterSettings, start_service, moto_endpoint
):
    service = start_service(settings)
    provider = _provider(service)
    provider.ec2.ec2_client = NoSpotCapacity(_ec2(moto_endpoint))
    client = service.client
    job = client.submit(JobSpec(client="syncbank", app="ok", priority="batch"))
    done = wait_for(client, job.job_id, terminal, timeout=20)

    assert done.state == "COMPLETED"
    assert _runs(done) == [("on_demand", "COMPLETED")]  # the refused launches left no run behind
    assert states(done) == ["PENDING", "RUNNING", "COMPLETED"]
    assert [i["capacity_type"] for i in _instances(moto_endpoint, done.namespace)] == ["on_demand"]
    history = client.spot_history(hours=1)["requests"]
    assert [r["state"] for r in history] == ["failed"] * 3
    assert all(
        r["reason"].startswith(
            "EC2 spot launch refused: run_instances failed on EC2 in us-east-1 at "
            f"{moto_endpoint}: InsufficientInstanceCapacity"
        )
        for r in history
    )
    assert client.spot_status()["enabled"] is False  # three refusals in a row trip the breaker
    assert [a["kind"] for a in client.alerts(open_only=True)] == ["spot_disabled"]
    assert [(r["job_id"], r["capacity_type"]) for r in client.costs()["ledger"]] == [
        (done.job_id, "on_demand")
    ]


class _Counted(NoSpotCapacity):
    """No capacity in either market, counting the launches tried."""

    def __init__(self, real: Any) -> None:
        super().__init__(real, on_demand_too=True)
        self.launches = 0

    def run_instances(self, **kwargs: Any) -> Any:
        self.launches += 1
        return super().run_instances(**kwargs)


def test_no_on_demand_capacity_keeps_the_job_waiting_and_holds_launches_back(
    settings: DClusterSettings, start_service, moto_endpoint
):
    service = start_service(settings)
    refusing = _Counted(_ec2(moto_endpoint))
    _provider(service).ec2.ec2_client = refusing
    client = service.client
    job = client.submit(JobSpec(client="syncbank", app="ok", priority="critical"))
    deadline = time.monotonic() + 10
    while not client.alerts(open_only=True):
        assert time.monotonic() < deadline, "no alert raised"
        time.sleep(0.05)
    time.sleep(0.5)  # ten more scheduler ticks

    waiting = client.status(job.job_id)
    assert (waiting.state, waiting.raw["runs"]) == ("PENDING", [])
    assert waiting.message == (
        "waiting in queue: no capacity (on-demand: on-demand launch failed: insufficient "
        "capacity; spot: spot not allowed for this job)"
    )
    assert [a["kind"] for a in client.alerts(open_only=True)] == ["no_capacity"]
    assert refusing.launches == 1  # held back for capacity_retry_s instead of asking EC2 every tick
    held_back = client.health()["cluster"]["on_demand_held_back"]
    assert held_back.startswith("run_instances failed on EC2 in us-east-1 at ")
    assert "InsufficientInstanceCapacity" in held_back


def test_an_instance_action_notice_moves_the_job_to_on_demand_where_it_resumes(
    tmp_path: Path, project: Path, aws_section, start_service, moto_endpoint
):
    with FakeImds() as imds:
        client = start_service(_settings(tmp_path, project, {**aws_section, "metadata_url": imds.url})).client
        out, trace = tmp_path / "out.txt", tmp_path / "trace.txt"
        job = client.submit(
            JobSpec(
                client="syncbank",
                app="steps",
                priority="batch",
                args=["--out", str(out), "--trace", str(trace)],
            )
        )
        wait_for(client, job.job_id, lambda s: s.state == "RUNNING")
        deadline = time.monotonic() + 20
        while not trace.exists():
            assert time.monotonic() < deadline, "steps job never started"
            time.sleep(0.02)
        (spot,) = _instances(moto_endpoint, job.namespace, alive_only=True)
        time.sleep(0.4)  # some of its 40 steps of 0.05 s done
        reclaim = iso(time.time() + 5)
        imds.answers[InterruptionWatcher.ACTION_PATH] = [
            (200, json.dumps({"action": "terminate", "time": reclaim}))
        ]
        done = wait_for(client, job.job_id, terminal, timeout=30)

    assert done.state == "COMPLETED"
    assert _runs(done) == [("spot", "INTERRUPTED"), ("on_demand", "COMPLETED")]
    notice = done.raw["runs"][0]["notice"]
    assert (notice["action"], notice["time"]) == ("terminate", reclaim)  # AWS's own reclaim time
    assert notice["reason"] == f"instance-action terminate at {reclaim}"
    assert done.raw["transitions"][2]["reason"] == (
        "stopped after a spot interruption notice (exit code 75); "
        "rescheduled on on_demand (run 2 of at most 5)"
    )
    first, second = trace.read_text().splitlines()
    assert (
        first == "spot from 0" and second.startswith("on_demand from ") and 0 < int(second.split()[-1]) < 40
    )
    assert len(out.read_text().splitlines()) == 40
    described = {i["instance_id"]: i for i in _instances(moto_endpoint, done.namespace)}
    assert sorted(i["capacity_type"] for i in described.values()) == ["on_demand", "spot"]
    assert described[spot["instance_id"]]["state"] in ("shutting-down", "terminated")
    assert _instances(moto_endpoint, done.namespace, alive_only=True) == []
    (entry,) = client.audit(action="spot_interruption")
    assert (entry["actor"], entry["detail"]["source"]) == ("dcluster", "instance-action")
    # IMDSv2: a session token first, then reads that carry it.
    assert imds.log[0][:2] == ("PUT", "/latest/api/token")
    assert {(m, p, t) for m, p, t in imds.log[1:]} == {("GET", InterruptionWatcher.ACTION_PATH, "token-1")}


def test_after_a_restart_a_run_whose_process_is_gone_has_its_instances_released(
    settings: DClusterSettings, moto_endpoint
):
    provider = make_provider(settings)
    assert isinstance(provider, AwsProvider)
    namespace = "s-test-syncbank-restarted01"
    (instance_id,) = provider.ec2.run_on_demand(1, client="syncbank", job_id="restarted01", env="test")
    info = {
        "pid": 2**22 + 1,
        "pid_start": 123,
        "capacity_type": "on_demand",  # no such process
        "ec2_instance_ids": [instance_id],
        "namespace": namespace,
    }

    assert provider.adopt("restarted01", info) is None
    assert _instances(moto_endpoint, namespace, alive_only=True) == []
    assert provider.health()["unreleased"] == {}
