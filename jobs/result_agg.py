"""ResultAgg: the day summary (result_agg/summary.json, fraudcore.summary.build_summary).

Usage: spark-submit jobs/run.py result_agg --client C --date D --warehouse W [--registry R]

Its inputs are two small JSON files, the campaign list and two columns of the risk table, so it
reads them with pyarrow on the driver and starts no Spark session: the JVM start-up would cost
more than the work.
"""

from __future__ import annotations

import sys
import time

from fraudcore.atomic import write_json
from fraudcore.paths import read_json
from fraudcore.summary import build_summary
from jobs.campaign import require_done
from jobs.common import JobContext, client_day_main, read_parquet_rows
from jobs.result_agg_lite import read_json_list

APP = "result_agg"
INPUT_STAGES = ("connector", "organized", "risk", "campaigns")


def run(ctx: JobContext) -> str:
    """Write result_agg/summary.json; return the summary line."""
    started = time.monotonic()
    require_done(ctx, INPUT_STAGES)
    p = ctx.paths
    summary = build_summary(
        ctx.client.name,
        p.date.isoformat(),
        read_json(p.stage("connector") / "stats.json"),
        read_json(p.stage("organized") / "stats.json"),
        read_parquet_rows(p.stage("risk") / "scores", columns=["risk_score", "is_flagged"]),
        read_json_list(p.stage("campaigns") / "campaigns.json"),
    )
    meta: dict = {}
    with p.output("result_agg", meta) as tmp:
        write_json(tmp / "summary.json", summary)
        meta.update(
            users=summary["users"],
            flagged_users=summary["flagged_users"],
            seconds=round(time.monotonic() - started, 3),
        )
    return (
        f"users={summary['users']} flagged={summary['flagged_users']} "
        f"campaigns={summary['campaigns']} fraud_rings={summary['fraud_rings']}"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: `run.py result_agg --client C --date D --warehouse W [--registry R]`."""
    return client_day_main(APP, "Summarise a client-day.", run, argv)


if __name__ == "__main__":
    sys.exit(main())
