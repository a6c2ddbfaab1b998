"""Telling a client its results are ready (SPEC §6: ResultSender uploads, then notifies the client).

A client that names a `notify_url` in the registry gets one HTTP POST per sent client-day:
a JSON document saying where the results are, with the manifest's sha256 so the receiver can
check what it downloads. The request carries an `Idempotency-Key` built from the client, the
date and that sha256 (a retry or a rerun of the same results sends the same key), and, when the
registry names an environment variable holding a shared secret, an HMAC-SHA256 signature of
the body in `X-Fraudbatch-Signature: sha256=<hex>`.

Connection errors, timeouts, 429 and 5xx answers are retried with backoff; any other answer
fails at once with the receiver's status and the start of its body.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

EVENT = "results_ready"
SIGNATURE_HEADER = "X-Fraudbatch-Signature"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class NotifyError(RuntimeError):
    """The client's endpoint did not take the notification; the message says what it answered."""


def results_ready(
    client: str, day: dt.date, results_url: str, manifest: bytes, summary: Mapping[str, Any]
) -> dict[str, Any]:
    """The notification document of one sent client-day."""
    doc = json.loads(manifest)
    return {
        "event": EVENT,
        "client": client,
        "date": day.isoformat(),
        "results_url": results_url,
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "files": len(doc.get("files", [])),
        "run_id": doc.get("run_id", ""),
        "users": summary.get("users", 0),
        "flagged_users": summary.get("flagged_users", 0),
        "campaigns": summary.get("campaigns", 0),
    }


def idempotency_key(payload: Mapping[str, Any]) -> str:
    """The same for every send of the same results: client, date and the manifest's hash."""
    return f"{payload['client']}/{payload['date']}/{payload['manifest_sha256'][:32]}"


def signature(secret: str, body: bytes) -> str:
    """sha256=<hex HMAC of the body>: what the receiver recomputes with the shared secret."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def send(
    url: str,
    payload: Mapping[str, Any],
    *,
    secret: str | None = None,
    session: Any | None = None,
    attempts: int = 3,
    backoff_s: float = 1.0,
    timeout_s: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """POST the payload; {"status", "attempts"} once the endpoint answered 2xx, else NotifyError."""
    import requests

    session = session or requests.Session()
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": idempotency_key(payload),
        "User-Agent": "fraudbatch-result-sender",
    }
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            resp = session.post(url, data=body, headers=headers, timeout=timeout_s)
        except requests.RequestException as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if 200 <= resp.status_code < 300:
                return {"status": resp.status_code, "attempts": attempt}
            last = f"HTTP {resp.status_code}: {resp.text[:200].strip()}"
            if resp.status_code not in RETRY_STATUSES:
                raise NotifyError(
                    f"client notification to {url} refused: {last}; check the endpoint and, "
                    "if it verifies signatures, the shared secret"
                )
        if attempt < attempts:
            sleep(backoff_s * 2 ** (attempt - 1))
    raise NotifyError(
        f"client notification to {url} failed after {attempts} attempts: {last}; the results "
        "are in place, run ResultSender again to notify once the endpoint answers"
    )
