"""Where a client-day's raw input and results live in the client's bucket (DESIGN's bucket layout)."""

from __future__ import annotations

import datetime as dt

# Top-level folders under the raw prefix that hold data files; anything else (labels/, markers) is not data.
DATA_FOLDERS = ("logs", "events", "transactions")
MANIFEST = "_manifest.json"  # results manifest, written just before SUCCESS
SUCCESS = "_SUCCESS"  # written last: the results folder is complete
SUMMARY = "reports/summary.json"


def raw_prefix(client: str, day: dt.date) -> str:
    """`rawdata/{client}/{date}/`: the client-day's raw input."""
    return f"rawdata/{client}/{day.isoformat()}/"


def results_prefix(client: str, day: dt.date) -> str:
    """`results/{client}/{date}/`: the client-day's sent results."""
    return f"results/{client}/{day.isoformat()}/"
