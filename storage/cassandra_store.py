"""The Cassandra table store: the TableStore interface on the fraud keyspace of cql/ (SPEC §5)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from typing import Any

from cassandra.cluster import Cluster, Session
from cassandra.query import PreparedStatement

from storage.cassandra_session import RETRY_DELAYS_S, open_session, retrying
from storage.dfe_writer import INSERT_DFE, write_dfe_rows
from storage.errors import StorageError
from storage.model import DfeRow, RunRecord, TableStoreSettings, check_client, check_date

__all__ = ["CassandraTableStore", "datetime_to_ms", "ms_to_datetime", "token_slices"]

_EPOCH = dt.datetime(1970, 1, 1)
_MS = dt.timedelta(milliseconds=1)

# Named CQL templates; {ks} is the validated keyspace identifier, every value is a bind marker.
_CQL = {
    "insert_dfe": INSERT_DFE,
    "read_dfe": "SELECT user_id, timestamp, feature_vector FROM {ks}.dfe_data WHERE client_id = ? AND user_id = ?",
    # count_dfe scans the table in token slices: the partition key is (client_id, user_id), so a
    # client's rows are spread over the whole ring. Fine for checks and reports, not a hot path.
    "count_dfe_slice": "SELECT COUNT(*) FROM {ks}.dfe_data WHERE token(client_id, user_id) >= ?"
    " AND token(client_id, user_id) <= ? AND client_id = ? ALLOW FILTERING",
    "keys_dfe_slice": "SELECT client_id, user_id, timestamp FROM {ks}.dfe_data WHERE token(client_id, user_id) >= ?"
    " AND token(client_id, user_id) <= ?",
    "insert_result": "INSERT INTO {ks}.results (client_id, job_id, result_type, result_data, created_at)"
    " VALUES (?, ?, ?, ?, ?)",
    "read_results": "SELECT result_type, result_data FROM {ks}.results WHERE client_id = ? AND job_id = ?",
    "insert_run": "INSERT INTO {ks}.job_runs (client_id, run_date, task, run_id, status, started_at, finished_at,"
    " duration_s, row_counts, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "list_runs": "SELECT task, run_id, status, started_at, finished_at, duration_s, row_counts, message"
    " FROM {ks}.job_runs WHERE client_id = ? AND run_date = ?",
}

_MIN_TOKEN, _MAX_TOKEN = -(2**63), 2**63 - 1
# Small slices keep each server-side count well inside the range-read timeout on a busy node.
_COUNT_SLICES = 64
_SCAN_TIMEOUT_S = 120.0


def ms_to_datetime(ms: int) -> dt.datetime:
    """Epoch milliseconds as the naive UTC datetime the driver binds to a TIMESTAMP."""
    return _EPOCH + dt.timedelta(milliseconds=int(ms))


def datetime_to_ms(value: dt.datetime) -> int:
    """A TIMESTAMP the driver returned (naive UTC) as exact epoch milliseconds."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return (value - _EPOCH) // _MS


