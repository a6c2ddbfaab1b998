"""What DCluster and the jobs it runs agree on: environment variable names and the job tag.

Plain constants only. The service (dcluster/) sets these for every run and the jobs (jobs/)
read them; neither imports the other, so the service never imports a job and a job never
imports the service. It lives in dcluster_client, the package on both sides of the API;
importing it does not load the client (the package's names load on first use), so it needs
nothing beyond the standard library. docs/dcluster.md, "What a job may use", describes each variable.
"""

from __future__ import annotations

# Identity of the run.
JOB_ID_ENV = "DCLUSTER_JOB_ID"
NAMESPACE_ENV = "DCLUSTER_NAMESPACE"  # s-{env}-{client}-{jobId}
ATTEMPT_ENV = "DCLUSTER_ATTEMPT"  # run number, counting reschedules
CAPACITY_TYPE_ENV = "DCLUSTER_CAPACITY_TYPE"  # spot | on_demand

# Files of the run, all optional for the job to use.
HEARTBEAT_FILE_ENV = "DCLUSTER_HEARTBEAT_FILE"  # once touched, must stay fresher than heartbeat_timeout_s
SPOT_NOTICE_FILE_ENV = "DCLUSTER_SPOT_NOTICE_FILE"  # appears with the instance-action JSON before a reclaim
CHECKPOINT_DIR_ENV = "DCLUSTER_CHECKPOINT_DIR"  # kept across the runs of a job, removed when it ends
EXIT_FILE_ENV = "DCLUSTER_EXIT_FILE"  # written by the service's wrapper, not by the job

# EC2 capacity of the run (aws provider only).
INSTANCE_IDS_ENV = "DCLUSTER_INSTANCE_IDS"  # comma-separated
AWS_REGION_ENV = "DCLUSTER_AWS_REGION"

# Spark session wiring.
SPARK_MASTER_SET_ENV = "SPARK_MASTER_SET"  # "1": spark-submit chose the master, the job must not
SPARK_REMOTE_ENV = "FRAUDBATCH_SPARK_REMOTE"  # sc://host:port of the resident Spark Connect session

# Ends a Flink job's name when DCluster runs it; the standalone provider finds and cancels a
# terminated job's work on the Flink session cluster by it.
JOB_TAG = "[dcluster:{job_id}]"
