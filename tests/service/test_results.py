"""Results contract files: risk_scores.csv.gz, stage times, manifest, _SUCCESS, and the contract checker."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fraudcore.atomic import write_json
from fraudcore.frontend import campaign_graph, campaign_list, hourly_timeline, score_distribution
from fraudcore.report import render_report
from fraudcore.results import (
    STAGES,
    build_manifest,
    stage_seconds,
    verify_manifest,
    write_manifest_and_success,
    write_risk_scores_csv_gz,
)
from tests.support.paths import results_checker

CHECKER = results_checker()

ROWS = [
    {"user_id": "u3", "risk_score": 12, "is_flagged": False, "campaign_id": "", "reason_codes": ""},
    {
        "user_id": "u1",
        "risk_score": 91,
        "is_flagged": True,
        "campaign_id": "cmp-1",
        "reason_codes": ["shared_device", "burst"],
    },
    {"user_id": "u2", "risk_score": 70, "is_flagged": "TRUE", "campaign_id": None, "reason_codes": "night"},
]


def _csv_lines(path: Path) -> list[str]:
    return gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()


def test_risk_scores_csv_gz_content_sorted_and_formatted(tmp_path):
    path = tmp_path / "risk_scores" / "risk_scores.csv.gz"
    assert write_risk_scores_csv_gz(ROWS, path) == 3
    assert _csv_lines(path) == [
        "user_id,risk_score,is_flagged,campaign_id,reason_codes",
        "u1,91,true,cmp-1,burst;shared_device",
        "u2,70,true,,night",
        "u3,12,false,,",
    ]
    assert sorted(os.listdir(path.parent)) == ["risk_scores.csv.gz"]  # no temp file left behind


def test_risk_scores_csv_gz_is_byte_identical_across_writes(tmp_path):
    a, b = tmp_path / "a.csv.gz", tmp_path / "other" / "b.csv.gz"
    write_risk_scores_csv_gz(ROWS, a)
    os.utime(a, (1, 1))  # a different clock must not matter
    write_risk_scores_csv_gz(iter(reversed(ROWS)), b)
    assert a.read_bytes() == b.read_bytes()
    header = a.read_bytes()[:30]
    assert header[4:8] == b"\0\0\0\0"  # gzip mtime field
    assert b"risk_scores.csv\0" in header


def test_risk_scores_empty_file_has_the_header(tmp_path):
    path = tmp_path / "r.csv.gz"
    assert write_risk_scores_csv_gz([], path) == 0
    assert _csv_lines(path) == ["user_id,risk_score,is_flagged,campaign_id,reason_codes"]


@pytest.mark.parametrize(
    "rows", [[ROWS[0], dict(ROWS[0])], [dict(ROWS[0], risk_score=101)], [dict(ROWS[0], is_flagged="yes")]]
)
def test_risk_scores_reject_contract_violations(tmp_path, rows):
    with pytest.raises(ValueError):
        write_risk_scores_csv_gz(rows, tmp_path / "r.csv.gz")
    assert not (tmp_path / "r.csv.gz").exists()


def test_stage_mapping_follows_spec_order():
    assert list(STAGES) == [
        "ingest",
        "preprocess",
        "feature_computation",
        "dfe",
        "aggregation",
        "frontend",
        "results",
    ]
    assert STAGES["aggregation"] == ("Campaign", "UserStats", "ResultAggLite", "EventJoinLite", "ResultAgg")


def test_stage_seconds_sums_rounds_and_keeps_order():
    out = stage_seconds(
        {
            "ResultSender": 3.04,
            "Fetcher": 10.02,
            "Connector": 20.0,
            "SparkConnectorRunner_acme_2024_05_01_x": 5.01,
            "Campaign": 1.26,
            "UserStats": 2.0,
            "CassandraDfeWriter": 0.04,
            "RunClientDay": 7.0,
        }
    )
    assert out == {
        "ingest": 35.0,
        "preprocess": 0.0,
        "feature_computation": 0.0,
        "dfe": 0.0,
        "aggregation": 3.3,
        "frontend": 0.0,
        "results": 3.0,
        "other": 7.0,
        "total": 48.4,
    }
    assert list(out) == [*STAGES, "other", "total"]
    assert stage_seconds({}) == {**{s: 0.0 for s in STAGES}, "total": 0.0}


def _sample_results(root: Path) -> None:
    """A tiny but complete client-day results folder, made with the project's own functions."""
    campaigns = [
        {
            "campaign_id": "cmp-1",
            "size": 2,
            "score": 88,
            "is_fraud_ring": True,
            "signals": {"shared_device": 1.0},
            "members": ["u1", "u2"],
            "nodes": ["device:d1"],
        }
    ]
    edges = [
        {"user_id": "u1", "node_id": "device:d1", "node_type": "device", "events": 3},
        {"user_id": "u2", "node_id": "device:d1", "node_type": "device", "events": 1},
    ]
    rows = [dict(r, campaign_id="cmp-1" if r["user_id"] in ("u1", "u2") else "") for r in ROWS]
    write_risk_scores_csv_gz(rows, root / "risk_scores/risk_scores.csv.gz")
    clist = campaign_list(campaigns)
    graph = campaign_graph(campaigns[0], edges, {})
    timeline = hourly_timeline([4] * 24, [1] * 24, "UTC")
    dist = score_distribution([r["risk_score"] for r in ROWS], 70)
    summary = {
        "client": "acme",
        "date": "2024-05-01",
        "records_read": 100,
        "records_accepted": 96,
        "records_quarantined": 4,
        "quarantine_reasons": {"bad event_time": 4},
        "users": 3,
        "flagged_users": 2,
        "campaigns": 1,
        "fraud_rings": 1,
        "score_histogram": {b["bucket"]: b["count"] for b in dist["buckets"]},
        "stage_seconds": stage_seconds({"Fetcher": 1.0, "ResultSender": 0.5}),
        "run_id": "run-7",
        "code_version": "abc123",
    }
    write_json(root / "reports/summary.json", summary)
    (root / "reports/report.html").write_text(
        render_report(summary, clist, timeline, dist, graph, None), encoding="utf-8"
    )
    write_json(root / "frontend_data/campaigns.json", clist)
    write_json(root / "frontend_data/campaign_graph_cmp-1.json", graph)
    write_json(root / "frontend_data/timeline.json", timeline)
    write_json(root / "frontend_data/score_distribution.json", dist)
    write_json(root / "frontend_data/hours.json", [1, 2, 3])


