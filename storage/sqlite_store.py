"""The SQLite table store: the TableStore interface in one embedded file, the fraud keyspace's tables."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

from storage.errors import StorageError
from storage.model import DfeRow, RunRecord, check_client, check_date

__all__ = ["SQLiteTableStore"]

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
        check_client(client)
        params = ((client, r.user_id, int(r.timestamp_ms), _vector_json(r.feature_vector)) for r in rows)
        written = 0
        while chunk := list(islice(params, _DFE_CHUNK)):
            with self._tx() as cur:
                cur.executemany(_UPSERT_DFE, chunk)
            written += len(chunk)
        return written

    def read_dfe(self, client: str, user_id: str) -> list[DfeRow]:
        check_client(client)
        found = self._query(
            "SELECT user_id, timestamp_ms, feature_vector FROM dfe_data"
            " WHERE client_id = ? AND user_id = ? ORDER BY timestamp_ms DESC",
            (client, user_id),
        )
        return [DfeRow(u, int(ts), json.loads(fv)) for u, ts, fv in found]

    def count_dfe(self, client: str) -> int:
        check_client(client)
        return int(self._query("SELECT COUNT(*) FROM dfe_data WHERE client_id = ?", (client,))[0][0])

    def write_result(
        self, client: str, job_id: str, result_type: str, result_data: str, created_at_ms: int
    ) -> None:
        check_client(client)
        with self._tx() as cur:
            cur.execute(_UPSERT_RESULT, (client, job_id, result_type, result_data, int(created_at_ms)))

    def read_results(self, client: str, job_id: str) -> dict[str, str]:
        check_client(client)
        found = self._query(
            "SELECT result_type, result_data FROM results WHERE client_id = ? AND job_id = ? ORDER BY result_type",
            (client, job_id),
        )
        return dict(found)

    def record_run(self, run: RunRecord) -> None:
        check_client(run.client)
        row_counts = json.dumps({str(k): int(v) for k, v in run.rows.items()}, sort_keys=True)
        with self._tx() as cur:
            cur.execute(
                _UPSERT_RUN,
                (
                    run.client,
                    check_date(run.date),
                    run.task,
                    run.run_id,
                    run.status,
                    int(run.started_ms),
                    None if run.finished_ms is None else int(run.finished_ms),
                    None if run.duration_s is None else float(run.duration_s),
                    row_counts,
                    run.message,
                ),
            )

    def list_runs(self, client: str, date: str | dt.date) -> list[RunRecord]:
        check_client(client)
        found = self._query(
            "SELECT client_id, run_date, task, run_id, status, started_ms, finished_ms, duration_s, row_counts,"
            " message FROM job_runs WHERE client_id = ? AND run_date = ? ORDER BY started_ms, task, run_id",
            (client, check_date(date)),
        )
        return [
            RunRecord(c, d, t, r, s, int(st), fin, dur, json.loads(rc), msg)
            for c, d, t, r, s, st, fin, dur, rc, msg in found
        ]

    def close(self) -> None:
        self._conn.close()
