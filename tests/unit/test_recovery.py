"""fraudbatch status and rerun: the day's stages against its current input, and invalidation.

Fast: a local bucket folder and warehouse, stages written with WorkPaths.output as the jobs do.
The commands themselves run against the real pipeline in tests/e2e/test_pipeline_e2e.py.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from batch_tasks import targets
from fraudbatch import recovery
from fraudcore.atomic import write_json
from fraudcore.clients import ClientConfig, ConfigError
from fraudcore.paths import STAGES, WorkPaths
from pipeline import ingest, layout, status
from pipeline.day import ClientDay
from storage.model import RunRecord
from storage.objectstore import LocalObjectStore

DAY = dt.date(2025, 11, 21)
DEMO = ClientConfig(name="demo", bucket="demo-bucket")
LATER = dt.datetime(2025, 12, 1, tzinfo=dt.UTC)


@pytest.fixture
def day(tmp_path: Path):
    store = LocalObjectStore(tmp_path / "objectstore")
    paths = WorkPaths(tmp_path / "warehouse", DEMO.name, DAY)
    store.put_bytes(DEMO.bucket, layout.raw_prefix(DEMO.name, DAY) + "logs/a.jsonl", b"{}\n")
    targets.new_run()
    day = ClientDay(DEMO, paths, lambda: store)
    ingest.fetch_raw(day, listing=ingest.list_input(day, now=LATER))
    for stage in ("connector", "organized", "virtual_nodes"):
        with paths.output(stage, {"rows": 1}):
            pass
    return store, paths


def day_status(store, paths: WorkPaths, **kwargs) -> status.DayStatus:
    return status.day_status(ClientDay(DEMO, paths, lambda: store), recovery.stage_tasks(), **kwargs)


def states(st: status.DayStatus) -> dict[str, str]:
    return {s.stage: s.state for s in st.stages}


def test_status_shows_done_and_missing_stages_and_what_to_run(day) -> None:
    store, paths = day
    st = day_status(store, paths, now=LATER)
    assert states(st)["raw"] == states(st)["connector"] == states(st)["virtual_nodes"] == "done"
    assert states(st)["campaigns"] == "missing" and not st.complete
    assert st.final["final"] is True and not st.changes
    assert "fraudbatch run --client demo --date 2025-11-21" in st.next_step()
    text = recovery.format_status(st)
    assert "connector" in text and "not sent" in text


def test_a_late_file_makes_every_stage_stale_and_names_the_file(day) -> None:
    store, paths = day
    store.put_bytes(DEMO.bucket, layout.raw_prefix(DEMO.name, DAY) + "logs/b.jsonl", b"{}\n")
    st = day_status(store, paths, now=LATER)
    assert states(st)["raw"] == states(st)["organized"] == "stale"
    assert st.changes.added == ("logs/b.jsonl",)
    assert "1 added (logs/b.jsonl)" in recovery.format_status(st)
    assert "the bucket changed" in st.next_step()


def test_a_failed_task_is_named_with_its_message_and_the_fix(day) -> None:
    store, paths = day
    run = RunRecord(
        "demo",
        "2025-11-21",
        "Campaign",
        "r1",
        "FAILED",
        0,
        1,
        0.1,
        {},
        "RuntimeError: DCluster job 42 FAILED\nlogs/x.gz: not gzip",
    )
    st = day_status(store, paths, runs=[run], now=LATER)
    assert states(st)["campaigns"] == "failed"
    assert "logs/x.gz: not gzip" in recovery.format_status(st)
    assert "--from campaigns" in st.next_step() and "replace or remove" in st.next_step()


def test_a_provisional_day_says_so(day) -> None:
    store, paths = day
    st = day_status(store, paths, now=dt.datetime(2025, 11, 21, 20, tzinfo=dt.UTC))
    assert (
        st.final["final"] is False
        and "provisional until 2025-11-22T02:00:00+00:00" in st.final["final_reason"]
    )


def test_rerun_invalidates_the_stage_and_every_later_one(day) -> None:
    _store, paths = day
    assert status.invalidate(paths, "organized") == ["organized", "virtual_nodes"]
    assert paths.stage("connector").is_dir() and not paths.stage("organized").exists()
    assert not any(p.name.startswith(".") for p in paths.root.iterdir()), "nothing left aside"
    assert status.invalidate(paths, "raw") == ["raw", "connector"]


def test_rerun_accepts_task_names_and_refuses_unknown_stages() -> None:
    assert recovery.resolve_stage("Campaign") == "campaigns"
    assert recovery.resolve_stage("connector") == "connector"
    assert recovery.resolve_stage("Fetcher") == "raw"
    with pytest.raises(ConfigError, match="unknown stage 'nope'"):
        recovery.resolve_stage("nope")


def test_every_stage_with_a_task_is_known() -> None:
    tasks = recovery.stage_tasks()
    assert set(tasks) <= set(STAGES)
    assert tasks["raw"] == "Fetcher" and tasks["result_sender"] == "ResultSender"


def test_a_partial_day_lists_its_set_aside_files(day) -> None:
    store, paths = day
    write_json(
        paths.stage("connector") / "stats.json",
        {
            "partial": True,
            "files": [
                {
                    "source_file": "logs/bad.jsonl.gz",
                    "status": "quarantined",
                    "reason": "truncated_compressed_file",
                }
            ],
        },
    )
    st = day_status(store, paths, now=LATER)
    assert st.partial and st.files_quarantined == [
        {"source_file": "logs/bad.jsonl.gz", "reason": "truncated_compressed_file"}
    ]
    assert "set aside: logs/bad.jsonl.gz (truncated_compressed_file)" in recovery.format_status(st)
