"""Rawlogconverter: one DFE feature vector per user of a client-day (fraudcore.features.user_features).

Graph values come from the virtual-node graph with Spark joins; the per-user vector is a plain
function applied to each user's grouped events (DataFrame API only, so it also runs on Spark Connect).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fraudcore.atomic import write_json
from fraudcore.features import FEATURE_NAMES, GRAPH_KEYS, time_ordered, user_features
from jobs.common import JobContext, map_rows, read_organized_events, run_main

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

APP = "rawlogconverter"

# The event columns the per-user functions read; fewer columns, less to ship to Python workers.
USER_EVENT_COLUMNS = (
    "event_id",
    "user_id",
    "event_time_ms",
    "event_type",
    "ip",
    "device_id",
    "browser_fingerprint",
    "email_domain",
    "phone",
    "amount",
    "hour",
)


def events_by_user(events: DataFrame) -> DataFrame:
    """user_id, events: one row per user, holding the user's events (USER_EVENT_COLUMNS structs)."""
    from pyspark.sql import functions as F

    return events.groupBy("user_id").agg(F.collect_list(F.struct(*USER_EVENT_COLUMNS)).alias("events"))


def user_events(row: dict) -> list[dict]:
    """The events of an events_by_user row in time order, so per-user results never depend on the shuffle."""
    return time_ordered(row["events"])


def graph_values(edges: DataFrame, nodes: DataFrame) -> DataFrame:
    """Per user: connected_devices, graph_centrality, shared_attributes, super_node_links."""
    from pyspark.sql import functions as F

    linked = edges.select("user_id", "node_id", "node_type").join(
        nodes.select("node_id", "users", "is_super"), "node_id"
    )
    # Non-super nodes have at most `threshold` users, so the self-join below stays bounded.
    shared = linked.where(~F.col("is_super") & (F.col("users") >= 2)).select("user_id", "node_id")
    pairs = (
        shared.alias("a")
        .join(shared.alias("b"), "node_id")
        .where(F.col("a.user_id") != F.col("b.user_id"))
        .select(F.col("a.user_id").alias("user_id"), F.col("b.user_id").alias("other"))
        .distinct()
    )
    users = edges.select("user_id").distinct()
    centrality = pairs.groupBy("user_id").agg(F.count(F.lit(1)).alias("graph_centrality"))
    shared_n = shared.groupBy("user_id").agg(F.countDistinct("node_id").alias("shared_attributes"))
    supers = (
        linked.where(F.col("is_super"))
        .groupBy("user_id")
        .agg(F.countDistinct("node_id").alias("super_node_links"))
    )
    devices = edges.where(F.col("node_type") == "device").select(F.col("user_id").alias("other"), "node_id")
    reach = pairs.unionByName(users.select("user_id", F.col("user_id").alias("other")))
    connected = (
        reach.join(devices, "other")
        .groupBy("user_id")
        .agg(F.countDistinct("node_id").alias("connected_devices"))
    )
    out = users
    for part in (connected, centrality, shared_n, supers):
        out = out.join(part, "user_id", "left")
    return out.select("user_id", *[F.coalesce(F.col(k), F.lit(0)).alias(k) for k in GRAPH_KEYS])


def vectors_schema() -> StructType:
    """Schema of dfe/vectors: user_id, window_start_ms, features map<string,double>."""
    from pyspark.sql.types import DoubleType, LongType, MapType, StringType, StructField, StructType

    return StructType(
        [
            StructField("user_id", StringType(), False),
            StructField("window_start_ms", LongType(), False),
            StructField("features", MapType(StringType(), DoubleType(), False), False),
        ]
    )


def run(spark: SparkSession, ctx: JobContext) -> str:
    """Write dfe/{vectors,stats.json}; return the summary line."""
    from pyspark.sql import functions as F

    day_start_ms, _ = ctx.client.day_window_ms(ctx.paths.date)
    vn = ctx.paths.stage("virtual_nodes")
    for part in ("nodes", "edges"):
        if not (vn / part).is_dir():
            raise FileNotFoundError(f"virtual nodes not found: {vn / part} (run virtual_nodes first)")
    events = read_organized_events(spark, ctx)
    graph = graph_values(spark.read.parquet(str(vn / "edges")), spark.read.parquet(str(vn / "nodes")))
    # A user without graph edges gets a null `graph`, which user_features reads as all zeros.
    per_user = events_by_user(events).join(
        graph.select("user_id", F.struct(*GRAPH_KEYS).alias("graph")), "user_id", "left"
    )

    def vector(row: dict) -> tuple[str, int, dict[str, float]]:
        return row["user_id"], day_start_ms, user_features(user_events(row), row["graph"] or {}, day_start_ms)

    vectors = map_rows(per_user, vector, vectors_schema())
    meta: dict = {"window_start_ms": day_start_ms}
    started = time.monotonic()
    with ctx.paths.output("dfe", meta) as tmp:
        out = str(Path(tmp) / "vectors")
        vectors.orderBy("user_id").write.parquet(out)
        users = spark.read.parquet(out).count()
        stats = {
            "users": users,
            "features_per_vector": len(FEATURE_NAMES),
            "feature_names": list(FEATURE_NAMES),
            "window_start_ms": day_start_ms,
        }
        write_json(Path(tmp) / "stats.json", stats)
        meta.update(
            users=users, features_per_vector=len(FEATURE_NAMES), seconds=round(time.monotonic() - started, 3)
        )
    return f"vectors={users} features={len(FEATURE_NAMES)}"


def main(argv: list[str] | None = None) -> int:
    """Entry point: `run.py rawlogconverter --client C --date D --warehouse W [--registry R]`."""
    return run_main(APP, "Compute the DFE feature vectors of a client-day.", run, argv)


if __name__ == "__main__":
    sys.exit(main())
