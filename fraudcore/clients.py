"""The client registry (config/clients.yaml) and the validation of client names and dates.

`python -m fraudcore.clients --schema` prints the registry's JSON Schema (docs/clients.schema.json);
`python -m fraudcore.clients [PATH]` checks a registry file.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import difflib
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

CLIENT_RE = re.compile(r"^[a-z][a-z0-9_-]{1,31}$")
CanonicalField = Literal[
    "event_id",
    "user_id",
    "event_time",
    "event_type",
    "ip",
    "device_id",
    "browser_fingerprint",
    "user_agent",
    "email",
    "email_domain",
    "phone",
    "amount",
    "currency",
    "country",
    "merchant_id",
]
# The event types the features understand (fraudcore/features.py); a client's own vocabulary
# is mapped onto these by its registry entry's event_types.
EventType = Literal[
    "login", "login_failed", "logout", "page_view", "signup", "password_change", "transaction"
]
Priority = Literal["critical", "normal", "batch"]  # DCluster capacity class
BadFilePolicy = Literal["quarantine", "fail"]
CANONICAL_FIELDS: tuple[str, ...] = get_args(CanonicalField)
CANONICAL_EVENT_TYPES: tuple[str, ...] = get_args(EventType)
PRIORITIES: tuple[str, ...] = get_args(Priority)
BAD_FILE_POLICIES: tuple[str, ...] = get_args(BadFilePolicy)
DEFAULT_REGISTRY = Path(__file__).resolve().parent.parent / "config" / "clients.yaml"
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(ValueError):
    """A one-line, actionable configuration or argument error."""


# Checks of single values; their messages are printed as they are, after "file: client 'x': ".
def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {value!r}") from None
    return value


def _notify_url(value: str) -> str:
    if value and not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"notify_url must be an http(s) URL, got {value!r}")
    return value


def _env_name(value: str) -> str:
    if value and not re.fullmatch(r"[A-Z_][A-Z0-9_]*", value):
        raise ValueError("notify_secret_env must name an environment variable (A-Z, 0-9, _)")
    return value


def _duration(value: str) -> str:
    try:
        parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"close_after: {exc}") from None
    return value


def _file_name(value: str) -> str:
    if not value or "/" in value:
        raise ValueError(f"ready_marker must be a file name (no '/'), got {value!r}")
    return value


# strict: YAML gives real ints, strings and mappings, so "50" for a number is a mistake to report,
# not a value to convert.
_STRICT = ConfigDict(extra="forbid", strict=True)


@dataclass(frozen=True, kw_only=True, config=_STRICT)
class ClientEntry:
    """The keys of one client in the registry file, with their defaults (the schema of an entry)."""

    bucket: Annotated[
        str, Field(min_length=1, description="object-store bucket holding rawdata/ and results/")
    ]
    timezone: Annotated[
        str,
        AfterValidator(_timezone),
        Field(description="IANA zone; defines the client-day window and the zone of naive timestamps"),
    ] = "UTC"
    priority: Annotated[Priority, Field(description="DCluster capacity class")] = "normal"
    field_map: Annotated[
        dict[str, CanonicalField],
        Field(description="client field name -> canonical field name (DESIGN.md raw input)"),
    ] = dataclasses.field(default_factory=dict)
    super_node_threshold: Annotated[
        int, Field(ge=1, description="a virtual node shared by more users than this is a super-node")
    ] = 50
    flag_threshold: Annotated[
        int, Field(ge=0, le=100, description="risk_score (0-100) at or above which a user is flagged")
    ] = 70
    cron_group: Annotated[str, Field(description="informational: which crontab line drives the client")] = ""
    notify_url: Annotated[
        str,
        AfterValidator(_notify_url),
        Field(description='http(s) endpoint told when the day\'s results are sent ("" = nobody)'),
    ] = ""
    notify_secret_env: Annotated[
        str,
        AfterValidator(_env_name),
        Field(description="environment variable holding the HMAC secret of notifications"),
    ] = ""
    event_types: Annotated[
        dict[str, EventType],
        Field(description="client event-type value -> canonical event type; unmapped values are counted"),
    ] = dataclasses.field(default_factory=dict)
    on_bad_file: Annotated[
        BadFilePolicy, Field(description="quarantine: the day completes, partial | fail: the day fails")
    ] = "quarantine"
    close_after: Annotated[
        str,
        AfterValidator(_duration),
        Field(
            json_schema_extra={"pattern": r"^\s*\d+\s*[smhd]\s*$"},
            description="a day is final this long after the end of the client's local day (30m, 2h, 1d)",
        ),
    ] = "2h"
    ready_marker: Annotated[
        str,
        AfterValidator(_file_name),
        Field(description="rawdata/{client}/{date}/<this> written by the client closes the day"),
    ] = "_READY"


@dataclass(frozen=True, kw_only=True, config=_STRICT)
class ClientConfig(ClientEntry):
    """One tenant: where its data lives and how its records are read and judged."""

    name: str

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


_FIELD_NAMES = {f.name for f in dataclasses.fields(ClientEntry)}
_TOP_LEVEL = ("clients", "defaults")


def registry_path(path: str | os.PathLike[str] | None = None) -> Path:
    return Path(path or os.environ.get("FRAUDBATCH_CLIENTS") or DEFAULT_REGISTRY)


def load_registry(path: str | os.PathLike[str] | None = None) -> dict[str, ClientConfig]:
    """All clients of the registry file, validated; a mistake is one ConfigError line naming file, client and key."""
    p = registry_path(path)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"client registry not found: {p} (set FRAUDBATCH_CLIENTS)") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{p}: expected a mapping with {' and '.join(_TOP_LEVEL)}, got {_kind(doc)}")
    _check_keys(f"{p}", doc, _TOP_LEVEL, "top-level keys")
    defaults = _mapping(f"{p}: defaults", doc.get("defaults"))
    _check_keys(f"{p}: defaults", defaults, _FIELD_NAMES, "keys")
    out: dict[str, ClientConfig] = {}
    for name, entry in _mapping(f"{p}: clients", doc.get("clients")).items():
        where = f"{p}: client {name!r}"
        if not isinstance(name, str) or not CLIENT_RE.match(name):
            raise ConfigError(f"{where}: name must match {CLIENT_RE.pattern}")
        entry = _mapping(where, entry)
        _check_keys(where, entry, _FIELD_NAMES, "keys")
        try:
            out[name] = ClientConfig(name=name, **{**defaults, **entry})
        except ValidationError as exc:
            raise ConfigError(f"{where}: {_describe(exc, entry)}") from None
    return out


def _mapping(where: str, value: object) -> dict[str, Any]:
    """A section of the file as a dict (empty when left blank)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    return f"{type(value).__name__} {value!r}"[:120]


