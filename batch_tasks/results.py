"""Result transfer and run monitoring: ResultSender, Labeling, MonitorTracker."""

from __future__ import annotations

import time

from batch_tasks.aggregation import ResultAggLite
from batch_tasks.base import ClientDayTask, run_id
from batch_tasks.ferry import BatchFeaturePlatformFerry
from batch_tasks.frontend import FrontendResultWriter
from batch_tasks.ingest import Fetcher
from batch_tasks.targets import ResultsTarget
from fraudcore.paths import done_meta
from pipeline import labeling, monitor, results
from pipeline.runs import run_info


class ResultSender(ClientDayTask):
    """Send the results to results/{client}/{date}/ in the client's bucket, _SUCCESS last; then notify the client.

    Done when both hold: _SUCCESS is in the bucket, and the client was notified (result_sender/
    _DONE). A notification that failed is sent again by the next run without sending the
    results again.
    """

    stage = "result_sender"

    def requires(self):
        return FrontendResultWriter(**self.day_kwargs())

    def output(self):
        staged = self.paths.stage("results_staging")
        return {
            "results": ResultsTarget(
                self.day.bucket,
                self.day.results_prefix,
                self.current_input,
                staged_id=lambda: done_meta(staged).get("staged_id"),
                store=self.day.store,
            ),
            "notified": super().output(),
        }

    def run(self) -> None:
        if not self.output()["results"].exists():
            started = time.monotonic()
            meta = results.send_results(
                self.day, run_info(self.day, run_id()), started, progress=self._progress
            )
            self.set_status_message(
                f"sent {meta['files']} files to {meta['url']}: {meta['users']} users, "
                f"{meta['flagged_users']} flagged"
            )
        if self.day.client.notify_url:
            self.set_status_message(f"notifying {self.day.client.notify_url}")
        results.notify_client(self.day)

    def _progress(self, done: int, total: int) -> None:
        self.set_progress_percentage(int(100 * done / max(total, 1)))


class Labeling(ClientDayTask):
    """Precision and recall of the day's flags against the client's labels."""

    stage = "labeling"

    def requires(self):
        return {"risk": ResultAggLite(**self.day_kwargs()), "raw": Fetcher(**self.day_kwargs())}

    def run(self) -> None:
        meta = labeling.labeling(self.day)
        self.set_status_message(f"labelled users: {meta.get('labelled_users', 0)}")


class MonitorTracker(ClientDayTask):
    """The day's run record: every task's duration, status and row counts, in the table store."""

    stage = "monitor"

    def requires(self):
        return {
            "labeling": Labeling(**self.day_kwargs()),
            "sent": ResultSender(**self.day_kwargs()),
            "ferry": BatchFeaturePlatformFerry(**self.day_kwargs()),
        }

    def run(self) -> None:
        meta = monitor.monitor(self.day)
        self.set_status_message(f"{meta['tasks']} task runs recorded, {meta['failed']} failed")
