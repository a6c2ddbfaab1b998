"""Settings of the Feature Platform service: one object, environment overrides (FP_*)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FPSettings:
    """Everything the FP service is configured with; `from_env` applies FP_<FIELD> overrides."""

    host: str = "127.0.0.1"
    """Interface the HTTP server binds (FP_HOST)."""

    port: int = 8092
    """TCP port of the HTTP server (FP_PORT)."""

    db_path: Path = Path("var/fp/features.sqlite")
    """SQLite file of the embedded feature store; its folder is created on start (FP_DB_PATH)."""

    batch_size_max: int = 10000
    """Largest batch ingest accepted, in records; larger batches get 413 (FP_BATCH_SIZE_MAX)."""

    realtime_max_records: int = 500
    """Largest real-time ingest accepted, in records; larger payloads get 413 (FP_REALTIME_MAX_RECORDS)."""

    cache_ttl_seconds: float = 60.0
    """How long a feature read is served from the in-process cache (FP_CACHE_TTL_SECONDS)."""

    realtime_timeout_ms: float = 100.0
    """Latency budget of a real-time ingest; slower requests are logged as warnings (FP_REALTIME_TIMEOUT_MS)."""

    audit_path: Path | None = None
    """Audit log (SPEC §8): data_access per feature read, config_change when settings changed; empty
    means audit.jsonl beside db_path (FP_AUDIT_PATH)."""

    audit_retention_days: float = 365.0
    """Audit entries older than this are dropped at start and once a day; 0 keeps all (FP_AUDIT_RETENTION_DAYS)."""

    @property
    def audit_file(self) -> Path:
        """Where the audit log is written: audit_path, else audit.jsonl beside the feature store."""
        return Path(self.audit_path) if self.audit_path else Path(self.db_path).with_name("audit.jsonl")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> FPSettings:
        """Defaults, then FP_* environment variables, then explicit keyword overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"FP_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, raw, type(getattr(cls, f.name)))
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = replace(cls(), **values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ValueError on settings the service cannot run with."""
        if not 0 < self.port < 65536:
            raise ValueError(f"FP port must be 1-65535, got {self.port}")
        if self.batch_size_max < 1 or self.realtime_max_records < 1:
            raise ValueError("FP batch_size_max and realtime_max_records must be positive")
        if self.cache_ttl_seconds < 0 or self.realtime_timeout_ms <= 0:
            raise ValueError("FP cache_ttl_seconds must be >= 0 and realtime_timeout_ms > 0")
        if self.audit_retention_days < 0:
            raise ValueError("FP audit_retention_days must be >= 0")


def _convert(name: str, raw: str, kind: type) -> object:
    """Parse one environment value into the field's type, naming the variable on failure."""
    try:
        if issubclass(kind, Path):
            return Path(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        return raw
    except ValueError as exc:
        raise ValueError(f"FP_{name.upper()}={raw!r} is not a valid {kind.__name__}") from exc
