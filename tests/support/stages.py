"""Arrow schemas of the warehouse stages that tests write by hand, as the Spark jobs leave them."""

from __future__ import annotations

import pyarrow as pa

# virtual_nodes/nodes: one row per shared node (jobs/virtual_nodes.py).
VIRTUAL_NODES = pa.schema(
    [
        ("node_id", pa.string()),
        ("node_type", pa.string()),
        ("node_value", pa.string()),
        ("users", pa.int64()),
        ("events", pa.int64()),
        ("is_super", pa.bool_()),
    ]
)
# virtual_nodes/edges: one row per (user, node).
VIRTUAL_EDGES = pa.schema(
    [
        ("user_id", pa.string()),
        ("node_id", pa.string()),
        ("node_type", pa.string()),
        ("events", pa.int64()),
        ("first_ms", pa.int64()),
        ("last_ms", pa.int64()),
    ]
)