class CassandraTableStore:
    """The table store on a Cassandra cluster; connects on first use, one session per instance."""

    def __init__(
        self, settings: TableStoreSettings, *, retry_delays: Iterable[float] = RETRY_DELAYS_S
    ) -> None:
        settings.validate()
        self.settings = settings
        self.keyspace = settings.cassandra_keyspace
        self.retry_delays = tuple(retry_delays)
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self._prepared: dict[str, PreparedStatement] = {}

    def __repr__(self) -> str:
        return (
            f"CassandraTableStore({','.join(self.settings.cassandra_hosts)}:{self.settings.cassandra_port}"
            f"/{self.keyspace})"
        )

    def __enter__(self) -> CassandraTableStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def session(self) -> Session:
        """The connected session (connecting with bounded retries on first use)."""
        if self._session is None:
            # One attempt: the caller's retrying() owns the backoff and the error message.
            self._cluster, self._session = open_session(self.settings)
        return self._session

    def prepared(self, name: str) -> PreparedStatement:
        """The named statement, prepared once per store."""
        stmt = self._prepared.get(name)
        if stmt is None:
            stmt = self._prepared[name] = self.session.prepare(_CQL[name].format(ks=self.keyspace))
        return stmt

    def _write(self, action: str, name: str, params: tuple[Any, ...]) -> None:
        retrying(
            self.settings,
            "write failed",
            lambda: self.session.execute(self.prepared(name), params),
            self.retry_delays,
            what=f"{action}: ",
        )

    def _read(
        self, action: str, name: str, params: tuple[Any, ...], timeout: float | None = None
    ) -> list[Any]:
        def run() -> list[Any]:
            if timeout is None:
                return list(self.session.execute(self.prepared(name), params))
            return list(self.session.execute(self.prepared(name), params, timeout=timeout))

        return retrying(
            self.settings, "read failed", run, self.retry_delays, error=StorageError, what=f"{action}: "
        )

    def write_dfe(self, client: str, rows: Iterable[DfeRow]) -> int:
        check_client(client)
        return write_dfe_rows(
            self.settings,
            client,
            ((r.user_id, r.timestamp_ms, r.feature_vector) for r in rows),
            processes=self.settings.cassandra_write_processes,
            concurrency=self.settings.cassandra_write_concurrency,
            store=self,
        )

    def read_dfe(self, client: str, user_id: str) -> list[DfeRow]:
        check_client(client)
        found = self._read("read_dfe", "read_dfe", (client, user_id))
        # The table clusters by timestamp DESC, so rows already come newest first.
        return [
            DfeRow(
                r.user_id,
                datetime_to_ms(r.timestamp),
                {str(k): float(v) for k, v in (r.feature_vector or {}).items()},
            )
            for r in found
        ]

    def count_dfe(self, client: str) -> int:
        check_client(client)
        return sum(
            self._read("count_dfe", "count_dfe_slice", (lo, hi, client), timeout=_SCAN_TIMEOUT_S)[0][0]
            for lo, hi in token_slices(_COUNT_SLICES)
        )

    def iter_dfe_keys(self, client: str) -> Iterator[tuple[str, int]]:
        """Every (user_id, timestamp_ms) of the client's DFE rows, by a paged scan of the table."""
        check_client(client)
        for lo, hi in token_slices(_COUNT_SLICES):
            for r in self._read("scan_dfe", "keys_dfe_slice", (lo, hi), timeout=_SCAN_TIMEOUT_S):
                if r.client_id == client:
                    yield r.user_id, datetime_to_ms(r.timestamp)

    def write_result(
        self, client: str, job_id: str, result_type: str, result_data: str, created_at_ms: int
    ) -> None:
        check_client(client)
        self._write(
            "write_result",
            "insert_result",
            (client, job_id, result_type, result_data, ms_to_datetime(created_at_ms)),
        )

    def read_results(self, client: str, job_id: str) -> dict[str, str]:
        check_client(client)
        return {
            r.result_type: r.result_data for r in self._read("read_results", "read_results", (client, job_id))
        }

    def record_run(self, run: RunRecord) -> None:
        check_client(run.client)
        day = dt.date.fromisoformat(check_date(run.date))
        self._write(
            "record_run",
            "insert_run",
            (
                run.client,
                day,
                run.task,
                run.run_id,
                run.status,
                ms_to_datetime(run.started_ms),
                None if run.finished_ms is None else ms_to_datetime(run.finished_ms),
                None if run.duration_s is None else float(run.duration_s),
                {str(k): int(v) for k, v in run.rows.items()},
                run.message,
            ),
        )

    def list_runs(self, client: str, date: str | dt.date) -> list[RunRecord]:
        check_client(client)
        day_text = check_date(date)
        found = self._read("list_runs", "list_runs", (client, dt.date.fromisoformat(day_text)))
        runs = [
            RunRecord(
                client,
                day_text,
                r.task,
                r.run_id,
                r.status,
                datetime_to_ms(r.started_at),
                None if r.finished_at is None else datetime_to_ms(r.finished_at),
                r.duration_s,
                {str(k): int(v) for k, v in (r.row_counts or {}).items()},
                r.message or "",
            )
            for r in found
        ]
        return sorted(runs, key=lambda r: (r.started_ms, r.task, r.run_id))

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.shutdown()
        self._cluster = self._session = None
        self._prepared.clear()


def token_slices(n: int) -> list[tuple[int, int]]:
    """The Murmur3 token ring cut into n contiguous inclusive ranges."""
    span = (_MAX_TOKEN - _MIN_TOKEN + 1) // n
    bounds = [_MIN_TOKEN + i * span for i in range(n)] + [_MAX_TOKEN + 1]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(n)]
