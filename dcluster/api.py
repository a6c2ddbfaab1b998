"""HTTP routes of DCluster: parse requests, call the scheduler and store, format JSON (and /ops HTML)."""
from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from dcluster import __version__, policy, web
from dcluster.ledger import cost_report
from dcluster.models import PRIORITIES, STATES, STRATEGIES, JobNotFound, JobStore, SpecError
from dcluster.policy import CAPACITY_TYPES
from dcluster.providers import UnsupportedJob, make_provider
from dcluster.resources import RequestConflict, RequestNotFound, ResourceManager
from dcluster.scheduler import JobConflict, Scheduler
from dcluster.settings import DClusterSettings
from fraudcore.audit import AuditLog, record_config_change

MAX_FALLBACK_S = 7 * 24 * 3600.0
ACTOR_HEADER = Header(None, alias="X-Actor", max_length=128, description="who asks (audit log); default anonymous")


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
        None, description="while a job with this key is active, submit returns it instead of a new one")


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
    duration_s: float | None = Field(None, gt=0, le=MAX_FALLBACK_S,
                                     description="how long spot stays off (cluster-wide fallback), at most 7 days")
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


ERROR_MEANINGS = {400: "the body is not valid JSON", 404: "unknown id", 409: "the current state forbids it",
                  422: "invalid request"}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error codes a route answers, so clients and tests see the real shape."""
    return {code: {"model": ErrorBody, "description": ERROR_MEANINGS[code]} for code in codes}


def json_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Like errors(), for a route whose own answer is not JSON (FastAPI would list them under its media type)."""
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    return {code: {"description": ERROR_MEANINGS[code], "content": {"application/json": {"schema": ref}}}
            for code in codes}


class ApiError(Exception):
    """An error answered as {"error": message, "detail": detail} with the given status."""

    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


@contextmanager
def job_errors(job_id: str | None) -> Iterator[None]:
    """An unknown job becomes 404, a job whose state forbids the action 409 (with that state)."""
    try:
        yield
    except JobNotFound as exc:
        raise ApiError(404, str(exc), {"job_id": job_id}) from None
    except JobConflict as exc:
        raise ApiError(409, str(exc), {"job_id": job_id, "state": exc.job.state}) from None


