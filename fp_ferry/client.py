"""Thin client of the Feature Platform API, over the platform's one JSON HTTP client (docs/adr/0016)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from dcluster_client.jsonhttp import HttpFailure, JsonHttpClient, NoAnswer, RetryPolicy, Session


class FPError(Exception):
    """The Feature Platform answered with an HTTP error; the message is the server's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Feature Platform error {status}: {message}")
        self.status = status
        self.message = message


class FPUnavailable(FPError):
    """The Feature Platform could not be reached after every retry."""

    def __init__(self, message: str) -> None:
        Exception.__init__(self, message)
        self.status = 0
        self.message = message


class FPClient:
    """Client of one FP service; `session` is injectable so tests can swap the transport."""

    def __init__(
        self,
        base_url: str,
        session: Session | None = None,
        timeout: float = 10,
        attempts: int = 4,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`attempts` is the total number of tries of a request (1: never retried), as RetryPolicy says."""
        # Every call is safe to resend: batch ingest is idempotent on batch id and real-time
        # ingest merges edges, so a try that did reach the server is not applied twice.
        self.http = JsonHttpClient(
            base_url,
            retry=RetryPolicy(attempts, backoff_s),
            on_error=_fp_error,
            on_no_answer=_unreachable,
            session=session,
            timeout=timeout,
            sleep=sleep,
            service="FP",
        )
        self.base_url = self.http.base_url

    def push_batch(self, client: str, batch_id: str, records: list[dict]) -> dict:
        """Push one batch; the answer says `duplicate: true` when the batch id was applied before."""
        return self._request(
            "POST", "/fp/v1/ingest/batch", json={"client": client, "batch_id": batch_id, "records": records}
        )

    def push_realtime(self, client: str, records: list[dict]) -> dict:
        """Push a small set of recent records for synchronous compute."""
        return self._request("POST", "/fp/v1/ingest/realtime", json={"client": client, "records": records})

    def batch_status(self, client: str, batch_id: str) -> dict | None:
        """Status of a batch, or None when the FP never received it (other errors raise)."""
        return self._request("GET", f"/fp/v1/batches/{_seg(client)}/{_seg(batch_id)}", missing_ok=True)

    def features(self, client: str, entity_id: str) -> dict | None:
        """Features of a user or node, or None when the FP has none for it."""
        return self._request("GET", f"/fp/v1/features/{_seg(client)}/{_seg(entity_id)}", missing_ok=True)

    def health(self) -> dict:
        """The service's health document."""
        return self._request("GET", "/fp/v1/health")

    def metrics(self) -> dict:
        """The service's counters."""
        return self._request("GET", "/fp/v1/metrics")

    def _request(self, method: str, path: str, json: dict | None = None, missing_ok: bool = False) -> Any:
        return self.http.call(method, path, json=json, missing_ok=missing_ok)


def _seg(value: str) -> str:
    """One URL path segment, with '/' and other reserved characters escaped."""
    return quote(str(value), safe="")


def _fp_error(failure: HttpFailure) -> FPError:
    return FPError(failure.status, failure.message)


def _unreachable(failure: NoAnswer) -> FPUnavailable:
    return FPUnavailable(
        f"Feature Platform at {failure.base_url} is unreachable: {failure.error} (after {failure.attempts} "
        "attempts); start it with `fp-server` or check [fp] url in luigi.cfg"
    )
