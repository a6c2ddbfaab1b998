"""Where the tests find tools that live beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path


def results_checker() -> Path:
    """The results-contract checker: $FRAUDBATCH_CHECK_RESULTS, else ../shared/tools beside the checkout."""
    beside = Path(__file__).resolve().parents[2] / "shared" / "tools" / "check-results"
    for candidate in (
        os.environ.get("FRAUDBATCH_CHECK_RESULTS", ""),
        beside,
        "/work/shared/tools/check-results",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return beside
