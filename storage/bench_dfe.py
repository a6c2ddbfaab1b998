"""Benchmark of the DFE writer against the local Cassandra node, next to the raw driver's ceiling.

    python -m storage.bench_dfe --rows 1000000 [--processes 2] [--concurrency 96]

Writes the same synthetic rows (one per user and client-day, 21-feature maps like fraudcore's DFE
vectors) twice into a benchmark keyspace: first the ceiling — one process per core running
execute_concurrent_with_args over its share, nothing else — then write_dfe_rows. Prints rows/s of
both and their ratio.
"""
from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, overload

from storage.tables import TableStoreSettings

BENCH_CLIENT = "bench"
DAY_MS = int(dt.datetime(2025, 11, 21, tzinfo=dt.UTC).timestamp() * 1000)


def _feature_vector(rnd: random.Random) -> dict[str, float]:
    """One plausible DFE vector: counts, ratios, amounts and flags under fraudcore's feature names."""
    from fraudcore.features import FEATURE_NAMES

    events = rnd.randint(1, 400)
    logins = rnd.randint(0, 40)
    tx = rnd.randint(0, 30)
    values = {
        "account_events": events, "active_hours": rnd.randint(1, 24), "connected_devices": rnd.randint(1, 6),
        "device_changes": rnd.randint(0, 5), "distinct_devices": rnd.randint(1, 6),
        "distinct_fingerprints": rnd.randint(1, 4), "distinct_ips": rnd.randint(1, 12),
        "graph_centrality": round(rnd.random(), 6), "is_new_account": float(rnd.random() < 0.1),
        "login_failed_ratio": round(rnd.random() * 0.3, 6), "login_frequency": logins,
        "login_pattern_hour_entropy": round(rnd.random() * 4.5, 6),
        "login_pattern_night_share": round(rnd.random(), 6), "shared_attributes": rnd.randint(0, 8),
        "spending_pattern_cv": round(rnd.random() * 2, 6), "super_node_links": rnd.randint(0, 3),
        "transaction_amount_max": round(rnd.random() * 2000, 2),
        "transaction_amount_mean": round(rnd.random() * 300, 2),
        "transaction_amount_total": round(rnd.random() * 9000, 2), "transaction_count": tx,
        "transaction_velocity": rnd.randint(0, min(tx, 10)),
    }
    return {name: float(values[name]) for name in FEATURE_NAMES}


class SyntheticDfeRows(Sequence[tuple[str, int, dict[str, float]]]):
    """n DFE rows built on access (one distinct user each) over a pool of realistic vectors."""

    def __init__(self, n: int, seed: int = 7, pool: int = 4096) -> None:
        rnd = random.Random(seed)
        self.n = n
        self._pool = [_feature_vector(rnd) for _ in range(pool)]

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> tuple[str, int, dict[str, float]]: ...
    @overload
    def __getitem__(self, i: slice) -> list[tuple[str, int, dict[str, float]]]: ...

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        i %= self.n
        return f"user-{i:08d}", DAY_MS, self._pool[(i * 2654435761) % len(self._pool)]


def _ceiling_worker(settings: TableStoreSettings, rows: Sequence[Any], k: int, n: int, concurrency: int) -> None:
    """The simplest fast write: own session, one prepared INSERT, execute_concurrent_with_args."""
    from cassandra.concurrent import execute_concurrent_with_args

    from storage.cassandra_store import build_cluster
    from storage.dfe_writer import INSERT_DFE

    cluster = build_cluster(settings)
    session = cluster.connect()
    insert = session.prepare(INSERT_DFE.format(ks=settings.cassandra_keyspace))
    params = [(BENCH_CLIENT, u, ts, fv) for u, ts, fv in (rows[i] for i in range(k, len(rows), n))]
    execute_concurrent_with_args(session, insert, params, concurrency=concurrency)
    cluster.shutdown()


