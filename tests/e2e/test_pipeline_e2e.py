"""The whole client-day through luigid, the real DCluster service, Spark local mode and FP.

One small generated client-day runs from raw files in the (local) bucket to the results
folder, which must hold the DESIGN.md contract (checked by ../shared/tools/check-results),
reconcile with the generator's ground truth, find the planted rings and leave households alone.
Bad input (empty day, unknown client, bad date, a failing remote job) must exit non-zero
with a message a person can act on.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import hmac
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from datagen.generator import generate_client_day
from fraudcore.clients import get_client
from fraudcore.results import verify_manifest
from tests.support.pipeline import (
    BIN,
    BOMB_LIMIT,
    CHECK_RESULTS,
    DAY,
    EVENTS,
    REPO,
    Platform,
    risk_rows,
    run_luigi,
)
from tests.support.receiver import Receiver

pytestmark = pytest.mark.e2e


def test_whole_day_meets_the_results_contract(platform: Platform, finished_day) -> None:
    assert finished_day.returncode == 0, finished_day.stderr[-4000:]
    results = platform.results_dir("demo", DAY)
    assert CHECK_RESULTS.is_file(), f"results checker not found at {CHECK_RESULTS}"
    check = subprocess.run([sys.executable, str(CHECK_RESULTS), str(results)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    manifest = json.loads((results / "_manifest.json").read_text(encoding="utf-8"))
    assert verify_manifest(results, manifest) == []
    assert manifest["files"]["risk_scores/risk_scores.csv.gz"]["rows"] == len(risk_rows(results))


def test_counts_reconcile_with_the_ground_truth(platform: Platform, finished_day) -> None:
    assert finished_day.returncode == 0
    summary = json.loads((platform.results_dir("demo", DAY) / "reports" / "summary.json").read_text())
    expected = platform.truth["expected"]
    assert summary["records_read"] == expected["records_read"] == EVENTS
    assert summary["records_quarantined"] == expected["records_quarantined"]
    assert summary["records_accepted"] == expected["records_accepted"]
    assert summary["duplicates"] == expected["duplicates"]
    # Records whose time is on the previous client-local day wait in that day's inbox.
    assert summary["records_to_other_days"] == expected["late_records"]
    assert summary["users"] == len(risk_rows(platform.results_dir("demo", DAY)))
    assert set(summary["stage_seconds"]) >= {
        "ingest",
        "preprocess",
        "dfe",
        "aggregation",
        "frontend",
        "results",
        "total",
    }


def test_planted_rings_are_found_and_households_are_not(platform: Platform, finished_day) -> None:
    assert finished_day.returncode == 0
    rows = risk_rows(platform.results_dir("demo", DAY))
    flagged = {u for u, r in rows.items() if r["is_flagged"] == "true"}
    for ring_id, ring in platform.truth["rings"].items():
        members = [u for u in ring["members"] if u in rows]
        caught = [u for u in members if u in flagged]
        assert len(caught) >= 0.8 * len(members), (
            f"ring {ring_id} ({ring['shape']}): {len(caught)}/{len(members)}"
        )
        # A ring is reported as one campaign, not as scattered users.
        campaigns = {rows[u]["campaign_id"] for u in caught}
        assert len(campaigns - {""}) >= 1
    household_users = {u for h in platform.truth["households"] for u in h["members"] if u in rows}
    assert household_users, "the sample should contain households"
    assert not (household_users & flagged), f"households flagged: {sorted(household_users & flagged)}"
    carrier = {u for u in platform.truth["carrier_nat"]["users"] if u in rows}
    assert len(carrier & flagged) <= 0.02 * len(carrier)


def test_run_records_and_labeling(platform: Platform, finished_day) -> None:
    assert finished_day.returncode == 0
    day_dir = platform.var / "warehouse" / "demo" / DAY
    monitor = json.loads((day_dir / "monitor" / "monitor.json").read_text())
    assert monitor["failed"] == []
    for task in (
        "Fetcher",
        "SparkConnectorRunner",
        "LogTimeFileOrganizer",
        "VirtualNodeGenerator",
        "Rawlogconverter",
        "CassandraDfeWriter",
        "Campaign",
        "UserStats",
        "ResultAggLite",
        "EventJoinLite",
        "ResultAgg",
        "CampaignFrontendData",
        "FrontendDataGen",
        "FrontendResultGenerator",
        "FrontendResultWriter",
        "ResultSender",
        "Labeling",
        "BatchFeaturePlatformFerry",
    ):
        assert monitor["tasks"][task]["status"] == "DONE", task
    labeling = json.loads((day_dir / "labeling" / "labeling.json").read_text())
    assert labeling["labelled_users"] > 0
    assert labeling["recall"] is not None and labeling["recall"] >= 0.7
    assert labeling["precision"] is not None and labeling["precision"] >= 0.7


def test_second_run_does_no_work(platform: Platform, finished_day) -> None:
    assert finished_day.returncode == 0
    before = requests.get(f"{platform.dcluster_url}/cluster/jobs", params={"limit": 1000}, timeout=10).json()
    again = platform.luigi("MonitorTracker", "demo", DAY, "--workers=3")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "complete ones were encountered" in again.stderr
    assert "ran successfully" not in again.stderr
    after = requests.get(f"{platform.dcluster_url}/cluster/jobs", params={"limit": 1000}, timeout=10).json()
    assert len(_jobs(after)) == len(_jobs(before))


def test_a_day_sent_before_its_notification_is_notified_by_the_next_run(
    platform: Platform, finished_day, tmp_path: Path
) -> None:
    assert finished_day.returncode == 0
    receiver = Receiver()
    try:
        registry = yaml.safe_load((REPO / "config" / "clients.yaml").read_text(encoding="utf-8"))
        registry["clients"]["demo"].update(notify_url=receiver.url, notify_secret_env="DEMO_HOOK")
        (tmp_path / "clients.yaml").write_text(yaml.safe_dump(registry), encoding="utf-8")
        env = {**platform.env, "FRAUDBATCH_CLIENTS": str(tmp_path / "clients.yaml"), "DEMO_HOOK": "k3y"}
        # The results are in the bucket but the client was never told (an older run, or a refusal).
        shutil.rmtree(platform.var / "warehouse" / "demo" / DAY / "result_sender")
        results = platform.results_dir("demo", DAY)
        sent = {p.name: p.stat().st_mtime_ns for p in (results / "_SUCCESS", results / "_manifest.json")}
        run = run_luigi(env, "ResultSender", "demo", DAY, "--local-scheduler", timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        ((headers, body),) = receiver.requests
        manifest = (results / "_manifest.json").read_bytes()
        assert json.loads(body)["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
        assert (
            headers["X-Fraudbatch-Signature"]
            == "sha256=" + hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
        )
        # Notified without sending the results again.
        assert {
            p.name: p.stat().st_mtime_ns for p in (results / "_SUCCESS", results / "_manifest.json")
        } == sent
        again = run_luigi(env, "ResultSender", "demo", DAY, "--local-scheduler", timeout=600)
        assert again.returncode == 0 and len(receiver.requests) == 1
    finally:
        receiver.server.shutdown()


def _jobs(doc) -> list:
    return doc["jobs"] if isinstance(doc, dict) else doc


def test_empty_day_exits_missing_data(platform: Platform) -> None:
    run = platform.luigi("ResultSender", "demo", "2025-11-01", "--local-scheduler")
    assert run.returncode == 20, run.stderr[-3000:]
    assert "no raw data for demo 2025-11-01" in run.stderr


@pytest.mark.parametrize(
    ("client", "date", "message"),
    [
        ("nosuchclient", DAY, "unknown client 'nosuchclient'"),
        ("demo", "2025-13-45", "invalid date '2025-13-45'"),
        ("demo", "21/11/2025", "invalid date '21/11/2025': expected YYYY-MM-DD"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(platform: Platform, client: str, date: str, message: str) -> None:
    run = platform.luigi("ResultSender", client, date, "--local-scheduler")
    assert run.returncode == 2
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], run.stderr


def _registry_with(tmp_path: Path, name: str, **entry) -> Path:
    registry = yaml.safe_load((REPO / "config" / "clients.yaml").read_text(encoding="utf-8"))
    registry["clients"][name] = {**registry["clients"].get(name, {}), **entry}
    path = tmp_path / "clients.yaml"
    path.write_text(yaml.safe_dump(registry), encoding="utf-8")
    return path


def _fraudbatch(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "fraudbatch"), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800
    )


def test_a_bad_file_fails_a_fail_fast_client_and_the_fixed_bucket_recovers(
    platform: Platform, tmp_path: Path
) -> None:
    """on_bad_file: fail stops the day naming the file; replacing the file is all it takes to recover."""
    day = "2025-11-03"
    demo = get_client("demo")
    env = {**platform.env, "FRAUDBATCH_CLIENTS": str(_registry_with(tmp_path, "demo", on_bad_file="fail"))}
    raw = platform.var / "objectstore" / demo.bucket / "rawdata" / "demo" / day / "logs"
    raw.mkdir(parents=True)
    (raw / "part-0.jsonl.gz").write_bytes(b"this is not gzip data")
    run = run_luigi(env, "LogTimeFileOrganizer", "demo", day, "--local-scheduler", timeout=600)
    assert run.returncode == 30, run.stderr[-3000:]
    assert "DCluster job" in run.stderr and "FAILED" in run.stderr
    assert "part-0.jsonl.gz" in run.stderr
    jobs = _jobs(
        requests.get(
            f"{platform.dcluster_url}/cluster/jobs", params={"client": "demo", "state": "FAILED"}, timeout=10
        ).json()
    )
    assert any(j["app"] == "connector" for j in jobs)
    status = _fraudbatch(env, "status", "--client", "demo", "--date", day)
    assert status.returncode == 0, status.stderr
    assert "connector" in status.stdout and "FAILED" in status.stdout and "replace or remove" in status.stdout

    # The client uploads the file again, this time whole: the ordinary command recovers the day.
    with gzip.open(raw / "part-0.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write(
            json.dumps({"user_id": "u1", "event_time": f"{day}T10:00:00Z", "event_type": "login"}) + "\n"
        )
    again = run_luigi(env, "LogTimeFileOrganizer", "demo", day, "--local-scheduler", timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    organized = json.loads(
        (platform.var / "warehouse" / "demo" / day / "organized" / "stats.json").read_text()
    )
    assert organized["organized"] == 1
    shutil.rmtree(raw.parent)


def test_a_hostile_day_completes_partial_and_accounts_for_every_file(
    platform: Platform, tmp_path: Path
) -> None:
    """The hostile corpus through Spark and DCluster: nothing silent, the day completes and says it is partial."""
    from tests.support.hostile_corpus import CLIENT, write_hostile_corpus
    from tests.support.hostile_corpus import DAY as HOSTILE_DAY

    day = HOSTILE_DAY.isoformat()
    env = {**platform.env, "FRAUDBATCH_CLIENTS": str(_registry_with(tmp_path, "hostile", **CLIENT))}
    raw = platform.var / "objectstore" / CLIENT["bucket"] / "rawdata" / "hostile" / day
    expected = write_hostile_corpus(raw, HOSTILE_DAY, decompressed_limit=BOMB_LIMIT)
    run = _fraudbatch(env, "run", "--client", "hostile", "--date", day, "--workers", "2")
    assert run.returncode == 15, run.stdout[-2000:] + run.stderr[-3000:]
    assert "the day is partial" in run.stderr
    results = platform.var / "objectstore" / CLIENT["bucket"] / "results" / "hostile" / day
    check = subprocess.run([sys.executable, str(CHECK_RESULTS), str(results)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    summary = json.loads((results / "reports" / "summary.json").read_text(encoding="utf-8"))
    totals = expected["totals"]
    assert (
        summary["partial"] is True and json.loads((results / "_manifest.json").read_text())["partial"] is True
    )
    for key in ("records_read", "records_accepted", "records_quarantined"):
        assert summary[key] == totals[key], key
    assert summary["unmapped_event_types"] == expected["unmapped_event_types"]
    quarantined = {f["source_file"]: f["reason"] for f in summary["files_quarantined"]}
    not_read = {f["source_file"]: f["reason"] for f in summary["files_not_recognised"]}
    for name, outcome in expected["files"].items():
        if outcome["status"] == "quarantined":
            assert quarantined.get(name) == outcome["reason"], name
        elif outcome["status"] == "not_recognised":
            assert not_read.get(name) == outcome["reason"], name
    # Every file under the prefix is accounted for in the connector's stats.
    stats = json.loads(
        (platform.var / "warehouse" / "hostile" / day / "connector" / "stats.json").read_text()
    )
    # (raw/_DONE is the Fetcher's own marker in the warehouse copy, listed as an expected marker.)
    assert {f["source_file"] for f in stats["files"]} - {"_DONE"} == set(expected["files"])
    assert "Set aside as a whole" in (results / "reports" / "report.html").read_text(encoding="utf-8")
    # The client reads the same, file by file, in its results.
    listed = json.loads((results / "reports" / "input_files.json").read_text(encoding="utf-8"))
    assert {f["source_file"]: f["status"] for f in listed} == {
        n: o["status"] for n, o in expected["files"].items()
    }
    unbalanced = next(f for f in listed if f["source_file"] == "logs/unbalanced.csv")
    assert (unbalanced["read"], unbalanced["accepted"], unbalanced["reasons"]) == (
        3000,
        2999,
        {"csv_unbalanced_quote": 1},
    )


def _summary(platform: Platform, day: str) -> dict:
    return json.loads((platform.results_dir("demo", day) / "reports" / "summary.json").read_text())


def _manifest(platform: Platform, day: str) -> dict:
    return json.loads((platform.results_dir("demo", day) / "_manifest.json").read_text())


def test_files_that_land_or_change_after_a_run_are_in_the_next_run_once(
    platform: Platform, tmp_path: Path
) -> None:
    """The bucket is still filling: land A, run, land B and grow one of A's files, run the same command."""
    day = "2025-11-06"
    demo = get_client("demo")
    report = generate_client_day(
        demo,
        dt.date.fromisoformat(day),
        platform.var / "objectstore" / demo.bucket,
        events=1500,
        seed=11,
        malformed_rate=0.0,
        truth_dir=tmp_path,
    )
    truth = json.loads(Path(report.truth_path).read_text(encoding="utf-8"))["expected"]
    raw = Path(report.root)
    late_file = raw / "transactions" / "part-0000.jsonl"
    late_text = late_file.read_text(encoding="utf-8")
    late_file.unlink()
    first = platform.luigi("MonitorTracker", "demo", day, "--workers=2")
    assert first.returncode == 0, first.stderr[-4000:]
    late_lines = late_text.count("\n")
    assert _summary(platform, day)["records_read"] == 1500 - late_lines
    before = _manifest(platform, day)
    assert before["version"] == 1 and before["final"] is True

    late_file.write_text(late_text, encoding="utf-8")  # B lands
    grown = raw / "logs" / "part-0000.jsonl"  # one of A's files is replaced by a longer one
    extra = []
    for i, line in enumerate(grown.read_text(encoding="utf-8").splitlines()[:20]):
        rec = json.loads(line)
        rec.update(user_id=f"late-user-{i}", event_id=f"late-event-{i}", event_time=f"{day}T12:00:{i:02d}Z")
        extra.append(json.dumps(rec))
    with grown.open("a", encoding="utf-8") as fh:
        fh.write("\n".join(extra) + "\n")
    second = platform.luigi("MonitorTracker", "demo", day, "--workers=2")
    assert second.returncode == 0, second.stderr[-4000:]
    summary = _summary(platform, day)
    assert summary["records_read"] == 1500 + 20
    assert summary["duplicates"] == truth["duplicates"], "a record was ingested twice"
    rows = risk_rows(platform.results_dir("demo", day))
    assert {f"late-user-{i}" for i in range(20)} <= set(rows)
    after = _manifest(platform, day)
    assert after["version"] == 2 and after["input_snapshot"] != before["input_snapshot"]
    check = subprocess.run(
        [sys.executable, str(CHECK_RESULTS), str(platform.results_dir("demo", day))],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    raw_done = json.loads((platform.var / "warehouse" / "demo" / day / "raw" / "_DONE").read_text())
    assert raw_done["changes"] == {"added": 1, "changed": 1, "removed": 0}
    assert raw_done["downloaded"] == 2, "only the new and the changed file are downloaded again"

    sent = (platform.results_dir("demo", day) / "_SUCCESS").stat().st_mtime_ns
    third = platform.luigi("MonitorTracker", "demo", day, "--workers=2")
    assert third.returncode == 0, third.stderr[-4000:]
    assert (platform.results_dir("demo", day) / "_SUCCESS").stat().st_mtime_ns == sent, "nothing changed"

    # A person makes the campaigns again by command: the stages before stay, the results are sent again.
    warehouse = platform.var / "warehouse" / "demo" / day
    connector_done = (warehouse / "connector" / "_DONE").stat().st_mtime_ns
    status = _fraudbatch(platform.env, "status", "--client", "demo", "--date", day)
    assert status.returncode == 0 and "nothing to do: every stage is current" in status.stdout, status.stdout
    rerun = _fraudbatch(
        platform.env, "rerun", "--client", "demo", "--date", day, "--from", "Campaign", "--workers", "2"
    )
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-3000:]
    assert "invalidated demo 2025-11-06 from campaigns: campaigns" in rerun.stdout
    assert (warehouse / "connector" / "_DONE").stat().st_mtime_ns == connector_done
    assert (platform.results_dir("demo", day) / "_SUCCESS").stat().st_mtime_ns != sent
    assert _manifest(platform, day)["version"] == 2, "same input, same version"
