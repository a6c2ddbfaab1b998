"""The local Spark standalone cluster (scripts/spark-cluster.sh) from Python, and result comparison.

`start`/`stop`/`status` call the script, so Python and the shell share one set of pid files
under var/spark-cluster/. `comparable_results` reduces a client-day's results folder to the
bytes that must not depend on where the jobs ran, so a local and a standalone run compare
with `diff_results`.
"""
from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = PROJECT_ROOT / "scripts" / "spark-cluster.sh"
# Added by ResultSender per run; everything else in summary.json comes from the data.
RUN_FIELDS = ("stage_seconds", "run_id", "code_version")


def _script(command: str, env: Mapping[str, str] | None, timeout_s: float) -> subprocess.CompletedProcess:
    """Run scripts/spark-cluster.sh COMMAND with the caller's environment plus env."""
    return subprocess.run(
        [str(SCRIPT), command], cwd=PROJECT_ROOT, env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s,
    )


def start(env: Mapping[str, str] | None = None, timeout_s: float = 180.0) -> str:
    """Start the master and workers (or find them running); RuntimeError with the script's log lines."""
    done = _script("start", env, timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"spark-cluster.sh start exited {done.returncode}: {done.stderr.strip()}")
    return done.stderr


def stop(env: Mapping[str, str] | None = None, timeout_s: float = 120.0) -> str:
    """Stop the workers and the master started by `start`."""
    done = _script("stop", env, timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"spark-cluster.sh stop exited {done.returncode}: {done.stderr.strip()}")
    return done.stderr


def status(env: Mapping[str, str] | None = None, timeout_s: float = 30.0) -> tuple[bool, str]:
    """Whether every worker is ALIVE, and the master's summary."""
    done = _script("status", env, timeout_s)
    return done.returncode == 0, done.stdout


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
        summary, sort_keys=True, indent=1).encode("utf-8")
    return out


def diff_results(a_dir: Path, b_dir: Path) -> list[str]:
    """One line per results file that is missing on one side or differs; [] when identical."""
    a, b = comparable_results(a_dir), comparable_results(b_dir)
    problems = [f"{name}: only in {a_dir}" for name in sorted(a.keys() - b.keys())]
    problems += [f"{name}: only in {b_dir}" for name in sorted(b.keys() - a.keys())]
    problems += [f"{name}: differs ({len(a[name])} vs {len(b[name])} bytes)"
                 for name in sorted(a.keys() & b.keys()) if a[name] != b[name]]
    return problems
