"""Shared fixtures: one local Spark session for the whole test run."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def spark():
    """A local[2] Spark session, UTC, shared by every test that needs one."""
    os.environ.setdefault("FRAUDBATCH_SHUFFLE_PARTITIONS", "4")
    from jobs.common import spark_session

    session = spark_session("tests")
    yield session
    session.stop()
