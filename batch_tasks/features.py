"""Feature generation: virtual nodes, DFE vectors and their storage."""

from __future__ import annotations

from batch_tasks.base import ClientDayTask, SparkJobTask
from batch_tasks.ingest import LogTimeFileOrganizer
from pipeline import features


class VirtualNodeGenerator(SparkJobTask):
    """Virtual nodes (devices, IPs, IP blocks, fingerprints, …) and user–node edges."""

    stage = "virtual_nodes"
    app = "virtual_nodes"

    def requires(self):
        return LogTimeFileOrganizer(**self.day_kwargs())


class Rawlogconverter(SparkJobTask):
    """DFE conversion: one feature vector per user for the day (SPEC §4 families)."""

    stage = "dfe"
    app = "rawlogconverter"
    capacity_class = "normal"  # 70 % spot / 30 % on-demand class

    def requires(self):
        return VirtualNodeGenerator(**self.day_kwargs())


class CassandraDfeWriter(ClientDayTask):
    """DFE storage: the day's vectors into the table store (Cassandra or the embedded store)."""

    stage = "dfe_store"

    def requires(self):
        return Rawlogconverter(**self.day_kwargs())

    def run(self) -> None:
        meta = features.store_dfe(self.day, progress=self._progress)
        self.set_status_message(f"{meta['rows']} DFE rows written")

    def _progress(self, done: int, total: int) -> None:
        self.set_progress_percentage(int(100 * done / max(total, 1)))
        self.set_status_message(f"writing DFE rows {done}/{total}")
