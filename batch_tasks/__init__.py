"""Luigi tasks of the fraud batch platform: `luigi --module batch_tasks <Task> --client X --date D`."""

import warnings

from luigi.parameter import UnconsumedParameterWarning

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

# luigi.cfg keeps the SPEC's [core] spellings. luigi reads them (default-scheduler-host/-port
# through its config_path, rpc-connect-timeout in luigi.rpc) yet reports them as unconsumed on
# every run; silence exactly those three so real typos in luigi.cfg still warn.
warnings.filterwarnings(
    "ignore",
    message=r".*'(default_scheduler_host|default_scheduler_port|rpc_connect_timeout)'.*task 'core'",
    category=UnconsumedParameterWarning,
)

__all__ = [
    "BatchFeaturePlatformFerry",
    "Campaign",
    "CampaignFrontendData",
    "CassandraDfeWriter",
    "Connector",
    "CronFeaturePlatformFerry",
    "EventJoinLite",
    "Fetcher",
    "FrontendDataGen",
    "FrontendResultGenerator",
    "FrontendResultWriter",
    "Labeling",
    "LogTimeFileOrganizer",
    "MonitorTracker",
    "RawClientDay",
    "Rawlogconverter",
    "ResultAgg",
    "ResultAggLite",
    "ResultSender",
    "SparkConnectorRunner",
    "UserStats",
    "VirtualNodeGenerator",
]
