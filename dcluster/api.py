"""HTTP routes of DCluster: parse requests, call the scheduler and store, format JSON."""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from dcluster import __version__
from dcluster.models import STATES, JobNotFound, JobStore, SpecError
from dcluster.providers import UnsupportedJob, make_provider
from dcluster.scheduler import JobConflict, Scheduler
from dcluster.settings import DClusterSettings


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


class ApiError(Exception):
    """An error answered as {"error": message, "detail": detail} with the given status."""

    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


def _error(status: int, error: str, detail: Any = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": error, "detail": detail})


def create_app(settings: DClusterSettings | None = None) -> FastAPI:
    """The DCluster FastAPI app; its scheduler runs while the app is being served."""
    settings = (settings or DClusterSettings.from_env()).normalized()
    store = JobStore(settings.jobs_dir)
    provider = make_provider(settings)
    scheduler = Scheduler(settings, store, provider)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        store.load()
        scheduler.start()
        try:
            yield
        finally:
            scheduler.stop(terminate_running=True)

    app = FastAPI(
        title="DCluster",
        version=__version__,
        description="Runs the platform's Spark/Flink jobs: submit, watch, terminate.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.scheduler = scheduler

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

    @app.post("/cluster/job/submit", status_code=201, summary="Submit a Spark/Flink job")
    def submit(body: JobSubmitRequest) -> JSONResponse:
        """201 with a new job, or 200 with the active job holding the same idempotency key."""
        try:
            job, created = scheduler.submit(body.model_dump())
        except SpecError as exc:
            raise ApiError(422, f"invalid job spec: {exc}", exc.problems) from None
        except UnsupportedJob as exc:
            raise ApiError(422, str(exc), {"engine": body.engine, "provider": provider.name}) from None
        return JSONResponse(status_code=201 if created else 200, content=job.to_dict())

    @app.post("/cluster/job/terminate/{job_id}", summary="Terminate a job")
    def terminate(job_id: str) -> dict[str, Any]:
        """The TERMINATED job; 404 if unknown, 409 if it already finished."""
        try:
            return scheduler.terminate(job_id).to_dict()
        except JobNotFound as exc:
            raise ApiError(404, str(exc), {"job_id": job_id}) from None
        except JobConflict as exc:
            raise ApiError(409, str(exc), {"job_id": job_id, "state": exc.job.state}) from None

    @app.get("/cluster/job/{job_id}", summary="Job status")
    def status(job_id: str) -> dict[str, Any]:
        """The job with its state, times, transitions and log tail."""
        return _job_or_404(job_id)

    @app.get("/cluster/job/{job_id}/log", response_class=PlainTextResponse, summary="Full job log")
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
        limit: int = Query(100, ge=1, le=10000, description="at most this many jobs"),
    ) -> dict[str, Any]:
        """Matching jobs, newest first."""
        if state is not None and state.upper() not in STATES:
            raise ApiError(422, f"state {state!r} must be one of {', '.join(STATES)}", {"state": state})
        found = store.list(client=client, state=state.upper() if state else None, app=app_name, limit=limit)
        return {"jobs": [j.to_dict() for j in found], "count": len(found)}

    @app.get("/cluster/health", summary="Service health")
    def health() -> dict[str, Any]:
        """Whether the service is up, its provider and how many jobs run and wait."""
        counts = store.counts()
        return {
            "status": "ok",
            "provider": provider.name,
            "running": counts["RUNNING"] + counts["HANGING"],
            "pending": counts["PENDING"],
            "max_concurrent_jobs": settings.max_concurrent_jobs,
            "version": __version__,
        }

    return app
