"""The client registry (config/clients.yaml) and the validation of client names and dates."""
from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

CLIENT_RE = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")
PRIORITIES = ("critical", "normal", "batch")
CANONICAL_FIELDS = (
    "event_id", "user_id", "event_time", "event_type", "ip", "device_id", "browser_fingerprint",
    "user_agent", "email", "email_domain", "phone", "amount", "currency", "country", "merchant_id",
)
# The event types the features understand (fraudcore/features.py); a client's own vocabulary
# is mapped onto these by its registry entry's event_types.
CANONICAL_EVENT_TYPES = (
    "login", "login_failed", "logout", "page_view", "signup", "password_change", "transaction",
)
BAD_FILE_POLICIES = ("quarantine", "fail")
DEFAULT_REGISTRY = Path(__file__).resolve().parent.parent / "config" / "clients.yaml"
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(ValueError):
    """A one-line, actionable configuration or argument error."""


@dataclass(frozen=True)
class ClientConfig:
    """One tenant: where its data lives and how its records are read and judged."""

    name: str
    bucket: str
    timezone: str = "UTC"
    priority: str = "normal"
    field_map: dict[str, str] = field(default_factory=dict)
    super_node_threshold: int = 50
    flag_threshold: int = 70
    cron_group: str = ""
    notify_url: str = ""  # http(s) endpoint told when the day's results are sent ("" = nobody)
    notify_secret_env: str = ""  # environment variable holding the HMAC secret of notifications
    event_types: dict[str, str] = field(default_factory=dict)  # client value -> canonical event type
    on_bad_file: str = "quarantine"  # quarantine: the day completes, partial | fail: the day fails
    close_after: str = "2h"  # a day is final this long after the end of the client's local day
    ready_marker: str = "_READY"  # rawdata/{client}/{date}/<this> written by the client closes the day

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def close_after_s(self) -> int:
        """close_after in seconds."""
        return parse_duration(self.close_after)

    def local_date(self, instant: dt.datetime) -> dt.date:
        """The client-local calendar date of an aware instant."""
        return instant.astimezone(self.tz).date()

    def day_window_ms(self, day: dt.date) -> tuple[int, int]:
        """[start, end) of the client-day in epoch milliseconds, in the client's timezone."""
        start = dt.datetime.combine(day, dt.time(), tzinfo=self.tz)
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=self.tz)
        return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


_FIELD_NAMES = {f for f in ClientConfig.__dataclass_fields__ if f != "name"}


def registry_path(path: str | os.PathLike[str] | None = None) -> Path:
    return Path(path or os.environ.get("FRAUDBATCH_CLIENTS") or DEFAULT_REGISTRY)


def load_registry(path: str | os.PathLike[str] | None = None) -> dict[str, ClientConfig]:
    """All clients of the registry file, validated."""
    p = registry_path(path)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"client registry not found: {p} (set FRAUDBATCH_CLIENTS)") from None
    defaults = doc.get("defaults") or {}
    out: dict[str, ClientConfig] = {}
    for name, entry in (doc.get("clients") or {}).items():
        merged = {**defaults, **(entry or {})}
        unknown = sorted(set(merged) - _FIELD_NAMES)
        if unknown:
            raise ConfigError(f"{p}: client {name!r}: unknown keys {unknown}; "
                              f"known: {', '.join(sorted(_FIELD_NAMES))}")
        cfg = ClientConfig(name=name, **merged)
        _validate(cfg, p)
        out[name] = cfg
    return out


def _validate(cfg: ClientConfig, source: Path) -> None:
    where = f"{source}: client {cfg.name!r}"
    if not CLIENT_RE.match(cfg.name):
        raise ConfigError(f"{where}: name must match {CLIENT_RE.pattern}")
    if cfg.priority not in PRIORITIES:
        raise ConfigError(f"{where}: priority must be one of {', '.join(PRIORITIES)}")
    try:
        ZoneInfo(cfg.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}: unknown timezone {cfg.timezone!r}") from None
    if cfg.notify_url and not re.match(r"^https?://[^/\s]+", cfg.notify_url):
        raise ConfigError(f"{where}: notify_url must be an http(s) URL, got {cfg.notify_url!r}")
    if cfg.notify_secret_env and not re.fullmatch(r"[A-Z_][A-Z0-9_]*", cfg.notify_secret_env):
        raise ConfigError(f"{where}: notify_secret_env must name an environment variable (A-Z, 0-9, _)")
    bad = sorted(set(cfg.field_map.values()) - set(CANONICAL_FIELDS))
    if bad:
        raise ConfigError(f"{where}: field_map targets unknown fields {bad}")
    if not isinstance(cfg.event_types, dict):
        raise ConfigError(f"{where}: event_types must map the client's values to canonical event types")
    bad = sorted(set(cfg.event_types.values()) - set(CANONICAL_EVENT_TYPES))
    if bad:
        raise ConfigError(f"{where}: event_types maps to unknown event types {bad}; "
                          f"known: {', '.join(CANONICAL_EVENT_TYPES)}")
    if cfg.on_bad_file not in BAD_FILE_POLICIES:
        raise ConfigError(f"{where}: on_bad_file must be one of {', '.join(BAD_FILE_POLICIES)}")
    try:
        parse_duration(cfg.close_after)
    except ValueError as exc:
        raise ConfigError(f"{where}: close_after: {exc}") from None
    if not cfg.ready_marker or "/" in cfg.ready_marker:
        raise ConfigError(f"{where}: ready_marker must be a file name (no '/'), got {cfg.ready_marker!r}")


def parse_duration(text: str) -> int:
    """Seconds of a duration such as '90s', '30m', '2h' or '1d'."""
    m = _DURATION_RE.match(str(text))
    if not m:
        raise ValueError(f"expected a duration such as 30m, 2h or 1d, got {text!r}")
    return int(m.group(1)) * _DURATION_UNITS[m.group(2)]


def get_client(name: str, path: str | os.PathLike[str] | None = None) -> ClientConfig:
    """The named client, or a ConfigError that lists the configured ones."""
    if not CLIENT_RE.match(name or ""):
        raise ConfigError(f"invalid client name {name!r}: must match {CLIENT_RE.pattern}")
    reg = load_registry(path)
    if name not in reg:
        raise ConfigError(f"unknown client {name!r}; configured clients: {', '.join(sorted(reg))}")
    return reg[name]


def parse_date(value: str | dt.date) -> dt.date:
    """A YYYY-MM-DD date, or a ConfigError saying what was wrong."""
    if isinstance(value, dt.date):
        return value
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value or ""):
        raise ConfigError(f"invalid date {value!r}: expected YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"invalid date {value!r}: {exc}") from None
