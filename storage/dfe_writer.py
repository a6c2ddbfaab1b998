"""DFE rows into Cassandra at speed: prepared upserts, bounded concurrency, worker processes by token range.

Two drivers write the rows, chosen by `cassandra_writer_driver` (FRAUDBATCH_CASSANDRA_WRITER_DRIVER):

- ``native`` (default): the C++ driver through acsylla. Binding, encoding and the network loop
  run in C++, about a quarter of the client CPU per row of the Python driver, which on a small
  machine is CPU the Cassandra node gets instead (docs/adr/0011-native-dfe-writer.md).
- ``python``: the DataStax Python driver's execute_concurrent_with_args, the same driver as
  the rest of the table store; for platforms without an acsylla wheel.

Both prepare one INSERT (an upsert: a rerun leaves one row per key), route each request to a
replica of its partition (token-aware), keep at most `concurrency` requests in flight per
process and never batch across partitions. Failed rows are retried with backoff; a failure
that outlasts the retries, or one that waiting cannot cure, is a CassandraWriteError.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import queue
import struct
import time
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from cassandra.murmur3 import murmur3

from storage.cassandra_session import (
    RETRY_DELAYS_S,
    TRANSIENT_ERRORS,
    CassandraWriteError,
    describe_error,
    native_cluster,
    node_hint,
    open_session,
    retrying,
)
from storage.model import WRITER_DRIVERS, TableStoreSettings, check_client

__all__ = ["INSERT_DFE", "SessionSource", "owner_of", "write_dfe_rows"]

log = logging.getLogger(__name__)

INSERT_DFE = "INSERT INTO {ks}.dfe_data (client_id, user_id, timestamp, feature_vector) VALUES (?, ?, ?, ?)"

# Rows a worker process needs to be worth its start-up (own connection, prepare): below this
# many rows per process the write stays in the calling process.
MIN_ROWS_PER_PROCESS = 20_000
# Python driver: rows handed to execute_concurrent at a time (the unit of progress and retry).
CHUNK_ROWS = 10_000
# Native driver: rows between two progress reports of a worker.
PROGRESS_EVERY = 2_000

DfeTuple = tuple[str, int, Mapping[str, float]]
Progress = Callable[[int, int], None]
OnRows = Callable[[int], None]


@dataclass(frozen=True)
class _Write:
    """One call's write, as every layer (forked workers, drivers, retries) sees it."""

    driver: str
    settings: TableStoreSettings
    client: str
    rows: Sequence[DfeTuple]
    concurrency: int
    delays: Sequence[float]

    def fail(self, failed: int, size: int, error: BaseException, attempts: int | None) -> CassandraWriteError:
        tries = f" after {attempts} attempts" if attempts else ""
        return CassandraWriteError(
            f"Cassandra write failed: {failed} of {size} DFE rows of {self.client} not written{tries} "
            f"({describe_error(error)}); {node_hint(self.settings)}"
        )


class SessionSource(Protocol):
    """Something holding a connected Python-driver session, such as the Cassandra table store."""

    @property
    def session(self) -> Any: ...


def _routing_key(client: bytes, user_id: str) -> bytes:
    """The serialised composite partition key (client_id, user_id), as Cassandra hashes it."""
    u = user_id.encode("utf-8")
    return struct.pack(">H", len(client)) + client + b"\x00" + struct.pack(">H", len(u)) + u + b"\x00"


def owner_of(client: str, user_id: str, processes: int) -> int:
    """The worker that owns a partition: the Murmur3 ring cut into `processes` contiguous token ranges."""
    token: int = murmur3(_routing_key(client.encode("utf-8"), user_id))
    return ((token + 2**63) * processes) >> 64


def _split(client: str, rows: Sequence[DfeTuple], processes: int) -> list[array[int]]:
    """Row indexes per worker; every row of a partition lands with the same worker, so each worker
    can settle a repeated key on its own."""
    c = client.encode("utf-8")
    parts = [array("q") for _ in range(processes)]
    shift = 2**63
    for i in range(len(rows)):
        token = murmur3(_routing_key(c, rows[i][0]))
        parts[((token + shift) * processes) >> 64].append(i)
    return parts


