"""Shared fixtures: one local Spark session, the Cassandra node, a moto server on loopback."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from tests.support.moto_server import FAKE_AWS_ENV


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


@pytest.fixture(scope="session")
def spark_connect(tmp_path_factory) -> Iterator[str]:
    """sc:// URL of a Spark Connect server started by scripts/spark-connect.sh on a free port, stopped at the end."""
    from tests.support.spark_connect import spark_connect_server

    with spark_connect_server(tmp_path_factory.mktemp("spark-connect")) as server:
        yield server.url


# Cassandra fixtures (the local node and a migrated test keyspace), for the tests marked cassandra.
from tests.support.cassandra import cass_client, cassandra_node, cassandra_settings  # noqa: E402, F401


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """Url of a moto server on a free loopback port, with fake credentials in the environment."""
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as mp:
        for name, value in FAKE_AWS_ENV.items():
            mp.setenv(name, value)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture()
def start_service():
    """Starts in-process DCluster services (tests.support.dcluster.Service); every one still running is
    stopped after the test."""
    from tests.support.dcluster import Service

    started: list[Service] = []

    def start(settings) -> Service:
        started.append(Service(settings).start())
        return started[-1]

    yield start
    for service in started:
        if service.thread.is_alive():
            service.stop()
