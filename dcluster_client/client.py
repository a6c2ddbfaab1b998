"""The client of the DCluster REST API, over dcluster_client.jsonhttp; the session is injectable for tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from dcluster_client.jsonhttp import HttpFailure, JsonHttpClient, NoAnswer, RetryPolicy, Session

TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "TERMINATED"})


class DClusterError(RuntimeError):
    """The service answered with an error; message is the service's own."""

    def __init__(self, message: str, status_code: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


class DClusterUnavailable(DClusterError):
    """The service could not be reached after the retries."""


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """What to run: the job module (app), its args, and who it is for."""

    client: str
    env: str | None = None  # None: the service's own env
    engine: str = "spark"
    app: str
    args: list[str] = field(default_factory=list)
    priority: str = "normal"
    strategy: str = "balanced"
    idempotency_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The submit request body."""
        data = asdict(self)
        data["args"] = [str(a) for a in self.args]
        if data["env"] is None:
            del data["env"]
        return data


@dataclass(frozen=True)
class JobStatus:
    """A job as the service reported it."""

    job_id: str
    state: str
    namespace: str = ""
    app: str = ""
    client: str = ""
    exit_code: int | None = None
    message: str = ""
    log_tail: list[str] = field(default_factory=list)
    attempts: int = 1
    capacity_type: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobStatus:
        """A status from the service's job JSON."""
        return cls(
            job_id=str(data["job_id"]),
            state=str(data["state"]),
            namespace=data.get("namespace") or "",
            app=data.get("app") or "",
            client=data.get("client") or "",
            exit_code=data.get("exit_code"),
            message=data.get("message") or "",
            log_tail=list(data.get("log_tail") or []),
            attempts=int(data.get("attempts") or 1),
            capacity_type=data.get("capacity_type") or "",
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            raw=dict(data),
        )

    @property
    def is_terminal(self) -> bool:
        """True once the job has COMPLETED, FAILED or been TERMINATED."""
        return self.state in TERMINAL_STATES


class DClusterClient:
    """Calls DCluster; connection failures are retried, HTTP errors raise DClusterError."""

    def __init__(
        self,
        base_url: str,
        session: Session | None = None,
        timeout: float = 10,
        attempts: int = 3,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        actor: str | None = None,
    ) -> None:
        """`attempts` is the total number of tries of a request (1: never retried), as RetryPolicy says."""
        self.actor = actor  # sent as X-Actor, the "who" of the service's audit log
        self.http = JsonHttpClient(
            base_url,
            retry=RetryPolicy(attempts, backoff_s),
            on_error=_http_error,
            on_no_answer=_unreachable,
            session=session,
            timeout=timeout,
            sleep=sleep,
            service="DCluster",
        )
        self.base_url = self.http.base_url

    def submit(self, spec: JobSpec) -> JobStatus:
        """Submit a job; with an idempotency key an active job with that key is returned instead."""
        # Without a key a resent submit could start a second job, so it is resent only when the
        # first never reached the service.
        body = self._request(
            "POST", "/cluster/job/submit", json=spec.to_dict(), idempotent=spec.idempotency_key is not None
        )
        return JobStatus.from_json(body)

    def status(self, job_id: str) -> JobStatus:
        """The job's current status."""
        return JobStatus.from_json(self._request("GET", f"/cluster/job/{job_id}"))

    def terminate(self, job_id: str) -> JobStatus:
        """Stop a job; DClusterError with status_code 409 if it already finished."""
        return JobStatus.from_json(self._request("POST", f"/cluster/job/terminate/{job_id}"))

    def jobs(self, **filters: str) -> list[JobStatus]:
        """Jobs matching client=, state=, app=, capacity= (and limit=), newest first."""
        params = {k: v for k, v in filters.items() if v is not None}
        return [JobStatus.from_json(j) for j in self._request("GET", "/cluster/jobs", params=params)["jobs"]]

    def health(self) -> dict[str, Any]:
        """The service's health document."""
        return self._object("GET", "/cluster/health")

    def log(self, job_id: str) -> str:
        """The job's full log."""
        text: str = self._request("GET", f"/cluster/job/{job_id}/log", text=True)
        return text

    def allocate(
        self, count: int = 1, *, priority: str = "normal", strategy: str = "balanced", env: str | None = None
    ) -> dict[str, Any]:
        """Add instances to the pools, split by the work's spot share."""
        body = {"count": count, "priority": priority, "strategy": strategy, "env": env}
        return self._object("POST", "/cluster/resources/allocate", json=body, idempotent=False)

    def request_spot(self, count: int = 1, max_price: float | None = None) -> list[dict[str, Any]]:
        """Open spot requests for the pool; returns them."""
        body = {"count": count, "max_price": max_price}
        return self._items("POST", "/cluster/resources/spot/request", "requests", json=body, idempotent=False)

    def fallback(
        self, job_id: str | None = None, *, duration_s: float | None = None, reason: str = ""
    ) -> dict[str, Any]:
        """Move one job (or, without job_id, all new work for duration_s) to on-demand."""
        body = {"job_id": job_id, "duration_s": duration_s, "reason": reason}
        return self._object("POST", "/cluster/resources/fallback", json=body)

    def spot_status(self) -> dict[str, Any]:
        """Whether spot is enabled, open requests, the spot pool and market."""
        return self._object("GET", "/cluster/resources/spot/status")

    def spot_history(self, hours: float = 24) -> dict[str, Any]:
        """Spot requests of the last `hours`."""
        return self._object("GET", "/cluster/resources/spot/history", params={"hours": hours})

    def cancel_spot_request(self, request_id: str) -> dict[str, Any]:
        """Cancel an open spot request; DClusterError 409 once it is closed."""
        return self._object("POST", f"/cluster/resources/spot/cancel/{request_id}")

    def alerts(self, open_only: bool = False) -> list[dict[str, Any]]:
        """Alerts, newest first."""
        params = {"open": "true"} if open_only else {}
        return self._items("GET", "/cluster/alerts", "alerts", params=params)

    def costs(self, client: str | None = None, date: str | None = None) -> dict[str, Any]:
        """Cost, spot share and savings per client and day, with the run ledger."""
        params = {k: v for k, v in {"client": client, "date": date}.items() if v is not None}
        return self._object("GET", "/cluster/costs", params=params)

    def audit(self, **filters: str | int) -> list[dict[str, Any]]:
        """Audit entries matching action=, actor=, target= (and limit=), newest first."""
        params = {k: v for k, v in filters.items() if v is not None}
        return self._items("GET", "/cluster/audit", "entries", params=params)

    def sim_spot(self, **changes: float | bool) -> dict[str, Any]:
        """Change the simulated spot market (available, price, fulfil_delay_s, interruption_rate_per_hour)."""
        return self._object("POST", "/cluster/sim/spot", json=changes)

    def sim_on_demand(self, available: bool) -> dict[str, Any]:
        """Make simulated on-demand launches succeed or fail."""
        return self._object("POST", "/cluster/sim/on_demand", json={"available": available})

    def interrupt(self, job_id: str) -> JobStatus:
        """Deliver a (simulated) spot interruption notice to a job running on spot."""
        return JobStatus.from_json(self._request("POST", f"/cluster/sim/interrupt/{job_id}"))

    def log_url(self, job_id: str) -> str:
        """Where a person can read the job's full log."""
        return f"{self.base_url}/cluster/job/{job_id}/log"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The decoded answer; terminate, status and the other calls are safe to resend (idempotent=True)."""
        headers = {"X-Actor": self.actor} if self.actor else None
        return self.http.call(method, path, headers=headers, **kwargs)

    def _object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """A call that the API answers with a JSON object."""
        answer: dict[str, Any] = self._request(method, path, **kwargs)
        return answer

    def _items(self, method: str, path: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
        """A call that the API answers with a JSON object holding a list of objects under `key`."""
        items: list[dict[str, Any]] = self._request(method, path, **kwargs)[key]
        return items


def _http_error(failure: HttpFailure) -> DClusterError:
    """A DClusterError carrying the service's message and, from a JSON error body, its detail."""
    detail = failure.body.get("detail") if isinstance(failure.body, dict) else None
    return DClusterError(
        f"DCluster {failure.method} {failure.path} answered {failure.status}: {failure.message}",
        status_code=failure.status,
        detail=detail,
    )


def _unreachable(failure: NoAnswer) -> DClusterUnavailable:
    return DClusterUnavailable(
        f"DCluster at {failure.base_url} is unreachable: {failure.error}; start it with "
        "`dcluster-server` or check [dcluster] url in luigi.cfg"
    )
