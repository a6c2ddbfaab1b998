"""Ingest and preprocessing: raw client data → clean events → hourly organised events."""

from __future__ import annotations

import luigi

from batch_tasks.base import ClientDayTask, SparkJobTask
from batch_tasks.targets import RawDataTarget
from pipeline import ingest


class RawClientDay(luigi.ExternalTask, ClientDayTask):
    """The client's raw data for the day in its bucket; missing → the run exits `missing_data`."""

    def output(self):
        return RawDataTarget(self.day, self.input_listing)


class Fetcher(ClientDayTask):
    """Connector, part 1: copy the day's raw files from the client's bucket into the warehouse.

    Complete while raw/ holds the day's input as the bucket lists it now; a file that lands or
    changes later makes it stale, and the next run copies what changed (the rest is reused).
    """

    stage = "raw"

    def requires(self):
        return RawClientDay(**self.day_kwargs())

    def run(self) -> None:
        meta = ingest.fetch_raw(self.day, listing=self.input_listing(), progress=self._progress)
        changes = meta["changes"]
        what = (
            f"{changes['added']} added, {changes['changed']} changed, {changes['removed']} removed "
            "since the last fetch; "
            if changes
            else ""
        )
        self.set_status_message(
            f"{what}downloaded {meta['downloaded']} files, reused {meta['reused']}; "
            f"{meta['data_files']} data files, {meta['bytes']} bytes"
        )

    def _progress(self, done: int, total: int) -> None:
        self.set_progress_percentage(int(100 * done / max(total, 1)))
        self.set_status_message(f"downloading raw files {done}/{total}")


class SparkConnectorRunner(SparkJobTask):
    """Connector, part 2 (Processor) as a Spark job: validate, normalise, quarantine."""

    stage = "connector"
    app = "connector"

    def requires(self):
        return Fetcher(**self.day_kwargs())


class Connector(luigi.WrapperTask, ClientDayTask):
    """The Connector (Fetcher + Processor): complete when the day is ingested and reconciled."""

    def requires(self):
        return SparkConnectorRunner(**self.day_kwargs())


class LogTimeFileOrganizer(SparkJobTask):
    """Hourly event-time partitions, de-duplicated on event id, late records set aside."""

    stage = "organized"
    app = "organizer"

    def requires(self):
        return Connector(**self.day_kwargs())
