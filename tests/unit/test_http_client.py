"""The shared JSON HTTP client and the DCluster and FP clients on it, over a stub requests adapter."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest
import requests
from requests.adapters import BaseAdapter
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from dcluster_client import DClusterClient, DClusterError, DClusterUnavailable, JobSpec
from dcluster_client.jsonhttp import HttpFailure, JsonHttpClient, NoAnswer, RetryPolicy, never_sent
from fp_ferry.client import FPClient, FPError, FPUnavailable

BASE = "http://svc.test:8000"


def refused() -> requests.ConnectionError:
    """What requests raises when nothing listens: the request never left."""
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")
    return requests.ConnectionError(MaxRetryError(None, BASE, reason))


def dropped() -> requests.ConnectionError:
    """The connection closed after the request was sent: the service may have applied it."""
    return requests.ConnectionError(ProtocolError("Connection aborted.", "Remote end closed connection"))


NEVER_SENT = {"refused": refused, "connect timeout": lambda: requests.ConnectTimeout("connect timed out")}
MAYBE_SENT = {
    "dropped": dropped,
    "read timeout": lambda: requests.ReadTimeout("read timed out (read timeout=10)"),
}


class StubAdapter(BaseAdapter):
    """Plays a script: each item is an exception to raise or a (status, body) to answer."""

    def __init__(self, *script: Exception | tuple[int, object]) -> None:
        super().__init__()
        self.script = list(script)
        self.calls: list[dict[str, object]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        self.calls.append(
            {
                "method": request.method,
                "path": request.path_url,
                "timeout": kwargs.get("timeout"),
                "body": json.loads(request.body) if request.body else None,
                "actor": request.headers.get("X-Actor"),
            }
        )
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        status, body = step
        response = requests.Response()
        response.status_code, response.request, response.url = status, request, request.url
        response._content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        return response

    def close(self) -> None:
        pass


def session(adapter: StubAdapter) -> requests.Session:
    s = requests.Session()
    s.mount("http://", adapter)
    return s


class Failed(Exception):
    """What the plain client raises: the failure record the client handed to its factory."""

    def __init__(self, record: HttpFailure | NoAnswer) -> None:
        super().__init__(str(record))
        self.record = record


def plain(
    adapter: StubAdapter, attempts: int = 3, sleeps: list[float] | None = None, timeout: float = 10
) -> JsonHttpClient:
    return JsonHttpClient(
        BASE,
        retry=RetryPolicy(attempts),
        on_error=Failed,
        on_no_answer=Failed,
        session=session(adapter),
        timeout=timeout,
        sleep=(sleeps.append if sleeps is not None else lambda _: None),
    )


@pytest.mark.parametrize("attempts", [1, 2, 3, 5])
def test_attempts_is_the_total_number_of_tries_with_doubling_waits(attempts: int) -> None:
    adapter, sleeps = StubAdapter(refused()), []
    with pytest.raises(Failed) as err:
        plain(adapter, attempts=attempts, sleeps=sleeps).call("GET", "/health")
    assert len(adapter.calls) == attempts
    assert sleeps == [0.5 * 2**n for n in range(attempts - 1)]
    assert err.value.record.attempts == attempts


def test_attempts_below_one_is_refused() -> None:
    with pytest.raises(
        ValueError, match="attempts is the total number of tries and must be at least 1, got 0"
    ):
        RetryPolicy(0)


@pytest.mark.parametrize(
    "make_error", [*NEVER_SENT.values(), *MAYBE_SENT.values()], ids=[*NEVER_SENT, *MAYBE_SENT]
)
def test_no_answer_is_retried_then_the_answer_is_returned(make_error: Callable[[], Exception]) -> None:
    adapter = StubAdapter(make_error(), (200, {"ok": True}))
    assert plain(adapter).call("POST", "/things", json={"a": 1}) == {"ok": True}
    assert [c["body"] for c in adapter.calls] == [{"a": 1}, {"a": 1}]


@pytest.mark.parametrize("status", [400, 404, 409, 429, 500, 502, 503, 504])
def test_an_error_status_is_an_answer_and_never_retried(status: int) -> None:
    adapter = StubAdapter((status, {"error": "no"}), (200, {"ok": True}))
    with pytest.raises(Failed) as err:
        plain(adapter).call("GET", "/things")
    assert len(adapter.calls) == 1
    assert (err.value.record.status, err.value.record.message) == (status, "no")


@pytest.mark.parametrize("make_error", NEVER_SENT.values(), ids=list(NEVER_SENT))
def test_not_idempotent_request_is_retried_when_it_never_left(make_error: Callable[[], Exception]) -> None:
    adapter = StubAdapter(make_error(), (201, {"ok": True}))
    assert plain(adapter).call("POST", "/allocate", json={}, idempotent=False) == {"ok": True}
    assert len(adapter.calls) == 2


@pytest.mark.parametrize("make_error", MAYBE_SENT.values(), ids=list(MAYBE_SENT))
def test_not_idempotent_request_is_not_resent_once_it_may_have_arrived(
    make_error: Callable[[], Exception],
) -> None:
    adapter = StubAdapter(make_error(), (201, {"ok": True}))
    with pytest.raises(Failed) as err:
        plain(adapter).call("POST", "/allocate", json={}, idempotent=False)
    assert len(adapter.calls) == 1
    assert err.value.record.attempts == 1


def test_never_sent_tells_connect_failures_from_lost_answers() -> None:
    assert [never_sent(make()) for make in NEVER_SENT.values()] == [True, True]
    assert [never_sent(make()) for make in MAYBE_SENT.values()] == [False, False]


def test_timeout_goes_to_every_try() -> None:
    adapter = StubAdapter(requests.ReadTimeout("slow"), (200, {}))
    plain(adapter, timeout=2.5).call("GET", "/x")
    assert [c["timeout"] for c in adapter.calls] == [2.5, 2.5]


def test_each_retry_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dcluster_client.jsonhttp"):
        plain(StubAdapter(refused(), (200, {}))).call("GET", "/x")
    [record] = caplog.records
    assert record.getMessage().startswith("service GET /x failed (")
    assert record.getMessage().endswith("; try 2 of 3 in 0.5s")


def test_success_that_is_not_json_is_an_error_and_text_is_returned_as_is() -> None:
    with pytest.raises(Failed) as err:
        plain(StubAdapter((200, "<html>proxy</html>"))).call("GET", "/x")
    assert err.value.record.message == "response of GET /x is not JSON: '<html>proxy</html>'"
    assert plain(StubAdapter((200, "line 1\n"))).call("GET", "/log", text=True) == "line 1\n"


# DCluster: exception types, messages and which calls are resent.
SPEC = JobSpec(client="syncbank", app="dfe", idempotency_key="Task_abc")
JOB = {"job_id": "j1", "state": "PENDING"}


def dcluster(adapter: StubAdapter, **kwargs: object) -> DClusterClient:
    return DClusterClient(BASE, session=session(adapter), sleep=lambda _: None, **kwargs)


def test_dcluster_submit_with_an_idempotency_key_is_resent_after_a_lost_answer() -> None:
    adapter = StubAdapter(requests.ReadTimeout("slow"), (201, JOB))
    assert dcluster(adapter).submit(SPEC).job_id == "j1"
    assert [c["body"]["idempotency_key"] for c in adapter.calls] == ["Task_abc", "Task_abc"]


def test_dcluster_submit_without_a_key_is_resent_only_if_it_never_left() -> None:
    spec = JobSpec(client="syncbank", app="dfe")
    adapter = StubAdapter(requests.ReadTimeout("slow"), (201, JOB))
    with pytest.raises(DClusterUnavailable):
        dcluster(adapter).submit(spec)
    assert len(adapter.calls) == 1
    adapter = StubAdapter(refused(), (201, JOB))
    assert dcluster(adapter).submit(spec).job_id == "j1" and len(adapter.calls) == 2


@pytest.mark.parametrize(
    ("call", "resent"),
    [
        (lambda c: c.allocate(2), False),
        (lambda c: c.request_spot(1), False),
        (lambda c: c.terminate("j1"), True),
        (lambda c: c.status("j1"), True),
        (lambda c: c.cancel_spot_request("sir-1"), True),
    ],
)
def test_dcluster_resends_after_a_lost_answer_only_what_is_safe_to_repeat(call, resent: bool) -> None:
    adapter = StubAdapter(dropped(), (200, {**JOB, "requests": []}))
    client = dcluster(adapter)
    if resent:
        call(client)
    else:
        with pytest.raises(DClusterUnavailable):
            call(client)
    assert len(adapter.calls) == (2 if resent else 1)


def test_dcluster_defaults_to_three_attempts_and_its_own_timeout() -> None:
    adapter = StubAdapter(refused())
    with pytest.raises(DClusterUnavailable) as err:
        dcluster(adapter, timeout=4).health()
    assert len(adapter.calls) == 3 and {c["timeout"] for c in adapter.calls} == {4}
    assert str(err.value) == (
        f"DCluster at {BASE} is unreachable: {refused()}; start it with `dcluster-server` or check "
        "[dcluster] url in luigi.cfg"
    )


def test_dcluster_error_keeps_message_detail_and_actor() -> None:
    adapter = StubAdapter((409, {"error": "job j1 is already COMPLETED", "detail": {"state": "COMPLETED"}}))
    with pytest.raises(DClusterError) as err:
        dcluster(adapter, actor="ops-alice").terminate("j1")
    assert (
        str(err.value) == "DCluster POST /cluster/job/terminate/j1 answered 409: job j1 is already COMPLETED"
    )
    assert (err.value.status_code, err.value.detail) == (409, {"state": "COMPLETED"})
    assert adapter.calls[0]["actor"] == "ops-alice"


def test_dcluster_error_without_json_carries_the_body() -> None:
    with pytest.raises(DClusterError) as err:
        dcluster(StubAdapter((502, "Bad Gateway\n"))).health()
    assert str(err.value) == "DCluster GET /cluster/health answered 502: Bad Gateway"
    assert err.value.detail is None


# FP: every call is safe to resend (batch ids, merged real-time edges).
def fp(adapter: StubAdapter, **kwargs: object) -> FPClient:
    return FPClient(BASE, session=session(adapter), sleep=lambda _: None, **kwargs)


def test_fp_push_batch_is_resent_after_a_lost_answer() -> None:
    adapter = StubAdapter(requests.ReadTimeout("slow"), (200, {"duplicate": True}))
    assert fp(adapter).push_batch("acme", "acme-b1", []) == {"duplicate": True}
    assert [c["body"]["batch_id"] for c in adapter.calls] == ["acme-b1", "acme-b1"]


def test_fp_defaults_to_four_attempts_and_says_so() -> None:
    adapter = StubAdapter(refused())
    with pytest.raises(FPUnavailable) as err:
        fp(adapter).health()
    assert len(adapter.calls) == 4
    assert str(err.value) == (
        f"Feature Platform at {BASE} is unreachable: {refused()} (after 4 attempts); start it with "
        "`fp-server` or check [fp] url in luigi.cfg"
    )


def test_fp_errors_and_missing_entities() -> None:
    with pytest.raises(FPError) as err:
        fp(StubAdapter((413, {"detail": "batch of 20000 records; limit is 10000"}))).push_batch("a", "b", [])
    assert str(err.value) == "Feature Platform error 413: batch of 20000 records; limit is 10000"
    assert fp(StubAdapter((404, {"error": "none"}))).features("acme", "u1") is None
    with pytest.raises(FPError, match="^Feature Platform error 404: none$"):
        fp(StubAdapter((404, {"error": "none"}))).health()