def _error(status: int, error: str, detail: Any = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": error, "detail": detail})


def create_app(settings: DClusterSettings | None = None) -> FastAPI:
    """The DCluster FastAPI app; its scheduler runs while the app is being served."""
    settings = (settings or DClusterSettings.from_env()).normalized()
    store = JobStore(settings.jobs_dir)
    provider = make_provider(settings)
    resources = ResourceManager(settings.cluster, provider.market, settings.state_dir / "resources.json")
    audit = AuditLog(settings.state_dir / "audit.jsonl", retention_days=settings.audit_retention_days)
    scheduler = Scheduler(settings, store, provider, resources, audit)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        running = store.load()
        resources.load()
        record_config_change(audit, settings.state_dir / "config.applied.json", asdict(settings),
                             source=str(settings.config_path or "defaults"))
        scheduler.recover(running)
        scheduler.start()
        try:
            yield
        finally:
            scheduler.stop(terminate_running=True)

    app = FastAPI(
        title="DCluster",
        version=__version__,
        description="Runs the platform's Spark/Flink jobs on spot capacity first and on-demand when "
                    "spot fails: submit, watch, terminate, allocate, fall back, costs and audit.",
        lifespan=lifespan,
        # Replaces FastAPI's own 422 shape: _invalid_request answers {"error", "detail"} like every error.
        responses=errors(422),
    )
    app.state.settings = settings
    app.state.store = store
    app.state.scheduler = scheduler
    app.state.resources = resources

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()
        ]
        return _error(422, "invalid request: " + "; ".join(problems), problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    def _job_or_404(job_id: str) -> dict[str, Any]:
        try:
            return store.get(job_id).to_dict()
        except JobNotFound as exc:
            raise ApiError(404, str(exc), {"job_id": job_id}) from None

    @app.post("/cluster/job/submit", status_code=201, summary="Submit a Spark/Flink job", responses=errors(400))
    def submit(body: JobSubmitRequest, actor: str | None = ACTOR_HEADER) -> JSONResponse:
        """201 with a new job, or 200 with the active job holding the same idempotency key."""
        try:
            job, created = scheduler.submit(body.model_dump(), actor=actor)
        except SpecError as exc:
            raise ApiError(422, f"invalid job spec: {exc}", exc.problems) from None
        except UnsupportedJob as exc:
            raise ApiError(422, str(exc), {"engine": body.engine, "provider": provider.name}) from None
        return JSONResponse(status_code=201 if created else 200, content=job.to_dict())

    @app.post("/cluster/job/terminate/{job_id}", summary="Terminate a job", responses=errors(404, 409))
    def terminate(job_id: str, actor: str | None = ACTOR_HEADER) -> dict[str, Any]:
        """The TERMINATED job; 404 if unknown, 409 if it already finished."""
        with job_errors(job_id):
            return scheduler.terminate(job_id, actor=actor).to_dict()

    @app.get("/cluster/job/{job_id}", summary="Job status", responses=errors(404))
    def status(job_id: str) -> dict[str, Any]:
        """The job with its state, times, transitions and log tail."""
        return _job_or_404(job_id)

    @app.get("/cluster/job/{job_id}/log", response_class=PlainTextResponse, summary="Full job log",
             responses=json_errors(404))
    def job_log(job_id: str) -> PlainTextResponse:
        """The job's whole stdout+stderr as text (empty before it starts)."""
        _job_or_404(job_id)
        path = provider.log_path(job_id)
        text = path.read_text(errors="replace") if path.exists() else ""
        return PlainTextResponse(text)

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
        if state is not None and state.upper() not in STATES:
            raise ApiError(422, f"state {state!r} must be one of {', '.join(STATES)}", {"state": state})
        if capacity is not None and capacity not in CAPACITY_TYPES:
            raise ApiError(422, f"capacity {capacity!r} must be one of {', '.join(CAPACITY_TYPES)}",
                           {"capacity": capacity})
        found = store.list(client=client, state=state.upper() if state else None, app=app_name or module,
                           capacity_type=capacity, limit=limit)
        return {"jobs": [j.to_dict() for j in found], "count": len(found)}

    @app.get("/cluster/health", summary="Service health")
    def health() -> dict[str, Any]:
        """Whether the service is up, its provider, jobs running and waiting, pools, spot and open alerts."""
        counts = store.counts()
        enabled, why = resources.spot_enabled()
        open_alerts = [a.to_dict() for a in resources.alerts(open_only=True)]
        return {
            "status": "degraded" if open_alerts else "ok",
            "provider": provider.name,
            "cluster": provider.health(),
            "running": counts["RUNNING"] + counts["HANGING"],
            "pending": counts["PENDING"],
            "max_concurrent_jobs": settings.max_concurrent_jobs,
            "version": __version__,
            "jobs": counts,
            "pools": resources.pools(),
            "spot": {"enabled": enabled, "reason": why or None},
            "alerts": open_alerts,
            "health_check_interval_s": settings.cluster.monitor.health_check_interval_s,
        }

    # --- resources ----------------------------------------------------------------------------

    @app.post("/cluster/resources/allocate", summary="Allocate EC2/Spot resources", responses=errors(400))
    def allocate(body: AllocateRequest, actor: str | None = ACTOR_HEADER) -> dict[str, Any]:
        """Add instances split by the work's spot share: on-demand at once, spot through requests."""
        if body.priority not in PRIORITIES:
            raise ApiError(422, f"priority {body.priority!r} must be one of {', '.join(PRIORITIES)}")
        if body.strategy not in STRATEGIES:
            raise ApiError(422, f"strategy {body.strategy!r} must be one of {', '.join(STRATEGIES)}")
        return scheduler.allocate(body.count, priority=body.priority, strategy=body.strategy, env=body.env,
                                  actor=actor)

    @app.post("/cluster/resources/spot/request", status_code=201, summary="Request spot instances",
              responses=errors(400, 409))
    def spot_request(body: SpotRequestBody, actor: str | None = ACTOR_HEADER) -> dict[str, Any]:
        """Open spot requests for the pool; fulfilled instances wait idle for the next spot job."""
        enabled, why = resources.spot_enabled()
        if not enabled:
            raise ApiError(409, f"spot is disabled: {why}", resources.spot_status())
        reqs = [resources.request_spot(actor=actor or "anonymous", max_price=body.max_price).to_dict()
                for _ in range(body.count)]
        audit.record("spot_request", actor, ",".join(r["request_id"] for r in reqs),
                     {"count": body.count, "max_price": body.max_price})
        return {"requests": reqs}

    @app.post("/cluster/resources/fallback", summary="Fall back to On-Demand", responses=errors(400, 404, 409))
    def fallback(body: FallbackRequest, actor: str | None = ACTOR_HEADER) -> dict[str, Any]:
        """One job to on-demand (pending) or migrated off spot (running); or all new work for a while."""
        with job_errors(body.job_id):
            return scheduler.fallback(body.job_id, duration_s=body.duration_s, reason=body.reason, actor=actor)

    @app.get("/cluster/resources/spot/status", summary="Spot request status")
    def spot_status() -> dict[str, Any]:
        """Whether spot is enabled, open requests, the spot pool and the market's quote."""
        return resources.spot_status()

    @app.get("/cluster/resources/spot/history", summary="Spot request history")
    def spot_history(hours: float = Query(24, gt=0, le=24 * 7, description="look back this many hours")
                     ) -> dict[str, Any]:
        """Spot requests of the last `hours`, newest first, with counts per outcome."""
        reqs = [r.to_dict() for r in resources.history(hours)]
        by_state: dict[str, int] = {}
        for r in reqs:
            by_state[r["state"]] = by_state.get(r["state"], 0) + 1
        return {"hours": hours, "count": len(reqs), "by_state": by_state, "requests": reqs}

    @app.post("/cluster/resources/spot/cancel/{request_id}", summary="Cancel a spot request",
              responses=errors(404, 409))
    def spot_cancel(request_id: str, actor: str | None = ACTOR_HEADER) -> dict[str, Any]:
        """The cancelled request (a job waiting on it falls back to on-demand); 404 unknown, 409 closed."""
        try:
            req = resources.cancel_request(request_id, f"cancelled by {actor or 'anonymous'}")
        except RequestNotFound as exc:
            raise ApiError(404, str(exc), {"request_id": request_id}) from None
        except RequestConflict as exc:
            raise ApiError(409, str(exc), {"request_id": request_id}) from None
        audit.record("spot_cancel", actor, request_id, {"job_id": req.job_id})
        scheduler.wake()
        return req.to_dict()

    # --- alerts, costs, audit -----------------------------------------------------------------

    @app.get("/cluster/alerts", summary="Alerts")
    def alerts(open_only: bool = Query(False, alias="open", description="only unresolved alerts")) -> dict[str, Any]:
        """Alerts (no capacity, spot disabled), newest first."""
        found = [a.to_dict() for a in resources.alerts(open_only=open_only)]
        return {"alerts": found, "count": len(found)}

    @app.get("/cluster/costs", summary="Costs and spot savings")
    def costs(client: str | None = Query(None, description="only this client"),
              date: str | None = Query(None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="only runs started that UTC day"),
              ) -> dict[str, Any]:
        """Per client and day: run time, spot share, cost, savings against all on-demand, the SPEC formula."""
        return cost_report(store.all_runs(), settings.cluster.on_demand.price_per_hour, client=client, date=date)

    @app.get("/cluster/audit", summary="Audit log")
    def audit_log(action: str | None = Query(None, description="e.g. job_submit, job_terminate, spot_cancel"),
                  actor: str | None = Query(None), target: str | None = Query(None, description="job or request id"),
                  limit: int = Query(100, ge=1, le=10000)) -> dict[str, Any]:
        """Audit entries, newest first."""
        entries = audit.read(action=action, actor=actor, target=target, limit=limit)
        return {"entries": entries, "count": len(entries)}

    # --- simulation (providers with a simulated market) ---------------------------------------

    def _sim() -> Any:
        market = provider.market
        if not getattr(market, "simulated", False):
            raise ApiError(404, f"the {provider.name} provider has no simulated market")
        return market

    @app.get("/cluster/sim", summary="Simulated market state", responses=errors(404))
    def sim_state() -> dict[str, Any]:
        """Spot availability, price, fulfilment delay, interruption rate; on-demand availability."""
        return {**_sim().state(), "notice_s": settings.cluster.notice_s}

    @app.post("/cluster/sim/spot", summary="Change the simulated spot market", responses=errors(400, 404))
    def sim_spot(body: SimSpotRequest, actor: str | None = ACTOR_HEADER) -> dict[str, Any]:
        """The market after the change."""
        changes = body.model_dump(exclude_none=True)
        state = _sim().set_spot(**changes)
        audit.record("sim_spot", actor, "market", changes)
        scheduler.wake()
        return state

    @app.post("/cluster/sim/on_demand", summary="Change simulated on-demand availability",
              responses=errors(400, 404))
    def sim_on_demand(body: SimOnDemandRequest, actor: str | None = ACTOR_HEADER) -> dict[str, Any]:
        """The market after the change."""
        state = _sim().set_on_demand(body.available)
        audit.record("sim_on_demand", actor, "market", {"available": body.available})
        scheduler.wake()
        return state

    @app.post("/cluster/sim/interrupt/{job_id}", summary="Send a spot interruption notice",
              responses=errors(404, 409))
    def sim_interrupt(job_id: str, actor: str | None = ACTOR_HEADER) -> dict[str, Any]:
        """The job with its notice ({"action": "terminate", "time": ...}); reclaimed after notice_s."""
        _sim()
        with job_errors(job_id):
            return scheduler.interrupt(job_id, actor=actor).to_dict()

    # --- operations page ----------------------------------------------------------------------

    # A page for people, not part of the JSON API: kept out of /openapi.json and its clients.
    @app.get("/ops", response_class=HTMLResponse, include_in_schema=False)
    def ops_page(client: str | None = Query(None, description="only this client's jobs"),
                 app_name: str | None = Query(None, alias="app", description="only this module"),
                 module: str | None = Query(None, description="same as app"),
                 state: str | None = Query(None, description="only jobs in this state"),
                 exit_code: str | None = Query(None, description="only jobs that exited so"),
                 ) -> HTMLResponse:
        """HTML: jobs filterable by client, module, state and exit code; hanging jobs; alerts; spot savings."""
        # Strings, not ints: an empty form field must mean "any", not a validation error.
        filters, problems = web.parse_filters(client=client, app=app_name or module, state=state,
                                              exit_code=exit_code)
        monitor = settings.cluster.monitor

        def hang_limit(app_: str) -> tuple[float, str]:
            return policy.hang_threshold(store.durations(app_), monitor, settings.job_timeout_s)

        nonce = secrets.token_urlsafe(16)
        page = web.render_ops_page(
            all_jobs=store.list(), filters=filters, problems=problems,
            cost_report=cost_report(store.all_runs(), settings.cluster.on_demand.price_per_hour,
                                    client=filters.client),
            alerts=[a.to_dict() for a in resources.alerts(open_only=True)], hang_limit=hang_limit,
            now=time.time(), nonce=nonce, version=f"v{__version__} · {provider.name} provider")
        return HTMLResponse(page, status_code=422 if problems else 200,
                            headers={"Content-Security-Policy": web.content_security_policy(nonce),
                                     "Cache-Control": "no-store"})

    return app
