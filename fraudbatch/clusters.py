"""The local standalone clusters (scripts/spark-cluster.sh, scripts/flink-cluster.sh) from Python, and result comparison.

`SPARK_CLUSTER` and `FLINK_CLUSTER` call their script's start/stop/status, so Python and the
shell share one set of pid files under var/. `comparable_results` reduces a client-day's results
folder to the bytes that must not depend on where the jobs ran, so a local and a standalone run
compare with `diff_results`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Added by ResultSender per run; everything else in summary.json comes from the data.
# input_snapshot names the listing the run fetched (object versions: ETags, or inodes and mtimes),
# which differs between two copies of the same files.
RUN_FIELDS = ("stage_seconds", "run_id", "code_version", "input_snapshot")


@dataclass(frozen=True)
class ClusterScript:
    """A cluster's start/stop/status script; each call runs it with the caller's environment plus env."""

    script: Path

    def _run(
        self, command: str, env: Mapping[str, str] | None, timeout_s: float
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.script), command],
            cwd=PROJECT_ROOT,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def start(self, env: Mapping[str, str] | None = None, timeout_s: float = 180.0) -> str:
        """Start the cluster (or find it running); RuntimeError with the script's log lines."""
        done = self._run("start", env, timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"{self.script.name} start exited {done.returncode}: {done.stderr.strip()}")
        return done.stderr

    def stop(self, env: Mapping[str, str] | None = None, timeout_s: float = 120.0) -> str:
        """Stop what `start` started."""
        done = self._run("stop", env, timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"{self.script.name} stop exited {done.returncode}: {done.stderr.strip()}")
        return done.stderr

    def status(self, env: Mapping[str, str] | None = None, timeout_s: float = 30.0) -> tuple[bool, str]:
        """Whether the cluster is fully up, and its summary."""
        done = self._run("status", env, timeout_s)
        return done.returncode == 0, done.stdout


SPARK_CLUSTER = ClusterScript(PROJECT_ROOT / "scripts" / "spark-cluster.sh")  # a master and two workers
FLINK_CLUSTER = ClusterScript(PROJECT_ROOT / "scripts" / "flink-cluster.sh")  # a JobManager and a TaskManager


def comparable_results(results_dir: Path) -> dict[str, bytes]:
    """Relative path -> bytes of the results that depend only on the data (run ids and timings left out)."""
    results_dir = Path(results_dir)
    out: dict[str, bytes] = {}
    risk = results_dir / "risk_scores" / "risk_scores.csv.gz"
    out[risk.relative_to(results_dir).as_posix()] = risk.read_bytes()
    # rglob: the per-campaign graphs in frontend_data/campaign_graphs/ must match too.
    for path in sorted((results_dir / "frontend_data").rglob("*.json")):
        out[path.relative_to(results_dir).as_posix()] = path.read_bytes()
    summary_path = results_dir / "reports" / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    for key in RUN_FIELDS:
        summary.pop(key, None)
    out[summary_path.relative_to(results_dir).as_posix() + " (without run fields)"] = json.dumps(
        summary, sort_keys=True, indent=1
    ).encode("utf-8")
    return out


def diff_results(a_dir: Path, b_dir: Path) -> list[str]:
    """One line per results file that is missing on one side or differs; [] when identical."""
    a, b = comparable_results(a_dir), comparable_results(b_dir)
    problems = [f"{name}: only in {a_dir}" for name in sorted(a.keys() - b.keys())]
    problems += [f"{name}: only in {b_dir}" for name in sorted(b.keys() - a.keys())]
    problems += [
        f"{name}: differs ({len(a[name])} vs {len(b[name])} bytes)"
        for name in sorted(a.keys() & b.keys())
        if a[name] != b[name]
    ]
    return problems
