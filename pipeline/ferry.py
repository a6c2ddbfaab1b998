"""ferry_batch/ and ferry_cron/: virtual-node records pushed to the Feature Platform."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.day import ClientDay, Progress

if TYPE_CHECKING:
    from fp_ferry.client import FPClient
    from fp_ferry.ferry import FerryReport


def ferry_batch(
    day: ClientDay, fp: FPClient, batch_size: int, progress: Progress | None = None
) -> dict[str, Any]:
    """ferry_batch/: push every virtual-node record to FP in idempotent batches."""
    from fp_ferry.ferry import ferry_batches, load_virtual_node_records

    records = load_virtual_node_records(day.paths.stage("virtual_nodes"))
    meta: dict[str, Any] = {}
    with day.paths.output("ferry_batch", meta):
        report = ferry_batches(
            fp,
            day.name,
            day.date.isoformat(),
            records,
            batch_size=batch_size,
            progress=(lambda _b, _t, sent: progress(sent, len(records))) if progress else None,
        )
        meta.update(_report_dict(report))
    return meta


def ferry_cron(day: ClientDay, fp: FPClient, window_minutes: int) -> dict[str, Any]:
    """ferry_cron/: push the most recent window of virtual-node records in real-time mode."""
    from fp_ferry.ferry import ferry_realtime, load_virtual_node_records, recent_window

    records = recent_window(load_virtual_node_records(day.paths.stage("virtual_nodes")), window_minutes)
    meta: dict[str, Any] = {}
    with day.paths.output("ferry_cron", meta):
        meta.update(_report_dict(ferry_realtime(fp, day.name, records)))
    return meta


def _report_dict(report: FerryReport) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(report)
