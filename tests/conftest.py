"""Shared fixtures: one local Spark session for the whole test run."""
from __future__ import annotations

import os
import sys

import pytest


@pytest.fixture(scope="session")
def spark():
    """A local[2] Spark session, UTC, shared by every test that needs one."""
    os.environ.setdefault("FRAUDBATCH_SHUFFLE_PARTITIONS", "4")
    # Spark's Python workers must use this interpreter (the project's venv), not whatever is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from jobs.common import spark_session

    session = spark_session("tests")
    yield session
    session.stop()


# Cassandra fixtures (the local node and a migrated test keyspace), for the tests marked cassandra.
from cassandra_fixtures import cass_client, cassandra_node, cassandra_settings  # noqa: E402, F401
