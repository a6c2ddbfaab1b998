"""The one JSON-over-HTTP client of the platform's services: base URL, timeout, retries, error mapping.

DClusterClient and the Feature Platform client (fp_ferry.client) are thin layers over it; each
turns failures into its own exception types. The transport is a requests session (or anything
with its `request(method, url, **kwargs)`), so a test mounts a stub adapter and opens no socket.
Retries are a tenacity policy, described once by RetryPolicy (docs/adr/0016).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential
from urllib3.exceptions import ConnectTimeoutError

log = logging.getLogger(__name__)

# "No answer": the service was not reached, or its answer was lost. Everything else that comes
# back is an answer, including an error status.
NO_ANSWER = (requests.ConnectionError, requests.Timeout)


class Session(Protocol):
    """What the client needs of its transport: requests.Session.request."""

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How a request is tried again when no answer comes back.

    `attempts` is the total number of tries of one request: 1 means it is never retried, 3 means
    one try and up to two retries. Before try n + 1 the client waits `backoff_s * 2 ** (n - 1)`
    seconds (0.5 s, 1 s, 2 s, … with backoff_s = 0.5).

    Only "no answer" is retried: a refused, reset or dropped connection, a connect timeout, a
    read timeout. An HTTP status, 4xx or 5xx, is the service's answer and is never retried. A
    request the caller marks not idempotent is retried only when it cannot have reached the
    service (no connection was made), so a lost answer never applies it twice.
    """

    attempts: int
    backoff_s: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(
                f"attempts is the total number of tries and must be at least 1, got {self.attempts}"
            )
        if self.backoff_s < 0:
            raise ValueError(f"backoff_s must not be negative, got {self.backoff_s}")


@dataclass(frozen=True)
class HttpFailure:
    """An answer the caller turns into its own error: a status >= 400, or a success that is not JSON."""

    method: str
    path: str
    status: int
    message: str  # the service's own message, else the start of the body
    body: Any = None  # the decoded JSON body, None when the body is not JSON


@dataclass(frozen=True)
class NoAnswer:
    """A request that got no answer on any of its tries."""

    method: str
    path: str
    base_url: str
    attempts: int  # tries made
    error: Exception  # the last transport error


def never_sent(error: BaseException) -> bool:
    """True when the request cannot have reached the service: the connection was never made."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    # requests wraps urllib3's MaxRetryError, whose reason says why the connection failed;
    # NewConnectionError (refused, no route, unknown host) is a ConnectTimeoutError subclass.
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, ConnectTimeoutError)


def service_message(response: requests.Response) -> tuple[str, Any]:
    """The service's message and decoded body: 'error', 'detail' or 'message' of a JSON object, else the raw start."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:500] or response.reason or "no message", None
    if isinstance(body, dict):
        for key in ("error", "detail", "message"):
            if body.get(key):
                return str(body[key]), body
    return str(body)[:500], body


class JsonHttpClient:
    """Sends JSON requests to one service; failures become the exceptions the caller's factories make."""

    def __init__(
        self,
        base_url: str,
        *,
        retry: RetryPolicy,
        on_error: Callable[[HttpFailure], Exception],
        on_no_answer: Callable[[NoAnswer], Exception],
        session: Session | None = None,
        timeout: float = 10,
        sleep: Callable[[float], None] = time.sleep,
        service: str = "service",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session if session is not None else requests.Session()
        self.timeout = timeout  # seconds, for connecting and again for each read of the answer
        self.retry = retry
        self.service = service  # names the service in retry warnings
        self._on_error = on_error
        self._on_no_answer = on_no_answer
        self._sleep = sleep

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        missing_ok: bool = False,
        text: bool = False,
    ) -> Any:
        """The decoded JSON answer (the body as text with text=True; None for a 404 with missing_ok)."""
        kwargs: dict[str, Any] = {}
        if json is not None:
            kwargs["json"] = json
        if params:
            kwargs["params"] = dict(params)
        if headers:
            kwargs["headers"] = dict(headers)
        response = self.send(method, path, idempotent=idempotent, **kwargs)
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 400:
            message, body = service_message(response)
            raise self._on_error(HttpFailure(method, path, response.status_code, message, body))
        if text:
            return response.text
        try:
            return response.json()
        except ValueError:
            message = f"response of {method} {path} is not JSON: {response.text[:200]!r}"
            raise self._on_error(HttpFailure(method, path, response.status_code, message)) from None

    def send(self, method: str, path: str, *, idempotent: bool = True, **kwargs: Any) -> requests.Response:
        """The service's response to one request, tried as the retry policy says; raises on no answer."""
        url = self.base_url + path
        tries = 0

        def attempt() -> requests.Response:
            nonlocal tries
            tries += 1
            return self.session.request(method, url, timeout=self.timeout, **kwargs)

        def retryable(error: BaseException) -> bool:
            return isinstance(error, NO_ANSWER) and (idempotent or never_sent(error))

        def warn(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "%s %s %s failed (%s); try %d of %d in %.1fs",
                self.service,
                method,
                path,
                error,
                state.attempt_number + 1,
                self.retry.attempts,
                delay,
            )

        retrying = Retrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=wait_exponential(multiplier=self.retry.backoff_s, exp_base=2),
            retry=retry_if_exception(retryable),
            before_sleep=warn,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except NO_ANSWER as exc:
            raise self._on_no_answer(NoAnswer(method, path, self.base_url, tries, exc)) from exc
