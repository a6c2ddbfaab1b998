"""Cassandra outages: bounded retries, a clear error, and a rerun that leaves every row exactly once."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, replace

import pytest

from storage.cassandra_session import CassandraWriteError
from storage.cassandra_store import CassandraTableStore
from storage.dfe_writer import write_dfe_rows
from storage.model import DfeRow
from tests.support import REPO
from tests.support.cassandra import node_script

pytestmark = pytest.mark.cassandra

ROWS = 100_000

# Writes ROWS rows with two worker processes, printing progress; the settings come as JSON.
WRITER = """
import json, sys
from storage.model import TableStoreSettings
from storage.dfe_writer import write_dfe_rows
raw = json.loads(sys.argv[1]); raw["cassandra_hosts"] = tuple(raw["cassandra_hosts"])
settings = TableStoreSettings(**raw)
rows = [(f"user-{i:06d}", 1_763_683_200_000, {"a": float(i), "b'; DROP TABLE x; --": 1.0}) for i in range(int(sys.argv[3]))]
n = write_dfe_rows(settings, sys.argv[2], rows, processes=2, concurrency=64,
                   progress=lambda done, total: print(f"progress {done}", flush=True))
print(f"written {n}", flush=True)
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_node_down_before_the_write_fails_with_a_clear_message(cassandra_settings, cass_client):
    port = _closed_port()
    dead = replace(cassandra_settings, cassandra_port=port)
    t0 = time.monotonic()
    with pytest.raises(CassandraWriteError) as err:
        write_dfe_rows(dead, cass_client, [("u1", 1, {"a": 1.0})], retry_delays=(0.1, 0.2, 0.4))
    assert str(err.value).startswith("Cassandra write failed: ")
    assert f"check the node at 127.0.0.1:{port} and credentials" in str(err.value)
    assert "after 4 attempts" in str(err.value)
    assert time.monotonic() - t0 < 30
    with (
        CassandraTableStore(dead, retry_delays=(0.1,)) as store,
        pytest.raises(CassandraWriteError, match="Cassandra write failed"),
    ):
        store.write_result(cass_client, "j", "summary", "{}", 1)


def _start_writer(settings, client: str, rows: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, json.dumps(asdict(settings)), client, str(rows)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_node_stopped_mid_write_fails_then_a_rerun_completes_without_duplicates(
    cassandra_settings, cass_client
):
    writer = _start_writer(cassandra_settings, cass_client, ROWS)
    try:
        # Wait until rows are flowing, then take the node away under the writer.
        progressed = 0
        deadline = time.monotonic() + 120
        while progressed < 5_000 and time.monotonic() < deadline:
            line = writer.stdout.readline()
            if not line:
                break
            if line.startswith("progress "):
                progressed = int(line.split()[1])
        assert 5_000 <= progressed < ROWS, f"the write did not get going or ended too soon ({progressed})"
        node_script("stop")
        out, err = writer.communicate(timeout=180)
    finally:
        if writer.poll() is None:
            writer.kill()
        node_script("start")
    assert writer.returncode != 0, out[-2000:]
    assert "written" not in out
    assert "CassandraWriteError: Cassandra write failed: " in err, err[-3000:]
    assert f"check the node at 127.0.0.1:{cassandra_settings.cassandra_port} and credentials" in err

    rerun = _start_writer(cassandra_settings, cass_client, ROWS)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-3000:]
    assert f"written {ROWS}" in out
    with CassandraTableStore(cassandra_settings) as store:
        keys = Counter(store.iter_dfe_keys(cass_client))
        assert store.count_dfe(cass_client) == ROWS
        assert store.read_dfe(cass_client, "user-000042") == [
            DfeRow("user-000042", 1_763_683_200_000, {"a": 42.0, "b'; DROP TABLE x; --": 1.0})
        ]
    assert len(keys) == ROWS and set(keys.values()) == {1}
    assert set(keys) == {(f"user-{i:06d}", 1_763_683_200_000) for i in range(ROWS)}
