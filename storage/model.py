"""The table model: records, the TableStore interface, validation helpers, and the table store settings.

Every setting is declared once, in TABLE_SETTINGS (field, type, default, environment variable,
luigi.cfg key, meaning); the defaults of TableStoreSettings (whose fields are checked against that
list at import), its `from_env` and `from_cfg` loaders and the luigi.cfg `[tables]` section
(batch_tasks.config.tables) are built from that list.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Protocol, runtime_checkable

from fraudcore.clients import CLIENT_RE, ConfigError, parse_date
from storage.errors import StorageConfigError

__all__ = [
    "BACKENDS",
    "CONSISTENCY_LEVELS",
    "TABLE_SETTINGS",
    "WRITER_DRIVERS",
    "DfeRow",
    "Replication",
    "RunRecord",
    "Setting",
    "TableStore",
    "TableStoreSettings",
    "check_client",
    "check_date",
    "check_identifier",
    "parse_replication",
    "setting",
]


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class DfeRow:
    """One DFE feature vector of a user at a point in time (fraud.dfe_data)."""

    user_id: str
    timestamp_ms: int
    feature_vector: dict[str, float]


@dataclass(frozen=True)
class RunRecord:
    """One run of one task for a client-day (fraud.job_runs); `date` is YYYY-MM-DD."""

    client: str
    date: str
    task: str
    run_id: str
    status: str
    started_ms: int
    finished_ms: int | None = None
    duration_s: float | None = None
    rows: dict[str, int] = field(default_factory=dict)
    message: str = ""


@runtime_checkable
class TableStore(Protocol):
    """Keyed tables of the platform; every backend upserts, so a retried write never duplicates."""

    def __enter__(self) -> TableStore:
        """The store itself, closed again when the block ends."""
        ...

    def __exit__(self, *exc: object) -> None:
        """Close the store."""
        ...

    def write_dfe(self, client: str, rows: Iterable[DfeRow]) -> int:
        """Number of rows written; a row replaces any earlier one with the same (client, user_id, timestamp)."""
        ...

    def read_dfe(self, client: str, user_id: str) -> list[DfeRow]:
        """The user's DFE rows, newest first."""
        ...

    def count_dfe(self, client: str) -> int:
        """Number of DFE rows stored for the client."""
        ...

    def write_result(
        self, client: str, job_id: str, result_type: str, result_data: str, created_at_ms: int
    ) -> None:
        """Store one result, replacing any earlier one of the same (client, job_id, result_type)."""
        ...

    def read_results(self, client: str, job_id: str) -> dict[str, str]:
        """result_type → result_data of one job."""
        ...

    def record_run(self, run: RunRecord) -> None:
        """Store the run record, replacing any earlier one of the same (client, date, task, run_id)."""
        ...

    def list_runs(self, client: str, date: str | dt.date) -> list[RunRecord]:
        """The client-day's run records, oldest start first."""
        ...

    def close(self) -> None:
        """Release the store's connections."""
        ...


# --------------------------------------------------------------------------- validation

# Backend names make_table_store (storage/tables.py) turns into stores.
BACKENDS = ("cassandra", "sqlite")

# Drivers of the Cassandra DFE writer (storage/dfe_writer.py).
WRITER_DRIVERS = ("native", "python")

# ConsistencyLevel names of the Cassandra driver, spelled out so validation does not import it.
CONSISTENCY_LEVELS = (
    "ANY",
    "ONE",
    "TWO",
    "THREE",
    "QUORUM",
    "ALL",
    "LOCAL_QUORUM",
    "EACH_QUORUM",
    "LOCAL_ONE",
)

_IDENT_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_DC_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_STRATEGIES = {"SimpleStrategy", "NetworkTopologyStrategy"}


def check_client(client: str) -> str:
    """The client name when it is a registry-style name; StorageConfigError otherwise."""
    if not isinstance(client, str) or not CLIENT_RE.match(client):
        raise StorageConfigError(f"invalid client name {client!r}: must match {CLIENT_RE.pattern}")
    return client


def check_date(date: str | dt.date) -> str:
    """The date as YYYY-MM-DD; StorageConfigError when it is not a calendar date."""
    try:
        return parse_date(date).isoformat()
    except ConfigError as exc:
        raise StorageConfigError(str(exc)) from None


def check_identifier(name: str, what: str = "keyspace") -> str:
    """The name when it is a safe lower-case CQL identifier; StorageConfigError otherwise."""
    if not isinstance(name, str) or not _IDENT_RE.match(name):
        raise StorageConfigError(f"invalid {what} name {name!r}: must match {_IDENT_RE.pattern}")
    return name


