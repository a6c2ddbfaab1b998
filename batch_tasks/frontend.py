"""Frontend generation: dashboard data, the HTML report, and the staged results folder."""

from __future__ import annotations

from batch_tasks.aggregation import ResultAgg
from batch_tasks.base import ClientDayTask, run_id
from pipeline import frontend
from pipeline.runs import run_info


class CampaignFrontendData(ClientDayTask):
    """Campaign list and per-campaign graphs for the dashboard."""

    stage = "frontend_campaigns"

    def requires(self):
        return ResultAgg(**self.day_kwargs())

    def run(self) -> None:
        meta = frontend.frontend_campaigns(self.day)
        self.set_status_message(f"{meta['campaigns']} campaigns, {meta['graphs']} graphs")


class FrontendDataGen(ClientDayTask):
    """Hourly timeline and score distribution for the dashboard."""

    stage = "frontend_data"

    def requires(self):
        return ResultAgg(**self.day_kwargs())

    def run(self) -> None:
        frontend.frontend_data(self.day)


class FrontendResultGenerator(ClientDayTask):
    """The day's summary.json and HTML report."""

    stage = "frontend_report"

    def requires(self):
        return {
            "campaigns": CampaignFrontendData(**self.day_kwargs()),
            "data": FrontendDataGen(**self.day_kwargs()),
        }

    def run(self) -> None:
        frontend.frontend_report(self.day, run_info(self.day, run_id()))


class FrontendResultWriter(ClientDayTask):
    """The results folder of the client-day, staged in the warehouse before it is sent."""

    stage = "results_staging"

    def requires(self):
        return FrontendResultGenerator(**self.day_kwargs())

    def run(self) -> None:
        meta = frontend.assemble_results(self.day)
        self.set_status_message(f"staged results for {meta['risk_rows']} users")
