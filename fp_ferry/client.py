"""Thin HTTP client of the Feature Platform API, with retries on connection errors."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import quote

import requests

log = logging.getLogger(__name__)


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

    def __init__(self, base_url: str, session: requests.Session | None = None, timeout: float = 10,
                 retries: int = 3, backoff: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session if session is not None else requests.Session()
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep

    def push_batch(self, client: str, batch_id: str, records: list[dict]) -> dict:
        """Push one batch; the answer says `duplicate: true` when the batch id was applied before."""
        return self._request("POST", "/fp/v1/ingest/batch",
                             json={"client": client, "batch_id": batch_id, "records": records})

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

    def _request(self, method: str, path: str, json: dict | None = None, missing_ok: bool = False):
        """Send with retries on connection errors; decode JSON; map HTTP errors to FPError."""
        url = self.base_url + path
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                resp = self.session.request(method, url, json=json, timeout=self.timeout)
                break
            except (requests.ConnectionError, requests.Timeout) as exc:
                # Safe to resend: batch ingest is idempotent on batch id and real-time ingest
                # merges edges, so an attempt that did reach the server is not applied twice.
                if attempt == attempts:
                    raise FPUnavailable(
                        f"Feature Platform at {self.base_url} is unreachable: {exc} (after {attempts} "
                        "attempts); start it with `fp-server` or check [fp] url in luigi.cfg"
                    ) from exc
                delay = self.backoff * 2 ** (attempt - 1)
                log.warning("FP %s %s failed (%s); retry %d/%d in %.1fs", method, path, exc, attempt,
                            self.retries, delay)
                self._sleep(delay)
        if resp.status_code == 404 and missing_ok:
            return None
        if resp.status_code >= 400:
            raise FPError(resp.status_code, _error_message(resp))
        try:
            return resp.json()
        except ValueError as exc:
            raise FPError(resp.status_code, f"response of {method} {path} is not JSON: {resp.text[:200]!r}") from exc


def _seg(value: str) -> str:
    """One URL path segment, with '/' and other reserved characters escaped."""
    return quote(str(value), safe="")


def _error_message(resp: requests.Response) -> str:
    """The server's error message from a JSON error body, else the start of the raw body."""
    try:
        doc = resp.json()
    except ValueError:
        return resp.text[:500] or resp.reason or "no message"
    if isinstance(doc, dict):
        for key in ("error", "detail", "message"):
            if doc.get(key):
                return str(doc[key])
    return str(doc)[:500]
