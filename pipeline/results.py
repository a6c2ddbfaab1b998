"""Sending the staged results to the client's bucket, and telling the client they are there."""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

from fraudcore.atomic import write_json
from fraudcore.paths import done_meta, read_json
from pipeline.day import ClientDay, Progress
from pipeline.layout import MANIFEST, SUCCESS, SUMMARY
from pipeline.runs import RunInfo


def send_results(
    day: ClientDay, run: RunInfo, started: float, progress: Progress | None = None
) -> dict[str, Any]:
    """Upload results_staging/ to the day's results prefix with its manifest, then SUCCESS last.

    `started` is the time.monotonic() at which sending began, counted as the sender's own seconds.
    """
    from fraudcore.results import build_manifest, stage_seconds, verify_manifest
    from storage.transfer import upload_dir

    paths = day.paths
    outbox = paths.root / ".outbox"
    if outbox.exists():
        shutil.rmtree(outbox)
    shutil.copytree(paths.stage("results_staging"), outbox, ignore=shutil.ignore_patterns("_DONE"))
    summary_path = outbox / SUMMARY
    summary = read_json(summary_path)
    summary["stage_seconds"] = stage_seconds({**run.task_seconds, "ResultSender": time.monotonic() - started})
    summary["run_id"] = run.run_id
    write_json(summary_path, summary)
    manifest = build_manifest(outbox, run.run_id, run.code_version, day.name, day.date.isoformat())
    state = {k: summary.get(k) for k in ("final", "partial", "input_snapshot")}
    manifest.update(
        state,
        version=next_version(day, state["input_snapshot"]),
        staged_id=done_meta(paths.stage("results_staging")).get("staged_id"),
    )
    problems = verify_manifest(outbox, manifest)
    if problems:
        raise RuntimeError("results failed their own manifest check: " + "; ".join(problems))
    write_json(outbox / MANIFEST, manifest)
    (outbox / SUCCESS).write_text("", encoding="utf-8")
    prefix = day.results_prefix
    # A rerun replaces the folder whole: stale files from an earlier run must not linger.
    day.store.delete_prefix(day.bucket, prefix)
    keys = upload_dir(day.store, day.bucket, prefix, outbox, last=[MANIFEST, SUCCESS], progress=progress)
    shutil.rmtree(outbox)
    return {
        "files": len(keys),
        "url": day.url(prefix),
        "users": summary.get("users", 0),
        "flagged_users": summary.get("flagged_users", 0),
    }


def next_version(day: ClientDay, input_snapshot: str | None) -> int:
    """Version of the results about to be sent: one more than the sent ones, the same for the same input."""
    from storage.errors import ObjectNotFound

    try:
        sent = json.loads(day.store.get_bytes(day.bucket, day.results_prefix + MANIFEST))
    except (ObjectNotFound, ValueError):  # nothing sent yet, or a manifest the new one replaces
        return 1
    version = int(sent.get("version", 1))
    return version if sent.get("input_snapshot") == input_snapshot else version + 1


def notify_client(
    day: ClientDay, environ: dict[str, str] | None = None, **send_options: Any
) -> dict[str, Any]:
    """result_sender/: tell the client its sent results are ready (if it asked to be told), then mark it done.

    Reads the manifest and summary back from the client's bucket, so what the client is told is
    what it will find. A registry naming a secret variable that is not set is an error, not an
    unsigned notification.
    """
    from fraudcore.notify import results_ready, send

    client = day.client
    meta: dict[str, Any] = {"notified": False}
    if client.notify_url:
        env = os.environ if environ is None else environ
        secret = None
        if client.notify_secret_env:
            secret = env.get(client.notify_secret_env)
            if not secret:
                raise RuntimeError(
                    f"client {client.name} signs notifications with ${client.notify_secret_env}, "
                    "which is not set in the environment of the Luigi worker"
                )
        prefix = day.results_prefix
        summary = json.loads(day.store.get_bytes(day.bucket, prefix + SUMMARY))
        payload = results_ready(
            client.name,
            day.date,
            day.url(prefix),
            day.store.get_bytes(day.bucket, prefix + MANIFEST),
            summary,
        )
        answer = send(client.notify_url, payload, secret=secret, **send_options)
        meta = {
            "notified": True,
            "status": answer["status"],
            "attempts": answer["attempts"],
            "manifest_sha256": payload["manifest_sha256"],
        }
    with day.paths.output("result_sender", meta) as tmp:
        write_json(tmp / "notification.json", meta)
    return meta
