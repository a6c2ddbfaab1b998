"""Each tier's conftest marks the tests below its folder with the tier's name."""

from __future__ import annotations

from pathlib import Path

import pytest


def mark_tier(items: list[pytest.Item], folder: Path, marker: str) -> None:
    """Adds `marker` to every collected test that lives under `folder`."""
    for item in items:
        if item.path.is_relative_to(folder):
            item.add_marker(marker)
