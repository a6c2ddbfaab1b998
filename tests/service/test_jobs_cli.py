"""`fraudbatch jobs …` against the real DCluster service over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcluster.settings import DClusterSettings
from dcluster_client import JobSpec
from fraudbatch import jobs_cli
from fraudbatch.cli import build_parser, main
from tests.support.dcluster import JOB_MODULES, fast_settings, make_project, wait_for


@pytest.fixture()
def settings(tmp_path: Path) -> DClusterSettings:
    """Fast settings in python launcher mode, the test job modules of test_dcluster_service."""
    return fast_settings(tmp_path / "state", make_project(tmp_path / "p", JOB_MODULES))


def _run(argv: list[str], answer: str = "") -> int:
    args = build_parser().parse_args(["jobs", *argv])
    return jobs_cli.run(args, ask=lambda prompt: answer)


def test_list_show_log_and_a_confirmed_terminate(settings, start_service, capsys: pytest.CaptureFixture[str]):
    service = start_service(settings)
    done = service.client.submit(JobSpec(client="syncbank", app="ok", args=["a"]))
    wait_for(service.client, done.job_id, lambda s: s.state == "COMPLETED")
    sleepy = service.client.submit(JobSpec(client="nasa", app="sleepy", args=["--seconds", "60"]))
    wait_for(service.client, sleepy.job_id, lambda s: s.state == "RUNNING")
    url = ["--url", service.url]

    assert main(["jobs", "list", *url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == list(jobs_cli.COLUMNS)
    assert [ln.split()[:4] for ln in lines[1:]] == [
        [sleepy.job_id, "nasa", "sleepy", "RUNNING"],
        [done.job_id, "syncbank", "ok", "COMPLETED"],
    ]
    assert main(["jobs", "list", "--state", "running", "--client", "nasa", *url]) == 0
    assert [ln.split()[0] for ln in capsys.readouterr().out.splitlines()[1:]] == [sleepy.job_id]
    assert main(["jobs", "list", "--client", "sofi", *url]) == 0
    assert capsys.readouterr().out == "no jobs match\n"

    assert main(["jobs", "show", done.job_id, *url]) == 0
    shown = capsys.readouterr().out
    assert f"job        {done.job_id} (s-test-syncbank-{done.job_id})" in shown
    assert "state      COMPLETED, exit code 0" in shown
    assert [ln.split()[1] for ln in shown.split("history\n")[1].split("log tail")[0].splitlines()] == [
        "PENDING",
        "RUNNING",
        "COMPLETED",
    ]
    assert "  ok job args=a" in shown

    assert main(["jobs", "log", done.job_id, *url]) == 0
    assert "ok job args=a" in capsys.readouterr().out

    assert _run(["terminate", sleepy.job_id, *url], answer="n") == 1
    assert capsys.readouterr().out == "not terminated\n"
    assert service.client.status(sleepy.job_id).state == "RUNNING"
    assert _run(["terminate", sleepy.job_id, "--as", "ops-carol", *url], answer="y") == 0
    assert capsys.readouterr().out.startswith(
        f"job {sleepy.job_id} TERMINATED (exit code -15); audit actor ops-carol"
    )
    (entry,) = service.client.audit(action="job_terminate", target=sleepy.job_id)
    assert entry["actor"] == "ops-carol"

    assert _run(["terminate", sleepy.job_id, "--yes", *url]) == 1
    assert capsys.readouterr().err == f"job {sleepy.job_id} is already TERMINATED; nothing to terminate\n"


def test_unknown_job_and_unreachable_service_are_one_line_errors(
    settings, start_service, capsys: pytest.CaptureFixture[str]
):
    service = start_service(settings)
    assert main(["jobs", "show", "nosuchjob123", "--url", service.url]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("error: DCluster GET /cluster/job/nosuchjob123 answered 404") and err.count("\n") == 1
    )
    assert main(["jobs", "list", "--url", "http://127.0.0.1:1"]) == 1
    assert "error: DCluster at http://127.0.0.1:1 is unreachable" in capsys.readouterr().err
