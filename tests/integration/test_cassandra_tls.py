"""Client-to-node TLS (SPEC §8): a second node that requires TLS; the driver verifies it with the CA."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from storage.cassandra_session import CassandraWriteError, connect
from storage.cassandra_store import CassandraTableStore
from storage.dfe_writer import write_dfe_rows
from storage.errors import StorageError
from storage.model import WRITER_DRIVERS, DfeRow, TableStoreSettings
from tests.support import REPO
from tests.support.cassandra import fresh_keyspace, node_script

pytestmark = pytest.mark.cassandra

TLS_PORT = 9142
CA = REPO / "var" / "cassandra-tls" / "tls" / "ca.pem"


@pytest.fixture(scope="module")
def tls_node(cassandra_node):  # needs the jars the plain node installed
    """The TLS node of scripts/cassandra.sh start --tls (stopped afterwards if it was started here)."""
    was_up = node_script("status", "--tls", check=False).returncode == 0
    if not was_up:
        node_script("start", "--tls")
    yield TableStoreSettings(backend="cassandra", cassandra_port=TLS_PORT, cassandra_tls_ca_file=str(CA))
    if not was_up:
        node_script("stop", "--tls", check=False)


def test_tls_connection_writes_and_reads(tls_node):
    settings = fresh_keyspace(tls_node, "fraud_tls", "fp_tls")
    with CassandraTableStore(settings) as store:
        assert store.write_dfe("tlsclient", [DfeRow("u1", 5, {"a": 1.0})]) == 1
        assert store.read_dfe("tlsclient", "u1") == [DfeRow("u1", 5, {"a": 1.0})]
    cluster, session = connect(settings)
    try:
        # The node itself reports the connection as encrypted.
        rows = list(session.execute("SELECT ssl_enabled, port FROM system_views.clients"))
        assert rows and all(r.ssl_enabled for r in rows)
    finally:
        cluster.shutdown()


def test_plaintext_connection_is_refused(tls_node):
    plain = replace(tls_node, cassandra_tls_ca_file="")
    with pytest.raises(StorageError, match=f"check the node at 127.0.0.1:{TLS_PORT}"):
        connect(plain, delays=())


def test_certificate_from_an_unknown_ca_is_refused(tls_node, tmp_path: Path):
    import certifi

    # A bundle of public CAs: none of them signed the node's certificate.
    other = replace(tls_node, cassandra_tls_ca_file=certifi.where())
    with pytest.raises(StorageError, match="Cassandra connect failed"):
        connect(other, delays=())


@pytest.mark.parametrize("driver", WRITER_DRIVERS)
def test_dfe_writers_speak_tls_and_refuse_an_unknown_ca(tls_node, driver):
    import certifi

    settings = fresh_keyspace(tls_node, "fraud_tls", "fp_tls")
    assert (
        write_dfe_rows(
            settings, "tls" + driver, [("u1", 5, {"a": 1.0}), ("u2", 6, {"b": 2.0})], driver=driver
        )
        == 2
    )
    with CassandraTableStore(settings) as store:
        assert store.read_dfe("tls" + driver, "u2") == [DfeRow("u2", 6, {"b": 2.0})]
    other = replace(settings, cassandra_tls_ca_file=certifi.where())
    with pytest.raises(
        CassandraWriteError, match=f"Cassandra write failed: .*check the node at 127.0.0.1:{TLS_PORT}"
    ):
        write_dfe_rows(other, "tls" + driver, [("u1", 5, {"a": 1.0})], driver=driver, retry_delays=())