# ---------------------------------------------------------------------------------------------
# native driver (acsylla)

# acsylla's errors that a node coming back (or a less busy one) can cure; filled on first use.
_NATIVE_TRANSIENT: tuple[type[BaseException], ...] = ()


def _native_transient() -> tuple[type[BaseException], ...]:
    global _NATIVE_TRANSIENT
    if not _NATIVE_TRANSIENT:
        from acsylla import errors as e

        _NATIVE_TRANSIENT = (
            e.CassExceptionConnectionError,
            e.CassErrorLibNoHostsAvailable,
            e.CassErrorLibUnableToConnect,
            e.CassErrorLibRequestTimedOut,
            e.CassErrorLibWriteError,
            e.CassErrorLibRequestQueueFull,
            e.CassErrorLibNoStreams,
            e.CassErrorLibUnableToDetermineProtocol,
            e.CassErrorServerOverloaded,
            e.CassErrorServerUnavailable,
            e.CassErrorServerWriteTimeout,
            e.CassErrorServerIsBootstrapping,
            e.CassErrorServerTruncateError,
            e.CassErrorSslClosed,
            OSError,
        )
    return _NATIVE_TRANSIENT


def _native_timestamp(ms: int) -> int | Decimal:
    """A TIMESTAMP for acsylla, which takes epoch *seconds*: whole seconds as an int, else exact."""
    ms = int(ms)
    return ms // 1000 if ms % 1000 == 0 else Decimal(ms).scaleb(-3)


async def _native_pass(
    session: Any, insert: Any, write: _Write, indexes: Sequence[int], on_rows: OnRows
) -> tuple[list[tuple[int, BaseException]], list[int]]:
    """One pass over the rows with `concurrency` requests in flight: the rows that failed (with why)
    and the rows not sent because the pass stopped early."""
    transient = _native_transient()
    client, rows, concurrency = write.client, write.rows, write.concurrency
    failed: list[tuple[int, BaseException]] = []
    it = iter(indexes)
    stop = False

    unreported = 0

    async def lane() -> None:
        # Each lane keeps one request in flight; the lanes share the iterator, so `concurrency`
        # lanes are the bound without a task or a semaphore per row.
        nonlocal stop, unreported
        for i in it:
            user_id, ts, vector = rows[i]
            statement = insert.bind()
            try:
                statement.bind_list([client, user_id, _native_timestamp(ts), vector])
                await session.execute(statement)
            except Exception as exc:  # noqa: BLE001 - sorted by the caller: retried or reported
                failed.append((i, exc))
                # A bad row or a refused statement will not heal by waiting; a whole window of
                # failures means the node is away: either way the rest of the pass would fail too.
                if not isinstance(exc, transient) or len(failed) >= concurrency:
                    stop = True
            else:
                unreported += 1
                if unreported >= PROGRESS_EVERY:
                    on_rows(unreported)
                    unreported = 0
            if stop:
                break

    await asyncio.gather(*(lane() for _ in range(max(1, min(concurrency, len(indexes))))))
    on_rows(unreported)
    return failed, list(it)


