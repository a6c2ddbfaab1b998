"""The one file DCluster runs for a Flink job: `.venv-flink/bin/python jobs/flink/run.py <app> [job args]`.

It imports jobs.flink.<app> and exits with its main(argv) result. It runs in the Flink virtual
environment (scripts/flink-env.sh), which has PyFlink but not PySpark, so the Flink jobs import
only plain modules (fraudcore, jobs.common) beside it.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> int:
    if not argv or not re.fullmatch(r"[a-z_]+", argv[0]) or argv[0] in ("run", "common"):
        print("usage: jobs/flink/run.py <app> [args]; app is a module of jobs/flink/", file=sys.stderr)
        return 2
    module = importlib.import_module(f"jobs.flink.{argv[0]}")
    return int(module.main(argv[1:]) or 0)


def _use_checkout() -> None:
    """Import from the checkout, and let Flink's Python workers (child processes) do the same."""
    # Python puts this file's folder first on sys.path; its module names (common, smoke, ...)
    # must not shadow top-level modules that PyFlink and Beam import.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != Path(here)]
    sys.path.insert(0, str(ROOT))
    paths = [str(ROOT)] + [
        p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(ROOT)
    ]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)


if __name__ == "__main__":
    _use_checkout()
    sys.exit(main(sys.argv[1:]))