@dataclass(frozen=True)
class Replication:
    """A keyspace replication: SimpleStrategy with one factor, or NetworkTopologyStrategy per data centre."""

    strategy: str
    factors: tuple[tuple[str, int], ...]

    def cql(self) -> str:
        """The CQL map literal, rendered from validated parts only."""
        if self.strategy == "SimpleStrategy":
            return f"{{'class': 'SimpleStrategy', 'replication_factor': {self.factors[0][1]}}}"
        per_dc = ", ".join(f"'{dc}': {n}" for dc, n in self.factors)
        return f"{{'class': 'NetworkTopologyStrategy', {per_dc}}}"


def parse_replication(spec: str) -> Replication:
    """`SimpleStrategy:1` or `NetworkTopologyStrategy:dc1=3,dc2=2` as a Replication; bad specs are refused."""
    how = (
        "use SimpleStrategy:<factor> or NetworkTopologyStrategy:<dc>=<factor>[,<dc>=<factor>…] "
        f"({_ENV['cassandra_replication']})"
    )
    strategy, sep, rest = (spec or "").strip().partition(":")
    if not sep or strategy not in _STRATEGIES or not rest:
        raise StorageConfigError(f"invalid replication {spec!r}: {how}")
    try:
        if strategy == "SimpleStrategy":
            factors: tuple[tuple[str, int], ...] = (("replication_factor", int(rest)),)
        else:
            pairs = [p.split("=", 1) for p in rest.split(",")]
            factors = tuple((dc.strip(), int(n)) for dc, n in pairs)
    except ValueError:
        raise StorageConfigError(f"invalid replication {spec!r}: {how}") from None
    for dc, n in factors:
        if not (1 <= n <= 20) or not _DC_RE.match(dc):
            raise StorageConfigError(
                f"invalid replication {spec!r}: factors 1-20, data centre names "
                f"matching {_DC_RE.pattern}; {how}"
            )
    if len({dc for dc, _ in factors}) != len(factors):
        raise StorageConfigError(f"invalid replication {spec!r}: a data centre is named twice")
    return Replication(strategy, factors)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Setting:
    """One table store setting: its field, type, default, environment variable, luigi.cfg key and meaning."""

    name: str
    kind: type
    """str, int, or tuple (a list of strings, written comma-separated in the environment and luigi.cfg)."""
    default: Any
    env: str
    cfg: str | None
    """Key in luigi.cfg [tables]; None for values that only come from the environment (secrets)."""
    doc: str
    cfg_default: Any = None
    """The [tables] default when it differs from the field's default; None when it is the same."""
    path: bool = False
    """A file: luigi.cfg may name it relative to the project root."""

    @property
    def annotation(self) -> str:
        """The field's type as written in an annotation."""
        return "tuple[str, ...]" if self.kind is tuple else self.kind.__name__

    @property
    def cfg_text(self) -> str | int:
        """The [tables] default as luigi.cfg spells it (lists comma-separated)."""
        value = self.default if self.cfg_default is None else self.cfg_default
        return ",".join(value) if self.kind is tuple else value

    def parse(self, raw: str, source: str) -> Any:
        """A text value as the field's type; `source` (variable or key) is named when it does not parse."""
        if self.kind is tuple:
            return tuple(h.strip() for h in raw.split(",") if h.strip())
        if self.kind is int:
            try:
                return int(raw)
            except ValueError:
                raise StorageConfigError(f"{source} must be a whole number, got {raw!r}") from None
        return raw


