"""A whole platform (luigid, DCluster, FP) on loopback ports for the client-day tests."""

from __future__ import annotations

import csv
import gzip
import io
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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


@dataclass
class Platform:
    var: Path
    env: dict[str, str]
    dcluster_url: str
    truth: dict

    def luigi(self, task: str, client: str, date: str, *extra: str) -> subprocess.CompletedProcess:
        argv = [
            str(BIN / "luigi"),
            "--module",
            "batch_tasks",
            task,
            f"--client={client}",
            f"--date={date}",
            *extra,
        ]
        return subprocess.run(argv, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=1800)

    def results_dir(self, client: str, date: str) -> Path:
        return self.var / "objectstore" / get_client(client).bucket / "results" / client / date


def risk_rows(results: Path) -> dict[str, dict]:
    with gzip.open(results / "risk_scores" / "risk_scores.csv.gz", "rt", encoding="utf-8") as f:
        return {r["user_id"]: r for r in csv.DictReader(io.StringIO(f.read()))}
