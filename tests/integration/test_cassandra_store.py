"""The Cassandra table store and DFE writer against the real local node (scripts/cassandra.sh)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import replace

import pytest

from storage import dfe_writer
from storage.cassandra_store import CassandraTableStore
from storage.errors import StorageConfigError
from storage.migrations import MigrationError, apply_migrations
from storage.model import DfeRow, RunRecord, TableStore
from storage.tables import make_table_store

pytestmark = pytest.mark.cassandra

HOSTILE = 'x\'); DROP TABLE dfe_data; -- "quoted" ; ü \\ %s ? $$ */ /*'


@pytest.fixture
def store(cassandra_settings):
    with CassandraTableStore(cassandra_settings) as s:
        yield s


def test_factory_builds_the_cassandra_store(cassandra_settings):
    store = make_table_store(cassandra_settings)
    try:
        assert isinstance(store, CassandraTableStore) and isinstance(store, TableStore)
    finally:
        store.close()


def test_write_dfe_twice_leaves_one_row_per_key_with_the_latest_vector(store, cass_client):
    rows = [DfeRow("u1", 1000, {"logins": 1.0}), DfeRow("u1", 2000, {"logins": 2.0}), DfeRow("u2", 1000, {})]
    assert store.write_dfe(cass_client, rows) == 3
    assert store.write_dfe(cass_client, rows[:2] + [DfeRow("u2", 1000, {"logins": 9.0})]) == 3
    assert store.count_dfe(cass_client) == 3
    assert store.read_dfe(cass_client, "u2") == [DfeRow("u2", 1000, {"logins": 9.0})]


def test_read_dfe_is_newest_first_and_scoped_to_client_and_user(store, cass_client):
    other = cass_client + "x"
    store.write_dfe(cass_client, [DfeRow("u1", t, {"t": float(t)}) for t in (3000, 1000, 5000, 2000)])
    store.write_dfe(cass_client, [DfeRow("u9", 9000, {"t": 9.0})])
    store.write_dfe(other, [DfeRow("u1", 4000, {"t": 4.0})])
    assert [r.timestamp_ms for r in store.read_dfe(cass_client, "u1")] == [5000, 3000, 2000, 1000]
    assert store.read_dfe(other, "u1") == [DfeRow("u1", 4000, {"t": 4.0})]
    assert store.read_dfe(cass_client, "nobody") == []
    assert (store.count_dfe(cass_client), store.count_dfe(other)) == (5, 1)


def test_values_come_back_as_written(store, cass_client):
    ts = 1_763_683_200_123  # millisecond precision survives the TIMESTAMP round trip
    store.write_dfe(
        cass_client, [DfeRow("u1", ts, {"z": 1, "a": 2.5, "m": -0.0, "big": 1e300}), DfeRow("u2", 0, {})]
    )
    (row,) = store.read_dfe(cass_client, "u1")
    assert row.timestamp_ms == ts
    assert row.feature_vector == {"a": 2.5, "m": -0.0, "z": 1.0, "big": 1e300}
    assert all(type(v) is float for v in row.feature_vector.values())
    assert store.read_dfe(cass_client, "u2") == [DfeRow("u2", 0, {})]


def test_hostile_text_is_stored_verbatim_and_never_runs_as_cql(store, cass_client):
    store.write_dfe(cass_client, [DfeRow(HOSTILE, 1, {HOSTILE: 1.0, "a'; TRUNCATE dfe_data; --": 2.0})])
    store.write_result(cass_client, HOSTILE, HOSTILE, HOSTILE, 1)
    store.record_run(RunRecord(cass_client, "2025-11-21", HOSTILE, HOSTILE, HOSTILE, 1, message=HOSTILE))
    assert store.read_dfe(cass_client, HOSTILE) == [
        DfeRow(HOSTILE, 1, {HOSTILE: 1.0, "a'; TRUNCATE dfe_data; --": 2.0})
    ]
    assert store.read_results(cass_client, HOSTILE) == {HOSTILE: HOSTILE}
    run = store.list_runs(cass_client, "2025-11-21")[0]
    assert (run.task, run.run_id, run.status, run.message) == (HOSTILE, HOSTILE, HOSTILE, HOSTILE)
    assert store.count_dfe(cass_client) == 1  # the table is still there and holds exactly our row


@pytest.mark.parametrize("bad", ["x'; DROP TABLE dfe_data; --", "Acme", "a", ""])
def test_invalid_client_names_are_refused(store, bad):
    with pytest.raises(StorageConfigError, match="invalid client name"):
        store.write_dfe(bad, [DfeRow("u", 1, {})])
    with pytest.raises(StorageConfigError, match="invalid client name"):
        store.count_dfe(bad)


def test_results_replace_by_key(store, cass_client):
    store.write_result(cass_client, "job-1", "summary", "one", 1)
    store.write_result(cass_client, "job-1", "summary", "two", 2)
    store.write_result(cass_client, "job-1", "monitor", "{}", 3)
    store.write_result(cass_client, "job-2", "summary", "other", 4)
    assert store.read_results(cass_client, "job-1") == {"monitor": "{}", "summary": "two"}
    assert store.read_results(cass_client, "nope") == {}


def test_run_records_round_trip_oldest_first(store, cass_client):
    late = RunRecord(
        cass_client, "2025-11-21", "Campaign", "r1", "DONE", 5_000, 6_500, 1.5, {"rows": 12}, "ok"
    )
    early = RunRecord(cass_client, dt.date(2025, 11, 21), "Fetcher", "r1", "RUNNING", 1_000)
    store.record_run(late)
    store.record_run(early)
    store.record_run(replace(early, status="DONE", finished_ms=2_000, duration_s=1.0, rows={"files": 3}))
    store.record_run(RunRecord(cass_client, "2025-11-22", "Fetcher", "r2", "DONE", 1))
    assert store.list_runs(cass_client, "2025-11-21") == [
        RunRecord(cass_client, "2025-11-21", "Fetcher", "r1", "DONE", 1_000, 2_000, 1.0, {"files": 3}, ""),
        late,
    ]
    with pytest.raises(StorageConfigError, match="expected YYYY-MM-DD"):
        store.record_run(RunRecord(cass_client, "21/11/2025", "T", "r", "DONE", 1))


@pytest.mark.parametrize("driver", dfe_writer.WRITER_DRIVERS)
def test_writer_processes_split_by_token_and_rerun_is_idempotent(
    cassandra_settings, cass_client, monkeypatch, driver
):
    # Small enough for a test, large enough that both worker processes get rows.
    monkeypatch.setattr(dfe_writer, "MIN_ROWS_PER_PROCESS", 500)
    monkeypatch.setattr(dfe_writer, "CHUNK_ROWS", 700)
    rows = [
        (f"user-{i:05d}", 1_700_000_000_000 + (i % 3) * 3_600_000, {"f": float(i), "g": 0.5})
        for i in range(3000)
    ]
    owners = Counter(dfe_writer.owner_of(cass_client, u, 2) for u, _, _ in rows)
    assert set(owners) == {0, 1} and min(owners.values()) > 1000
    seen: list[tuple[int, int]] = []
    n = dfe_writer.write_dfe_rows(
        cassandra_settings,
        cass_client,
        rows,
        processes=2,
        concurrency=32,
        progress=lambda done, total: seen.append((done, total)),
        driver=driver,
    )
    assert n == 3000 and seen[-1] == (3000, 3000)
    assert (
        dfe_writer.write_dfe_rows(
            cassandra_settings, cass_client, iter(rows), processes=2, concurrency=32, driver=driver
        )
        == 3000
    )
    with CassandraTableStore(cassandra_settings) as store:
        keys = Counter(store.iter_dfe_keys(cass_client))
        assert store.count_dfe(cass_client) == 3000
        assert store.read_dfe(cass_client, "user-00007") == [
            DfeRow("user-00007", 1_700_003_600_000, {"f": 7.0, "g": 0.5})
        ]
    assert len(keys) == 3000 and set(keys.values()) == {1}
    assert keys == Counter((u, ts) for u, ts, _ in rows)


def test_migrations_are_recorded_skipped_and_refuse_a_changed_file(cassandra_settings, tmp_path):
    from storage.cassandra_session import connect
    from storage.migrations import CQL_DIR

    for f in CQL_DIR.glob("*.cql"):
        (tmp_path / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    cluster, session = connect(cassandra_settings)
    try:
        session.execute("DROP KEYSPACE IF EXISTS fraud_mig", timeout=120)
        session.execute("DROP KEYSPACE IF EXISTS fp_mig", timeout=120)
        first = apply_migrations(
            session, "fraud_mig", "fp_mig", "SimpleStrategy:1", tmp_path, log=lambda _: None
        )
        again = apply_migrations(
            session, "fraud_mig", "fp_mig", "SimpleStrategy:1", tmp_path, log=lambda _: None
        )
        assert first == [1, 2, 3, 4] and again == []
        recorded = {
            r.version: r.name
            for r in session.execute("SELECT version, name FROM fraud_mig.schema_migrations")
        }
        assert recorded == {
            1: "keyspaces",
            2: "dfe_and_results",
            3: "platform_tables",
            4: "schema_migrations",
        }
        tables = {
            r.table_name
            for r in session.execute(
                "SELECT table_name FROM system_schema.tables WHERE keyspace_name = 'fraud_mig'"
            )
        }
        assert tables >= {"dfe_data", "results", "job_runs", "audit_log", "schema_migrations"}
        (tmp_path / "005_extra.cql").write_text(
            "-- a later change\nCREATE TABLE IF NOT EXISTS ${keyspace}.extra (k TEXT PRIMARY KEY, v TEXT);\n"
        )
        assert apply_migrations(
            session, "fraud_mig", "fp_mig", "SimpleStrategy:1", tmp_path, log=lambda _: None
        ) == [5]
        p = tmp_path / "002_dfe_and_results.cql"
        p.write_text(p.read_text() + "\n-- edited after it was applied\n")
        with pytest.raises(MigrationError, match="002_dfe_and_results.cql was changed after it was applied"):
            apply_migrations(session, "fraud_mig", "fp_mig", "SimpleStrategy:1", tmp_path, log=lambda _: None)
    finally:
        session.execute("DROP KEYSPACE IF EXISTS fraud_mig", timeout=120)
        session.execute("DROP KEYSPACE IF EXISTS fp_mig", timeout=120)
        cluster.shutdown()


def test_dfe_and_results_tables_are_exactly_as_the_spec(cassandra_settings):
    from storage.cassandra_session import connect

    cluster, session = connect(cassandra_settings)
    try:
        cols = {
            (r.table_name, r.column_name): (r.kind, r.type, r.clustering_order)
            for r in session.execute(
                "SELECT table_name, column_name, kind, type, clustering_order FROM system_schema.columns"
                " WHERE keyspace_name = %s",
                (cassandra_settings.cassandra_keyspace,),
            )
        }
    finally:
        cluster.shutdown()
    assert {k: v for k, v in cols.items() if k[0] == "dfe_data"} == {
        ("dfe_data", "client_id"): ("partition_key", "text", "none"),
        ("dfe_data", "user_id"): ("partition_key", "text", "none"),
        ("dfe_data", "timestamp"): ("clustering", "timestamp", "desc"),
        ("dfe_data", "feature_vector"): ("regular", "map<text, double>", "none"),
    }
    assert {k: v for k, v in cols.items() if k[0] == "results"} == {
        ("results", "client_id"): ("partition_key", "text", "none"),
        ("results", "job_id"): ("partition_key", "text", "none"),
        ("results", "result_type"): ("clustering", "text", "asc"),
        ("results", "result_data"): ("regular", "text", "none"),
        ("results", "created_at"): ("regular", "timestamp", "none"),
    }


@pytest.mark.parametrize("driver", dfe_writer.WRITER_DRIVERS)
def test_a_repeated_key_keeps_its_last_row(cassandra_settings, cass_client, driver):
    rows = [
        ("u1", 1000, {"v": 1.0}),
        ("u2", 1000, {"v": 2.0}),
        ("u1", 1000, {"v": 3.0}),
        ("u1", 2000, {"v": 4.0}),
        ("u1", 1000, {"v": 5.0}),
    ]
    assert dfe_writer.write_dfe_rows(cassandra_settings, cass_client, rows, concurrency=8, driver=driver) == 5
    with CassandraTableStore(cassandra_settings) as store:
        assert store.read_dfe(cass_client, "u1") == [
            DfeRow("u1", 2000, {"v": 4.0}),
            DfeRow("u1", 1000, {"v": 5.0}),
        ]
        assert store.count_dfe(cass_client) == 3


@pytest.mark.parametrize("driver", dfe_writer.WRITER_DRIVERS)
def test_a_row_the_table_cannot_take_fails_at_once_with_a_clear_message(
    cassandra_settings, cass_client, driver
):
    rows = [(f"u{i}", 1000, {"v": float(i)}) for i in range(50)] + [("bad", 1000, {"v": "not a number"})]
    t0 = dt.datetime.now()
    with pytest.raises(
        dfe_writer.CassandraWriteError, match=rf"^Cassandra write failed: .*DFE rows of {cass_client}"
    ):
        dfe_writer.write_dfe_rows(
            cassandra_settings, cass_client, rows, concurrency=4, driver=driver, retry_delays=(5.0, 5.0)
        )
    assert (dt.datetime.now() - t0).total_seconds() < 5  # not retried: waiting cannot fix a value


def test_native_and_python_writers_store_the_same_rows(cassandra_settings, cass_client):
    ts = 1_763_683_200_123
    rows = [(f"user-{i}", ts + i, {"a": i / 7, "b": -1e-300, "c": float(i % 2)}) for i in range(200)]
    other = cass_client + "_py"
    dfe_writer.write_dfe_rows(cassandra_settings, cass_client, rows, driver="native")
    dfe_writer.write_dfe_rows(cassandra_settings, other, rows, driver="python")
    with CassandraTableStore(cassandra_settings) as store:
        for user, _, _ in rows[::17]:
            native, python = store.read_dfe(cass_client, user), store.read_dfe(other, user)
            assert native == python and len(native) == 1
        assert store.read_dfe(cass_client, "user-3") == [
            DfeRow("user-3", ts + 3, {"a": 3 / 7, "b": -1e-300, "c": 1.0})
        ]
