"""VirtualNodeGenerator: the user-attribute graph (nodes, edges) of a client-day's organized events.

Node values are built with Spark SQL functions that mirror fraudcore.graph.event_nodes (the
reference); Python UDFs would ship every event through a Python worker and be many times slower.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fraudcore.atomic import write_json
from fraudcore.graph import HEXTET_PATTERN, IPV4_PATTERN, NODE_TYPES, WHITESPACE
from jobs.common import JobContext, read_organized_events, run_main

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

APP = "virtual_nodes"


# ---------------------------------------------------------------- node values in Spark SQL


def _clean(col: Column) -> Column:
    """Spark twin of fraudcore.graph.clean: strip whitespace, blank -> null."""
    from pyspark.sql import functions as F

    ws = "".join(f"\\x{ord(c):02x}" for c in WHITESPACE)
    s = F.regexp_replace(col, f"^[{ws}]+|[{ws}]+$", "")
    return F.when(s != "", s)


def _nonblank(col: Column) -> Column:
    from pyspark.sql import functions as F

    return F.when(col != "", col)


def _v6_groups(addr: Column) -> Column:
    """Spark twin of fraudcore.graph._v6_groups: the eight hextets, or null."""
    from pyspark.sql import functions as F

    def all_hex(arr: Column) -> Column:
        return F.forall(arr, lambda g: g.rlike(f"^{HEXTET_PATTERN}$"))

    empty = F.array().cast("array<string>")
    parts = F.split(addr, "::", -1)
    full = F.split(addr, ":", -1)
    head = F.when(parts[0] == "", empty).otherwise(F.split(parts[0], ":", -1))
    tail = F.when(F.element_at(parts, 2) == "", empty).otherwise(F.split(F.element_at(parts, 2), ":", -1))
    n = F.size(head) + F.size(tail)
    one = (F.size(parts) == 1) & (F.size(full) == 8) & all_hex(full)
    two = (F.size(parts) == 2) & (n <= 7) & all_hex(head) & all_hex(tail)
    expanded = F.concat(head, F.array_repeat(F.lit("0"), 8 - n), tail)
    return F.when(~addr.rlike("^[0-9a-f:]+$"), None).when(one, full).when(two, expanded)


def _ip_value_and_block(ip: Column) -> tuple[Column, Column]:
    """Spark twins of fraudcore.graph.normalize_ip and ip_block."""
    from pyspark.sql import functions as F

    s = F.lower(_clean(ip))
    is_v4 = s.rlike(f"^{IPV4_PATTERN}$")
    s6 = F.regexp_replace(s, "%.*$", "")
    groups = _v6_groups(F.regexp_replace(s6, f":{IPV4_PATTERN}$", ":0:0"))
    is_v6 = s.contains(":") & groups.isNotNull()
    head = F.transform(F.slice(groups, 1, 4), lambda g: F.regexp_replace(g, "^0+(?=.)", ""))
    # Drop trailing zero hextets (see fraudcore.graph.ip_block for why that is RFC 5952 form).
    trimmed = F.regexp_replace(
        F.regexp_replace(F.concat(F.lit(":"), F.array_join(head, ":")), "(:0)+$", ""), "^:", ""
    )
    v4_block = F.concat(F.regexp_extract(s, r"^(\d+\.\d+\.\d+)\.", 1), F.lit(".0/24"))
    value = F.when(is_v4, s).when(is_v6, s6)
    block = F.when(is_v4, v4_block).when(is_v6, F.concat(trimmed, F.lit("::/64")))
    return value, block


def node_value_columns() -> list[tuple[str, Column]]:
    """(node_type, value column) per NODE_TYPES over *events* columns; null where an event has none."""
    from pyspark.sql import functions as F

    ip_value, ip_block = _ip_value_and_block(F.col("ip"))
    cols = {
        "device": F.lower(_clean(F.col("device_id"))),
        "ip": ip_value,
        "ip_block": ip_block,
        "fingerprint": F.lower(_clean(F.col("browser_fingerprint"))),
        "phone": _nonblank(F.regexp_replace(_clean(F.col("phone")), "[^0-9]", "")),
        "email_domain": _nonblank(F.regexp_replace(F.lower(_clean(F.col("email_domain"))), r"^.*@|\.+$", "")),
    }
    return [(t, cols[t]) for t in NODE_TYPES]


def event_node_rows(events: DataFrame) -> DataFrame:
    """One row per (event, node): user_id, event_time_ms, node_type, node_value."""
    from pyspark.sql import functions as F

    # One array of (type, value) structs exploded once: a single pass over the events, where a
    # union of one select per node type would scan them six times.
    pairs = F.array(
        *[F.struct(F.lit(t).alias("node_type"), c.alias("node_value")) for t, c in node_value_columns()]
    )
    return events.select("user_id", "event_time_ms", F.inline(pairs)).where(F.col("node_value").isNotNull())


# ---------------------------------------------------------------- the job


def build_graph(events: DataFrame, threshold: int) -> tuple[DataFrame, DataFrame]:
    """(nodes, edges) frames of the *nodes* and *edges* schemas, in a deterministic order."""
    from pyspark.sql import functions as F

    edges = (
        event_node_rows(events)
        .withColumn("node_id", F.concat_ws(":", "node_type", "node_value"))
        .groupBy("user_id", "node_id", "node_type", "node_value")
        .agg(
            F.count(F.lit(1)).alias("events"),
            F.min("event_time_ms").alias("first_ms"),
            F.max("event_time_ms").alias("last_ms"),
        )
    )
    nodes = (
        edges.groupBy("node_id", "node_type", "node_value")
        .agg(F.count(F.lit(1)).alias("users"), F.sum("events").alias("events"))
        .withColumn("is_super", F.col("users") > F.lit(int(threshold)))
        .select("node_id", "node_type", "node_value", "users", "events", "is_super")
        .orderBy("node_id")
    )
    edges = edges.select("user_id", "node_id", "node_type", "events", "first_ms", "last_ms").orderBy(
        "user_id", "node_id"
    )
    return nodes, edges


def run(spark: SparkSession, ctx: JobContext) -> str:
    """Write virtual_nodes/{nodes,edges,stats.json}; return the summary line."""
    from pyspark.sql import functions as F

    threshold = ctx.client.super_node_threshold
    events = read_organized_events(spark, ctx)
    meta: dict = {"super_node_threshold": threshold}
    started = time.monotonic()
    with ctx.paths.output("virtual_nodes", meta) as tmp:
        nodes, edges = build_graph(events, threshold)
        nodes.write.parquet(str(Path(tmp) / "nodes"))
        edges.write.parquet(str(Path(tmp) / "edges"))
        # Counted from what was written, so the numbers describe the output exactly.
        written_nodes = spark.read.parquet(str(Path(tmp) / "nodes"))
        written_edges = spark.read.parquet(str(Path(tmp) / "edges"))
        per_type = {t: [0, 0] for t in NODE_TYPES}
        for row in (
            written_nodes.groupBy("node_type")
            .agg(F.count(F.lit(1)).alias("n"), F.sum(F.col("is_super").cast("long")).alias("s"))
            .collect()
        ):
            per_type[row["node_type"]] = [int(row["n"]), int(row["s"] or 0)]
        edge_row = written_edges.agg(
            F.count(F.lit(1)).alias("e"), F.countDistinct("user_id").alias("u")
        ).first()
        stats = {
            "nodes": {t: per_type[t][0] for t in sorted(per_type)},
            "super_nodes": {t: per_type[t][1] for t in sorted(per_type)},
            "edges": int(edge_row["e"]),
            "users": int(edge_row["u"]),
            "super_node_threshold": threshold,
        }
        write_json(Path(tmp) / "stats.json", stats)
        meta.update(
            nodes=sum(stats["nodes"].values()),
            edges=stats["edges"],
            users=stats["users"],
            seconds=round(time.monotonic() - started, 3),
        )
    return (
        f"nodes={meta['nodes']} super={sum(stats['super_nodes'].values())} "
        f"edges={meta['edges']} users={meta['users']}"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: `run.py virtual_nodes --client C --date D --warehouse W [--registry R]`."""
    return run_main(APP, "Build the virtual-node graph of a client-day.", run, argv)


if __name__ == "__main__":
    sys.exit(main())
