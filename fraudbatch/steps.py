"""The non-Spark steps of a client-day, as plain functions the Luigi tasks call.

Each step reads its inputs from the warehouse (docs/architecture.md), writes its stage folder
atomically, and returns the metadata stored in the stage's _DONE marker. No luigi here.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from fraudcore import snapshot
from fraudcore.clients import ClientConfig
from fraudcore.paths import DONE, WorkPaths, done_meta, is_done, read_json, write_json
from fraudcore.snapshot import INBOX, InputFile

DATA_FOLDERS = ("logs", "events", "transactions")
Progress = Callable[[int, int], None]


def raw_prefix(client: ClientConfig, day: dt.date) -> str:
    return f"rawdata/{client.name}/{day.isoformat()}/"


def results_prefix(client: ClientConfig, day: dt.date) -> str:
    return f"results/{client.name}/{day.isoformat()}/"


def raw_data_keys(store, client: ClientConfig, day: dt.date,
                  listing: list[InputFile] | None = None) -> list[str]:
    """Keys (relative to the day's prefix) of the day's raw data files; empty when none landed."""
    files = listing if listing is not None else list_input(store, client, day)
    return sorted(f.key for f in files if f.from_bucket and f.key.split("/", 1)[0] in DATA_FOLDERS
                  and not f.key.endswith("/"))


def list_input(store, client: ClientConfig, day: dt.date, paths: WorkPaths | None = None,
               now: dt.datetime | None = None) -> list[InputFile]:
    """The day's input as it is now: one listing of rawdata/{client}/{date}/, plus the inbox.

    The inbox (records other days' files carried for this day) is read from the warehouse
    when `paths` is given; each of its folders is one entry whose version is its content digest.
    Once the day's close time has passed the listing also holds the @closed entry, so the
    results made before the close are made again, final.
    """
    prefix = raw_prefix(client, day)
    files = [InputFile(i.key[len(prefix):], i.size, i.version)
             for i in store.list(client.bucket, prefix) if not i.key.endswith("/")]
    if paths is not None:
        files += inbox_files(paths)
    files += snapshot.closed_entry(client, day, now or dt.datetime.now(dt.UTC))
    return sorted(files)


def inbox_files(paths: WorkPaths) -> list[InputFile]:
    """One entry per complete inbox/from-{date}/ folder of the client-day."""
    out = []
    if paths.inbox.is_dir():
        for folder in sorted(paths.inbox.iterdir()):
            if folder.name.startswith("from-") and is_done(folder):
                meta = done_meta(folder)
                version = str(meta.get("digest") or (folder / DONE).stat().st_mtime_ns)
                out.append(InputFile(f"{INBOX}{folder.name}", int(meta.get("rows", 0)), version))
    return out


def fetch_raw(store, client: ClientConfig, day: dt.date, paths: WorkPaths,
              listing: list[InputFile] | None = None, progress: Progress | None = None) -> dict:
    """Copy rawdata/{client}/{date}/ from the client's bucket into the warehouse raw/ stage.

    Files unchanged since the previous snapshot are taken from the previous raw/ copy; only
    new and changed files are downloaded. raw/_DONE holds the snapshot (every input entry
    with its size and version) and its id, which the later stages record as their input.
    """
    from storage.transfer import download_keys

    listing = sorted(listing if listing is not None else list_input(store, client, day, paths))
    bucket_files = [f for f in listing if f.from_bucket]
    data_keys = raw_data_keys(store, client, day, listing)
    if not data_keys:
        raise FileNotFoundError(
            f"no raw data files under {store.url(client.bucket, raw_prefix(client, day))}")
    old_dir = paths.stage("raw")
    previous = {f.key: f for f in snapshot.from_doc(done_meta(old_dir).get("snapshot"))}
    prefix = raw_prefix(client, day)
    meta: dict = {}
    with paths.output("raw", meta) as tmp:
        reused, wanted = [], []
        for f in bucket_files:
            old = previous.get(f.key)
            kept = old_dir / f.key
            if old is not None and (old.size, old.version) == (f.size, f.version) and kept.is_file():
                target = tmp / f.key
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(kept, target)  # the old copy's bytes, neither downloaded nor copied
                except OSError:
                    shutil.copy2(kept, target)
                reused.append(f.key)
            else:
                wanted.append(f.key)
        download_keys(store, client.bucket, [prefix + k for k in wanted], prefix, tmp, progress=progress)
        changes = snapshot.diff(previous.values(), listing) if previous else None
        meta.update(
            files=len(bucket_files), data_files=len(data_keys),
            bytes=sum(f.size for f in bucket_files), downloaded=len(wanted), reused=len(reused),
            input=snapshot.snapshot_id(listing), snapshot=snapshot.to_doc(listing), fetched_at=time.time(),
            changes=changes.counts() if changes is not None else {},
        )
    return meta


def store_dfe(paths: WorkPaths, table_store, client: ClientConfig, chunk: int = 100_000,
              progress: Progress | None = None) -> dict:
    """Write the DFE vectors of the dfe/ stage into the table store (one row per user and window).

    Chunks are large so a store that writes from several processes (Cassandra) gets enough rows
    to spread; they exist only to report progress.
    """
    from jobs.common import read_parquet_rows
    from storage.tables import DfeRow

    rows = read_parquet_rows(paths.stage("dfe") / "vectors")
    written = 0
    meta: dict = {}
    with paths.output("dfe_store", meta):
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            written += table_store.write_dfe(client.name, [
                DfeRow(user_id=r["user_id"], timestamp_ms=int(r["window_start_ms"]),
                       feature_vector={k: float(v) for k, v in _as_map(r["features"]).items()})
                for r in part
            ])
            if progress:
                progress(min(start + chunk, len(rows)), len(rows))
        meta.update(rows=written)
    return meta


def _as_map(value) -> dict:
    # pyarrow returns a Parquet map as a list of (key, value) pairs.
    return dict(value) if not isinstance(value, dict) else value


def _risk_rows(paths: WorkPaths) -> list[dict]:
    from jobs.common import read_parquet_rows

    rows = read_parquet_rows(paths.stage("risk") / "scores")
    return sorted(rows, key=lambda r: r["user_id"])


def _campaigns(paths: WorkPaths) -> list[dict]:
    return json.loads((paths.stage("campaigns") / "campaigns.json").read_text(encoding="utf-8"))


GRAPHS_FOR = 25  # campaign graphs published: every fraud ring, then the highest scores up to this


def frontend_campaigns(paths: WorkPaths) -> dict:
    """frontend_campaigns/: the campaign list and one graph per published campaign."""
    import pyarrow.dataset as ds

    from fraudcore.frontend import campaign_graph, campaign_list

    campaigns = _campaigns(paths)
    chosen = [c for c in campaigns if c.get("is_fraud_ring")]
    chosen += [c for c in campaigns if not c.get("is_fraud_ring")][: max(0, GRAPHS_FOR - len(chosen))]
    members = sorted({u for c in chosen for u in c["members"]})
    vn = paths.stage("virtual_nodes")
    edges = []
    node_info: dict[str, dict] = {}
    if members:
        edges = ds.dataset(str(vn / "edges"), format="parquet").to_table(
            filter=ds.field("user_id").isin(members)).to_pylist()
        wanted = sorted({e["node_id"] for e in edges})
        node_info = {n["node_id"]: n for n in ds.dataset(str(vn / "nodes"), format="parquet").to_table(
            filter=ds.field("node_id").isin(wanted)).to_pylist()}
    meta: dict = {}
    with paths.output("frontend_campaigns", meta) as tmp:
        write_json(tmp / "campaigns.json", campaign_list(campaigns))
        for c in chosen:
            mine = set(c["members"])
            write_json(tmp / "campaign_graphs" / f"{c['campaign_id']}.json",
                       campaign_graph(c, [e for e in edges if e["user_id"] in mine], node_info))
        meta.update(campaigns=len(campaigns), graphs=len(chosen))
    return meta


def frontend_data(paths: WorkPaths, client: ClientConfig) -> dict:
    """frontend_data/: hourly timeline and score distribution."""
    from fraudcore.frontend import hourly_timeline, score_distribution

    organized = read_json(paths.stage("organized") / "stats.json")
    joined = read_json(paths.stage("event_join") / "stats.json")
    scores = [int(r["risk_score"]) for r in _risk_rows(paths)]
    meta: dict = {}
    with paths.output("frontend_data", meta) as tmp:
        write_json(tmp / "timeline.json",
                   hourly_timeline(organized["per_hour"], joined["per_hour"], client.timezone))
        write_json(tmp / "score_distribution.json", score_distribution(scores, client.flag_threshold))
        meta.update(users=len(scores))
    return meta


def day_state(paths: WorkPaths, client: ClientConfig) -> dict:
    """Whether the fetched day is final and complete: final, closes_at, final_reason, partial, input_snapshot.

    Decided by the input snapshot alone (its ready marker and @closed entry, the connector's
    whole-file quarantines), so the same snapshot always gives the same answer.
    """
    raw = done_meta(paths.stage("raw"))
    keys = [f.key for f in snapshot.from_doc(raw.get("snapshot"))]
    state = snapshot.closure(client, paths.date, keys).as_dict()
    connector = paths.stage("connector") / "stats.json"
    stats = read_json(connector) if connector.is_file() else {}
    state.update(partial=bool(stats.get("partial", False)), input_snapshot=raw.get("input"))
    return state


def frontend_report(paths: WorkPaths, client: ClientConfig, task_seconds: dict[str, float], run_id: str,
                    code_version: str) -> dict:
    """frontend_report/: summary.json (with stage times so far and the day's state) and the HTML report."""
    from fraudcore.report import render_report
    from fraudcore.results import stage_seconds

    summary = dict(read_json(paths.stage("result_agg") / "summary.json"))
    summary.update(stage_seconds=stage_seconds(task_seconds), run_id=run_id, code_version=code_version,
                   **day_state(paths, client))
    fc = paths.stage("frontend_campaigns")
    campaigns = read_json(fc / "campaigns.json")
    top = next((c for c in campaigns["campaigns"] if c.get("is_fraud_ring")), None)
    graph = read_json(fc / "campaign_graphs" / f"{top['campaign_id']}.json") if top else None
    labeling = _labeling(paths)
    fd = paths.stage("frontend_data")
    html = render_report(summary, campaigns, read_json(fd / "timeline.json"),
                         read_json(fd / "score_distribution.json"), graph, labeling)
    meta: dict = {}
    with paths.output("frontend_report", meta) as tmp:
        write_json(tmp / "summary.json", summary)
        (tmp / "report.html").write_text(html, encoding="utf-8")
        meta.update(report_bytes=len(html.encode("utf-8")))
    return meta


def _labeling(paths: WorkPaths) -> dict | None:
    f = paths.stage("labeling") / "labeling.json"
    return read_json(f) if f.is_file() else None


def input_files(paths: WorkPaths) -> list[dict]:
    """reports/input_files.json: every file of the day's prefix and what happened to it.

    One entry per file, as the connector counted it: status (read, quarantined as a whole,
    not_recognised, expected for labels and markers), reason, physical records read, accepted,
    quarantined by reason. The warehouse's own raw/_DONE marker is not a client file.
    """
    stats = read_json(paths.stage("connector") / "stats.json")
    files = stats.get("files") if isinstance(stats.get("files"), list) else []
    return [f for f in files if not (f.get("source_file") == DONE and f.get("status") == "expected")]


def assemble_results(paths: WorkPaths) -> dict:
    """results_staging/: the results folder of DESIGN.md, except manifest and _SUCCESS."""
    from fraudcore.results import write_risk_scores_csv_gz

    meta: dict = {}
    with paths.output("results_staging", meta) as tmp:
        rows = write_risk_scores_csv_gz(_risk_rows(paths), tmp / "risk_scores" / "risk_scores.csv.gz")
        (tmp / "reports").mkdir()
        for name in ("summary.json", "report.html"):
            shutil.copy2(paths.stage("frontend_report") / name, tmp / "reports" / name)
        write_json(tmp / "reports" / "input_files.json", input_files(paths))
        shutil.copytree(paths.stage("frontend_campaigns"), tmp / "frontend_data",
                        ignore=shutil.ignore_patterns("_DONE"))
        for f in sorted(paths.stage("frontend_data").glob("*.json")):
            shutil.copy2(f, tmp / "frontend_data" / f.name)
        # Names this staging: the sent manifest records it, so staged results made again are sent again.
        meta.update(risk_rows=rows, staged_id=uuid.uuid4().hex)
    return meta


def send_results(store, client: ClientConfig, day: dt.date, paths: WorkPaths, run_id: str,
                 code_version: str, task_seconds: dict[str, float], started: float,
                 progress: Progress | None = None) -> dict:
    """Upload results_staging/ to results/{client}/{date}/ with _manifest.json, then _SUCCESS last."""
    from fraudcore.results import build_manifest, stage_seconds, verify_manifest
    from storage.transfer import upload_dir

    outbox = paths.root / ".outbox"
    if outbox.exists():
        shutil.rmtree(outbox)
    shutil.copytree(paths.stage("results_staging"), outbox, ignore=shutil.ignore_patterns("_DONE"))
    summary_path = outbox / "reports" / "summary.json"
    summary = read_json(summary_path)
    summary["stage_seconds"] = stage_seconds({**task_seconds, "ResultSender": time.monotonic() - started})
    summary["run_id"] = run_id
    write_json(summary_path, summary)
    manifest = build_manifest(outbox, run_id, code_version, client.name, day.isoformat())
    state = {k: summary.get(k) for k in ("final", "partial", "input_snapshot")}
    manifest.update(state, version=_next_version(store, client, day, state["input_snapshot"]),
                    staged_id=done_meta(paths.stage("results_staging")).get("staged_id"))
    problems = verify_manifest(outbox, manifest)
    if problems:
        raise RuntimeError("results failed their own manifest check: " + "; ".join(problems))
    write_json(outbox / "_manifest.json", manifest)
    (outbox / "_SUCCESS").write_text("", encoding="utf-8")
    prefix = results_prefix(client, day)
    # A rerun replaces the folder whole: stale files from an earlier run must not linger.
    store.delete_prefix(client.bucket, prefix)
    keys = upload_dir(store, client.bucket, prefix, outbox, last=["_manifest.json", "_SUCCESS"],
                      progress=progress)
    shutil.rmtree(outbox)
    return {"files": len(keys), "url": store.url(client.bucket, prefix), "users": summary.get("users", 0),
            "flagged_users": summary.get("flagged_users", 0)}


def _next_version(store, client: ClientConfig, day: dt.date, input_snapshot: str | None) -> int:
    """Version of the results about to be sent: one more than the sent ones, the same for the same input."""
    key = results_prefix(client, day) + "_manifest.json"
    from storage.errors import ObjectNotFound

    try:
        sent = json.loads(store.get_bytes(client.bucket, key))
    except (ObjectNotFound, ValueError):  # nothing sent yet, or a manifest the new one replaces
        return 1
    version = int(sent.get("version", 1))
    return version if sent.get("input_snapshot") == input_snapshot else version + 1


def notify_client(store, client: ClientConfig, day: dt.date, paths: WorkPaths,
                  environ: dict[str, str] | None = None, **send_options) -> dict:
    """result_sender/: tell the client its sent results are ready (if it asked to be told), then mark it done.

    Reads the manifest and summary back from the client's bucket, so what the client is told is
    what it will find. A registry naming a secret variable that is not set is an error, not an
    unsigned notification.
    """
    from fraudcore.notify import results_ready, send

    meta: dict = {"notified": False}
    if client.notify_url:
        env = os.environ if environ is None else environ
        secret = None
        if client.notify_secret_env:
            secret = env.get(client.notify_secret_env)
            if not secret:
                raise RuntimeError(f"client {client.name} signs notifications with ${client.notify_secret_env}, "
                                   "which is not set in the environment of the Luigi worker")
        prefix = results_prefix(client, day)
        summary = json.loads(store.get_bytes(client.bucket, prefix + "reports/summary.json"))
        payload = results_ready(client.name, day, store.url(client.bucket, prefix),
                                store.get_bytes(client.bucket, prefix + "_manifest.json"), summary)
        answer = send(client.notify_url, payload, secret=secret, **send_options)
        meta = {"notified": True, "status": answer["status"], "attempts": answer["attempts"],
                "manifest_sha256": payload["manifest_sha256"]}
    with paths.output("result_sender", meta) as tmp:
        write_json(tmp / "notification.json", meta)
    return meta


def labeling(paths: WorkPaths) -> dict:
    """labeling/: precision and recall of flagged users against the client's labels, if any."""
    from fraudcore.labeling import evaluate, read_labels

    label_files = sorted((paths.stage("raw") / "labels").glob("*.csv"))
    labels: dict[str, str] = {}
    for f in label_files:
        labels.update(read_labels(f))
    predictions = {r["user_id"]: bool(r["is_flagged"]) for r in _risk_rows(paths)}
    doc = {"label_files": len(label_files)}
    doc.update(evaluate(predictions, labels) if labels else {"labelled_users": 0, "note": "no labels"})
    meta: dict = {}
    with paths.output("labeling", meta) as tmp:
        write_json(tmp / "labeling.json", doc)
        meta.update({k: v for k, v in doc.items() if isinstance(v, int)})
    return meta


def monitor(paths: WorkPaths, table_store, client: ClientConfig, day: dt.date) -> dict:
    """monitor/: the day's run records (latest per task) and a results row with the same."""
    latest: dict[str, dict] = {}
    for r in sorted(table_store.list_runs(client.name, day.isoformat()), key=lambda r: r.finished_ms):
        latest[r.task] = {"status": r.status, "duration_s": r.duration_s, "rows": r.rows,
                          "run_id": r.run_id, "message": r.message}
    doc = {"client": client.name, "date": day.isoformat(), "tasks": dict(sorted(latest.items())),
           "failed": sorted(t for t, r in latest.items() if r["status"] != "DONE"),
           "labeling": _labeling(paths)}
    table_store.write_result(client.name, f"daily-{day.isoformat()}", "monitor",
                             json.dumps(doc, sort_keys=True), int(time.time() * 1000))
    meta: dict = {}
    with paths.output("monitor", meta) as tmp:
        write_json(tmp / "monitor.json", doc)
        meta.update(tasks=len(latest), failed=len(doc["failed"]))
    return meta


def latest_task_seconds(table_store, client: str, day: dt.date) -> dict[str, float]:
    """Seconds of the latest successful run of every task of the client-day."""
    out: dict[str, float] = {}
    for r in sorted(table_store.list_runs(client, day.isoformat()), key=lambda r: r.finished_ms):
        if r.status == "DONE":
            out[r.task] = r.duration_s
    return out


def ferry_batch(paths: WorkPaths, fp, client: ClientConfig, day: dt.date, batch_size: int,
                progress: Progress | None = None) -> dict:
    """ferry_batch/: push every virtual-node record to FP in idempotent batches."""
    from fp_ferry.ferry import ferry_batches, load_virtual_node_records

    records = load_virtual_node_records(paths.stage("virtual_nodes"))
    meta: dict = {}
    with paths.output("ferry_batch", meta):
        report = ferry_batches(fp, client.name, day.isoformat(), records, batch_size=batch_size,
                               progress=(lambda _b, _t, sent: progress(sent, len(records)))
                               if progress else None)
        meta.update(_report_dict(report))
    return meta


def ferry_cron(paths: WorkPaths, fp, client: ClientConfig, window_minutes: int) -> dict:
    """ferry_cron/: push the most recent window of virtual-node records in real-time mode."""
    from fp_ferry.ferry import ferry_realtime, load_virtual_node_records, recent_window

    records = recent_window(load_virtual_node_records(paths.stage("virtual_nodes")), window_minutes)
    meta: dict = {}
    with paths.output("ferry_cron", meta):
        meta.update(_report_dict(ferry_realtime(fp, client.name, records)))
    return meta


def _report_dict(report) -> dict:
    from dataclasses import asdict, is_dataclass

    return asdict(report) if is_dataclass(report) else dict(report)


def code_version() -> str:
    """The package version plus the git commit when run from a checkout."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("fraudbatch")
    except PackageNotFoundError:
        v = "0+unknown"
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{v}+{sha}" if sha else v
