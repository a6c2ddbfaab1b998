"""Files of the results contract: risk_scores.csv.gz, stage times, _manifest.json and _SUCCESS."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fraudcore import atomic

RISK_COLUMNS = ("user_id", "risk_score", "is_flagged", "campaign_id", "reason_codes")
MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
CREATED_BY = "fraudbatch"

# SPEC §6 stages, in pipeline order, and the Luigi tasks whose wall time each one adds up.
STAGES: dict[str, tuple[str, ...]] = {
    "ingest": ("Fetcher", "SparkConnectorRunner", "Connector"),
    "preprocess": ("LogTimeFileOrganizer", "VirtualNodeGenerator"),
    "feature_computation": ("BatchFeaturePlatformFerry", "CronFeaturePlatformFerry"),
    "dfe": ("Rawlogconverter", "CassandraDfeWriter"),
    "aggregation": ("Campaign", "UserStats", "ResultAggLite", "EventJoinLite", "ResultAgg"),
    "frontend": (
        "CampaignFrontendData",
        "FrontendDataGen",
        "FrontendResultGenerator",
        "FrontendResultWriter",
    ),
    "results": ("ResultSender",),
}
TASK_STAGE: dict[str, str] = {task: stage for stage, tasks in STAGES.items() for task in tasks}


def _flag_text(value: object) -> str:
    """is_flagged as the contract spells it: true|false."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text not in ("true", "false"):
            raise ValueError(f"is_flagged must be true|false, got {value!r}")
        return text
    return "true" if value else "false"


def _reason_text(value: str | Iterable[object] | None) -> str:
    """Reason codes ';'-joined; a list is sorted so the order never depends on the producer."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return ";".join(sorted(str(v) for v in value))


def _risk_rows(rows: Iterable[Mapping[str, Any]]) -> list[tuple[str, ...]]:
    """Risk score rows as contract text fields, validated and sorted by user_id."""
    out: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for r in rows:
        uid = str(r["user_id"])
        if uid in seen:
            raise ValueError(f"duplicate risk score row for user {uid!r}")
        seen.add(uid)
        score = int(r["risk_score"])
        if not 0 <= score <= 100:
            raise ValueError(f"risk_score {score} of user {uid!r} is outside 0-100")
        out.append(
            (
                uid,
                str(score),
                _flag_text(r["is_flagged"]),
                str(r.get("campaign_id") or ""),
                _reason_text(r.get("reason_codes")),
            )
        )
    out.sort()
    return out


def _csv_text(table: list[tuple[str, ...]]) -> str:
    """Header plus rows as CSV with "\n" line ends (the same on every platform)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(RISK_COLUMNS)
    writer.writerows(table)
    return buf.getvalue()