async def _native_write(write: _Write, indexes: Sequence[int], on_rows: OnRows) -> None:
    transient = _native_transient()
    settings, delays = write.settings, write.delays
    cluster = native_cluster(settings)
    session = None
    for attempt in range(len(delays) + 1):
        try:
            session = await cluster.create_session()
            break
        except transient as exc:
            if attempt == len(delays):
                raise CassandraWriteError(
                    f"Cassandra write failed: connect: {describe_error(exc)} (after {attempt + 1} "
                    f"attempts); {node_hint(settings)}"
                ) from exc
            log.warning(
                "Cassandra write failed: connect: %s; retrying in %.1f s",
                describe_error(exc),
                delays[attempt],
            )
            await asyncio.sleep(delays[attempt])
        except Exception as exc:  # noqa: BLE001 - bad credentials, TLS refused: say so at once
            raise CassandraWriteError(
                f"Cassandra write failed: connect: {describe_error(exc)}; {node_hint(settings)}"
            ) from exc
    assert session is not None
    try:
        try:
            insert = await session.create_prepared(INSERT_DFE.format(ks=settings.cassandra_keyspace))
        except Exception as exc:  # noqa: BLE001 - a missing keyspace or table will not heal by waiting
            raise CassandraWriteError(
                f"Cassandra write failed: prepare: {describe_error(exc)}; {node_hint(settings)}"
            ) from exc
        pending: Sequence[int] = indexes
        for attempt in range(len(delays) + 1):
            failed, unsent = await _native_pass(session, insert, write, pending, on_rows)
            if not failed:
                return
            error = next((exc for _, exc in failed if not isinstance(exc, transient)), failed[0][1])
            if not isinstance(error, transient):
                raise write.fail(len(failed) + len(unsent), len(pending), error, None)
            if attempt == len(delays):
                raise write.fail(len(failed) + len(unsent), len(pending), error, attempt + 1)
            log.warning(
                "Cassandra write: %d of %d DFE rows not written (%s); retrying in %.1f s",
                len(failed) + len(unsent),
                len(pending),
                describe_error(error),
                delays[attempt],
            )
            await asyncio.sleep(delays[attempt])
            # In input order, so a repeated key still ends on its last row.
            pending = sorted([i for i, _ in failed] + unsent)
    finally:
        await session.close()


def _run_native(write: _Write, indexes: Sequence[int], on_rows: OnRows) -> None:
    """The native write on an event loop of its own (a thread of its own if this one runs a loop)."""
    coro = _native_write(write, indexes, on_rows)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dfe-writer") as pool:
        pool.submit(asyncio.run, coro).result()


# ---------------------------------------------------------------------------------------------
# Python driver (DataStax cassandra-driver)


def _python_write(session: Any, insert: Any, write: _Write, indexes: Sequence[int], on_rows: OnRows) -> None:
    """Write the given rows chunk by chunk; failed rows of a chunk are retried with backoff."""
    from cassandra.concurrent import execute_concurrent_with_args

    client, rows, delays = write.client, write.rows, write.delays
    for start in range(0, len(indexes), CHUNK_ROWS):
        # The driver binds an int to a TIMESTAMP as epoch milliseconds.
        pending = [
            (client, u, int(ts), fv) for u, ts, fv in (rows[i] for i in indexes[start : start + CHUNK_ROWS])
        ]
        size = len(pending)
        for attempt in range(len(delays) + 1):
            results = execute_concurrent_with_args(
                session, insert, pending, concurrency=write.concurrency, raise_on_first_error=False
            )
            failed = [(params, res) for params, (ok, res) in zip(pending, results, strict=True) if not ok]
            if not failed:
                break
            error = failed[0][1]
            if not isinstance(error, TRANSIENT_ERRORS):
                raise write.fail(len(failed), size, error, None)
            if attempt == len(delays):
                raise write.fail(len(failed), size, error, attempt + 1)
            log.warning(
                "Cassandra write: %d of %d DFE rows failed (%s); retrying in %.1f s",
                len(failed),
                size,
                describe_error(error),
                delays[attempt],
            )
            time.sleep(delays[attempt])
            pending = [params for params, _ in failed]
        on_rows(size)


def _python_session_write(
    write: _Write, indexes: Sequence[int], on_rows: OnRows, store: SessionSource | None = None
) -> None:
    settings, delays = write.settings, write.delays
    own: Any = None
    try:
        if store is None:
            own, session = retrying(
                settings, "write failed", lambda: open_session(settings), delays, what="connect: "
            )
        else:
            session = retrying(settings, "write failed", lambda: store.session, delays, what="connect: ")
        insert = retrying(
            settings,
            "write failed",
            lambda: session.prepare(INSERT_DFE.format(ks=settings.cassandra_keyspace)),
            delays,
            what="prepare: ",
        )
        _python_write(session, insert, write, indexes, on_rows)
    finally:
        if own is not None:
            own.shutdown()


# ---------------------------------------------------------------------------------------------
# the writer