def _check_keys(where: str, section: Mapping[str, Any], known: Sequence[str] | set[str], what: str) -> None:
    unknown = sorted(str(k) for k in set(section) - set(known))
    if not unknown:
        return
    hints = [repr(m[0]) for k in unknown if (m := difflib.get_close_matches(k, known, n=1))]
    hint = f" (did you mean {' or '.join(hints)}?)" if hints else ""
    raise ConfigError(f"{where}: unknown {what} {unknown}{hint}; known: {', '.join(sorted(known))}")


def _describe(exc: ValidationError, entry: Mapping[str, Any]) -> str:
    """Every problem of one entry on one line: key, what is wrong, the value given."""
    problems = []
    for error in exc.errors(include_url=False):
        key = ".".join(str(part) for part in error["loc"])
        origin = "" if not error["loc"] or error["loc"][0] in entry else " (from defaults)"
        if error["type"] == "value_error":
            problems.append(f"{error['ctx']['error']}{origin}")
        elif error["type"] == "missing":
            problems.append(f"{key}: required, not set")
        else:
            problems.append(f"{key}: {error['msg']}, got {error['input']!r}{origin}")
    return "; ".join(problems)


def registry_schema() -> dict[str, Any]:
    """The JSON Schema of the registry file, made from ClientEntry (committed as docs/clients.schema.json)."""
    entry = TypeAdapter(ClientEntry).json_schema()
    defs = entry.pop("$defs", {})
    defaults = {**entry, "title": "Defaults", "description": "keys every client gets unless it sets its own"}
    defaults.pop("required", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "fraudbatch client registry (config/clients.yaml)",
        "description": "One entry per tenant; read by fraudcore.clients.load_registry.",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "defaults": {"anyOf": [{"$ref": "#/$defs/Defaults"}, {"type": "null"}]},
            "clients": {
                "type": "object",
                "propertyNames": {"pattern": CLIENT_RE.pattern},
                "additionalProperties": {"$ref": "#/$defs/ClientEntry"},
            },
        },
        "$defs": {**defs, "ClientEntry": entry, "Defaults": defaults},
    }


def schema_text() -> str:
    """registry_schema() as the committed file holds it."""
    return json.dumps(registry_schema(), indent=2) + "\n"


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


def main(argv: Sequence[str] | None = None) -> int:
    """Print the registry's JSON Schema, or check a registry file; 0 when it is valid, 2 when not."""
    parser = argparse.ArgumentParser(prog="python -m fraudcore.clients", description=main.__doc__)
    parser.add_argument(
        "registry",
        nargs="?",
        help="registry file to check (default: $FRAUDBATCH_CLIENTS or config/clients.yaml)",
    )
    parser.add_argument(
        "--schema", action="store_true", help="print the JSON Schema of the registry and exit"
    )
    args = parser.parse_args(argv)
    if args.schema:
        sys.stdout.write(schema_text())
        return 0
    try:
        clients = load_registry(args.registry)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{registry_path(args.registry)}: {len(clients)} clients: {', '.join(sorted(clients))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
