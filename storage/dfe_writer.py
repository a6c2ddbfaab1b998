"""DFE rows into Cassandra at speed: prepared upserts, bounded concurrency, worker processes by token range."""
from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import struct
import time
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from cassandra.concurrent import execute_concurrent_with_args
from cassandra.murmur3 import murmur3
from cassandra.query import PreparedStatement

from storage.cassandra_store import (
    RETRY_DELAYS_S,
    TRANSIENT_ERRORS,
    CassandraTableStore,
    CassandraWriteError,
    _describe,
    _open,
    _where,
    retrying,
)
from storage.tables import TableStoreSettings, _check_client

__all__ = ["write_dfe_rows", "owner_of", "INSERT_DFE"]

log = logging.getLogger(__name__)

INSERT_DFE = "INSERT INTO {ks}.dfe_data (client_id, user_id, timestamp, feature_vector) VALUES (?, ?, ?, ?)"

# Rows a worker process needs to be worth its start-up (own connection, prepare): below this
# many rows per process the write stays in the calling process.
MIN_ROWS_PER_PROCESS = 20_000
# Rows handed to execute_concurrent at a time: the unit of progress and of retry.
CHUNK_ROWS = 10_000

DfeTuple = tuple[str, int, Mapping[str, float]]
Progress = Callable[[int, int], None]


def _routing_key(client: bytes, user_id: str) -> bytes:
    """The serialised composite partition key (client_id, user_id), as Cassandra hashes it."""
    u = user_id.encode("utf-8")
    return struct.pack(">H", len(client)) + client + b"\x00" + struct.pack(">H", len(u)) + u + b"\x00"


def owner_of(client: str, user_id: str, processes: int) -> int:
    """The worker that owns a partition: the Murmur3 ring cut into `processes` contiguous token ranges."""
    token = murmur3(_routing_key(client.encode("utf-8"), user_id))
    return ((token + 2 ** 63) * processes) >> 64


def _split(client: str, rows: Sequence[DfeTuple], processes: int) -> list[array]:
    """Row indexes per worker; every row of a partition lands with the same worker."""
    c = client.encode("utf-8")
    parts = [array("q") for _ in range(processes)]
    shift = 2 ** 63
    for i in range(len(rows)):
        token = murmur3(_routing_key(c, rows[i][0]))
        parts[((token + shift) * processes) >> 64].append(i)
    return parts


def _write_indexes(session: Any, insert: PreparedStatement, settings: TableStoreSettings, client: str,
                   rows: Sequence[DfeTuple], indexes: Iterable[int] | range, concurrency: int,
                   delays: Sequence[float], on_chunk: Callable[[int], None]) -> int:
    """Write the given rows chunk by chunk; failed rows of a chunk are retried with backoff."""
    idx = indexes if isinstance(indexes, (range, array, list)) else list(indexes)
    written = 0
    for start in range(0, len(idx), CHUNK_ROWS):
        # The driver binds an int to a TIMESTAMP as epoch milliseconds.
        pending = [(client, u, int(ts), fv) for u, ts, fv in (rows[i] for i in idx[start:start + CHUNK_ROWS])]
        size = len(pending)
        for attempt in range(len(delays) + 1):
            results = execute_concurrent_with_args(session, insert, pending, concurrency=concurrency,
                                                   raise_on_first_error=False)
            failed = [(params, res) for params, (ok, res) in zip(pending, results, strict=True) if not ok]
            if not failed:
                break
            error = failed[0][1]
            if not isinstance(error, TRANSIENT_ERRORS) or attempt == len(delays):
                tries = "" if not isinstance(error, TRANSIENT_ERRORS) else f" after {attempt + 1} attempts"
                raise CassandraWriteError(
                    f"Cassandra write failed: {len(failed)} of {size} DFE rows of {client} not written{tries} "
                    f"({_describe(error)}); {_where(settings)}")
            log.warning("Cassandra write: %d of %d DFE rows failed (%s); retrying in %.1f s",
                        len(failed), size, _describe(error), delays[attempt])
            time.sleep(delays[attempt])
            pending = [params for params, _ in failed]
        written += size
        on_chunk(size)
    return written


