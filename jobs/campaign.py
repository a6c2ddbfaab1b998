"""Campaign: groups of accounts linked through shared non-super virtual nodes, scored as fraud rings.

Usage: spark-submit jobs/run.py campaign --client C --date D --warehouse W [--registry R]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fraudcore.atomic import write_json
from fraudcore.campaigns import build_campaign, find_groups, member_record, sort_campaigns
from fraudcore.paths import is_done
from fraudcore.scoring import merge_windows
from jobs.common import JobContext, run_main

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

APP = "campaign"
INPUT_STAGES = ("virtual_nodes", "user_stats", "dfe")


def require_done(ctx: JobContext, stages: tuple[str, ...]) -> None:
    """Raise unless every input stage of the client-day is complete."""
    for name in stages:
        if not is_done(ctx.paths.stage(name)):
            raise RuntimeError(f"{name} stage is not complete: {ctx.paths.stage(name)} has no _DONE")


def shared_node_users(spark: SparkSession, ctx: JobContext) -> tuple[dict[str, list[str]], dict[str, str]]:
    """node_id -> sorted users, and node_id -> node_type, of the non-super nodes with two or more users."""
    from pyspark.sql import functions as F

    vn = ctx.paths.stage("virtual_nodes")
    nodes = spark.read.parquet(str(vn / "nodes"))
    edges = spark.read.parquet(str(vn / "edges"))
    # Super-nodes link crowds, not rings; dropping them also caps each user list at the
    # super-node threshold, so the pairs built from one node stay bounded.
    kept = nodes.where(
        ~F.col("is_super") & (F.col("users") >= 2) & (F.col("users") <= ctx.client.super_node_threshold)
    ).select("node_id", "node_type")
    rows = (
        edges.select("user_id", "node_id")
        .join(kept, "node_id")
        .groupBy("node_id", "node_type")
        .agg(F.sort_array(F.collect_set("user_id")).alias("users"))
        .collect()
    )
    return ({r["node_id"]: list(r["users"]) for r in rows}, {r["node_id"]: r["node_type"] for r in rows})


def new_accounts(spark: SparkSession, ctx: JobContext) -> dict[str, int]:
    """user_id -> first activity (ms) of the accounts created that day (a signup event)."""
    stats = spark.read.parquet(str(ctx.paths.stage("user_stats") / "stats"))
    rows = stats.where("is_new_account").select("user_id", "first_ms").collect()
    return {r["user_id"]: int(r["first_ms"]) for r in rows}


def feature_windows(spark: SparkSession, ctx: JobContext) -> DataFrame:
    """user_id -> windows (every DFE feature map of the user that day)."""
    from pyspark.sql import functions as F

    vectors = spark.read.parquet(str(ctx.paths.stage("dfe") / "vectors"))
    return vectors.groupBy("user_id").agg(F.collect_list("features").alias("windows"))


def member_records(spark: SparkSession, ctx: JobContext, user_ids: list[str]) -> dict[str, dict]:
    """user_id -> member_record (user_stats over merged DFE features) of the given users."""
    from pyspark.sql.types import StringType, StructField, StructType

    if not user_ids:
        return {}
    wanted = spark.createDataFrame(
        [(u,) for u in user_ids], StructType([StructField("user_id", StringType(), False)])
    )
    stats = spark.read.parquet(str(ctx.paths.stage("user_stats") / "stats"))
    rows = (
        wanted.join(stats, "user_id", "left").join(feature_windows(spark, ctx), "user_id", "left").collect()
    )
    out = {}
    for row in rows:
        d = row.asDict(recursive=True)
        windows = d.pop("windows") or []
        stats_part = {k: v for k, v in d.items() if v is not None}
        out[d["user_id"]] = member_record(stats_part, merge_windows(windows))
    return out


def write_members(folder: Path, campaigns: list[dict]) -> int:
    """campaigns/members/ as one Parquet file of (user_id, campaign_id), sorted by user; the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pairs = sorted((u, c["campaign_id"]) for c in campaigns for u in c["members"])
    table = pa.table(
        {"user_id": [p[0] for p in pairs], "campaign_id": [p[1] for p in pairs]},
        schema=pa.schema(
            [pa.field("user_id", pa.string(), False), pa.field("campaign_id", pa.string(), False)]
        ),
    )
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, str(folder / "part-00000.parquet"))
    return len(pairs)


def run(spark: SparkSession, ctx: JobContext) -> str:
    """Write campaigns/{campaigns.json,members/,stats.json}; return the summary line."""
    started = time.monotonic()
    require_done(ctx, INPUT_STAGES)
    node_users, node_types = shared_node_users(spark, ctx)
    # Components are found on the driver: after super-node pruning only users who share a
    # node remain, a small graph even for a big client-day. Should it outgrow the driver, the
    # same components come from large-star/small-star iterations on Spark (GraphFrames'
    # method, converging in a handful of rounds) without changing anything downstream.
    groups = find_groups(node_users, node_types, new_accounts(spark, ctx))
    records = member_records(spark, ctx, sorted(u for members, _ in groups for u in members))
    date = ctx.paths.date.isoformat()
    campaigns = sort_campaigns(
        build_campaign(ctx.client.name, date, [records.get(u, {"user_id": u}) for u in members], shared)
        for members, shared in groups
    )
    stats = {
        "campaigns": len(campaigns),
        "fraud_rings": sum(1 for c in campaigns if c["is_fraud_ring"]),
        "members": sum(c["size"] for c in campaigns),
    }
    meta: dict = dict(stats)
    with ctx.paths.output("campaigns", meta) as tmp:
        write_json(tmp / "campaigns.json", campaigns)
        write_members(tmp / "members", campaigns)
        write_json(tmp / "stats.json", stats)
        meta["seconds"] = round(time.monotonic() - started, 3)
    return f"campaigns={stats['campaigns']} fraud_rings={stats['fraud_rings']} members={stats['members']}"


def main(argv: list[str] | None = None) -> int:
    """Entry point: `run.py campaign --client C --date D --warehouse W [--registry R]`."""
    return run_main(APP, "Detect and score the campaigns of a client-day.", run, argv)


if __name__ == "__main__":
    sys.exit(main())
