"""Smoke job: proves the Flink environment, a local batch job and the entry point work end to end."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fraudcore import atomic
from jobs.flink.common import batch_env, job_name


def main(argv: list[str]) -> int:
    """Count range(n) with a Flink keyed reduce and write the count to --out."""
    from pyflink.common import Types

    p = argparse.ArgumentParser(description="DCluster Flink smoke job")
    p.add_argument("--out", required=True, type=Path, help="file that receives the count")
    p.add_argument("--n", type=int, default=1000, help="size of the range to count")
    p.add_argument(
        "--pause-s",
        type=float,
        default=0.0,
        help="seconds a worker waits on the first element (keeps the job running, for tests)",
    )
    args = p.parse_args(argv)
    pause = args.pause_s

    def one(x: int) -> tuple[int, int]:
        if x == 0 and pause:
            time.sleep(pause)
        return 0, 1

    env = batch_env("smoke")
    counts = (
        env.from_collection(list(range(args.n)), type_info=Types.LONG())
        .map(one, output_type=Types.TUPLE([Types.INT(), Types.LONG()]))
        .key_by(lambda kv: kv[0], key_type=Types.INT())
        .reduce(lambda a, b: (a[0], a[1] + b[1]))
    )
    with counts.execute_and_collect(job_name("smoke")) as results:
        count = sum(c for _, c in results)  # one row (a single key), none for an empty range
    atomic.write_text(args.out, f"{count}\n")  # readers never see a half-written count
    print(f"smoke: counted {count} with Flink", flush=True)
    return 0