def _worker(settings: TableStoreSettings, client: str, rows: Sequence[DfeTuple], indexes: array, concurrency: int,
            delays: Sequence[float], done: Any, errors: Any) -> None:
    """One writer process: its own cluster and session (created after the fork), its own token range."""
    cluster = None
    try:
        cluster, session = retrying(settings, "write failed", lambda: _open(settings), delays, what="connect: ")
        insert = session.prepare(INSERT_DFE.format(ks=settings.cassandra_keyspace))

        def on_chunk(n: int) -> None:
            with done.get_lock():
                done.value += n

        _write_indexes(session, insert, settings, client, rows, indexes, concurrency, delays, on_chunk)
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent as text
        errors.put(str(exc) if isinstance(exc, CassandraWriteError)
                   else f"Cassandra write failed: {_describe(exc)}; {_where(settings)}")
        raise SystemExit(1) from None
    finally:
        if cluster is not None:
            cluster.shutdown()


def write_dfe_rows(
    settings: TableStoreSettings,
    client: str,
    rows: Iterable[DfeTuple],
    processes: int | None = None,
    concurrency: int | None = None,
    progress: Progress | None = None,
    *,
    store: CassandraTableStore | None = None,
    retry_delays: Sequence[float] = RETRY_DELAYS_S,
) -> int:
    """Upsert (user_id, timestamp_ms, feature_vector) rows of a client into dfe_data; the number written.

    One prepared INSERT per row (an upsert: a rerun leaves one row per key), never a multi-partition
    batch. Large inputs are split by token range over `processes` forked workers, each with its own
    session and `concurrency` requests in flight; small inputs are written in this process (through
    `store`'s session when given). Failures are retried with backoff, then CassandraWriteError.
    """
    _check_client(client)
    settings.validate()
    seq: Sequence[DfeTuple] = rows if isinstance(rows, Sequence) else list(rows)
    total = len(seq)
    if total == 0:
        return 0
    procs = max(1, min(processes or settings.cassandra_write_processes, total // MIN_ROWS_PER_PROCESS))
    conc = int(concurrency or settings.cassandra_write_concurrency)
    delays = tuple(retry_delays)
    report = progress or (lambda done, total: None)
    if procs == 1:
        return _write_here(settings, client, seq, conc, delays, report, store)
    return _write_forked(settings, client, seq, procs, conc, delays, report)


def _write_here(settings: TableStoreSettings, client: str, rows: Sequence[DfeTuple], concurrency: int,
                delays: Sequence[float], report: Progress, store: CassandraTableStore | None) -> int:
    own = store is None
    if store is None:
        store = CassandraTableStore(settings, retry_delays=delays)
    try:
        session = retrying(settings, "write failed", lambda: store.session, delays, what="connect: ")
        insert = retrying(settings, "write failed",
                          lambda: session.prepare(INSERT_DFE.format(ks=settings.cassandra_keyspace)), delays,
                          what="prepare: ")
        done = [0]

        def on_chunk(n: int) -> None:
            done[0] += n
            report(done[0], len(rows))

        return _write_indexes(session, insert, settings, client, rows, range(len(rows)), concurrency, delays,
                              on_chunk)
    finally:
        if own:
            store.close()


def _write_forked(settings: TableStoreSettings, client: str, rows: Sequence[DfeTuple], processes: int,
                  concurrency: int, delays: Sequence[float], report: Progress) -> int:
    # fork: the workers inherit the rows instead of receiving a pickled copy; each opens its
    # own connection after the fork (the driver's sockets and event loop never cross it).
    ctx = multiprocessing.get_context("fork")
    parts = _split(client, rows, processes)
    done = ctx.Value("q", 0)
    errors = ctx.Queue()
    workers = [ctx.Process(target=_worker, name=f"dfe-writer-{n}", daemon=True,
                           args=(settings, client, rows, part, concurrency, delays, done, errors))
               for n, part in enumerate(parts) if len(part)]
    for w in workers:
        w.start()
    failure = ""
    try:
        while any(w.is_alive() for w in workers):
            try:
                failure = errors.get(timeout=0.5)
                break
            except queue.Empty:
                report(done.value, len(rows))
        if not failure:
            try:
                failure = errors.get(timeout=0.2)
            except queue.Empty:
                failure = ""
    finally:
        if failure:
            for w in workers:
                if w.is_alive():
                    w.terminate()
        for w in workers:
            w.join(30)
    if failure:
        raise CassandraWriteError(failure)
    crashed = [f"{w.name} exit {w.exitcode}" for w in workers if w.exitcode != 0]
    if crashed:
        raise CassandraWriteError(f"Cassandra write failed: writer processes died ({', '.join(crashed)}); "
                                  f"{_where(settings)}")
    report(done.value, len(rows))
    return len(rows)


def default_processes() -> int:
    """One writer process per core (the driver is CPU-bound in Python)."""
    return max(1, os.cpu_count() or 1)