def test_build_manifest_sizes_checksums_and_rows(tmp_path):
    _sample_results(tmp_path)
    (tmp_path / "_SUCCESS").write_text("")  # markers never enter the manifest
    m = build_manifest(tmp_path, "run-7", "abc123", "acme", "2024-05-01")
    assert {k: m[k] for k in ("run_id", "code_version", "client", "date", "created_by")} == {
        "run_id": "run-7",
        "code_version": "abc123",
        "client": "acme",
        "date": "2024-05-01",
        "created_by": "fraudbatch",
    }
    assert (
        list(m["files"])
        == sorted(m["files"])
        == [
            "frontend_data/campaign_graph_cmp-1.json",
            "frontend_data/campaigns.json",
            "frontend_data/hours.json",
            "frontend_data/score_distribution.json",
            "frontend_data/timeline.json",
            "reports/report.html",
            "reports/summary.json",
            "risk_scores/risk_scores.csv.gz",
        ]
    )
    rows = {k: v["rows"] for k, v in m["files"].items()}
    assert rows == {
        "frontend_data/campaign_graph_cmp-1.json": 1,
        "frontend_data/campaigns.json": 1,
        "frontend_data/hours.json": 3,
        "frontend_data/score_distribution.json": 1,
        "frontend_data/timeline.json": 1,
        "reports/report.html": None,
        "reports/summary.json": 1,
        "risk_scores/risk_scores.csv.gz": 3,
    }
    data = (tmp_path / "risk_scores/risk_scores.csv.gz").read_bytes()
    assert m["files"]["risk_scores/risk_scores.csv.gz"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert m["files"]["risk_scores/risk_scores.csv.gz"]["size"] == len(data)
    assert verify_manifest(tmp_path, m) == []


def test_verify_manifest_detects_tampering_missing_and_unlisted_files(tmp_path):
    _sample_results(tmp_path)
    m = build_manifest(tmp_path, "run-7", "abc123", "acme", "2024-05-01")
    summary = tmp_path / "reports/summary.json"
    data = summary.read_bytes()
    summary.write_bytes(data.replace(b'"users": 3', b'"users": 4'))  # same size, other bytes
    (tmp_path / "frontend_data/hours.json").write_text("[1, 2, 3, 4]\n")
    (tmp_path / "frontend_data/timeline.json").unlink()
    (tmp_path / "reports/extra.txt").write_text("x")
    assert verify_manifest(tmp_path, m) == [
        "size of frontend_data/hours.json is 13, manifest says 18",
        "sha256 of frontend_data/hours.json differs from the manifest",
        "missing frontend_data/timeline.json",
        "sha256 of reports/summary.json differs from the manifest",
        "reports/extra.txt is not in the manifest",
    ]


def test_success_is_written_last_and_newest(tmp_path):
    _sample_results(tmp_path)
    future = tmp_path / "reports/report.html"
    t = future.stat().st_mtime_ns + 10**9 * 60  # a file copied in with a clock ahead of ours
    os.utime(future, ns=(t, t))
    (tmp_path / "_SUCCESS").write_text("stale")
    m = build_manifest(tmp_path, "run-7", "abc123", "acme", "2024-05-01")
    write_manifest_and_success(tmp_path, m)
    success = (tmp_path / "_SUCCESS").stat().st_mtime_ns
    others = [p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file() and p.name != "_SUCCESS"]
    assert success >= max(others)
    assert (tmp_path / "_SUCCESS").read_bytes() == b""
    assert json.loads((tmp_path / "_manifest.json").read_text()) == m
    assert verify_manifest(tmp_path, json.loads((tmp_path / "_manifest.json").read_text())) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "_SUCCESS",
        "_manifest.json",
        "frontend_data",
        "reports",
        "risk_scores",
    ]


