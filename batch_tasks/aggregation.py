"""Aggregation: campaigns, user statistics, risk scores, flagged events, the day's summary."""

from __future__ import annotations

from batch_tasks.base import SparkJobTask
from batch_tasks.features import CassandraDfeWriter, Rawlogconverter, VirtualNodeGenerator
from batch_tasks.ingest import LogTimeFileOrganizer


class UserStats(SparkJobTask):
    """Per-user statistics of the day."""

    stage = "user_stats"
    app = "user_stats"

    def requires(self):
        return Rawlogconverter(**self.day_kwargs())


class Campaign(SparkJobTask):
    """Campaigns: groups of users linked through shared (non-super) virtual nodes, scored."""

    stage = "campaigns"
    app = "campaign"

    def requires(self):
        return {
            "dfe": Rawlogconverter(**self.day_kwargs()),
            "stats": UserStats(**self.day_kwargs()),
            "nodes": VirtualNodeGenerator(**self.day_kwargs()),
        }


class ResultAggLite(SparkJobTask):
    """Light aggregation: a risk score, flag and reason codes for every active user."""

    stage = "risk"
    app = "result_agg_lite"

    def requires(self):
        return {
            "campaigns": Campaign(**self.day_kwargs()),
            "stats": UserStats(**self.day_kwargs()),
            "dfe_store": CassandraDfeWriter(**self.day_kwargs()),
        }


class EventJoinLite(SparkJobTask):
    """Event association: the events of flagged users with their score and campaign."""

    stage = "event_join"
    app = "event_join"

    def requires(self):
        return {
            "risk": ResultAggLite(**self.day_kwargs()),
            "events": LogTimeFileOrganizer(**self.day_kwargs()),
        }


class ResultAgg(SparkJobTask):
    """Final summary of the client-day."""

    stage = "result_agg"
    app = "result_agg"

    def requires(self):
        return EventJoinLite(**self.day_kwargs())
