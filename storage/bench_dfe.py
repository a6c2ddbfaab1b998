"""Benchmark of the DFE writer against the local Cassandra node, next to the raw driver's ceiling.

    python -m storage.bench_dfe --rows 1000000 [--driver native|python] [--processes 2] [--concurrency 96]

Writes the same synthetic rows (one per user and client-day, 21-feature maps like fraudcore's DFE
vectors) into a benchmark keyspace, alternately as the ceiling — one process per core sending its
share through the same driver with the same concurrency, nothing else — and through
write_dfe_rows. Prints rows/s and the CPU per row of the node and of the client for every run, then
the best of each and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing
import os
import random
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from storage.model import TableStoreSettings, setting

BENCH_CLIENT = "bench"
DAY_MS = int(dt.datetime(2025, 11, 21, tzinfo=dt.UTC).timestamp() * 1000)


def _feature_vector(rnd: random.Random) -> dict[str, float]:
    """One plausible DFE vector: counts, ratios, amounts and flags under fraudcore's feature names."""
    from fraudcore.features import FEATURE_NAMES

    events = rnd.randint(1, 400)
    logins = rnd.randint(0, 40)
    tx = rnd.randint(0, 30)
    values = {
        "account_events": events,
        "active_hours": rnd.randint(1, 24),
        "connected_devices": rnd.randint(1, 6),
        "device_changes": rnd.randint(0, 5),
        "distinct_devices": rnd.randint(1, 6),
        "distinct_fingerprints": rnd.randint(1, 4),
        "distinct_ips": rnd.randint(1, 12),
        "graph_centrality": round(rnd.random(), 6),
        "is_new_account": float(rnd.random() < 0.1),
        "login_failed_ratio": round(rnd.random() * 0.3, 6),
        "login_frequency": logins,
        "login_pattern_hour_entropy": round(rnd.random() * 4.5, 6),
        "login_pattern_night_share": round(rnd.random(), 6),
        "shared_attributes": rnd.randint(0, 8),
        "spending_pattern_cv": round(rnd.random() * 2, 6),
        "super_node_links": rnd.randint(0, 3),
        "transaction_amount_max": round(rnd.random() * 2000, 2),
        "transaction_amount_mean": round(rnd.random() * 300, 2),
        "transaction_amount_total": round(rnd.random() * 9000, 2),
        "transaction_count": tx,
        "transaction_velocity": rnd.randint(0, min(tx, 10)),
    }
    return {name: float(values[name]) for name in FEATURE_NAMES}


def synthetic_rows(n: int, seed: int = 7, pool: int = 4096) -> list[tuple[str, int, dict[str, float]]]:
    """n DFE rows, one distinct user each, over a pool of realistic vectors (shared, not copied)."""
    rnd = random.Random(seed)
    vectors = [_feature_vector(rnd) for _ in range(pool)]
    return [(f"user-{i:08d}", DAY_MS, vectors[(i * 2654435761) % pool]) for i in range(n)]


def _python_ceiling(
    settings: TableStoreSettings, rows: Sequence[Any], k: int, n: int, concurrency: int
) -> None:
    """The simplest fast write with the Python driver: prepared INSERT, execute_concurrent_with_args."""
    from cassandra.concurrent import execute_concurrent_with_args

    from storage.cassandra_session import build_cluster
    from storage.dfe_writer import INSERT_DFE

    cluster = build_cluster(settings)
    session = cluster.connect()
    insert = session.prepare(INSERT_DFE.format(ks=settings.cassandra_keyspace))
    params = [(BENCH_CLIENT, u, ts, fv) for u, ts, fv in (rows[i] for i in range(k, len(rows), n))]
    execute_concurrent_with_args(session, insert, params, concurrency=concurrency)
    cluster.shutdown()