def _last_per_key(rows: Sequence[DfeTuple], indexes: Sequence[int]) -> Sequence[int]:
    """The indexes with each (user_id, timestamp) once, at its last occurrence, in input order.

    In-flight requests and retries do not keep the input order, so a key is sent once."""
    last = {}
    for i in indexes:
        row = rows[i]
        last[(row[0], row[1])] = i
    return indexes if len(last) == len(indexes) else sorted(last.values())


def _write_part(
    write: _Write, indexes: Sequence[int], on_rows: OnRows, store: SessionSource | None = None
) -> None:
    """Write rows[i] for i in indexes (a partition's rows are all in one part) with the chosen driver."""
    unique = _last_per_key(write.rows, indexes)
    if len(unique) < len(indexes):
        on_rows(len(indexes) - len(unique))  # the repeats count as written: their key is
        log.info(
            "DFE writer: %d repeated (user, timestamp) keys; the last row of each is written",
            len(indexes) - len(unique),
        )
    indexes = unique
    if write.driver == "native":
        _run_native(write, indexes, on_rows)
    else:
        _python_session_write(write, indexes, on_rows, store)


def _worker(write: _Write, indexes: array[int], done: Any, errors: Any) -> None:
    """One writer process: its own connection (opened after the fork), its own token range."""

    def on_rows(n: int) -> None:
        with done.get_lock():
            done.value += n

    try:
        _write_part(write, indexes, on_rows)
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent as text
        errors.put(
            str(exc)
            if isinstance(exc, CassandraWriteError)
            else f"Cassandra write failed: {describe_error(exc)}; {node_hint(write.settings)}"
        )
        raise SystemExit(1) from None


def write_dfe_rows(
    settings: TableStoreSettings,
    client: str,
    rows: Iterable[DfeTuple],
    processes: int | None = None,
    concurrency: int | None = None,
    progress: Progress | None = None,
    *,
    store: SessionSource | None = None,
    retry_delays: Sequence[float] = RETRY_DELAYS_S,
    driver: str | None = None,
) -> int:
    """Upsert (user_id, timestamp_ms, feature_vector) rows of a client into dfe_data; the number written.

    Large inputs are split by token range over `processes` forked workers, each with its own
    connection and `concurrency` requests in flight; small inputs are written in this process
    (through `store`'s session with the Python driver). When a key repeats, its last row is kept.
    Failures are retried with backoff, then CassandraWriteError.
    """
    check_client(client)
    settings.validate()
    use = driver or settings.cassandra_writer_driver
    if use not in WRITER_DRIVERS:
        raise CassandraWriteError(
            f"unknown DFE writer driver {use!r}; choose one of {', '.join(WRITER_DRIVERS)} "
            "(FRAUDBATCH_CASSANDRA_WRITER_DRIVER)"
        )
    seq: Sequence[DfeTuple] = rows if isinstance(rows, Sequence) else list(rows)
    total = len(seq)
    if total == 0:
        return 0
    procs = max(1, min(processes or settings.cassandra_write_processes, total // MIN_ROWS_PER_PROCESS))
    conc = int(concurrency or settings.cassandra_write_concurrency)
    write = _Write(use, settings, client, seq, conc, tuple(retry_delays))
    report = progress or (lambda done, total: None)
    if procs == 1:
        done = [0]

        def on_rows(n: int) -> None:
            done[0] += n
            report(done[0], total)

        _write_part(write, range(total), on_rows, store)
        return total
    return _write_forked(write, procs, report)


def _write_forked(write: _Write, processes: int, report: Progress) -> int:
    # fork: the workers inherit the rows instead of receiving a pickled copy; each opens its
    # own connection after the fork (drivers' sockets and threads never cross it).
    ctx = multiprocessing.get_context("fork")
    rows = write.rows
    parts = _split(write.client, rows, processes)
    done = ctx.Value("q", 0)
    errors = ctx.Queue()
    workers = [
        ctx.Process(target=_worker, name=f"dfe-writer-{n}", daemon=True, args=(write, part, done, errors))
        for n, part in enumerate(parts)
        if len(part)
    ]
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
        raise CassandraWriteError(
            f"Cassandra write failed: writer processes died ({', '.join(crashed)}); {node_hint(write.settings)}"
        )
    report(done.value, len(rows))
    return len(rows)
