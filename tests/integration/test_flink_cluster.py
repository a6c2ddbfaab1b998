"""Flink jobs on a real Flink session cluster through DCluster's standalone provider.

A JobManager and a TaskManager (scripts/flink-cluster.sh, on free ports and a temporary folder so
a cluster the user runs is left alone) take the engine "flink" jobs that the standalone provider
submits with PyFlink's `flink run -m`. The Flink user_stats job must write the same bytes there as
in PyFlink's local mini-cluster, and a terminated job must not keep running on the cluster.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import requests

from dcluster.errors import UnsupportedJob
from dcluster.models import JobSpec as ServiceJobSpec
from dcluster.models import JobStore
from dcluster.providers.standalone import StandaloneProvider
from dcluster.settings import DClusterSettings
from dcluster_client import JobSpec, run_job
from fraudbatch.clusters import FLINK_CLUSTER
from tests.support import REPO
from tests.support.dcluster import states, wait_for
from tests.support.flink import FLINK_PYTHON, JOB_TIMEOUT_S, expected_stats, stage
from tests.support.flink_day import CLIENT, DAY, job_args, reference_rows, write_day


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class FlinkCluster:
    """A running session cluster and the environment that points the script at it."""

    url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def flink_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlinkCluster]:
    """A JobManager and a TaskManager started by scripts/flink-cluster.sh, stopped after the module."""
    if not FLINK_PYTHON.exists():
        pytest.fail(f"{FLINK_PYTHON} is missing: run make flink-env")
    port = free_port()
    env = {
        "FLINK_CLUSTER_DIR": str(tmp_path_factory.mktemp("flink-cluster")),
        "FLINK_CLUSTER_PORT": str(port),
        "FLINK_CLUSTER_RPC_PORT": str(free_port()),
    }
    try:
        FLINK_CLUSTER.start(env)
        yield FlinkCluster(f"http://127.0.0.1:{port}", env)
    finally:
        FLINK_CLUSTER.stop(env)


def settings_for(state: Path, provider: str, flink_url: str = "http://127.0.0.1:1") -> DClusterSettings:
    """The real checkout's jobs on `provider`, state under `state`, fast polling."""
    return DClusterSettings(
        state_dir=state,
        project_root=REPO,
        provider=provider,
        poll_interval_s=0.1,
        terminate_grace_s=5.0,
        env="test",
        flink_cluster_url=flink_url,
        spark_master_url="spark://127.0.0.1:1",
    )


def cluster_jobs(cluster: FlinkCluster) -> list[dict]:
    return requests.get(f"{cluster.url}/jobs/overview", timeout=10).json()["jobs"]


# --- the provider without a cluster -------------------------------------------------------------


def test_flink_job_goes_to_the_session_cluster_with_flink_run(tmp_path: Path):
    settings = replace(
        settings_for(tmp_path / "state", "standalone", "http://10.1.2.3:8094/"),
        flink_python="/opt/flink-venv/bin/python",
    )
    provider = StandaloneProvider(settings)
    job, _ = JobStore(settings.jobs_dir).submit(
        ServiceJobSpec(client="demo", env="dev", engine="flink", app="user_stats", args=("--date", DAY))
    )
    launch = provider.launch(job)
    assert launch.argv == [
        "/opt/flink-venv/lib/pyflink/bin/flink",
        "run",
        "-m",
        "10.1.2.3:8094",
        "-pyclientexec",
        "/opt/flink-venv/bin/python",
        "-pyexec",
        "/opt/flink-venv/bin/python",
        "-py",
        str(REPO / "jobs" / "flink" / "run.py"),
        "user_stats",
        "--date",
        DAY,
    ]
    assert (launch.launcher, launch.note) == (
        "flink-cluster",
        "submitting to the Flink session cluster http://10.1.2.3:8094",
    )
    assert launch.env["FLINK_LOG_DIR"] == str(settings.logs_dir / "flink-cli")
    assert launch.env["DCLUSTER_JOB_ID"] == job.job_id


def test_flink_job_is_refused_while_no_cluster_answers(tmp_path: Path):
    provider = StandaloneProvider(
        replace(settings_for(tmp_path / "state", "standalone"), flink_python=sys.executable)
    )
    spec = ServiceJobSpec(client="demo", env="dev", engine="flink", app="smoke")
    with pytest.raises(
        UnsupportedJob,
        match=r"^the Flink session cluster http://127.0.0.1:1 does not answer "
        r"\(.*\); start it with scripts/flink-cluster.sh start$",
    ):
        provider.check(spec)
    assert provider.health()["flink_cluster"]["reachable"] is False
    assert provider.cancel_flink_jobs("abc123def456") == []  # nothing to cancel where nothing answers


