"""The day's input snapshot: late and replaced files make the day stale, and only they are fetched again.

Fast tests, no Spark: the plain functions of fraudcore/snapshot.py and pipeline/ingest.py, and
the Luigi targets of batch_tasks/targets.py over a local bucket folder and warehouse.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from batch_tasks import targets
from fraudcore import snapshot
from fraudcore.atomic import write_json
from fraudcore.clients import ClientConfig
from fraudcore.paths import WorkPaths, done_meta
from fraudcore.snapshot import InputFile
from pipeline import ingest, layout, results
from pipeline.day import ClientDay
from storage.objectstore import LocalObjectStore

DAY = dt.date(2025, 11, 21)
DEMO = ClientConfig(name="demo", bucket="demo-bucket")
NEW_YORK = ClientConfig(name="syncbank", bucket="syncbank-data", timezone="America/New_York")


@pytest.fixture
def day(tmp_path: Path):
    store = LocalObjectStore(tmp_path / "objectstore")
    paths = WorkPaths(tmp_path / "warehouse", DEMO.name, DAY)
    targets.new_run()
    return store, paths


def client_day(store, paths: WorkPaths) -> ClientDay:
    return ClientDay(DEMO, paths, lambda: store)


def land(store, key: str, text: str) -> None:
    store.put_bytes(DEMO.bucket, layout.raw_prefix(DEMO.name, DAY) + key, text.encode())


def current(paths: WorkPaths, store) -> str | None:
    return targets.raw_is_current(paths, lambda: ingest.list_input(client_day(store, paths)))


def test_snapshot_id_depends_on_content_not_order() -> None:
    a, b = InputFile("logs/a.jsonl", 10, "1"), InputFile("logs/b.jsonl", 5, "2")
    assert snapshot.snapshot_id([a, b]) == snapshot.snapshot_id([b, a])
    assert snapshot.snapshot_id([a]) != snapshot.snapshot_id([a, b])
    assert snapshot.snapshot_id([a]) != snapshot.snapshot_id([InputFile("logs/a.jsonl", 10, "9")])


def test_diff_names_added_changed_and_removed_files() -> None:
    old = [InputFile("logs/a.jsonl", 10, "1"), InputFile("logs/gone.csv", 1, "1")]
    new = [InputFile("logs/a.jsonl", 12, "2"), InputFile("logs/b.jsonl", 5, "1")]
    changes = snapshot.diff(old, new)
    assert (changes.added, changes.changed, changes.removed) == (
        ("logs/b.jsonl",),
        ("logs/a.jsonl",),
        ("logs/gone.csv",),
    )
    assert "1 added (logs/b.jsonl)" in changes.describe()
    assert not snapshot.diff(old, old)


def test_a_file_landing_after_the_fetch_makes_the_day_stale_and_only_it_is_fetched(day) -> None:
    store, paths = day
    land(store, "logs/a.jsonl", '{"user_id": "u1"}\n')
    land(store, "events/e.jsonl", '{"user_id": "u2"}\n')
    first = ingest.fetch_raw(client_day(store, paths))
    assert (first["downloaded"], first["reused"]) == (2, 0)
    targets.new_run()  # the next cron run, in a new process
    assert current(paths, store) == first["input"]

    land(store, "logs/b.jsonl", '{"user_id": "u3"}\n')  # late file
    land(store, "logs/a.jsonl", '{"user_id": "u1"}\n{"user_id": "u4"}\n')  # replaced, longer
    targets.new_run()
    assert current(paths, store) is None, "a late or replaced file must make raw/ stale"
    second = ingest.fetch_raw(client_day(store, paths))
    assert (second["downloaded"], second["reused"]) == (2, 1)
    assert second["changes"] == {"added": 1, "changed": 1, "removed": 0}
    assert (paths.stage("raw") / "logs" / "a.jsonl").read_text().count("\n") == 2
    assert (paths.stage("raw") / "logs" / "b.jsonl").is_file()
    targets.new_run()
    assert current(paths, store) == second["input"] != first["input"]


def test_stages_made_from_an_older_snapshot_are_not_complete(day) -> None:
    store, paths = day
    land(store, "logs/a.jsonl", "{}\n")
    ingest.fetch_raw(client_day(store, paths))
    with paths.output("connector", {"rows": 1}) as tmp:
        (tmp / "x").write_text("x")
    assert done_meta(paths.stage("connector"))["input"] == paths.input_id()
    listed = lambda: ingest.list_input(client_day(store, paths))  # noqa: E731
    target = targets.StageTarget(paths, "connector", lambda: targets.raw_is_current(paths, listed))
    assert target.exists()
    land(store, "transactions/t.csv", "user_id\nu1\n")
    targets.new_run()
    assert not target.exists()
    ingest.fetch_raw(client_day(store, paths))
    assert not target.exists(), "the connector stage still holds the records of the old snapshot"


def test_a_stage_from_before_snapshots_existed_is_made_again(day) -> None:
    store, paths = day
    land(store, "logs/a.jsonl", "{}\n")
    ingest.fetch_raw(client_day(store, paths))
    write_json(paths.stage("organized") / "_DONE", {"rows": 3})  # an older release's marker
    target = targets.StageTarget(paths, "organized", lambda: paths.input_id())
    assert not target.exists()


def test_a_run_keeps_the_snapshot_it_fetched_while_files_keep_landing(day) -> None:
    store, paths = day
    land(store, "logs/a.jsonl", "{}\n")
    fetched = ingest.fetch_raw(client_day(store, paths))
    land(store, "logs/b.jsonl", "{}\n")  # lands while the run goes on
    assert current(paths, store) == fetched["input"], "this run fetched raw/, so it works on it"
    targets.new_run()
    assert current(paths, store) is None, "the next run sees the new file"


def test_an_inbox_from_another_day_changes_the_snapshot(day) -> None:
    store, paths = day
    land(store, "logs/a.jsonl", "{}\n")
    before = snapshot.snapshot_id(ingest.list_input(client_day(store, paths)))
    folder = paths.inbox / "from-2025-11-22"
    folder.mkdir(parents=True)
    write_json(folder / "_DONE", {"rows": 4, "from": "2025-11-22", "digest": "abc"})
    listed = ingest.list_input(client_day(store, paths))
    assert InputFile("@inbox/from-2025-11-22", 4, "abc") in listed
    assert snapshot.snapshot_id(listed) != before
    # The same records written again (same digest) do not make the day stale again.
    write_json(folder / "_DONE", {"rows": 4, "from": "2025-11-22", "digest": "abc"})
    assert snapshot.snapshot_id(ingest.list_input(client_day(store, paths))) == snapshot.snapshot_id(listed)


def test_no_data_files_is_a_clear_error(day) -> None:
    store, paths = day
    land(store, "labels/labels.csv", "user_id,label\n")
    with pytest.raises(FileNotFoundError, match="no raw data files under"):
        ingest.fetch_raw(client_day(store, paths))


def test_a_day_closes_at_the_end_of_the_local_day_plus_the_grace_period() -> None:
    ny_day = dt.date(2025, 11, 21)
    # Local midnight in New York is 05:00 UTC in November; close_after defaults to 2h.
    before = dt.datetime(2025, 11, 22, 6, 59, tzinfo=dt.UTC)
    after = dt.datetime(2025, 11, 22, 7, 0, tzinfo=dt.UTC)
    assert not snapshot.closure(NEW_YORK, ny_day, [], before).final
    state = snapshot.closure(NEW_YORK, ny_day, [], after)
    assert state.final and "2025-11-22T02:00:00-05:00" in state.reason
    assert snapshot.closure(NEW_YORK, ny_day, ["_READY"], before).final
    assert snapshot.closed_entry(NEW_YORK, ny_day, before) == []
    assert [f.key for f in snapshot.closed_entry(NEW_YORK, ny_day, after)] == ["@closed"]
    # From a snapshot alone: @closed or the marker decides.
    assert snapshot.closure(NEW_YORK, ny_day, ["@closed", "logs/a.jsonl"]).final
    assert not snapshot.closure(NEW_YORK, ny_day, ["logs/a.jsonl"]).final


def test_closing_the_day_changes_the_snapshot_once(day) -> None:
    store, paths = day
    land(store, "logs/a.jsonl", "{}\n")
    open_ = ingest.list_input(client_day(store, paths), now=dt.datetime(2025, 11, 21, 12, tzinfo=dt.UTC))
    closed = ingest.list_input(client_day(store, paths), now=dt.datetime(2025, 11, 22, 3, tzinfo=dt.UTC))
    later = ingest.list_input(client_day(store, paths), now=dt.datetime(2025, 12, 30, tzinfo=dt.UTC))
    assert snapshot.snapshot_id(open_) != snapshot.snapshot_id(closed) == snapshot.snapshot_id(later)


def test_results_target_wants_the_manifest_of_the_current_input(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    prefix = "results/demo/2025-11-21/"
    staged = {"id": "s1"}
    target = targets.ResultsTarget("b", prefix, lambda: "sha256:new", lambda: staged["id"], store=store)
    assert not target.exists()
    store.put_bytes(
        "b",
        prefix + "_manifest.json",
        json.dumps({"input_snapshot": "sha256:old", "staged_id": "s1"}).encode(),
    )
    store.put_bytes("b", prefix + "_SUCCESS", b"")
    assert not target.exists()
    store.put_bytes(
        "b",
        prefix + "_manifest.json",
        json.dumps({"input_snapshot": "sha256:new", "staged_id": "s1"}).encode(),
    )
    assert target.exists()
    staged["id"] = "s2"  # the results were staged again (fraudbatch rerun): send them again
    assert not target.exists()


def test_results_version_goes_up_only_when_the_input_changed(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    day = client_day(store, WorkPaths(tmp_path / "warehouse", DEMO.name, DAY))
    assert results.next_version(day, "sha256:a") == 1
    key = layout.results_prefix(DEMO.name, DAY) + "_manifest.json"
    store.put_bytes(DEMO.bucket, key, json.dumps({"input_snapshot": "sha256:a", "version": 1}).encode())
    assert results.next_version(day, "sha256:a") == 1
    assert results.next_version(day, "sha256:b") == 2