TABLE_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "backend",
        str,
        "sqlite",
        "FRAUDBATCH_TABLES_BACKEND",
        "backend",
        '"sqlite" (embedded file) or "cassandra"',
    ),
    Setting(
        "sqlite_path",
        str,
        "",
        "FRAUDBATCH_SQLITE_PATH",
        "sqlite_path",
        "SQLite file of the embedded backend; its folder is created on open",
        cfg_default="var/tables/fraudbatch.sqlite",
        path=True,
    ),
    Setting(
        "cassandra_hosts",
        tuple,
        ("127.0.0.1",),
        "FRAUDBATCH_CASSANDRA_HOSTS",
        "cassandra_hosts",
        "contact points of the Cassandra backend, comma-separated",
    ),
    Setting(
        "cassandra_port",
        int,
        9042,
        "FRAUDBATCH_CASSANDRA_PORT",
        "cassandra_port",
        "CQL native port of the Cassandra backend",
    ),
    Setting(
        "cassandra_keyspace",
        str,
        "fraud",
        "FRAUDBATCH_CASSANDRA_KEYSPACE",
        "cassandra_keyspace",
        "keyspace holding dfe_data, results and job_runs (cql/)",
    ),
    Setting(
        "cassandra_local_dc",
        str,
        "datacenter1",
        "FRAUDBATCH_CASSANDRA_LOCAL_DC",
        "cassandra_local_dc",
        "data centre the driver routes to first (token-aware within it)",
    ),
    Setting(
        "cassandra_username",
        str,
        "",
        "FRAUDBATCH_CASSANDRA_USERNAME",
        "cassandra_username",
        "login of the PasswordAuthenticator; empty when the cluster needs none",
    ),
    Setting(
        "cassandra_password",
        str,
        "",
        "FRAUDBATCH_CASSANDRA_PASSWORD",
        None,
        "password of the login; from the environment only, never from luigi.cfg",
    ),
    Setting(
        "cassandra_tls_ca_file",
        str,
        "",
        "FRAUDBATCH_CASSANDRA_TLS_CA_FILE",
        "cassandra_tls_ca_file",
        "PEM CA that signed the nodes' certificates; set, the driver speaks TLS and verifies them",
        path=True,
    ),
    Setting(
        "cassandra_tls_cert_file",
        str,
        "",
        "FRAUDBATCH_CASSANDRA_TLS_CERT_FILE",
        "cassandra_tls_cert_file",
        "PEM client certificate, for clusters that require client authentication (with the key file)",
        path=True,
    ),
    Setting(
        "cassandra_tls_key_file",
        str,
        "",
        "FRAUDBATCH_CASSANDRA_TLS_KEY_FILE",
        "cassandra_tls_key_file",
        "PEM private key of the client certificate",
        path=True,
    ),
    Setting(
        "cassandra_replication",
        str,
        "SimpleStrategy:1",
        "FRAUDBATCH_CASSANDRA_REPLICATION",
        "cassandra_replication",
        "keyspace replication the migrations create: SimpleStrategy:<n> or NetworkTopologyStrategy:<dc>=<n>,…",
    ),
    Setting(
        "cassandra_consistency",
        str,
        "LOCAL_QUORUM",
        "FRAUDBATCH_CASSANDRA_CONSISTENCY",
        "cassandra_consistency",
        "consistency level of every read and write (a ConsistencyLevel name)",
    ),
    Setting(
        "cassandra_write_concurrency",
        int,
        96,
        "FRAUDBATCH_CASSANDRA_WRITE_CONCURRENCY",
        "cassandra_write_concurrency",
        "requests in flight per writer process when writing DFE rows",
    ),
    Setting(
        "cassandra_write_processes",
        int,
        2,
        "FRAUDBATCH_CASSANDRA_WRITE_PROCESSES",
        "cassandra_write_processes",
        "writer processes for large DFE writes (one per core is the sweet spot)",
    ),
    Setting(
        "cassandra_writer_driver",
        str,
        "native",
        "FRAUDBATCH_CASSANDRA_WRITER_DRIVER",
        "cassandra_writer_driver",
        'driver of the DFE writer: "native" (the C++ driver via acsylla) or "python" (DataStax driver)',
    ),
)

_BY_NAME = {s.name: s for s in TABLE_SETTINGS}
_ENV = {s.name: s.env for s in TABLE_SETTINGS}


def setting(name: str) -> Setting:
    """The declaration of one table store setting by field name."""
    return _BY_NAME[name]


def _declared(name: str) -> Any:
    """The dataclass field of one setting: its default and its declaration (metadata "setting")."""
    s = _BY_NAME[name]
    return field(default=s.default, metadata={"setting": s})