async def _native_ceiling_async(
    settings: TableStoreSettings, rows: Sequence[Any], k: int, n: int, concurrency: int
) -> None:
    from storage.cassandra_session import native_cluster
    from storage.dfe_writer import INSERT_DFE

    session = await native_cluster(settings).create_session()
    insert = await session.create_prepared(INSERT_DFE.format(ks=settings.cassandra_keyspace))
    it = iter(range(k, len(rows), n))

    async def lane() -> None:
        for i in it:
            user_id, ts, vector = rows[i]
            statement = insert.bind()
            statement.bind_list([BENCH_CLIENT, user_id, ts // 1000, vector])  # whole seconds here
            await session.execute(statement)

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    await session.close()


def _native_ceiling(
    settings: TableStoreSettings, rows: Sequence[Any], k: int, n: int, concurrency: int
) -> None:
    """The simplest fast write with the native driver: prepared INSERT, `concurrency` requests in flight."""
    asyncio.run(_native_ceiling_async(settings, rows, k, n, concurrency))


CEILINGS = {"native": _native_ceiling, "python": _python_ceiling}


def run_ceiling(
    settings: TableStoreSettings,
    rows: Sequence[Any],
    processes: int,
    concurrency: int,
    driver: str = "native",
) -> float:
    """Seconds the raw driver takes for the rows with `processes` processes (every row-th share each)."""
    ctx = multiprocessing.get_context("fork")
    t0 = time.perf_counter()
    procs = [
        ctx.Process(target=CEILINGS[driver], args=(settings, rows, k, processes, concurrency))
        for k in range(processes)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    secs = time.perf_counter() - t0
    if any(p.exitcode != 0 for p in procs):
        raise SystemExit(f"ceiling run failed: exit codes {[p.exitcode for p in procs]}")
    return secs


def run_writer(
    settings: TableStoreSettings,
    rows: Sequence[Any],
    processes: int,
    concurrency: int,
    driver: str = "native",
) -> float:
    """Seconds write_dfe_rows takes for the rows."""
    from storage.dfe_writer import write_dfe_rows

    t0 = time.perf_counter()
    written = write_dfe_rows(
        settings, BENCH_CLIENT, rows, processes=processes, concurrency=concurrency, driver=driver
    )
    secs = time.perf_counter() - t0
    assert written == len(rows), (written, len(rows))
    return secs


class CpuMeter:
    """CPU seconds of the local node (scripts/cassandra.sh's pid file) and of this process's children."""

    def __init__(self, pid_file: Path) -> None:
        self.pid = int(pid_file.read_text().strip()) if pid_file.is_file() else None
        self._start = self._now()

    def _node(self) -> float | None:
        if self.pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _now(self) -> tuple[float | None, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return self._node(), children.ru_utime + children.ru_stime

    def per_row_us(self, rows: int) -> str:
        """'node N us, client M us' of CPU per row since the meter started."""
        (node0, client0), (node1, client1) = self._start, self._now()
        node = (
            f"node {(node1 - node0) / rows * 1e6:.0f} us"
            if node0 is not None and node1 is not None
            else "node n/a"
        )
        return f"CPU per row: {node}, client {(client1 - client0) / rows * 1e6:.0f} us"


def _truncate(session: Any, keyspace: str) -> None:
    session.execute(f"TRUNCATE {keyspace}.dfe_data", timeout=120)


def main(argv: list[str] | None = None) -> int:
    """Run warm-up, then ceiling and writer in alternating order; print rows/s, CPU per row and the ratio."""
    base = TableStoreSettings.from_env(environ={**os.environ, setting("backend").env: "cassandra"})
    p = argparse.ArgumentParser(prog="python -m storage.bench_dfe", description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="writer and ceiling processes")
    p.add_argument("--concurrency", type=int, default=base.cassandra_write_concurrency)
    p.add_argument(
        "--driver",
        choices=sorted(CEILINGS),
        default=base.cassandra_writer_driver,
        help="driver of both the writer and its ceiling (FRAUDBATCH_CASSANDRA_WRITER_DRIVER)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="rounds of (ceiling, writer), order alternating; the best of each is compared",
    )
    p.add_argument("--keyspace", default="fraud_bench")
    p.add_argument("--warmup", type=int, default=100_000, help="rows written first, not measured")
    p.add_argument(
        "--pid-file",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "var" / "cassandra" / "cassandra.pid",
        help="pid file of a local node, for its CPU per row",
    )
    p.add_argument("--no-verify", action="store_true", help="skip counting the rows afterwards")
    args = p.parse_args(argv)

    from storage import cassandra_session
    from storage.cassandra_session import connect
    from storage.cassandra_store import CassandraTableStore
    from storage.migrations import apply_migrations

    # A shared, overloaded machine can stall the node for seconds; the ceiling has no retries, so
    # both sides get a patient per-request timeout instead of failing the run.
    cassandra_session.REQUEST_TIMEOUT_S = 60.0

    settings = replace(base, cassandra_keyspace=args.keyspace)
    settings.validate()
    cluster, session = connect(settings)
    best = {"ceiling": 0.0, "writer": 0.0}
    rows: list[tuple[str, int, dict[str, float]]]  # made inside the try, before the first run
    runs = {
        "ceiling": lambda: run_ceiling(settings, rows, args.processes, args.concurrency, args.driver),
        "writer": lambda: run_writer(settings, rows, args.processes, args.concurrency, args.driver),
    }
    labels = {"ceiling": f"ceiling (raw {args.driver} driver)", "writer": "writer  (write_dfe_rows)"}
    try:
        apply_migrations(
            session, args.keyspace, f"{args.keyspace}_fp", settings.cassandra_replication, log=lambda _: None
        )
        # A list, as callers hand the writer (the store materialises its input).
        rows = synthetic_rows(args.rows)
        print(
            f"DFE write benchmark: {args.rows:,} rows (21-feature maps) into {args.keyspace}.dfe_data at "
            f"{settings.cassandra_hosts[0]}:{settings.cassandra_port}; {args.driver} driver, {args.processes} "
            f"processes, concurrency {args.concurrency}, {os.cpu_count()} cores",
            flush=True,
        )
        _truncate(session, args.keyspace)
        if args.warmup:
            run_ceiling(
                settings,
                synthetic_rows(min(args.warmup, args.rows), seed=1),
                args.processes,
                args.concurrency,
                args.driver,
            )
        for r in range(max(1, args.repeat)):
            for kind in ("ceiling", "writer") if r % 2 == 0 else ("writer", "ceiling"):
                _truncate(session, args.keyspace)
                meter = CpuMeter(args.pid_file)
                secs = runs[kind]()
                rate = args.rows / secs
                best[kind] = max(best[kind], rate)
                print(
                    f"{labels[kind]:<30} {rate:>10,.0f} rows/s  ({secs:.1f} s; {meter.per_row_us(args.rows)})",
                    flush=True,
                )
        print(
            f"best: ceiling {best['ceiling']:,.0f} rows/s, writer {best['writer']:,.0f} rows/s; "
            f"ratio writer/ceiling {best['writer'] / best['ceiling']:.2f}"
        )
    finally:
        cluster.shutdown()
    if not args.no_verify:
        with CassandraTableStore(settings) as store:
            stored = store.count_dfe(BENCH_CLIENT)
        print(f"rows stored by the last run: {stored:,} ({'ok' if stored == args.rows else 'MISMATCH'})")
        if stored != args.rows:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