# --- a real session cluster -----------------------------------------------------------------------


@pytest.mark.flink
def test_script_starts_a_taskmanager_and_is_idempotent(flink_cluster: FlinkCluster):
    ok, summary = FLINK_CLUSTER.status(flink_cluster.env)
    assert ok, summary
    assert "1 taskmanagers, slots 2/2 free" in summary
    again = FLINK_CLUSTER.start(flink_cluster.env)
    assert "jobmanager: already running" in again and "taskmanager: already running" in again
    conf = Path(flink_cluster.env["FLINK_CLUSTER_DIR"]) / "conf" / "config.yaml"
    assert f"port: {flink_cluster.env['FLINK_CLUSTER_PORT']}" in conf.read_text()


def _user_stats(provider: str, root: Path, flink_url: str, start_service) -> tuple[Path, object, str]:
    warehouse = root / "warehouse"
    write_day(warehouse)
    service = start_service(settings_for(root / "state", provider, flink_url))
    done = run_job(
        service.client,
        JobSpec(client=CLIENT, engine="flink", app="user_stats", args=job_args(warehouse)),
        poll_interval=0.2,
        timeout_s=JOB_TIMEOUT_S,
    )
    return warehouse, done, service.client.log(done.job_id)


@pytest.mark.flink
def test_user_stats_on_the_cluster_writes_what_local_mode_writes(
    flink_cluster: FlinkCluster, start_service, tmp_path: Path
):
    on_cluster, done, log = _user_stats("standalone", tmp_path / "cluster", flink_cluster.url, start_service)
    assert (done.state, done.exit_code, states(done)) == ("COMPLETED", 0, ["PENDING", "RUNNING", "COMPLETED"])
    assert f"dcluster: submitting to the Flink session cluster {flink_cluster.url}" in log
    # The work ran on the cluster, under the name that carries the DCluster job id.
    names = {j["name"]: j["state"] for j in cluster_jobs(flink_cluster)}
    assert names[f"user_stats {CLIENT} {DAY} [dcluster:{done.job_id}]"] == "FINISHED"

    local, local_done, _ = _user_stats("local", tmp_path / "local", flink_cluster.url, start_service)
    assert local_done.state == "COMPLETED"
    expected = reference_rows(on_cluster)
    by_cluster, by_local = stage(on_cluster, "user_stats"), stage(local, "user_stats")
    assert json.loads((by_cluster / "stats.json").read_text()) == expected_stats(expected)
    for name in ("stats/part-00000.parquet", "stats.json"):
        assert (by_cluster / name).read_bytes() == (by_local / name).read_bytes(), name


@pytest.mark.flink
def test_terminated_job_is_cancelled_on_the_cluster(
    flink_cluster: FlinkCluster, start_service, tmp_path: Path
):
    service = start_service(settings_for(tmp_path / "state", "standalone", flink_cluster.url))
    assert service.client.health()["cluster"]["flink_cluster"]["taskmanagers"] == 1
    job_id = service.client.submit(
        JobSpec(
            client="demo",
            engine="flink",
            app="smoke",
            args=["--out", str(tmp_path / "count.txt"), "--n", "10", "--pause-s", "300"],
        )
    ).job_id
    name = f"smoke [dcluster:{job_id}]"
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not any(j["name"] == name and j["state"] == "RUNNING" for j in cluster_jobs(flink_cluster)):
        assert time.monotonic() < deadline, f"{name} never ran on the cluster: {cluster_jobs(flink_cluster)}"
        assert service.client.status(job_id).state in ("PENDING", "RUNNING")
        time.sleep(0.5)

    service.client.terminate(job_id)
    status = wait_for(service.client, job_id, lambda s: s.state == "TERMINATED", timeout=60)
    assert states(status)[-1] == "TERMINATED"
    deadline = time.monotonic() + 60
    while (state := {j["name"]: j["state"] for j in cluster_jobs(flink_cluster)}[name]) != "CANCELED":
        assert time.monotonic() < deadline, f"{name} is still {state} on the cluster"
        time.sleep(0.5)
    assert "dcluster: cancelled Flink job(s) " in service.client.log(job_id)
    assert not (tmp_path / "count.txt").exists()
