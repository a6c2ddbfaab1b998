"""HTTP routes of the Feature Platform: parse, call the service, format JSON. No rules here."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import asdict

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from featureplatform.service import FeatureService, FPRequestError
from featureplatform.settings import FPSettings
from featureplatform.store import FeatureStore
from fraudcore.audit import AuditLog, record_config_change

API_VERSION = "1.0.0"


class EdgeRecord(BaseModel):
    """One virtual-node edge joined with its node."""

    user_id: str = Field(min_length=1)
    node_id: str = Field(min_length=1, description='"{type}:{value}"')
    node_type: str = Field(min_length=1, description="device|ip|ip_block|fingerprint|phone|email_domain")
    events: int = Field(ge=0, description="events of this user on this node")
    first_ms: int = Field(description="first event on the edge, epoch ms UTC")
    last_ms: int = Field(description="last event on the edge, epoch ms UTC")
    node_users: int = Field(ge=0, description="distinct users of the node")
    is_super: bool = Field(description="node links more users than the client's super-node threshold")


class RealtimeIngest(BaseModel):
    """A small real-time push."""

    client: str
    records: list[EdgeRecord]


class BatchIngest(BaseModel):
    """One idempotent batch: the same (client, batch_id) is applied at most once."""

    client: str
    batch_id: str
    records: list[EdgeRecord]


def create_app(settings: FPSettings | None = None) -> FastAPI:
    """The FP FastAPI application over the store named in `settings` (opened now, closed on shutdown)."""
    settings = settings or FPSettings.from_env()
    store = FeatureStore(settings.db_path)
    service = FeatureService(settings, store)
    audit = AuditLog(settings.audit_file, retention_days=settings.audit_retention_days)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        record_config_change(
            audit,
            settings.audit_file.with_name("config.applied.json"),
            asdict(settings),
            source="FP settings (FP_* environment)",
        )
        yield
        store.close()

    app = FastAPI(
        title="Feature Platform",
        version=API_VERSION,
        description="Real-time and batch feature ingest from virtual nodes, and the Feature API.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = service

    @app.exception_handler(FPRequestError)
    async def _fp_error(_: Request, exc: FPRequestError) -> JSONResponse:
        return JSONResponse({"error": exc.message, "status": exc.status}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc.detail), "status": exc.status_code},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"invalid request: {where}: {first.get('msg', 'malformed body')}"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more)"
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in errors[:20]]
        return JSONResponse({"error": message, "status": 422, "details": details}, status_code=422)

    # Plain `def` routes: FastAPI runs them in its thread pool, so SQLite work never blocks the loop.
    @app.post("/fp/v1/ingest/realtime", tags=["ingest"])
    def ingest_realtime(body: RealtimeIngest) -> dict:
        """Compute and store features for a small set of records now."""
        return service.ingest_realtime(body.client, [r.model_dump() for r in body.records])

    @app.post("/fp/v1/ingest/batch", tags=["ingest"])
    def ingest_batch(body: BatchIngest) -> dict:
        """Apply one batch once; a repeated batch id answers the first result with duplicate=true."""
        return service.ingest_batch(body.client, body.batch_id, [r.model_dump() for r in body.records])

    @app.get("/fp/v1/batches/{client}/{batch_id}", tags=["ingest"])
    def batch_status(client: str, batch_id: str) -> dict:
        """Status of a batch."""
        return service.batch_status(client, batch_id)

    @app.get("/fp/v1/features/{client}/{entity_id:path}", tags=["features"])
    def features(
        client: str,
        entity_id: str,
        actor: str | None = Header(
            None, alias="X-Actor", max_length=128, description="who reads (audit log); default anonymous"
        ),
    ) -> dict:
        """Features of a user (entity_id = user_id) or a node (entity_id = node_id); each read is audited."""
        target = f"{client}/{entity_id}"
        try:
            row = service.features(client, entity_id)
        except FPRequestError as exc:
            audit.record("data_access", actor, target, {"found": False, "status": exc.status})
            raise
        audit.record("data_access", actor, target, {"found": True, "entity_type": row.get("entity_type")})
        return row

    @app.get("/fp/v1/health", tags=["ops"])
    def health() -> dict:
        """Service liveness."""
        return {**service.health(), "version": API_VERSION}

    @app.get("/fp/v1/metrics", tags=["ops"])
    def metrics() -> dict:
        """Ingest, batch and read counters."""
        return service.metrics()

    return app
