"""The one file spark-submit runs: `spark-submit jobs/run.py <app> [job args]`.

It imports jobs.<app> and exits with its main(argv) result, so every job has the same
entry point on a laptop (local mode) and on a cluster.
"""

from __future__ import annotations

import importlib
import re
import sys


def main(argv: list[str]) -> int:
    if not argv or not re.fullmatch(r"[a-z_]+", argv[0]):
        print("usage: run.py <app> [args]; app is a module of jobs/", file=sys.stderr)
        return 2
    module = importlib.import_module(f"jobs.{argv[0]}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
