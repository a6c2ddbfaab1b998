"""HTTP routes of DCluster: parse requests, call the backend (dcluster.service), format JSON (and /ops HTML)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from dcluster import __version__, web
from dcluster.errors import (
    InvalidRequest,
    JobConflict,
    JobNotFound,
    NoSimulatedMarket,
    RequestConflict,
    RequestNotFound,
    SpecError,
    SpotDisabled,
    UnsupportedJob,
)
from dcluster.service import DClusterService
from dcluster.settings import DClusterSettings

MAX_FALLBACK_S = 7 * 24 * 3600.0
ACTOR_HEADER = Header(
    None, alias="X-Actor", max_length=128, description="who asks (audit log); default anonymous"
)


class JobSubmitRequest(BaseModel):
    """Body of POST /cluster/job/submit (values are checked by the service's job rules)."""

    client: str = Field(description="tenant name, ^[a-z][a-z0-9_-]{1,31}$", examples=["syncbank"])
    env: str | None = Field(None, description="environment for the namespace (default: service env)")
    engine: str = Field("spark", description="spark | flink")
    app: str = Field(description="job module of jobs/, e.g. smoke", examples=["smoke"])
    args: list[str] = Field(default_factory=list, description="arguments passed to the job's main(argv)")
    priority: str = Field("normal", description="critical | normal | batch")
    strategy: str = Field("balanced", description="cost_optimized | balanced | performance_optimized")
    idempotency_key: str | None = Field(
        None, description="while a job with this key is active, submit returns it instead of a new one"
    )


class AllocateRequest(BaseModel):
    """Body of POST /cluster/resources/allocate."""

    count: int = Field(1, ge=1, le=100, description="instances to add to the pools")
    priority: str = Field("normal", description="critical | normal | batch (task class of the work)")
    strategy: str = Field("balanced", description="cost_optimized | balanced | performance_optimized")
    env: str | None = Field(None, description="environment (dev/test envs are the dev class)")


class SpotRequestBody(BaseModel):
    """Body of POST /cluster/resources/spot/request."""

    count: int = Field(1, ge=1, le=20, description="spot instances to request for the pool")
    max_price: float | None = Field(None, gt=0, description="$ per hour; default spot.max_price")


class FallbackRequest(BaseModel):
    """Body of POST /cluster/resources/fallback."""

    job_id: str | None = Field(None, description="one job; omitted: all new work for duration_s")
    # Bounded: a cool-down past year 9999 cannot be written as a time, and every tick would fail on it.
    duration_s: float | None = Field(
        None,
        gt=0,
        le=MAX_FALLBACK_S,
        description="how long spot stays off (cluster-wide fallback), at most 7 days",
    )
    reason: str = Field("", max_length=500, description="why, for the audit log")


class SimSpotRequest(BaseModel):
    """Body of POST /cluster/sim/spot: the simulated spot market (omitted fields stay)."""

    available: bool | None = None
    price: float | None = Field(None, ge=0)
    fulfil_delay_s: float | None = Field(None, ge=0)
    interruption_rate_per_hour: float | None = Field(None, ge=0)


class SimOnDemandRequest(BaseModel):
    """Body of POST /cluster/sim/on_demand."""

    available: bool


class ErrorBody(BaseModel):
    """Every error answer (400 unreadable body, 404 unknown id, 409 state forbids it, 422 invalid request)."""

    error: str = Field(description="what went wrong, in one sentence")
    detail: Any = Field(None, description="the ids, states or problems involved")


ERROR_MEANINGS = {
    400: "the body is not valid JSON",
    404: "unknown id",
    409: "the current state forbids it",
    422: "invalid request",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error codes a route answers, so clients and tests see the real shape."""
    return {code: {"model": ErrorBody, "description": ERROR_MEANINGS[code]} for code in codes}


def json_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Like errors(), for a route whose own answer is not JSON (FastAPI would list them under its media type)."""
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    return {
        code: {"description": ERROR_MEANINGS[code], "content": {"application/json": {"schema": ref}}}
        for code in codes
    }


class ApiError(Exception):
    """An error answered as {"error": message, "detail": detail} with the given status."""

    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


def _error(status: int, error: str, detail: Any = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": error, "detail": detail})


def _domain_error(exc: Exception) -> JSONResponse:
    """The answer to an exception of dcluster.errors that needs nothing from the request to explain it."""
    if isinstance(exc, JobNotFound):
        return _error(404, str(exc), {"job_id": exc.job_id})
    if isinstance(exc, JobConflict):
        return _error(409, str(exc), {"job_id": exc.job.job_id, "state": exc.job.state})
    if isinstance(exc, SpotDisabled):
        return _error(409, str(exc), exc.detail)
    if isinstance(exc, InvalidRequest):
        return _error(422, str(exc), exc.detail)
    return _error(404, str(exc))  # NoSimulatedMarket


def create_app(settings: DClusterSettings | None = None, service: DClusterService | None = None) -> FastAPI:
    """The DCluster FastAPI app; the backend's scheduler runs while the app is being served."""
    backend = service or DClusterService(settings or DClusterSettings.from_env())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        backend.start()
        try:
            yield
        finally:
            backend.stop()

    app = FastAPI(
        title="DCluster",
        version=__version__,
        description="Runs the platform's Spark/Flink jobs on spot capacity first and on-demand when "
        "spot fails: submit, watch, terminate, allocate, fall back, costs and audit.",
        lifespan=lifespan,
        # Replaces FastAPI's own 422 shape: _invalid_request answers {"error", "detail"} like every error.
        responses=errors(422),
    )
    app.state.service = backend
    app.state.settings = backend.settings

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.detail)

    async def _domain(_: Request, exc: Exception) -> JSONResponse:
        return _domain_error(exc)

    for domain in (JobNotFound, JobConflict, SpotDisabled, InvalidRequest, NoSimulatedMarket):
        app.add_exception_handler(domain, _domain)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()
        ]
        return _error(422, "invalid request: " + "; ".join(problems), problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.post(
        "/cluster/job/submit", status_code=201, summary="Submit a Spark/Flink job", responses=errors(400)
    )
    def submit(body: JobSubmitRequest, actor: str | None = ACTOR_HEADER) -> JSONResponse:
        """201 with a new job, or 200 with the active job holding the same idempotency key."""
        try:
            job, created = backend.submit(body.model_dump(), actor=actor)
        except SpecError as exc:
            raise ApiError(422, f"invalid job spec: {exc}", exc.problems) from None
        except UnsupportedJob as exc:
            raise ApiError(
                422, str(exc), {"engine": body.engine, "provider": backend.provider.name}
            ) from None
        return JSONResponse(status_code=201 if created else 200, content=job.to_dict())

    @app.post("/cluster/job/terminate/{job_id}", summary="Terminate a job", responses=errors(404, 409))
    def terminate(job_id: str, actor: str | None = ACTOR_HEADER) -> dict[str, Any]:
        """The TERMINATED job; 404 if unknown, 409 if it already finished."""
        return backend.terminate(job_id, actor=actor).to_dict()

    @app.get("/cluster/job/{job_id}", summary="Job status", responses=errors(404))
    def status(job_id: str) -> dict[str, Any]:
        """The job with its state, times, transitions and log tail."""
        return backend.job(job_id).to_dict()

    @app.get(
        "/cluster/job/{job_id}/log",
        response_class=PlainTextResponse,
        summary="Full job log",
        responses=json_errors(404),
    )
    def job_log(job_id: str) -> PlainTextResponse:
        """The job's whole stdout+stderr as text (empty before it starts)."""
        return PlainTextResponse(backend.job_log(job_id))

    @app.get("/cluster/jobs", summary="List jobs")
    def jobs(
        client: str | None = Query(None, description="only this client's jobs"),
        state: str | None = Query(None, description="only jobs in this state"),
        app_name: str | None = Query(None, alias="app", description="only this job module"),
        module: str | None = Query(None, description="same as app"),
        capacity: str | None = Query(None, description="only jobs on this capacity: spot | on_demand"),
        limit: int = Query(100, ge=1, le=10000, description="at most this many jobs"),
    ) -> dict[str, Any]:
        """Matching jobs, newest first."""
        found = backend.jobs(
            client=client, state=state, app=app_name or module, capacity=capacity, limit=limit
        )
        return {"jobs": [j.to_dict() for j in found], "count": len(found)}

    @app.get("/cluster/health", summary="Service health")
    def health() -> dict[str, Any]:
        """Whether the service is up, its provider, jobs running and waiting, pools, spot and open alerts."""
        return backend.health()

    # --- resources ----------------------------------------------------------------------------

    @app.post("/cluster/resources/allocate", summary="Allocate EC2/Spot resources", responses=errors(400))
    def allocate(body: AllocateRequest, actor: str | None = ACTOR_HEADER) -> dict[str, Any]:
        """Add instances split by the work's spot share: on-demand at once, spot through requests."""
        return backend.allocate(
            body.count, priority=body.priority, strategy=body.strategy, env=body.env, actor=actor
        )

    @app.post(
        "/cluster/resources/spot/request",
        status_code=201,
        summary="Request spot instances",
        responses=errors(400, 409),
    )
    def spot_request(body: SpotRequestBody, actor: str | None = ACTOR_HEADER) -> dict[str, Any]:
        """Open spot requests for the pool; fulfilled instances wait idle for the next spot job."""
        return {"requests": backend.spot_request(body.count, body.max_price, actor=actor)}

    @app.post(
        "/cluster/resources/fallback", summary="Fall back to On-Demand", responses=errors(400, 404, 409)
    )
    def fallback(body: FallbackRequest, actor: str | None = ACTOR_HEADER) -> dict[str, Any]:
        """One job to on-demand (pending) or migrated off spot (running); or all new work for a while."""
        return backend.fallback(body.job_id, duration_s=body.duration_s, reason=body.reason, actor=actor)

    @app.get("/cluster/resources/spot/status", summary="Spot request status")
    def spot_status() -> dict[str, Any]:
        """Whether spot is enabled, open requests, the spot pool and the market's quote."""
        return backend.resources.spot_status()

    @app.get("/cluster/resources/spot/history", summary="Spot request history")
    def spot_history(
        hours: float = Query(24, gt=0, le=24 * 7, description="look back this many hours"),
    ) -> dict[str, Any]:
        """Spot requests of the last `hours`, newest first, with counts per outcome."""
        return backend.spot_history(hours)

    @app.post(
        "/cluster/resources/spot/cancel/{request_id}",
        summary="Cancel a spot request",
        responses=errors(404, 409),
    )
    def spot_cancel(request_id: str, actor: str | None = ACTOR_HEADER) -> dict[str, Any]:
        """The cancelled request (a job waiting on it falls back to on-demand); 404 unknown, 409 closed."""
        try:
            return backend.spot_cancel(request_id, actor=actor).to_dict()
        except RequestNotFound as exc:
            raise ApiError(404, str(exc), {"request_id": request_id}) from None
        except RequestConflict as exc:
            raise ApiError(409, str(exc), {"request_id": request_id}) from None

    # --- alerts, costs, audit -----------------------------------------------------------------

    @app.get("/cluster/alerts", summary="Alerts")
    def alerts(
        open_only: bool = Query(False, alias="open", description="only unresolved alerts"),
    ) -> dict[str, Any]:
        """Alerts (no capacity, spot disabled), newest first."""
        found = [a.to_dict() for a in backend.resources.alerts(open_only=open_only)]
        return {"alerts": found, "count": len(found)}

    @app.get("/cluster/costs", summary="Costs and spot savings")
    def costs(
        client: str | None = Query(None, description="only this client"),
        date: str | None = Query(
            None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="only runs started that UTC day"
        ),
    ) -> dict[str, Any]:
        """Per client and day: run time, spot share, cost, savings against all on-demand, the SPEC formula."""
        return backend.costs(client=client, date=date)

    @app.get("/cluster/audit", summary="Audit log")
    def audit_log(
        action: str | None = Query(None, description="e.g. job_submit, job_terminate, spot_cancel"),
        actor: str | None = Query(None),
        target: str | None = Query(None, description="job or request id"),
        limit: int = Query(100, ge=1, le=10000),
    ) -> dict[str, Any]:
        """Audit entries, newest first."""
        entries = backend.audit.read(action=action, actor=actor, target=target, limit=limit)
        return {"entries": entries, "count": len(entries)}

    # --- simulation (providers with a simulated market) ---------------------------------------

    @app.get("/cluster/sim", summary="Simulated market state", responses=errors(404))
    def sim_state() -> dict[str, Any]:
        """Spot availability, price, fulfilment delay, interruption rate; on-demand availability."""
        return backend.sim_state()

    @app.post("/cluster/sim/spot", summary="Change the simulated spot market", responses=errors(400, 404))
    def sim_spot(body: SimSpotRequest, actor: str | None = ACTOR_HEADER) -> dict[str, Any]:
        """The market after the change."""
        return backend.sim_spot(body.model_dump(exclude_none=True), actor=actor)

    @app.post(
        "/cluster/sim/on_demand",
        summary="Change simulated on-demand availability",
        responses=errors(400, 404),
    )
    def sim_on_demand(body: SimOnDemandRequest, actor: str | None = ACTOR_HEADER) -> dict[str, Any]:
        """The market after the change."""
        return backend.sim_on_demand(body.available, actor=actor)

    @app.post(
        "/cluster/sim/interrupt/{job_id}",
        summary="Send a spot interruption notice",
        responses=errors(404, 409),
    )
    def sim_interrupt(job_id: str, actor: str | None = ACTOR_HEADER) -> dict[str, Any]:
        """The job with its notice ({"action": "terminate", "time": ...}); reclaimed after notice_s."""
        return backend.interrupt(job_id, actor=actor).to_dict()

    # --- operations page ----------------------------------------------------------------------

    # A page for people, not part of the JSON API: kept out of /openapi.json and its clients.
    @app.get("/ops", response_class=HTMLResponse, include_in_schema=False)
    def ops_page(
        client: str | None = Query(None, description="only this client's jobs"),
        app_name: str | None = Query(None, alias="app", description="only this module"),
        module: str | None = Query(None, description="same as app"),
        state: str | None = Query(None, description="only jobs in this state"),
        exit_code: str | None = Query(None, description="only jobs that exited so"),
    ) -> HTMLResponse:
        """HTML: jobs filterable by client, module, state and exit code; hanging jobs; alerts; spot savings."""
        # Strings, not ints: an empty form field must mean "any", not a validation error.
        filters, problems = web.parse_filters(
            client=client, app=app_name or module, state=state, exit_code=exit_code
        )
        nonce = secrets.token_urlsafe(16)
        page = web.render_ops_page(
            all_jobs=backend.store.list(),
            filters=filters,
            problems=problems,
            cost_report=backend.costs(client=filters.client),
            alerts=[a.to_dict() for a in backend.resources.alerts(open_only=True)],
            hang_limit=backend.hang_limit,
            now=backend.clock(),
            nonce=nonce,
            version=f"v{__version__} · {backend.provider.name} provider",
        )
        return HTMLResponse(
            page,
            status_code=422 if problems else 200,
            headers={
                "Content-Security-Policy": web.content_security_policy(nonce),
                "Cache-Control": "no-store",
            },
        )

    return app
