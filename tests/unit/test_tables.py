"""The SQLite table store: idempotent upserts, read order, run records, and values kept verbatim."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import sqlite3

import pytest

from storage.errors import StorageConfigError, StorageError
from storage.model import DfeRow, RunRecord, TableStore, TableStoreSettings
from storage.sqlite_store import SQLiteTableStore
from storage.tables import make_table_store


@pytest.fixture
def store(tmp_path):
    """A fresh SQLite table store in a temporary folder."""
    with SQLiteTableStore(tmp_path / "db" / "tables.sqlite") as s:
        yield s


def test_sqlite_store_satisfies_the_interface(store):
    assert isinstance(store, TableStore)


def test_write_dfe_twice_leaves_one_row_per_key_with_the_latest_vector(store):
    rows = [DfeRow("u1", 1000, {"logins": 1.0}), DfeRow("u1", 2000, {"logins": 2.0}), DfeRow("u2", 1000, {})]
    assert store.write_dfe("acme", rows) == 3
    assert store.write_dfe("acme", rows[:2] + [DfeRow("u2", 1000, {"logins": 9.0})]) == 3
    assert store.count_dfe("acme") == 3
    assert store.read_dfe("acme", "u2") == [DfeRow("u2", 1000, {"logins": 9.0})]


def test_read_dfe_is_newest_first_and_scoped_to_client_and_user(store):
    store.write_dfe("acme", [DfeRow("u1", t, {"t": float(t)}) for t in (3000, 1000, 5000, 2000)])
    store.write_dfe("acme", [DfeRow("u9", 9000, {"t": 9.0})])
    store.write_dfe("other", [DfeRow("u1", 4000, {"t": 4.0})])
    assert [r.timestamp_ms for r in store.read_dfe("acme", "u1")] == [5000, 3000, 2000, 1000]
    assert store.read_dfe("other", "u1") == [DfeRow("u1", 4000, {"t": 4.0})]
    assert store.read_dfe("acme", "nobody") == []
    assert (store.count_dfe("acme"), store.count_dfe("other"), store.count_dfe("empty")) == (5, 1, 0)


def test_feature_vector_is_json_with_sorted_keys_and_float_values(store, tmp_path):
    store.write_dfe("acme", [DfeRow("u1", 1, {"z": 1, "a": 2.5, "m": -0.0})])
    raw = (
        sqlite3.connect(tmp_path / "db" / "tables.sqlite")
        .execute("SELECT feature_vector FROM dfe_data")
        .fetchone()
    )
    assert raw == ('{"a":2.5,"m":-0.0,"z":1.0}',)
    assert store.read_dfe("acme", "u1")[0].feature_vector == {"a": 2.5, "m": -0.0, "z": 1.0}


def test_write_dfe_streams_large_iterables_in_chunks(store):
    rows = (DfeRow(f"u{i % 7}", i, {"i": float(i)}) for i in range(12_001))
    assert store.write_dfe("acme", rows) == 12_001
    assert store.count_dfe("acme") == 12_001
    assert store.read_dfe("acme", "u0")[0] == DfeRow("u0", 11_998, {"i": 11_998.0})


def test_results_upsert_per_type(store):
    store.write_result("acme", "job-1", "summary", '{"users": 3}', 1000)
    store.write_result("acme", "job-1", "campaigns", "[]", 1000)
    store.write_result("acme", "job-1", "summary", '{"users": 4}', 2000)
    store.write_result("acme", "job-2", "summary", "other job", 1000)
    assert store.read_results("acme", "job-1") == {"campaigns": "[]", "summary": '{"users": 4}'}
    assert store.read_results("acme", "job-3") == {}


def test_run_records_upsert_on_client_date_task_run_id(store):
    started = RunRecord("acme", "2025-11-21", "Campaign", "run-1", "RUNNING", started_ms=1000)
    store.record_run(started)
    done = RunRecord(
        "acme",
        "2025-11-21",
        "Campaign",
        "run-1",
        "DONE",
        1000,
        61_000,
        60.0,
        {"campaigns": 4, "members": 37},
        "ok",
    )
    store.record_run(done)
    store.record_run(
        RunRecord("acme", "2025-11-21", "UserStats", "run-1", "FAILED", 500, 900, 0.4, {}, "boom")
    )
    store.record_run(RunRecord("acme", "2025-11-22", "Campaign", "run-2", "DONE", 5, 6, 0.001, {}, ""))
    assert store.list_runs("acme", "2025-11-21") == [
        RunRecord("acme", "2025-11-21", "UserStats", "run-1", "FAILED", 500, 900, 0.4, {}, "boom"),
        done,
    ]
    assert store.list_runs("acme", dt.date(2025, 11, 22))[0].run_id == "run-2"
    assert store.list_runs("acme", "2025-11-23") == []


def test_running_record_keeps_missing_finish_as_none(store):
    store.record_run(RunRecord("acme", dt.date(2025, 1, 2), "Connector", "r", "RUNNING", 7))
    assert store.list_runs("acme", "2025-01-02") == [
        RunRecord("acme", "2025-01-02", "Connector", "r", "RUNNING", 7, None, None, {}, "")
    ]


HOSTILE = 'x\'); DROP TABLE dfe_data; -- "quoted" ; ü \\ %s ?'


def test_values_with_quotes_and_semicolons_are_stored_verbatim(store):
    store.write_dfe("acme", [DfeRow(HOSTILE, 1, {HOSTILE: 1.0})])
    store.write_result("acme", HOSTILE, HOSTILE, HOSTILE, 1)
    store.record_run(RunRecord("acme", "2025-11-21", HOSTILE, HOSTILE, HOSTILE, 1, message=HOSTILE))
    assert store.read_dfe("acme", HOSTILE) == [DfeRow(HOSTILE, 1, {HOSTILE: 1.0})]
    assert store.read_results("acme", HOSTILE) == {HOSTILE: HOSTILE}
    run = store.list_runs("acme", "2025-11-21")[0]
    assert (run.task, run.run_id, run.status, run.message) == (HOSTILE, HOSTILE, HOSTILE, HOSTILE)
    assert store.count_dfe("acme") == 1  # the table is still there and holds exactly our row


@pytest.mark.parametrize("client", ["x'; DROP TABLE dfe_data; --", "Acme", "a", ""])
def test_invalid_client_names_are_refused(store, client):
    with pytest.raises(StorageConfigError, match="invalid client name"):
        store.write_dfe(client, [DfeRow("u", 1, {})])
    with pytest.raises(StorageConfigError, match="invalid client name"):
        store.count_dfe(client)


def test_invalid_run_date_is_refused(store):
    with pytest.raises(StorageConfigError, match="expected YYYY-MM-DD"):
        store.record_run(RunRecord("acme", "21/11/2025", "T", "r", "DONE", 1))


def test_store_uses_wal_and_reopens_with_data(tmp_path):
    path = tmp_path / "t.sqlite"
    with SQLiteTableStore(path) as first:
        first.write_result("acme", "j", "summary", "s", 1)
        mode = first._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    with SQLiteTableStore(path) as again:
        assert again.read_results("acme", "j") == {"summary": "s"}


def _write_from_process(path: str, worker: int) -> None:
    with SQLiteTableStore(path) as s:
        for batch in range(10):
            s.write_dfe("acme", [DfeRow(f"w{worker}-u{i}", batch, {"b": float(batch)}) for i in range(20)])


def test_several_processes_write_the_same_file(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_from_process, args=(path, w)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    with SQLiteTableStore(path) as s:
        assert s.count_dfe("acme") == 2 * 10 * 20


def test_unwritable_location_is_a_storage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="check"):
        SQLiteTableStore(blocker / "db.sqlite")


def test_settings_from_env_and_factory(tmp_path):
    env = {"FRAUDBATCH_TABLES_BACKEND": "sqlite", "FRAUDBATCH_SQLITE_PATH": str(tmp_path / "env.sqlite")}
    settings = TableStoreSettings.from_env({"sqlite_path": "/ignored.sqlite"}, environ=env)
    assert settings.sqlite_path == str(tmp_path / "env.sqlite")
    store = make_table_store(settings)
    try:
        assert isinstance(store, SQLiteTableStore) and store.path == str(tmp_path / "env.sqlite")
    finally:
        store.close()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FRAUDBATCH_TABLES_BACKEND": "postgres"}, "choose one of cassandra, sqlite"),
        ({}, "FRAUDBATCH_SQLITE_PATH"),
    ],
)
def test_invalid_table_settings_name_what_to_fix(env, message):
    with pytest.raises(StorageConfigError, match=message):
        TableStoreSettings.from_env(environ=env)
