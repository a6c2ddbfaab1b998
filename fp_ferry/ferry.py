"""Ferry logic: read virtual nodes, cut them into idempotent batches, push them to the FP."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from fp_ferry.client import FPClient

# (batches done, batches total, records sent so far), e.g. for a Luigi progress message.
Progress = Callable[[int, int, int], None]


@dataclass(frozen=True)
class FerryReport:
    """What one ferry run sent: batches, records, how many the FP had already applied, wall time."""

    mode: str
    client: str
    batches: int
    records: int
    duplicates: int
    seconds: float

    def to_dict(self) -> dict:
        """The report as a JSON-ready dict (for a stage's _DONE metadata)."""
        return asdict(self)


def _read_parquet_rows(folder: Path, columns: Sequence[str]) -> list[dict]:
    """Rows of a Parquet folder (Spark part files; _SUCCESS and dot files ignored)."""
    import pyarrow.dataset as ds

    if not folder.is_dir():
        raise FileNotFoundError(f"virtual-node folder {folder} is missing")
    files = sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith(("_", ".")))
    if not files:
        return []
    return ds.dataset([str(p) for p in files], format="parquet").to_table(columns=list(columns)).to_pylist()


def load_virtual_node_records(stage_dir: Path) -> list[dict]:
    """Edges of a virtual_nodes stage joined with their node's users/is_super, sorted by (user_id, node_id)."""
    stage_dir = Path(stage_dir)
    nodes = {
        row["node_id"]: row
        for row in _read_parquet_rows(stage_dir / "nodes", ("node_id", "users", "is_super"))
    }
    edges = _read_parquet_rows(
        stage_dir / "edges", ("user_id", "node_id", "node_type", "events", "first_ms", "last_ms")
    )
    records: list[dict] = []
    for edge in edges:
        node = nodes.get(edge["node_id"])
        if node is None:
            # Nodes and edges come from one job; a dangling edge means the stage is corrupt, and
            # guessing its node's user count would push wrong features.
            raise ValueError(f"edge {edge['user_id']} -> {edge['node_id']} in {stage_dir} has no node row")
        records.append(
            {
                "user_id": edge["user_id"],
                "node_id": edge["node_id"],
                "node_type": edge["node_type"],
                "events": int(edge["events"]),
                "first_ms": int(edge["first_ms"]),
                "last_ms": int(edge["last_ms"]),
                "node_users": int(node["users"]),
                "is_super": bool(node["is_super"]),
            }
        )
    records.sort(key=lambda r: (r["user_id"], r["node_id"]))
    return records


def batch_id_for(client: str, date: dt.date | str, index: int, records: Sequence[dict]) -> str:
    """Deterministic batch id: same client, date, position and edges always give the same id."""
    day = date.isoformat() if isinstance(date, dt.date) else str(date)
    digest = hashlib.sha1()
    for r in records:
        digest.update(f"{r['user_id']}\x1f{r['node_id']}\x1e".encode())
    return f"{client}-{day}-b{index:05d}-{digest.hexdigest()[:10]}"


def ferry_batches(
    fp: FPClient,
    client: str,
    date: dt.date | str,
    records: Sequence[dict],
    batch_size: int = 10000,
    progress: Progress | None = None,
) -> FerryReport:
    """Push records in batches of at most `batch_size`; a rerun re-sends all, the FP skips applied ones."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    start = time.perf_counter()
    total = (len(records) + batch_size - 1) // batch_size
    duplicates = 0
    sent = 0
    for index in range(total):
        chunk = list(records[index * batch_size : (index + 1) * batch_size])
        answer = fp.push_batch(client, batch_id_for(client, date, index, chunk), chunk)
        duplicates += int(bool(answer.get("duplicate")))
        sent += len(chunk)
        if progress is not None:
            progress(index + 1, total, sent)
    return FerryReport("batch", client, total, sent, duplicates, round(time.perf_counter() - start, 3))


def recent_window(records: Sequence[dict], window_minutes: float = 60) -> list[dict]:
    """Records whose last_ms lies within `window_minutes` before the newest last_ms (inclusive)."""
    if not records:
        return []
    newest = max(int(r["last_ms"]) for r in records)
    # Anchored on the data, not the wall clock, so a replayed day selects the same records.
    cutoff = newest - int(window_minutes * 60_000)
    return [r for r in records if int(r["last_ms"]) >= cutoff]


def ferry_realtime(fp: FPClient, client: str, records: Sequence[dict], chunk: int = 500) -> FerryReport:
    """Push records through real-time ingest in chunks of at most `chunk`."""
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")
    start = time.perf_counter()
    pushes = 0
    for offset in range(0, len(records), chunk):
        fp.push_realtime(client, list(records[offset : offset + chunk]))
        pushes += 1
    return FerryReport("realtime", client, pushes, len(records), 0, round(time.perf_counter() - start, 3))
