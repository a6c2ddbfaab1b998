"""Feature transfer: Ferry tasks push virtual-node output to the Feature Platform."""

from __future__ import annotations

from batch_tasks.base import ClientDayTask
from batch_tasks.config import fp
from batch_tasks.features import VirtualNodeGenerator
from pipeline import ferry


class BatchFeaturePlatformFerry(ClientDayTask):
    """Batch mode: every virtual-node record, in idempotent batches of at most [fp] batch_size."""

    stage = "ferry_batch"

    def requires(self):
        return VirtualNodeGenerator(**self.day_kwargs())

    def run(self) -> None:
        meta = ferry.ferry_batch(self.day, fp().client(), fp().batch_size, progress=self._progress)
        self.set_status_message(
            f"{meta.get('batches')} batches, {meta.get('records')} records, "
            f"{meta.get('duplicates')} already applied"
        )

    def _progress(self, done: int, total: int) -> None:
        self.set_progress_percentage(int(100 * done / max(total, 1)))
        self.set_status_message(f"pushed {done}/{total} records to FP")


class CronFeaturePlatformFerry(ClientDayTask):
    """Real-time mode: the most recent window of virtual-node records (run from cron)."""

    stage = "ferry_cron"

    def requires(self):
        return VirtualNodeGenerator(**self.day_kwargs())

    def run(self) -> None:
        meta = ferry.ferry_cron(self.day, fp().client(), fp().realtime_window_minutes)
        self.set_status_message(f"{meta.get('records')} recent records pushed")
