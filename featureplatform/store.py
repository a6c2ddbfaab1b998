"""Embedded feature storage in SQLite (WAL): contributions, computed features and batches."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from featureplatform.compute import CONTRIBUTION_FIELDS

SCHEMA = """
CREATE TABLE IF NOT EXISTS contributions (
    client TEXT NOT NULL, user_id TEXT NOT NULL, node_id TEXT NOT NULL, node_type TEXT NOT NULL,
    events INTEGER NOT NULL, first_ms INTEGER NOT NULL, last_ms INTEGER NOT NULL,
    node_users INTEGER NOT NULL, is_super INTEGER NOT NULL,
    PRIMARY KEY (client, user_id, node_id)
);
CREATE INDEX IF NOT EXISTS contributions_by_node ON contributions (client, node_id);
CREATE TABLE IF NOT EXISTS features (
    client TEXT NOT NULL, entity_id TEXT NOT NULL, entity_type TEXT NOT NULL,
    features TEXT NOT NULL, updated_at TEXT NOT NULL, source TEXT NOT NULL,
    PRIMARY KEY (client, entity_id)
);
CREATE TABLE IF NOT EXISTS batches (
    client TEXT NOT NULL, batch_id TEXT NOT NULL, records INTEGER NOT NULL, status TEXT NOT NULL,
    received_at TEXT NOT NULL, result TEXT NOT NULL,
    PRIMARY KEY (client, batch_id)
);
"""

# SQLite allows 999 bound parameters in old builds; stay well below for IN (...) lists.
_IN_CHUNK = 500


def _chunks(items: Sequence[str], size: int = _IN_CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class StoreTx:
    """Reads and writes inside one write transaction of the store."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def get_batch(self, client: str, batch_id: str) -> dict | None:
        """The stored batch row, or None when the batch id is new."""
        return _get_batch(self._conn, client, batch_id)

    def put_batch(
        self, client: str, batch_id: str, records: int, status: str, received_at: str, result: dict
    ) -> None:
        """Record a batch as seen, with the answer a duplicate push gets back."""
        self._conn.execute(
            "INSERT INTO batches (client, batch_id, records, status, received_at, result) VALUES (?,?,?,?,?,?)",
            (client, batch_id, records, status, received_at, json.dumps(result, sort_keys=True)),
        )

    def contributions_for_users(self, client: str, user_ids: Sequence[str]) -> list[dict]:
        """Every stored contribution of the given users."""
        rows: list[dict] = []
        cols = ", ".join(CONTRIBUTION_FIELDS)
        for chunk in _chunks(list(user_ids)):
            marks = ",".join("?" * len(chunk))
            cur = self._conn.execute(
                f"SELECT {cols} FROM contributions WHERE client = ? AND user_id IN ({marks})",
                (client, *chunk),
            )
            rows.extend(_contribution_row(r) for r in cur)
        return rows

    def put_contributions(self, client: str, contributions: Iterable[dict]) -> None:
        """Insert or replace contributions (already merged by the caller)."""
        cols = ", ".join(CONTRIBUTION_FIELDS)
        self._conn.executemany(
            f"INSERT OR REPLACE INTO contributions (client, {cols}) VALUES (?, {','.join('?' * len(CONTRIBUTION_FIELDS))})",
            (
                (client, *(int(c[f]) if f == "is_super" else c[f] for f in CONTRIBUTION_FIELDS))
                for c in contributions
            ),
        )

    def node_aggregates(self, client: str, node_ids: Sequence[str]) -> list[dict]:
        """Per node: node_type, largest node_users, summed edge events, whether it is super."""
        out: list[dict] = []
        for chunk in _chunks(list(node_ids)):
            marks = ",".join("?" * len(chunk))
            cur = self._conn.execute(
                "SELECT node_id, MAX(node_type), MAX(node_users), SUM(events), MAX(is_super) "
                f"FROM contributions WHERE client = ? AND node_id IN ({marks}) GROUP BY node_id",
                (client, *chunk),
            )
            out.extend(
                {"node_id": r[0], "node_type": r[1], "users": r[2], "events": r[3], "is_super": bool(r[4])}
                for r in cur
            )
        return out

    def put_features(
        self, client: str, rows: Iterable[tuple[str, str, dict]], updated_at: str, source: str
    ) -> None:
        """Write (entity_id, entity_type, features) rows, replacing earlier versions."""
        self._conn.executemany(
            "INSERT OR REPLACE INTO features (client, entity_id, entity_type, features, updated_at, source) "
            "VALUES (?,?,?,?,?,?)",
            (
                (client, eid, etype, json.dumps(feats, sort_keys=True), updated_at, source)
                for eid, etype, feats in rows
            ),
        )


class FeatureStore:
    """SQLite-backed feature store: one connection per thread, one writer at a time."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        with self._write_lock:
            self._conn().executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (sqlite3 connections are not shareable)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE so a
            # batch's duplicate check and its apply are one atomic step.
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def write(self) -> Iterator[StoreTx]:
        """One atomic write transaction; rolled back if the block raises."""
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield StoreTx(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def get_features(self, client: str, entity_id: str) -> dict | None:
        """The stored feature row of one entity, or None."""
        row = (
            self._conn()
            .execute(
                "SELECT entity_type, features, updated_at, source FROM features WHERE client = ? AND entity_id = ?",
                (client, entity_id),
            )
            .fetchone()
        )
        if row is None:
            return None
        return {
            "client": client,
            "entity_id": entity_id,
            "entity_type": row[0],
            "features": json.loads(row[1]),
            "updated_at": row[2],
            "source": row[3],
        }

    def get_batch(self, client: str, batch_id: str) -> dict | None:
        """The stored batch row, or None when the batch was never received."""
        return _get_batch(self._conn(), client, batch_id)

    def counts(self) -> dict:
        """Row counts of the stored tables, for metrics."""
        conn = self._conn()
        return {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("features", "contributions", "batches")
        }

    def close(self) -> None:
        """Close every connection any thread opened."""
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


def _get_batch(conn: sqlite3.Connection, client: str, batch_id: str) -> dict | None:
    row = conn.execute(
        "SELECT records, status, received_at, result FROM batches WHERE client = ? AND batch_id = ?",
        (client, batch_id),
    ).fetchone()
    if row is None:
        return None
    return {
        "client": client,
        "batch_id": batch_id,
        "records": row[0],
        "status": row[1],
        "received_at": row[2],
        "result": json.loads(row[3]),
    }


def _contribution_row(row: Sequence) -> dict:
    doc = dict(zip(CONTRIBUTION_FIELDS, row, strict=True))
    doc["is_super"] = bool(doc["is_super"])
    return doc
