"""Result transfer and run monitoring: ResultSender, Labeling, MonitorTracker."""
from __future__ import annotations

import time

from batch_tasks.aggregation import ResultAggLite
from batch_tasks.base import ClientDayTask, run_id
from batch_tasks.config import objectstore, tables
from batch_tasks.ferry import BatchFeaturePlatformFerry
from batch_tasks.frontend import FrontendResultWriter
from batch_tasks.ingest import Fetcher
from batch_tasks.targets import ResultsTarget
from fraudbatch import steps
from fraudcore.paths import done_meta


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
        return {"results": ResultsTarget(self.client_config.bucket,
                                         steps.results_prefix(self.client_config, self.date), self.current_input,
                                         staged_id=lambda: done_meta(staged).get("staged_id")),
                "notified": super().output()}

    def run(self) -> None:
        store = objectstore().store()
        if not self.output()["results"].exists():
            started = time.monotonic()
            table_store = tables().store()
            try:
                seconds = steps.latest_task_seconds(table_store, self.client, self.date)
            finally:
                table_store.close()
            meta = steps.send_results(store, self.client_config, self.date, self.paths, run_id(),
                                      steps.code_version(), seconds, started, progress=self._progress)
            self.set_status_message(f"sent {meta['files']} files to {meta['url']}: {meta['users']} users, "
                                    f"{meta['flagged_users']} flagged")
        if self.client_config.notify_url:
            self.set_status_message(f"notifying {self.client_config.notify_url}")
        steps.notify_client(store, self.client_config, self.date, self.paths)

    def _progress(self, done: int, total: int) -> None:
        self.set_progress_percentage(int(100 * done / max(total, 1)))


class Labeling(ClientDayTask):
    """Precision and recall of the day's flags against the client's labels."""

    stage = "labeling"

    def requires(self):
        return {"risk": ResultAggLite(**self.day_kwargs()), "raw": Fetcher(**self.day_kwargs())}

    def run(self) -> None:
        meta = steps.labeling(self.paths)
        self.set_status_message(f"labelled users: {meta.get('labelled_users', 0)}")


class MonitorTracker(ClientDayTask):
    """The day's run record: every task's duration, status and row counts, in the table store."""

    stage = "monitor"

    def requires(self):
        return {"labeling": Labeling(**self.day_kwargs()), "sent": ResultSender(**self.day_kwargs()),
                "ferry": BatchFeaturePlatformFerry(**self.day_kwargs())}

    def run(self) -> None:
        store = tables().store()
        try:
            meta = steps.monitor(self.paths, store, self.client_config, self.date)
        finally:
            store.close()
        self.set_status_message(f"{meta['tasks']} task runs recorded, {meta['failed']} failed")
