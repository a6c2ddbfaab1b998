"""DClusterClient and run_job against a fake transport (a requests adapter), no server."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import requests
from requests.adapters import BaseAdapter

from dcluster_client import (
    DClusterClient,
    DClusterError,
    DClusterUnavailable,
    JobFailed,
    JobSpec,
    JobStatus,
    JobTimeout,
    run_job,
)

BASE = "http://dcluster.test:8091"
Handler = Callable[[requests.PreparedRequest], tuple[int, object]]


class FakeAdapter(BaseAdapter):
    """Answers requests from a handler and records every (method, path, body)."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.calls: list[tuple[str, str, object]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        body = json.loads(request.body) if request.body else None
        self.calls.append((request.method, request.path_url, body))
        status, payload = self.handler(request)
        response = requests.Response()
        response.status_code = status
        response.request = request
        response.url = request.url
        if isinstance(payload, str):
            response._content = payload.encode()
            response.headers["Content-Type"] = "text/plain"
        else:
            response._content = json.dumps(payload).encode()
            response.headers["Content-Type"] = "application/json"
        return response

    def close(self) -> None:
        pass


def job(state: str, job_id: str = "abc123def456", **extra: object) -> dict[str, object]:
    """A job document as the service sends it."""
    doc = {
        "job_id": job_id,
        "state": state,
        "namespace": f"s-dev-syncbank-{job_id}",
        "app": "dfe",
        "client": "syncbank",
        "exit_code": None,
        "message": "",
        "log_tail": [],
        "attempts": 1,
        "capacity_type": "spot",
        "started_at": None,
        "finished_at": None,
    }
    doc.update(extra)
    return doc


def make_client(handler: Handler, **kwargs: object) -> tuple[DClusterClient, FakeAdapter, list[float]]:
    adapter = FakeAdapter(handler)
    session = requests.Session()
    session.mount("http://", adapter)
    sleeps: list[float] = []
    client = DClusterClient(BASE, session=session, sleep=sleeps.append, **kwargs)
    return client, adapter, sleeps


SPEC = JobSpec(client="syncbank", env="dev", app="dfe", args=["--date", "2025-11-21"], idempotency_key="T1")


class Script:
    """A fake service: submit returns PENDING, then each status call the next scripted state."""

    def __init__(self, states: list[dict[str, object]], submit_status: int = 201) -> None:
        self.states = list(states)
        self.submit_status = submit_status

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, object]:
        path = request.path_url
        if path == "/cluster/job/submit":
            return self.submit_status, job("PENDING")
        if path.startswith("/cluster/job/terminate/"):
            return 200, job("TERMINATED", exit_code=-15, message="terminated on request")
        if path == "/cluster/job/abc123def456":
            return 200, self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return 404, {"error": f"no route {path}", "detail": None}


def test_spec_to_dict_is_the_submit_body():
    assert SPEC.to_dict() == {
        "client": "syncbank",
        "env": "dev",
        "engine": "spark",
        "app": "dfe",
        "args": ["--date", "2025-11-21"],
        "priority": "normal",
        "strategy": "balanced",
        "idempotency_key": "T1",
    }
    assert "env" not in JobSpec(client="nasa", app="smoke").to_dict()


def test_run_job_polls_until_completed_and_reports_progress():
    client, adapter, sleeps = make_client(Script([job("RUNNING"), job("COMPLETED", exit_code=0)]))
    ticks = iter([0.0, 0.0, 2.0, 4.0])
    seen: list[tuple[str, float]] = []
    result = run_job(
        client,
        SPEC,
        poll_interval=2.0,
        sleep=sleeps.append,
        clock=lambda: next(ticks),
        on_progress=lambda s, t: seen.append((s.state, t)),
    )
    assert result.state == "COMPLETED"
    assert result.exit_code == 0
    assert seen == [("PENDING", 0.0), ("RUNNING", 2.0), ("COMPLETED", 4.0)]
    assert sleeps == [2.0, 2.0]
    assert [c[:2] for c in adapter.calls] == [
        ("POST", "/cluster/job/submit"),
        ("GET", "/cluster/job/abc123def456"),
        ("GET", "/cluster/job/abc123def456"),
    ]
    assert adapter.calls[0][2] == SPEC.to_dict()


