"""Smoke job: proves spark-submit, the session and the job entry point work end to end."""

from __future__ import annotations

import argparse
from pathlib import Path

from fraudcore import atomic
from jobs.common import spark_session


def main(argv: list[str]) -> int:
    """Count range(n) with Spark and write the count to --out."""
    p = argparse.ArgumentParser(description="DCluster smoke job")
    p.add_argument("--out", required=True, type=Path, help="file that receives the count")
    p.add_argument("--n", type=int, default=1000, help="size of the range to count")
    args = p.parse_args(argv)
    spark = spark_session("smoke")
    try:
        count = spark.range(args.n).count()
    finally:
        spark.stop()
    atomic.write_text(args.out, f"{count}\n")  # readers never see a half-written count
    print(f"smoke: counted {count}")
    return 0
