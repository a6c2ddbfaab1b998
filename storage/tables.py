"""The table store for DFE rows, job results and run records: one interface, SQLite and Cassandra backends."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from itertools import islice
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from fraudcore.clients import CLIENT_RE, ConfigError, parse_date
from storage.errors import StorageConfigError, StorageError

__all__ = [
    "DfeRow", "RunRecord", "SQLiteTableStore", "TableStore", "TableStoreSettings", "make_table_store",
]


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

    def write_dfe(self, client: str, rows: Iterable[DfeRow]) -> int:
        """Number of rows written; a row replaces any earlier one with the same (client, user_id, timestamp)."""
        ...

    def read_dfe(self, client: str, user_id: str) -> list[DfeRow]:
        """The user's DFE rows, newest first."""
        ...

    def count_dfe(self, client: str) -> int:
        """Number of DFE rows stored for the client."""
        ...

    def write_result(self, client: str, job_id: str, result_type: str, result_data: str, created_at_ms: int) -> None:
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


# --------------------------------------------------------------------------- SQLite

# Mirrors the fraud keyspace of cql/ (same table and column names; times as epoch ms).
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS dfe_data (
        client_id TEXT NOT NULL, user_id TEXT NOT NULL, timestamp_ms INTEGER NOT NULL,
        feature_vector TEXT NOT NULL,
        PRIMARY KEY (client_id, user_id, timestamp_ms)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS results (
        client_id TEXT NOT NULL, job_id TEXT NOT NULL, result_type TEXT NOT NULL,
        result_data TEXT NOT NULL, created_at_ms INTEGER NOT NULL,
        PRIMARY KEY (client_id, job_id, result_type)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS job_runs (
        client_id TEXT NOT NULL, run_date TEXT NOT NULL, task TEXT NOT NULL, run_id TEXT NOT NULL,
        status TEXT NOT NULL, started_ms INTEGER NOT NULL, finished_ms INTEGER, duration_s REAL,
        row_counts TEXT NOT NULL, message TEXT NOT NULL,
        PRIMARY KEY (client_id, run_date, task, run_id)
    ) WITHOUT ROWID""",
)

_UPSERT_DFE = """
    INSERT INTO dfe_data (client_id, user_id, timestamp_ms, feature_vector) VALUES (?, ?, ?, ?)
    ON CONFLICT (client_id, user_id, timestamp_ms) DO UPDATE SET feature_vector = excluded.feature_vector
"""
_UPSERT_RESULT = """
    INSERT INTO results (client_id, job_id, result_type, result_data, created_at_ms) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (client_id, job_id, result_type)
    DO UPDATE SET result_data = excluded.result_data, created_at_ms = excluded.created_at_ms
"""
_UPSERT_RUN = """
    INSERT INTO job_runs (client_id, run_date, task, run_id, status, started_ms, finished_ms, duration_s,
                          row_counts, message)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (client_id, run_date, task, run_id) DO UPDATE SET
        status = excluded.status, started_ms = excluded.started_ms, finished_ms = excluded.finished_ms,
        duration_s = excluded.duration_s, row_counts = excluded.row_counts, message = excluded.message
"""

# Rows per write transaction: big enough for throughput, short enough that other processes
# waiting on the write lock stay well inside the busy timeout.
_DFE_CHUNK = 5000
_BUSY_TIMEOUT_S = 30.0


def _check_client(client: str) -> str:
    if not isinstance(client, str) or not CLIENT_RE.match(client):
        raise StorageConfigError(f"invalid client name {client!r}: must match {CLIENT_RE.pattern}")
    return client


def _check_date(date: str | dt.date) -> str:
    try:
        return parse_date(date).isoformat()
    except ConfigError as exc:
        raise StorageConfigError(str(exc)) from None


def _vector_json(vector: Mapping[str, float]) -> str:
    # Sorted keys: the same vector always serialises to the same text.
    return json.dumps({str(k): float(v) for k, v in vector.items()}, sort_keys=True, separators=(",", ":"))


class SQLiteTableStore:
    """The table store in one SQLite file (WAL): one connection per instance, safe across processes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: every write below opens its own BEGIN IMMEDIATE transaction, which
            # takes the write lock up front and so waits on the busy timeout instead of failing.
            self._conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise self._error(exc, "open") from exc
        try:
            self._enable_wal()
            self._conn.execute("PRAGMA synchronous = NORMAL")
            with self._tx() as cur:
                for ddl in _SCHEMA:
                    cur.execute(ddl)
        except BaseException:
            self._conn.close()
            raise

    def _enable_wal(self) -> None:
        """Switch the file to WAL once; the mode is stored in the file, so later opens only read it."""
        if self._conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
            return
        # Changing the journal mode needs an exclusive lock and SQLite does not run the busy
        # handler for it: when another process opens the file at the same moment, wait and retry.
        deadline = time.monotonic() + _BUSY_TIMEOUT_S
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def __repr__(self) -> str:
        return f"SQLiteTableStore({self.path!r})"

    def __enter__(self) -> SQLiteTableStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error(self, exc: sqlite3.Error | OSError, action: str) -> StorageError:
        return StorageError(
            f"SQLite table store {action} failed on {self.path}: {exc}; "
            "check the file's path, permissions and free space"
        )

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Cursor]:
        """A cursor inside one write transaction, committed on success and rolled back on error."""
        cur = self._conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                self._conn.rollback()
                raise
            cur.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.rollback()
            raise self._error(exc, "write") from exc
        finally:
            cur.close()

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc, "read") from exc

    def write_dfe(self, client: str, rows: Iterable[DfeRow]) -> int:
        _check_client(client)
        params = ((client, r.user_id, int(r.timestamp_ms), _vector_json(r.feature_vector)) for r in rows)
        written = 0
        while chunk := list(islice(params, _DFE_CHUNK)):
            with self._tx() as cur:
                cur.executemany(_UPSERT_DFE, chunk)
            written += len(chunk)
        return written

    def read_dfe(self, client: str, user_id: str) -> list[DfeRow]:
        _check_client(client)
        found = self._query(
            "SELECT user_id, timestamp_ms, feature_vector FROM dfe_data"
            " WHERE client_id = ? AND user_id = ? ORDER BY timestamp_ms DESC",
            (client, user_id),
        )
        return [DfeRow(u, int(ts), json.loads(fv)) for u, ts, fv in found]

    def count_dfe(self, client: str) -> int:
        _check_client(client)
        return int(self._query("SELECT COUNT(*) FROM dfe_data WHERE client_id = ?", (client,))[0][0])

    def write_result(self, client: str, job_id: str, result_type: str, result_data: str, created_at_ms: int) -> None:
        _check_client(client)
        with self._tx() as cur:
            cur.execute(_UPSERT_RESULT, (client, job_id, result_type, result_data, int(created_at_ms)))

    def read_results(self, client: str, job_id: str) -> dict[str, str]:
        _check_client(client)
        found = self._query(
            "SELECT result_type, result_data FROM results WHERE client_id = ? AND job_id = ? ORDER BY result_type",
            (client, job_id),
        )
        return dict(found)

    def record_run(self, run: RunRecord) -> None:
        _check_client(run.client)
        row_counts = json.dumps({str(k): int(v) for k, v in run.rows.items()}, sort_keys=True)
        with self._tx() as cur:
            cur.execute(_UPSERT_RUN, (
                run.client, _check_date(run.date), run.task, run.run_id, run.status, int(run.started_ms),
                None if run.finished_ms is None else int(run.finished_ms),
                None if run.duration_s is None else float(run.duration_s),
                row_counts, run.message,
            ))

    def list_runs(self, client: str, date: str | dt.date) -> list[RunRecord]:
        _check_client(client)
        found = self._query(
            "SELECT client_id, run_date, task, run_id, status, started_ms, finished_ms, duration_s, row_counts,"
            " message FROM job_runs WHERE client_id = ? AND run_date = ? ORDER BY started_ms, task, run_id",
            (client, _check_date(date)),
        )
        return [
            RunRecord(c, d, t, r, s, int(st), fin, dur, json.loads(rc), msg)
            for c, d, t, r, s, st, fin, dur, rc, msg in found
        ]

    def close(self) -> None:
        self._conn.close()


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class TableStoreSettings:
    """Which table store backend to use and where it lives; `from_env` applies FRAUDBATCH_* overrides."""

    backend: str = "sqlite"
    """"sqlite" (embedded file) or "cassandra" (FRAUDBATCH_TABLES_BACKEND)."""

    sqlite_path: str = ""
    """SQLite file of the embedded backend; its folder is created on open (FRAUDBATCH_SQLITE_PATH)."""

    cassandra_hosts: tuple[str, ...] = ("127.0.0.1",)
    """Contact points of the Cassandra backend."""

    cassandra_port: int = 9042
    """CQL native port of the Cassandra backend."""

    cassandra_keyspace: str = "fraud"
    """Keyspace holding dfe_data, results and job_runs (cql/)."""

    cassandra_local_dc: str = "datacenter1"
    """Data centre the driver routes to first (TokenAwarePolicy over DCAwareRoundRobinPolicy)."""

    cassandra_username: str = ""
    """Login of the PasswordAuthenticator; empty when the cluster needs none."""

    cassandra_password: str = ""
    """Password of `cassandra_username` (set it through the environment, not luigi.cfg)."""

    cassandra_tls_ca_file: str = ""
    """PEM CA that signed the nodes' certificates; set, the driver speaks TLS and verifies them."""

    cassandra_tls_cert_file: str = ""
    """PEM client certificate, for clusters that require client authentication (with the key file)."""

    cassandra_tls_key_file: str = ""
    """PEM private key of `cassandra_tls_cert_file`."""

    cassandra_replication: str = "SimpleStrategy:1"
    """Keyspace replication the migrations create: SimpleStrategy:<n> or NetworkTopologyStrategy:<dc>=<n>,…"""

    cassandra_consistency: str = "LOCAL_QUORUM"
    """Consistency level of every read and write (a ConsistencyLevel name)."""

    cassandra_write_concurrency: int = 96
    """Requests in flight per writer process when writing DFE rows."""

    cassandra_write_processes: int = 2
    """Writer processes for large DFE writes (one per core is the sweet spot)."""

    cassandra_writer_driver: str = "native"
    """Driver of the DFE writer: "native" (the C++ driver via acsylla) or "python" (DataStax Python driver)."""

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
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(defaults) - known)
            if unknown:
                raise StorageConfigError(f"unknown table store settings {unknown}; known: {sorted(known)}")
            base = cls(**defaults)
        values: dict[str, Any] = {}
        for var, name in _TABLES_ENV.items():
            raw = env.get(var)
            if raw is not None and raw.strip() != "":
                values[name] = _convert(var, name, raw.strip())
        settings = replace(base, **values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise StorageConfigError, naming the variable to set, on settings no store can run with."""
        if self.backend not in _TABLE_BACKENDS:
            raise StorageConfigError(
                f"unknown table store backend {self.backend!r} (FRAUDBATCH_TABLES_BACKEND); "
                f"choose one of {', '.join(sorted(_TABLE_BACKENDS))}"
            )
        if self.backend == "sqlite" and not self.sqlite_path:
            raise StorageConfigError("the sqlite table store needs a file; set FRAUDBATCH_SQLITE_PATH")
        if self.backend == "cassandra":
            self._validate_cassandra()

    def _validate_cassandra(self) -> None:
        from storage.migrations import check_identifier, parse_replication

        if not self.cassandra_hosts or not all(h and h.strip() for h in self.cassandra_hosts):
            raise StorageConfigError("the cassandra table store needs contact points; set FRAUDBATCH_CASSANDRA_HOSTS")
        if not 0 < int(self.cassandra_port) < 65536:
            raise StorageConfigError(f"invalid Cassandra port {self.cassandra_port}; set FRAUDBATCH_CASSANDRA_PORT")
        check_identifier(self.cassandra_keyspace)
        parse_replication(self.cassandra_replication)
        if self.cassandra_consistency.upper() not in _CONSISTENCY_NAMES:
            raise StorageConfigError(
                f"unknown consistency {self.cassandra_consistency!r} (FRAUDBATCH_CASSANDRA_CONSISTENCY); "
                f"choose one of {', '.join(_CONSISTENCY_NAMES)}")
        if int(self.cassandra_write_concurrency) < 1 or int(self.cassandra_write_processes) < 1:
            raise StorageConfigError("FRAUDBATCH_CASSANDRA_WRITE_CONCURRENCY and FRAUDBATCH_CASSANDRA_WRITE_PROCESSES "
                                     "must be at least 1")
        if self.cassandra_writer_driver not in ("native", "python"):
            raise StorageConfigError(f"unknown DFE writer driver {self.cassandra_writer_driver!r} "
                                     "(FRAUDBATCH_CASSANDRA_WRITER_DRIVER); choose native or python")
        if bool(self.cassandra_tls_cert_file) != bool(self.cassandra_tls_key_file):
            raise StorageConfigError("a TLS client certificate needs its key and the other way round; set both "
                                     "FRAUDBATCH_CASSANDRA_TLS_CERT_FILE and FRAUDBATCH_CASSANDRA_TLS_KEY_FILE")
        if self.cassandra_password and not self.cassandra_username:
            raise StorageConfigError("a Cassandra password needs a user; set FRAUDBATCH_CASSANDRA_USERNAME")


_TABLES_ENV = {
    "FRAUDBATCH_TABLES_BACKEND": "backend",
    "FRAUDBATCH_SQLITE_PATH": "sqlite_path",
    "FRAUDBATCH_CASSANDRA_HOSTS": "cassandra_hosts",
    "FRAUDBATCH_CASSANDRA_PORT": "cassandra_port",
    "FRAUDBATCH_CASSANDRA_KEYSPACE": "cassandra_keyspace",
    "FRAUDBATCH_CASSANDRA_LOCAL_DC": "cassandra_local_dc",
    "FRAUDBATCH_CASSANDRA_USERNAME": "cassandra_username",
    "FRAUDBATCH_CASSANDRA_PASSWORD": "cassandra_password",
    "FRAUDBATCH_CASSANDRA_TLS_CA_FILE": "cassandra_tls_ca_file",
    "FRAUDBATCH_CASSANDRA_TLS_CERT_FILE": "cassandra_tls_cert_file",
    "FRAUDBATCH_CASSANDRA_TLS_KEY_FILE": "cassandra_tls_key_file",
    "FRAUDBATCH_CASSANDRA_REPLICATION": "cassandra_replication",
    "FRAUDBATCH_CASSANDRA_CONSISTENCY": "cassandra_consistency",
    "FRAUDBATCH_CASSANDRA_WRITE_CONCURRENCY": "cassandra_write_concurrency",
    "FRAUDBATCH_CASSANDRA_WRITE_PROCESSES": "cassandra_write_processes",
    "FRAUDBATCH_CASSANDRA_WRITER_DRIVER": "cassandra_writer_driver",
}

_INT_FIELDS = {"cassandra_port", "cassandra_write_concurrency", "cassandra_write_processes"}

# ConsistencyLevel names of the driver, spelled out so validation does not import it.
_CONSISTENCY_NAMES = ("ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE")


def _convert(var: str, name: str, raw: str) -> Any:
    """An environment value as the field's type; the variable is named when it does not parse."""
    if name == "cassandra_hosts":
        return tuple(h.strip() for h in raw.split(",") if h.strip())
    if name in _INT_FIELDS:
        try:
            return int(raw)
        except ValueError:
            raise StorageConfigError(f"{var} must be a whole number, got {raw!r}") from None
    return raw


def _cassandra_store(settings: TableStoreSettings) -> TableStore:
    # Imported here so the SQLite default never loads the Cassandra driver.
    from storage.cassandra_store import CassandraTableStore

    return CassandraTableStore(settings)


# The one place a backend name becomes a store.
_TABLE_BACKENDS: dict[str, Callable[[TableStoreSettings], TableStore]] = {
    "sqlite": lambda s: SQLiteTableStore(s.sqlite_path),
    "cassandra": _cassandra_store,
}


def make_table_store(settings: TableStoreSettings) -> TableStore:
    """The table store the settings name."""
    settings.validate()
    return _TABLE_BACKENDS[settings.backend](settings)
