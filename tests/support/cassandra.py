"""Session fixtures for the Cassandra tests: the node of scripts/cassandra.sh and a migrated test keyspace."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest

from storage.model import TableStoreSettings
from tests.support import REPO

SCRIPT = REPO / "scripts" / "cassandra.sh"
TEST_KEYSPACE = "fraud_test"
TEST_FP_KEYSPACE = "fp_features_test"


def node_script(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run scripts/cassandra.sh with the given arguments, output captured."""
    run = subprocess.run([str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if check and run.returncode != 0:
        raise AssertionError(
            f"scripts/cassandra.sh {' '.join(args)} exited {run.returncode}:\n{run.stdout}{run.stderr}"
        )
    return run


def fresh_keyspace(settings: TableStoreSettings, keyspace: str, fp_keyspace: str) -> TableStoreSettings:
    """Drop and re-create `keyspace` through the migration runner; settings that point at it."""
    from storage.cassandra_session import connect
    from storage.migrations import apply_migrations

    cluster, session = connect(settings)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        session.execute(f"DROP KEYSPACE IF EXISTS {fp_keyspace}", timeout=120)
        apply_migrations(session, keyspace, fp_keyspace, settings.cassandra_replication, log=lambda _: None)
    finally:
        cluster.shutdown()
    return replace(settings, cassandra_keyspace=keyspace)


@pytest.fixture(scope="session")
def cassandra_node() -> Iterator[TableStoreSettings]:
    """The local node up (started here, and stopped afterwards, only if it was down); its base settings."""
    was_up = node_script("status", check=False).returncode == 0
    if not was_up:
        node_script("start")
    port = int(os.environ.get("FRAUDBATCH_CASSANDRA_PORT") or 9042)
    yield TableStoreSettings(backend="cassandra", cassandra_port=port)
    if not was_up:
        node_script("stop", check=False)


@pytest.fixture(scope="session")
def cassandra_settings(cassandra_node: TableStoreSettings) -> TableStoreSettings:
    """Settings for a freshly migrated test keyspace on the local node."""
    return fresh_keyspace(cassandra_node, TEST_KEYSPACE, TEST_FP_KEYSPACE)


@pytest.fixture
def cass_client() -> str:
    """A client name no other test uses, so tests share the keyspace without seeing each other's rows."""
    return "t" + uuid.uuid4().hex[:12]