def risk_scores_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV text of risk scores, one row per user, sorted by user_id."""
    return _csv_text(_risk_rows(rows))


def write_risk_scores_csv_gz(rows: Iterable[dict[str, Any]], path: Path) -> int:
    """Write risk_scores.csv.gz whose bytes depend only on the rows; returns the row count."""
    table = _risk_rows(rows)
    buf = io.BytesIO()
    # mtime=0 and a fixed inner name keep the gzip header free of time and temp-file names.
    with gzip.GzipFile(filename="risk_scores.csv", mode="wb", fileobj=buf, compresslevel=6, mtime=0) as gz:
        gz.write(_csv_text(table).encode("utf-8"))
    atomic.write_bytes(Path(path), buf.getvalue())
    return len(table)


def stage_of(task: str) -> str | None:
    """SPEC §6 stage of a Luigi task family or task id ("Family_params_hash"); None if unknown."""
    if task in TASK_STAGE:
        return TASK_STAGE[task]
    return TASK_STAGE.get(task.split("_", 1)[0])  # task families here never contain "_"


def stage_seconds(task_seconds: dict[str, float]) -> dict[str, float]:
    """Wall seconds per SPEC §6 stage (pipeline order, 0.1 s), then "other" if any, then "total"."""
    sums = {stage: 0.0 for stage in STAGES}
    other = 0.0
    for task in sorted(task_seconds):  # fixed summation order, so float sums are reproducible
        stage = stage_of(task)
        if stage is None:
            other += float(task_seconds[task])
        else:
            sums[stage] += float(task_seconds[task])
    out = {stage: round(sums[stage], 1) for stage in STAGES}
    if other:
        # Time of tasks outside the table (wrappers, labeling) still belongs in the total.
        out["other"] = round(other, 1)
    out["total"] = round(sum(sums.values()) + other, 1)
    return out


def _csv_data_rows(data: bytes) -> int:
    """Data rows of a CSV file (header excluded; quoted newlines handled)."""
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    return max(sum(1 for row in reader if row) - 1, 0)


def count_rows(rel: str, data: bytes) -> int | None:
    """Row count of a result file for the manifest; None for files without rows."""
    name = rel.lower()
    if name.endswith(".csv.gz"):
        return _csv_data_rows(gzip.decompress(data))
    if name.endswith(".csv"):
        return _csv_data_rows(data)
    if name.endswith(".json"):
        doc = json.loads(data.decode("utf-8"))
        if isinstance(doc, list):
            return len(doc)
        if isinstance(doc, dict) and isinstance(doc.get("campaigns"), list):
            return len(doc["campaigns"])
        return 1
    return None


def _result_files(results_dir: Path) -> list[str]:
    """Relative posix paths of every result file, markers excluded, sorted."""
    root = Path(results_dir)
    rels = []
    for p in root.rglob("*"):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            if rel not in (MANIFEST, SUCCESS):
                rels.append(rel)
    return sorted(rels)


def build_manifest(
    results_dir: Path, run_id: str, code_version: str, client: str, date: str
) -> dict[str, Any]:
    """Manifest of a results folder: size, sha256 and row count of every file, plus run identity."""
    root = Path(results_dir)
    files = {}
    for rel in _result_files(root):
        data = (root / rel).read_bytes()
        files[rel] = {
            "rows": count_rows(rel, data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
        }
    return {
        "client": client,
        "code_version": code_version,
        "created_by": CREATED_BY,
        "date": date,
        "files": files,
        "run_id": run_id,
    }


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """The manifest as written: sorted keys, 2-space indent, trailing newline."""
    return (json.dumps(manifest, sort_keys=True, indent=2) + "\n").encode("utf-8")


def write_manifest_and_success(results_dir: Path, manifest: dict[str, Any]) -> None:
    """Write _manifest.json, then _SUCCESS last, newer than every other file."""
    root = Path(results_dir)
    # Drop a stale marker first: a crash before the new one lands must read as "not done".
    (root / SUCCESS).unlink(missing_ok=True)
    atomic.write_bytes(root / MANIFEST, manifest_bytes(manifest))
    atomic.write_bytes(root / SUCCESS, b"")
    # Coarse filesystem clocks (or files copied with future mtimes) could make _SUCCESS look
    # older than a file written before it; readers rely on it being the newest.
    newest = max(
        (p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and p.name != SUCCESS), default=0
    )
    success = root / SUCCESS
    if success.stat().st_mtime_ns < newest:
        os.utime(success, ns=(newest, newest))


def verify_manifest(results_dir: Path, manifest: dict[str, Any]) -> list[str]:
    """Problems between a results folder and its manifest; empty when they agree."""
    root = Path(results_dir)
    listed = manifest.get("files") or {}
    problems = []
    for rel in sorted(listed):
        meta = listed[rel]
        path = root / rel
        if not path.is_file():
            problems.append(f"missing {rel}")
            continue
        data = path.read_bytes()
        if len(data) != meta.get("size"):
            problems.append(f"size of {rel} is {len(data)}, manifest says {meta.get('size')}")
        if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            problems.append(f"sha256 of {rel} differs from the manifest")
    for rel in _result_files(root):
        if rel not in listed:
            problems.append(f"{rel} is not in the manifest")
    return problems
