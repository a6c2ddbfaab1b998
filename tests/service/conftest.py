"""The service tier: real HTTP servers, moto and luigid on loopback; no Spark, Flink or Cassandra."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tiers import mark_tier


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_tier(items, Path(__file__).parent, "service")