def _check(results_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECKER), str(results_dir)], capture_output=True, text=True, timeout=60
    )


def test_results_folder_passes_the_contract_checker(tmp_path):
    root = tmp_path / "results/acme/2024-05-01"
    _sample_results(root)
    write_manifest_and_success(root, build_manifest(root, "run-7", "abc123", "acme", "2024-05-01"))
    done = _check(root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "results contract holds" in done.stdout

    (root / "frontend_data/timeline.json").write_text("{}\n")  # tampered after the manifest
    done = _check(root)
    assert done.returncode == 1
    assert "sha256 of frontend_data/timeline.json differs from the manifest" in done.stdout


def test_demo_prints_the_day_in_two_lines():
    from fraudbatch.cli import day_outcome

    summary = {
        "client": "demo",
        "date": "2025-11-21",
        "records_read": 20000,
        "records_accepted": 19800,
        "records_quarantined": 200,
        "users": 500,
        "flagged_users": 53,
        "fraud_rings": 5,
        "campaigns": 19,
        "stage_seconds": {"ingest": 12.1, "results": 0.0, "aggregation": 46.3, "total": 58.4},
    }
    assert day_outcome(summary) == (
        "demo 2025-11-21: 20,000 records read, 19,800 accepted, 200 quarantined; 500 users, 53 flagged, "
        "5 fraud rings among 19 campaigns\nseconds: 58.4 in total (ingest 12.1, aggregation 46.3)"
    )
