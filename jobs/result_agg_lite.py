"""ResultAggLite: one risk row per active user (fraudcore.scoring.risk_row) from stats, features, campaigns.

Usage: spark-submit jobs/run.py result_agg_lite --client C --date D --warehouse W [--registry R]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from fraudcore.atomic import write_json
from fraudcore.paths import read_json
from fraudcore.scoring import merge_windows, risk_row
from jobs.campaign import feature_windows, require_done
from jobs.common import JobContext, map_rows, run_main

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

APP = "result_agg_lite"
INPUT_STAGES = ("user_stats", "dfe", "virtual_nodes", "campaigns")
RISK_FIELDS = ("user_id", "risk_score", "is_flagged", "campaign_id", "reason_codes")


def risk_schema() -> StructType:
    """Schema of risk/scores (docs/architecture.md)."""
    from pyspark.sql.types import BooleanType, IntegerType, StringType, StructField, StructType

    return StructType(
        [
            StructField("user_id", StringType(), False),
            StructField("risk_score", IntegerType(), False),
            StructField("is_flagged", BooleanType(), False),
            StructField("campaign_id", StringType(), False),
            StructField("reason_codes", StringType(), False),
        ]
    )


def shared_devices(spark: SparkSession, ctx: JobContext) -> DataFrame:
    """user_id -> shared_devices: the non-super devices the user shares with other accounts."""
    from pyspark.sql import functions as F

    vn = ctx.paths.stage("virtual_nodes")
    devices = (
        spark.read.parquet(str(vn / "nodes"))
        .where((F.col("node_type") == "device") & ~F.col("is_super") & (F.col("users") >= 2))
        .select("node_id")
    )
    edges = spark.read.parquet(str(vn / "edges")).select("user_id", "node_id")
    return (
        edges.join(devices, "node_id")
        .groupBy("user_id")
        .agg(F.countDistinct("node_id").alias("shared_devices"))
    )


def score_row(row: Mapping, campaigns: dict[str, dict], flag_threshold: int) -> tuple:
    """The risk row (RISK_FIELDS order) of a joined user row: user_stats + windows + shared_devices + campaign_id."""
    d = dict(row)
    windows = d.pop("windows", None) or []
    cid = d.pop("campaign_id", None)
    d["shared_devices"] = d.get("shared_devices") or 0
    r = risk_row(d, merge_windows(windows), campaigns.get(cid) if cid else None, flag_threshold)
    return tuple(r[f] for f in RISK_FIELDS)


def campaign_index(stage: Path) -> dict[str, dict]:
    """campaign_id -> the fields scoring needs, from campaigns.json (members dropped: they ship to workers)."""
    return {
        c["campaign_id"]: {
            "campaign_id": c["campaign_id"],
            "score": c["score"],
            "is_fraud_ring": c["is_fraud_ring"],
        }
        for c in read_json_list(stage / "campaigns.json")
    }


def read_json_list(path: Path) -> list[dict]:
    """A JSON file holding a list."""
    doc = read_json(path)
    if not isinstance(doc, list):
        raise ValueError(f"{path}: expected a JSON list")
    return doc


def run(spark: SparkSession, ctx: JobContext) -> str:
    """Write risk/{scores/,stats.json}; return the summary line."""
    from pyspark.sql import functions as F

    started = time.monotonic()
    require_done(ctx, INPUT_STAGES)
    cstage = ctx.paths.stage("campaigns")
    campaigns = campaign_index(cstage)
    users = spark.read.parquet(str(ctx.paths.stage("user_stats") / "stats")).where(F.col("events") > 0)
    members = spark.read.parquet(str(cstage / "members")).select("user_id", "campaign_id")
    joined = (
        users.join(feature_windows(spark, ctx), "user_id", "left")
        .join(shared_devices(spark, ctx), "user_id", "left")
        .join(members, "user_id", "left")
    )
    threshold = ctx.client.flag_threshold
    scored = map_rows(joined, lambda row: score_row(row, campaigns, threshold), risk_schema())
    meta: dict = {}
    with ctx.paths.output("risk", meta) as tmp:
        out = str(tmp / "scores")
        # One sorted file: the table is one narrow row per user, and a single file keeps the
        # output order (and so the results CSV built from it) deterministic.
        scored.repartition(1).sortWithinPartitions("user_id").write.parquet(out)
        agg = (
            spark.read.parquet(out)
            .agg(F.count(F.lit(1)).alias("users"), F.sum(F.col("is_flagged").cast("long")).alias("flagged"))
            .first()
        )
        stats = {"users": int(agg["users"]), "flagged": int(agg["flagged"] or 0)}
        write_json(tmp / "stats.json", stats)
        meta.update(stats, seconds=round(time.monotonic() - started, 3))
    return f"users={stats['users']} flagged={stats['flagged']} threshold={threshold}"


def main(argv: list[str] | None = None) -> int:
    """Entry point: `run.py result_agg_lite --client C --date D --warehouse W [--registry R]`."""
    return run_main(APP, "Score every active user of a client-day.", run, argv)


if __name__ == "__main__":
    sys.exit(main())
