"""DCluster: the REST service that runs Spark/Flink jobs for the batch platform."""

__version__ = "0.1.0"
