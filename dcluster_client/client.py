"""A thin requests-based client for the DCluster REST API; the session is injectable for tests."""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import requests

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
        session: requests.Session | None = None,
        timeout: float = 10,
        retries: int = 3,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        actor: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.actor = actor  # sent as X-Actor, the "who" of the service's audit log
        self.session = session or requests.Session()
        self.timeout = timeout
        self.retries = retries
        self.backoff_s = backoff_s
        self._sleep = sleep

    def submit(self, spec: JobSpec) -> JobStatus:
        """Submit a job; with an idempotency key an active job with that key is returned instead."""
        return JobStatus.from_json(self._request("POST", "/cluster/job/submit", json=spec.to_dict()))

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
        return self._request("GET", "/cluster/health")

    def log(self, job_id: str) -> str:
        """The job's full log."""
        return self._request("GET", f"/cluster/job/{job_id}/log", text=True)

    def allocate(self, count: int = 1, *, priority: str = "normal", strategy: str = "balanced",
                 env: str | None = None) -> dict[str, Any]:
        """Add instances to the pools, split by the work's spot share."""
        body = {"count": count, "priority": priority, "strategy": strategy, "env": env}
        return self._request("POST", "/cluster/resources/allocate", json=body)

    def request_spot(self, count: int = 1, max_price: float | None = None) -> list[dict[str, Any]]:
        """Open spot requests for the pool; returns them."""
        body = {"count": count, "max_price": max_price}
        return self._request("POST", "/cluster/resources/spot/request", json=body)["requests"]

    def fallback(self, job_id: str | None = None, *, duration_s: float | None = None,
                 reason: str = "") -> dict[str, Any]:
        """Move one job (or, without job_id, all new work for duration_s) to on-demand."""
        body = {"job_id": job_id, "duration_s": duration_s, "reason": reason}
        return self._request("POST", "/cluster/resources/fallback", json=body)

    def spot_status(self) -> dict[str, Any]:
        """Whether spot is enabled, open requests, the spot pool and market."""
        return self._request("GET", "/cluster/resources/spot/status")

    def spot_history(self, hours: float = 24) -> dict[str, Any]:
        """Spot requests of the last `hours`."""
        return self._request("GET", "/cluster/resources/spot/history", params={"hours": hours})

    def cancel_spot_request(self, request_id: str) -> dict[str, Any]:
        """Cancel an open spot request; DClusterError 409 once it is closed."""
        return self._request("POST", f"/cluster/resources/spot/cancel/{request_id}")

    def alerts(self, open_only: bool = False) -> list[dict[str, Any]]:
        """Alerts, newest first."""
        params = {"open": "true"} if open_only else {}
        return self._request("GET", "/cluster/alerts", params=params)["alerts"]

    def costs(self, client: str | None = None, date: str | None = None) -> dict[str, Any]:
        """Cost, spot share and savings per client and day, with the run ledger."""
        params = {k: v for k, v in {"client": client, "date": date}.items() if v is not None}
        return self._request("GET", "/cluster/costs", params=params)

    def audit(self, **filters: str | int) -> list[dict[str, Any]]:
        """Audit entries matching action=, actor=, target= (and limit=), newest first."""
        params = {k: v for k, v in filters.items() if v is not None}
        return self._request("GET", "/cluster/audit", params=params)["entries"]

    def sim_spot(self, **changes: float | bool) -> dict[str, Any]:
        """Change the simulated spot market (available, price, fulfil_delay_s, interruption_rate_per_hour)."""
        return self._request("POST", "/cluster/sim/spot", json=changes)

    def sim_on_demand(self, available: bool) -> dict[str, Any]:
        """Make simulated on-demand launches succeed or fail."""
        return self._request("POST", "/cluster/sim/on_demand", json={"available": available})

    def interrupt(self, job_id: str) -> JobStatus:
        """Deliver a (simulated) spot interruption notice to a job running on spot."""
        return JobStatus.from_json(self._request("POST", f"/cluster/sim/interrupt/{job_id}"))

    def log_url(self, job_id: str) -> str:
        """Where a person can read the job's full log."""
        return f"{self.base_url}/cluster/job/{job_id}/log"

    def _request(self, method: str, path: str, *, text: bool = False, **kwargs: Any) -> Any:
        url = self.base_url + path
        attempts = max(1, self.retries)
        for attempt in range(1, attempts + 1):
            try:
                if self.actor:
                    kwargs.setdefault("headers", {})["X-Actor"] = self.actor
                response = self.session.request(method, url, timeout=self.timeout, **kwargs)
                break
            except (requests.ConnectionError, requests.Timeout) as exc:
                # Submits carry an idempotency key and terminate is safe to repeat, so a retry
                # after a lost answer never starts a second job.
                if attempt == attempts:
                    raise DClusterUnavailable(
                        f"DCluster at {self.base_url} is unreachable: {exc}; start it with "
                        "`dcluster-server` or check [dcluster] url in luigi.cfg"
                    ) from exc
                self._sleep(self.backoff_s * 2 ** (attempt - 1))
        if response.status_code >= 400:
            raise _http_error(method, path, response)
        return response.text if text else response.json()


def _http_error(method: str, path: str, response: requests.Response) -> DClusterError:
    """A DClusterError carrying the service's message, or the raw body when it sent no JSON."""
    detail: Any = None
    try:
        body = response.json()
        message = str(body.get("error") or body.get("detail") or body)
        detail = body.get("detail")
    except (ValueError, AttributeError):
        message = response.text.strip()[:500] or response.reason or "no message"
    return DClusterError(
        f"DCluster {method} {path} answered {response.status_code}: {message}",
        status_code=response.status_code,
        detail=detail,
    )