@dataclass(frozen=True)
class TableStoreSettings:
    """Which table store backend to use and where it lives: one field per entry of TABLE_SETTINGS
    (same order, name and type, checked at import); `from_env` applies the FRAUDBATCH_* overrides."""

    backend: str = _declared("backend")
    sqlite_path: str = _declared("sqlite_path")
    cassandra_hosts: tuple[str, ...] = _declared("cassandra_hosts")
    cassandra_port: int = _declared("cassandra_port")
    cassandra_keyspace: str = _declared("cassandra_keyspace")
    cassandra_local_dc: str = _declared("cassandra_local_dc")
    cassandra_username: str = _declared("cassandra_username")
    cassandra_password: str = _declared("cassandra_password")
    cassandra_tls_ca_file: str = _declared("cassandra_tls_ca_file")
    cassandra_tls_cert_file: str = _declared("cassandra_tls_cert_file")
    cassandra_tls_key_file: str = _declared("cassandra_tls_key_file")
    cassandra_replication: str = _declared("cassandra_replication")
    cassandra_consistency: str = _declared("cassandra_consistency")
    cassandra_write_concurrency: int = _declared("cassandra_write_concurrency")
    cassandra_write_processes: int = _declared("cassandra_write_processes")
    cassandra_writer_driver: str = _declared("cassandra_writer_driver")

    @classmethod
    def from_env(
        cls,
        defaults: TableStoreSettings | Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> TableStoreSettings:
        """`defaults` (settings or a field mapping, e.g. from luigi.cfg) overridden by set environment variables."""
        env = os.environ if environ is None else environ
        if defaults is None:
            base = cls()
        elif isinstance(defaults, TableStoreSettings):
            base = defaults
        else:
            unknown = sorted(set(defaults) - set(_BY_NAME))
            if unknown:
                raise StorageConfigError(f"unknown table store settings {unknown}; known: {sorted(_BY_NAME)}")
            base = cls(**defaults)
        values: dict[str, Any] = {}
        for s in TABLE_SETTINGS:
            raw = env.get(s.env)
            if raw is not None and raw.strip() != "":
                values[s.name] = s.parse(raw.strip(), s.env)
        settings = replace(base, **values)
        settings.validate()
        return settings

    @classmethod
    def from_cfg(
        cls, values: Mapping[str, Any], resolve_path: Callable[[str], str] = str
    ) -> TableStoreSettings:
        """Settings from [tables] values keyed by luigi.cfg key (text, or already typed); not yet validated.

        A non-empty file setting goes through `resolve_path`, so the caller decides what a relative path means.
        """
        unknown = sorted(set(values) - {s.cfg for s in TABLE_SETTINGS if s.cfg})
        if unknown:
            raise StorageConfigError(f"unknown [tables] keys {unknown}")
        given: dict[str, Any] = {}
        for s in TABLE_SETTINGS:
            if s.cfg is None or s.cfg not in values:
                continue
            value = values[s.cfg]
            if isinstance(value, str):
                value = s.parse(value, f"[tables] {s.cfg}")
            if s.path and value:
                value = resolve_path(value)
            given[s.name] = value
        return cls(**given)

    def validate(self) -> None:
        """Raise StorageConfigError, naming the variable to set, on settings no store can run with."""
        if self.backend not in BACKENDS:
            raise StorageConfigError(
                f"unknown table store backend {self.backend!r} ({_ENV['backend']}); "
                f"choose one of {', '.join(sorted(BACKENDS))}"
            )
        if self.backend == "sqlite" and not self.sqlite_path:
            raise StorageConfigError(f"the sqlite table store needs a file; set {_ENV['sqlite_path']}")
        if self.backend == "cassandra":
            self._validate_cassandra()

    def _validate_cassandra(self) -> None:
        if not self.cassandra_hosts or not all(h and h.strip() for h in self.cassandra_hosts):
            raise StorageConfigError(
                f"the cassandra table store needs contact points; set {_ENV['cassandra_hosts']}"
            )
        if not 0 < int(self.cassandra_port) < 65536:
            raise StorageConfigError(
                f"invalid Cassandra port {self.cassandra_port}; set {_ENV['cassandra_port']}"
            )
        check_identifier(self.cassandra_keyspace)
        parse_replication(self.cassandra_replication)
        if self.cassandra_consistency.upper() not in CONSISTENCY_LEVELS:
            raise StorageConfigError(
                f"unknown consistency {self.cassandra_consistency!r} ({_ENV['cassandra_consistency']}); "
                f"choose one of {', '.join(CONSISTENCY_LEVELS)}"
            )
        if int(self.cassandra_write_concurrency) < 1 or int(self.cassandra_write_processes) < 1:
            raise StorageConfigError(
                f"{_ENV['cassandra_write_concurrency']} and {_ENV['cassandra_write_processes']} "
                "must be at least 1"
            )
        if self.cassandra_writer_driver not in WRITER_DRIVERS:
            raise StorageConfigError(
                f"unknown DFE writer driver {self.cassandra_writer_driver!r} "
                f"({_ENV['cassandra_writer_driver']}); choose native or python"
            )
        if bool(self.cassandra_tls_cert_file) != bool(self.cassandra_tls_key_file):
            raise StorageConfigError(
                "a TLS client certificate needs its key and the other way round; set both "
                f"{_ENV['cassandra_tls_cert_file']} and {_ENV['cassandra_tls_key_file']}"
            )
        if self.cassandra_password and not self.cassandra_username:
            raise StorageConfigError(f"a Cassandra password needs a user; set {_ENV['cassandra_username']}")


if [(f.name, f.type) for f in fields(TableStoreSettings)] != [(s.name, s.annotation) for s in TABLE_SETTINGS]:
    raise TypeError(
        "TableStoreSettings must declare the fields of TABLE_SETTINGS, in order and with their types"
    )