def run_ceiling(settings: TableStoreSettings, rows: Sequence[Any], processes: int, concurrency: int) -> float:
    """Seconds the raw driver takes for the rows with `processes` processes."""
    ctx = multiprocessing.get_context("fork")
    t0 = time.perf_counter()
    procs = [ctx.Process(target=_ceiling_worker, args=(settings, rows, k, processes, concurrency))
             for k in range(processes)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    secs = time.perf_counter() - t0
    if any(p.exitcode != 0 for p in procs):
        raise SystemExit(f"ceiling run failed: exit codes {[p.exitcode for p in procs]}")
    return secs


def run_writer(settings: TableStoreSettings, rows: Sequence[Any], processes: int, concurrency: int) -> float:
    """Seconds write_dfe_rows takes for the rows."""
    from storage.dfe_writer import write_dfe_rows

    t0 = time.perf_counter()
    written = write_dfe_rows(settings, BENCH_CLIENT, rows, processes=processes, concurrency=concurrency)
    secs = time.perf_counter() - t0
    assert written == len(rows), (written, len(rows))
    return secs


def _truncate(session: Any, keyspace: str) -> None:
    session.execute(f"TRUNCATE {keyspace}.dfe_data", timeout=120)


def main(argv: list[str] | None = None) -> int:
    """Run warm-up, ceiling and writer; print rows/s and the ratio."""
    base = TableStoreSettings.from_env(environ={**os.environ, "FRAUDBATCH_TABLES_BACKEND": "cassandra"})
    p = argparse.ArgumentParser(prog="python -m storage.bench_dfe", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="writer and ceiling processes")
    p.add_argument("--concurrency", type=int, default=base.cassandra_write_concurrency)
    p.add_argument("--keyspace", default="fraud_bench")
    p.add_argument("--warmup", type=int, default=100_000, help="rows written first, not measured")
    p.add_argument("--no-verify", action="store_true", help="skip counting the rows afterwards")
    args = p.parse_args(argv)

    from storage import cassandra_store
    from storage.cassandra_store import CassandraTableStore, connect
    from storage.migrations import apply_migrations

    # A shared, overloaded machine can stall the node for seconds; the ceiling has no retries, so
    # both sides get a patient per-request timeout instead of failing the run.
    cassandra_store.REQUEST_TIMEOUT_S = 60.0

    settings = replace(base, cassandra_keyspace=args.keyspace)
    settings.validate()
    cluster, session = connect(settings)
    try:
        apply_migrations(session, args.keyspace, f"{args.keyspace}_fp", settings.cassandra_replication,
                         log=lambda _: None)
        rows = SyntheticDfeRows(args.rows)
        print(f"DFE write benchmark: {args.rows:,} rows (21-feature maps) into {args.keyspace}.dfe_data at "
              f"{settings.cassandra_hosts[0]}:{settings.cassandra_port}; {args.processes} processes, "
              f"concurrency {args.concurrency}, {os.cpu_count()} cores", flush=True)
        _truncate(session, args.keyspace)
        if args.warmup:
            run_ceiling(settings, SyntheticDfeRows(min(args.warmup, args.rows), seed=1), args.processes,
                        args.concurrency)
            _truncate(session, args.keyspace)
        ceiling_s = run_ceiling(settings, rows, args.processes, args.concurrency)
        ceiling = args.rows / ceiling_s
        print(f"ceiling (raw driver, execute_concurrent_with_args): {ceiling:>10,.0f} rows/s  ({ceiling_s:.1f} s)",
              flush=True)
        _truncate(session, args.keyspace)
        writer_s = run_writer(settings, rows, args.processes, args.concurrency)
        writer = args.rows / writer_s
        print(f"writer  (storage.dfe_writer.write_dfe_rows):        {writer:>10,.0f} rows/s  ({writer_s:.1f} s)")
        print(f"ratio writer/ceiling: {writer / ceiling:.2f}")
    finally:
        cluster.shutdown()
    if not args.no_verify:
        with CassandraTableStore(settings) as store:
            stored = store.count_dfe(BENCH_CLIENT)
        print(f"rows stored: {stored:,} ({'ok' if stored == args.rows else 'MISMATCH'})")
        if stored != args.rows:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
