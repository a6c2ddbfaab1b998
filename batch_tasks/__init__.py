"""Luigi tasks of the fraud batch platform: `luigi --module batch_tasks <Task> --client X --date D`."""
from batch_tasks.aggregation import Campaign, EventJoinLite, ResultAgg, ResultAggLite, UserStats
from batch_tasks.features import CassandraDfeWriter, Rawlogconverter, VirtualNodeGenerator
from batch_tasks.ferry import BatchFeaturePlatformFerry, CronFeaturePlatformFerry
from batch_tasks.frontend import (
    CampaignFrontendData,
    FrontendDataGen,
    FrontendResultGenerator,
    FrontendResultWriter,
)
from batch_tasks.ingest import Connector, Fetcher, LogTimeFileOrganizer, RawClientDay, SparkConnectorRunner
from batch_tasks.results import Labeling, MonitorTracker, ResultSender

__all__ = [
    "BatchFeaturePlatformFerry", "Campaign", "CampaignFrontendData", "CassandraDfeWriter", "Connector",
    "CronFeaturePlatformFerry", "EventJoinLite", "Fetcher", "FrontendDataGen", "FrontendResultGenerator",
    "FrontendResultWriter", "Labeling", "LogTimeFileOrganizer", "MonitorTracker", "RawClientDay",
    "Rawlogconverter", "ResultAgg", "ResultAggLite", "ResultSender", "SparkConnectorRunner", "UserStats",
    "VirtualNodeGenerator",
]
