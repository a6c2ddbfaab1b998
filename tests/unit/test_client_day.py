"""ClientDay: one client-day's context, built from one Settings, and the raw-data target built on it."""

from __future__ import annotations

import datetime as dt
import os
import pickle
from pathlib import Path

import luigi
import pytest

from fraudcore.clients import ClientConfig, ConfigError
from fraudcore.paths import WorkPaths
from pipeline import layout
from pipeline.day import ClientDay, Settings
from storage.objectstore import LocalObjectStore, ObjectStoreSettings

DAY = dt.date(2025, 11, 21)
DEMO = ClientConfig(name="demo", bucket="demo-bucket")


class ClosingTables:
    """A table store that only remembers being closed."""

    closed: list[str] = []

    def __init__(self, path: str) -> None:
        self.path = path

    def list_runs(self, client: str, date) -> list:
        return []

    def close(self) -> None:
        ClosingTables.closed.append(self.path)


def settings(tmp_path: Path) -> Settings:
    return Settings(
        warehouse=tmp_path / "warehouse",
        objectstore=ObjectStoreSettings(backend="local", root=str(tmp_path / "objectstore")),
        open_tables=lambda: ClosingTables(str(tmp_path / "tables.sqlite")),
    )


def test_settings_build_the_day_paths_and_store(tmp_path: Path) -> None:
    day = settings(tmp_path).client_day(DEMO, DAY)
    assert day.paths == WorkPaths(tmp_path / "warehouse", "demo", DAY)
    assert (day.name, day.date, day.bucket) == ("demo", DAY, "demo-bucket")
    assert day.raw_prefix == "rawdata/demo/2025-11-21/" == layout.raw_prefix("demo", DAY)
    assert day.results_prefix == "results/demo/2025-11-21/" == layout.results_prefix("demo", DAY)
    assert isinstance(day.store, LocalObjectStore)
    assert (
        day.url(day.raw_prefix)
        == f"file://{tmp_path / 'objectstore' / 'demo-bucket' / 'rawdata/demo/2025-11-21/'}"
    )


def test_resolve_looks_the_client_up_and_refuses_unknown_ones(tmp_path: Path) -> None:
    registry = tmp_path / "clients.yaml"
    registry.write_text("clients:\n  acme:\n    bucket: acme-data\n", encoding="utf-8")
    s = Settings(tmp_path / "warehouse", ObjectStoreSettings(root=str(tmp_path)), registry=str(registry))
    assert s.resolve("acme", "2025-11-21").bucket == "acme-data"
    with pytest.raises(ConfigError, match="unknown client 'nope'"):
        s.resolve("nope", DAY)
    with pytest.raises(ConfigError, match="invalid date"):
        s.resolve("acme", "21/11/2025")


def test_the_store_is_built_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []

    def build() -> LocalObjectStore:
        built.append(os.getpid())
        return LocalObjectStore(tmp_path)

    day = ClientDay(DEMO, WorkPaths(tmp_path, "demo", DAY), build)
    assert day.store is day.store and len(built) == 1
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as in a forked worker
    assert day.store is not None and built == [built[0], -1]


def test_a_pickled_day_leaves_its_store_behind(tmp_path: Path) -> None:
    day = ClientDay(DEMO, WorkPaths(tmp_path, "demo", DAY), _local_store)
    first = day.store
    copy = pickle.loads(pickle.dumps(day))
    assert copy.paths == day.paths and copy.client == DEMO
    assert copy._store is None and copy.store is not first


def _local_store() -> LocalObjectStore:
    return LocalObjectStore("/nonexistent-root")


def test_tables_are_closed_after_the_block_even_on_error(tmp_path: Path) -> None:
    day = settings(tmp_path).client_day(DEMO, DAY)
    ClosingTables.closed.clear()
    with pytest.raises(RuntimeError, match="boom"), day.tables() as tables:
        assert tables.list_runs("demo", DAY) == []
        raise RuntimeError("boom")
    assert ClosingTables.closed == [str(tmp_path / "tables.sqlite")]


def test_a_day_without_a_table_store_says_so(tmp_path: Path) -> None:
    day = ClientDay(DEMO, WorkPaths(tmp_path, "demo", DAY), _local_store)
    with pytest.raises(RuntimeError, match="has no table store"), day.tables():
        pass


def test_paths_of_another_client_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="client 'other'"):
        ClientDay(DEMO, WorkPaths(tmp_path, "other", DAY), _local_store)


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalObjectStore:
    """The batch tasks' settings pointed at a local bucket folder and warehouse under tmp_path."""
    from batch_tasks import targets

    monkeypatch.setenv("FRAUDBATCH_OBJECTSTORE_BACKEND", "local")
    monkeypatch.setenv("FRAUDBATCH_OBJECTSTORE_ROOT", str(tmp_path / "objectstore"))
    monkeypatch.setenv("FRAUDBATCH_WAREHOUSE", str(tmp_path / "warehouse"))
    monkeypatch.setenv("FRAUDBATCH_SQLITE_PATH", str(tmp_path / "tables.sqlite"))
    targets.new_run()
    yield LocalObjectStore(tmp_path / "objectstore")
    targets.new_run()


def test_raw_client_day_is_its_raw_data_target(configured: LocalObjectStore, tmp_path: Path, caplog) -> None:
    from batch_tasks import targets
    from batch_tasks.ingest import RawClientDay
    from batch_tasks.targets import RawDataTarget

    task = RawClientDay(client="demo", date=dt.date(2031, 1, 2))
    assert isinstance(task.output(), RawDataTarget)
    assert task.day.paths.warehouse == tmp_path / "warehouse"
    bucket = task.day.bucket
    configured.put_bytes(bucket, task.day.raw_prefix + "labels/labels.csv", b"user_id,label\n")
    assert not task.complete(), "labels alone are not raw data"
    assert "no raw data for demo 2031-01-02 at file://" in caplog.text
    configured.put_bytes(bucket, task.day.raw_prefix + "logs/a.jsonl", b"{}\n")
    assert not task.complete(), "a run keeps the listing it made"
    targets.new_run()  # the next run lists the bucket again
    assert task.complete()


@pytest.mark.filterwarnings(
    "ignore::luigi.parameter.UnconsumedParameterWarning", "ignore::DeprecationWarning"
)
def test_missing_raw_data_is_missing_external_data(configured: LocalObjectStore) -> None:
    from batch_tasks.ingest import RawClientDay

    result = luigi.build(
        [RawClientDay(client="demo", date=dt.date(2031, 1, 3))],
        local_scheduler=True,
        parallel_scheduling=False,
        detailed_summary=True,
    )
    # luigi's [retcode] missing_data (exit 20) is this status.
    assert result.status == luigi.LuigiStatusCode.MISSING_EXT