def test_run_job_terminates_on_timeout():
    client, adapter, sleeps = make_client(Script([job("RUNNING")]))
    ticks = iter([0.0, 0.0, 5.0, 10.0])
    with pytest.raises(JobTimeout) as err:
        run_job(client, SPEC, poll_interval=5.0, timeout_s=10, sleep=sleeps.append, clock=lambda: next(ticks))
    assert str(err.value) == "DCluster job abc123def456 (dfe) still RUNNING after 10s; terminated it"
    assert adapter.calls[-1][:2] == ("POST", "/cluster/job/terminate/abc123def456")
    assert sum(1 for c in adapter.calls if c[1].startswith("/cluster/job/terminate/")) == 1


def test_run_job_terminates_on_keyboard_interrupt():
    client, adapter, _ = make_client(Script([job("RUNNING")]))

    def interrupted_sleep(_: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(client, SPEC, sleep=interrupted_sleep, clock=lambda: 0.0)
    assert [c[:2] for c in adapter.calls] == [
        ("POST", "/cluster/job/submit"),
        ("POST", "/cluster/job/terminate/abc123def456"),
    ]


def test_failing_terminate_never_hides_the_original_error():
    def handler(request: requests.PreparedRequest) -> tuple[int, object]:
        if request.path_url == "/cluster/job/submit":
            return 201, job("RUNNING")
        if request.path_url.startswith("/cluster/job/terminate/"):
            return 500, {"error": "provider exploded", "detail": None}
        return 200, job("RUNNING")

    client, adapter, _ = make_client(handler)

    def progress(status: JobStatus, elapsed: float) -> None:
        raise ValueError("progress callback broke")

    with pytest.raises(ValueError, match="^progress callback broke$"):
        run_job(client, SPEC, on_progress=progress, sleep=lambda _: None, clock=lambda: 0.0)
    assert adapter.calls[-1][:2] == ("POST", "/cluster/job/terminate/abc123def456")


def test_failed_job_raises_job_failed_with_message_and_log_url():
    failed = job("FAILED", exit_code=1, message="ValueError: no events for 2025-11-21")
    client, adapter, _ = make_client(Script([failed]))
    with pytest.raises(JobFailed) as err:
        run_job(client, SPEC, sleep=lambda _: None, clock=lambda: 0.0)
    assert str(err.value) == (
        "DCluster job abc123def456 (dfe) FAILED with exit code 1: ValueError: no events for 2025-11-21; "
        f"log: GET {BASE}/cluster/job/abc123def456/log"
    )
    assert err.value.status.exit_code == 1
    # A job that already ended is not terminated again.
    assert not any(c[1].startswith("/cluster/job/terminate/") for c in adapter.calls)


def test_connection_errors_are_retried_with_backoff_then_succeed():
    failures = [requests.ConnectionError("refused"), requests.ConnectionError("refused")]

    def handler(request: requests.PreparedRequest) -> tuple[int, object]:
        if failures:
            raise failures.pop(0)
        return 200, {"status": "ok", "provider": "local", "running": 0, "pending": 0, "version": "0.1.0"}

    client, adapter, sleeps = make_client(handler, attempts=3, backoff_s=0.5)
    assert client.health()["status"] == "ok"
    assert len(adapter.calls) == 3
    assert sleeps == [0.5, 1.0]


def test_unreachable_service_raises_dcluster_unavailable():
    def handler(request: requests.PreparedRequest) -> tuple[int, object]:
        raise requests.ConnectionError("Connection refused")

    client, adapter, sleeps = make_client(handler, attempts=3, backoff_s=0.25)
    with pytest.raises(DClusterUnavailable) as err:
        client.status("abc123def456")
    assert str(err.value) == (
        f"DCluster at {BASE} is unreachable: Connection refused; start it with `dcluster-server` "
        "or check [dcluster] url in luigi.cfg"
    )
    assert len(adapter.calls) == 3
    assert sleeps == [0.25, 0.5]


def test_http_errors_carry_the_service_message():
    def handler(request: requests.PreparedRequest) -> tuple[int, object]:
        return 409, {
            "error": "job abc123def456 is already COMPLETED; nothing to terminate",
            "detail": {"job_id": "abc123def456", "state": "COMPLETED"},
        }

    client, adapter, _ = make_client(handler)
    with pytest.raises(DClusterError) as err:
        client.terminate("abc123def456")
    assert str(err.value) == (
        "DCluster POST /cluster/job/terminate/abc123def456 answered 409: "
        "job abc123def456 is already COMPLETED; nothing to terminate"
    )
    assert err.value.status_code == 409
    assert err.value.detail == {"job_id": "abc123def456", "state": "COMPLETED"}
    assert len(adapter.calls) == 1  # HTTP errors are answers, not outages: no retry


def test_idempotent_submit_returns_the_existing_job():
    existing = job("RUNNING", job_id="0123456789ab", attempts=2, started_at="2025-11-21T01:00:00Z")

    def handler(request: requests.PreparedRequest) -> tuple[int, object]:
        return 200, existing

    client, adapter, _ = make_client(handler)
    status = client.submit(SPEC)
    assert status == JobStatus(
        job_id="0123456789ab",
        state="RUNNING",
        namespace="s-dev-syncbank-0123456789ab",
        app="dfe",
        client="syncbank",
        attempts=2,
        capacity_type="spot",
        started_at="2025-11-21T01:00:00Z",
    )
    assert not status.is_terminal
    assert adapter.calls == [("POST", "/cluster/job/submit", SPEC.to_dict())]


def test_jobs_filters_and_log_text():
    def handler(request: requests.PreparedRequest) -> tuple[int, object]:
        if request.path_url.endswith("/log"):
            return 200, "line 1\nline 2\n"
        return 200, {"jobs": [job("COMPLETED", exit_code=0)], "count": 1}

    client, adapter, _ = make_client(handler)
    found = client.jobs(client="syncbank", state="COMPLETED", app=None)
    assert [(j.job_id, j.state, j.is_terminal) for j in found] == [("abc123def456", "COMPLETED", True)]
    assert adapter.calls[0][1] == "/cluster/jobs?client=syncbank&state=COMPLETED"
    assert client.log("abc123def456") == "line 1\nline 2\n"


def test_resource_methods_call_their_endpoints_with_the_actor():
    seen: list[tuple[str, str, object, str | None]] = []

    def handler(request: requests.PreparedRequest) -> tuple[int, object]:
        body = json.loads(request.body) if request.body else None
        seen.append((request.method, request.path_url, body, request.headers.get("X-Actor")))
        if request.path_url.startswith("/cluster/resources/spot/request"):
            return 201, {"requests": [{"request_id": "sir-1", "state": "open"}]}
        if request.path_url.startswith("/cluster/alerts"):
            return 200, {"alerts": [{"kind": "no_capacity"}], "count": 1}
        if request.path_url.startswith("/cluster/audit"):
            return 200, {"entries": [{"action": "job_submit"}], "count": 1}
        if request.path_url.startswith("/cluster/sim/interrupt/"):
            return 200, job("RUNNING")
        return 200, {"ok": True}

    client, _, _ = make_client(handler, actor="ops-alice")
    client.allocate(3, priority="batch")
    assert client.request_spot(2, max_price=0.3) == [{"request_id": "sir-1", "state": "open"}]
    client.fallback("abc123def456", reason="reclaims")
    client.spot_status()
    client.spot_history(hours=6)
    client.cancel_spot_request("sir-1")
    assert client.alerts(open_only=True) == [{"kind": "no_capacity"}]
    client.costs(client="syncbank", date="2025-11-21")
    assert client.audit(action="job_submit", limit=5) == [{"action": "job_submit"}]
    client.sim_spot(available=False)
    client.sim_on_demand(True)
    assert client.interrupt("abc123def456").state == "RUNNING"
    assert [(m, p, b) for m, p, b, _ in seen] == [
        (
            "POST",
            "/cluster/resources/allocate",
            {"count": 3, "priority": "batch", "strategy": "balanced", "env": None},
        ),
        ("POST", "/cluster/resources/spot/request", {"count": 2, "max_price": 0.3}),
        (
            "POST",
            "/cluster/resources/fallback",
            {"job_id": "abc123def456", "duration_s": None, "reason": "reclaims"},
        ),
        ("GET", "/cluster/resources/spot/status", None),
        ("GET", "/cluster/resources/spot/history?hours=6", None),
        ("POST", "/cluster/resources/spot/cancel/sir-1", None),
        ("GET", "/cluster/alerts?open=true", None),
        ("GET", "/cluster/costs?client=syncbank&date=2025-11-21", None),
        ("GET", "/cluster/audit?action=job_submit&limit=5", None),
        ("POST", "/cluster/sim/spot", {"available": False}),
        ("POST", "/cluster/sim/on_demand", {"available": True}),
        ("POST", "/cluster/sim/interrupt/abc123def456", None),
    ]
    assert {actor for *_, actor in seen} == {"ops-alice"}
