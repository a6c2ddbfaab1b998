"""A whole platform (luigid, DCluster, FP) on loopback ports for the client-day tests."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from datagen.generator import GenerationReport, generate_client_day
from fraudcore.clients import get_client
from tests.support import REPO
from tests.support.paths import results_checker

CHECK_RESULTS = results_checker()


BIN = Path(sys.executable).parent


DAY = "2025-11-21"


EVENTS = 8000


BOMB_LIMIT = 64 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The Spark jobs of a client-day, in the order the tasks run them.
DAY_SPARK_APPS = (
    "connector",
    "organizer",
    "virtual_nodes",
    "rawlogconverter",
    "user_stats",
    "campaign",
    "result_agg_lite",
    "event_join",
)


def run_luigi(
    env: dict[str, str], task: str, client: str, date: str, *extra: str, timeout: float = 1800
) -> subprocess.CompletedProcess:
    """`luigi --module batch_tasks TASK --client=C --date=D EXTRA…` from the project folder."""
    argv = [
        str(BIN / "luigi"),
        "--module",
        "batch_tasks",
        task,
        f"--client={client}",
        f"--date={date}",
        *extra,
    ]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def generate_demo_day(var: Path) -> GenerationReport:
    """The e2e tiers' demo client-day (EVENTS events, 1 % malformed) into var's object store, truth in var/truth."""
    demo = get_client("demo")
    return generate_client_day(
        demo,
        dt.date.fromisoformat(DAY),
        var / "objectstore" / demo.bucket,
        events=EVENTS,
        seed=5,
        malformed_rate=0.01,
        truth_dir=var / "truth",
    )


@dataclass
class Platform:
    var: Path
    env: dict[str, str]
    dcluster_url: str
    truth: dict

    def luigi(self, task: str, client: str, date: str, *extra: str) -> subprocess.CompletedProcess:
        return run_luigi(self.env, task, client, date, *extra)

    def results_dir(self, client: str, date: str) -> Path:
        return self.var / "objectstore" / get_client(client).bucket / "results" / client / date


def risk_rows(results: Path) -> dict[str, dict]:
    with gzip.open(results / "risk_scores" / "risk_scores.csv.gz", "rt", encoding="utf-8") as f:
        return {r["user_id"]: r for r in csv.DictReader(io.StringIO(f.read()))}
