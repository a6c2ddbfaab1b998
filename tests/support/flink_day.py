"""A small generated client-day of organized events (organized/events/hour=H/*.parquet) and its reference.

The reference is fraudcore.features.user_stats applied to each user's events read back with
pyarrow: the plain function both the Spark and the Flink user_stats jobs apply.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fraudcore.features import user_stats
from fraudcore.ingest import EVENT_FIELDS
from fraudcore.paths import DONE

CLIENT = "demo"  # UTC in config/clients.yaml
DAY = "2025-11-21"
DAY_START_MS = 1_763_683_200_000  # 2025-11-21T00:00:00Z
HOUR_MS = 3_600_000
TYPES = ("login", "login", "login_failed", "transaction", "transaction", "page_view", "signup")
SCHEMA = pa.schema(
    [
        pa.field(f, pa.int64() if f == "event_time_ms" else pa.float64() if f == "amount" else pa.string())
        for f in EVENT_FIELDS
    ]
)


def _amount(rng: random.Random) -> float | None:
    # Quarters are exact in binary, so every engine's sum of them is the same float whatever the
    # order; a missing amount and a NaN must both be ignored.
    return rng.choice([None, math.nan, rng.randint(1, 4000) * 0.25, rng.randint(1, 4000) * 0.25])


def write_day(warehouse: Path, users: int = 40, seed: int = 7) -> list[dict]:
    """Write organized/ of demo/2025-11-21 under `warehouse` (two files in some hours); the events."""
    rng = random.Random(seed)
    events: list[dict] = []
    for u in range(users):
        uid = f"u{u:03d}"
        for k in range(rng.randint(1, 30)):
            hour = rng.randrange(24)
            events.append(
                {f: None for f in EVENT_FIELDS}
                | {
                    "event_id": f"e-{uid}-{k}",
                    "user_id": uid,
                    "event_time_ms": DAY_START_MS + hour * HOUR_MS + rng.randrange(HOUR_MS),
                    "event_type": rng.choice(TYPES),
                    "ip": rng.choice([None, "not-an-ip", f"10.0.{u % 5}.{rng.randint(1, 3)}", "2001:db8::1"]),
                    "device_id": rng.choice([None, "", f"dev-{u % 7}", f"dev-{rng.randint(0, 50)}"]),
                    "browser_fingerprint": rng.choice([None, f"fp-{u % 3}", f"fp-{rng.randint(0, 9)}"]),
                    "amount": _amount(rng),
                    "source": "events",
                    "source_file": "events/a.jsonl",
                }
            )
    by_hour: dict[int, list[dict]] = defaultdict(list)
    for e in events:
        by_hour[(e["event_time_ms"] - DAY_START_MS) // HOUR_MS].append(e)
    organized = warehouse / CLIENT / DAY / "organized"
    for hour, rows in sorted(by_hour.items()):
        folder = organized / "events" / f"hour={hour}"
        folder.mkdir(parents=True)
        half = len(rows) // 2 if hour % 3 == 0 else 0  # several files per hour in some partitions
        for n, part in enumerate(p for p in (rows[:half], rows[half:]) if p):
            pq.write_table(pa.Table.from_pylist(part, SCHEMA), str(folder / f"part-{n:05d}.parquet"))
    (organized / DONE).write_text("{}\n")
    return events


def reference_rows(warehouse: Path) -> list[dict]:
    """user_stats rows of the day by the plain function, ordered by user_id."""
    table = pq.read_table(str(warehouse / CLIENT / DAY / "organized" / "events"), partitioning="hive")
    groups: dict[str, list[dict]] = defaultdict(list)
    for e in table.to_pylist():
        e["hour"] = int(e["hour"])
        groups[e["user_id"]].append(e)
    return [user_stats(groups[u], DAY_START_MS) for u in sorted(groups)]


def job_args(warehouse: Path) -> list[str]:
    """The arguments of the user_stats job (Spark or Flink) for the generated day."""
    return ["--client", CLIENT, "--date", DAY, "--warehouse", str(warehouse)]
