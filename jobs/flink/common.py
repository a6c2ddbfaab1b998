"""What every Flink job shares: the batch-mode environment and the entry point's error handling."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dcluster_client.contract import JOB_ID_ENV, JOB_TAG
from jobs.common import JobContext, client_day_main, one_line

if TYPE_CHECKING:
    from pyflink.datastream import StreamExecutionEnvironment

PARALLELISM_ENV = "FRAUDBATCH_FLINK_PARALLELISM"
ROOT = Path(__file__).resolve().parents[2]  # the checkout: jobs/ and fraudcore/ for the Python workers


def batch_env(app: str) -> StreamExecutionEnvironment:
    """A local Flink environment in BATCH mode whose Python workers use this interpreter."""
    from pyflink.common import Configuration
    from pyflink.datastream import RuntimeExecutionMode, StreamExecutionEnvironment

    conf = Configuration()
    # Workers are started by the JVM; without this they would run whatever `python` is on PATH.
    conf.set_string("python.executable", sys.executable)
    # On a session cluster the workers are the TaskManager's children, not this process's: name
    # the checkout so they import the job's modules (the same path on every host, docs/adr/0007).
    conf.set_string("python.pythonpath", str(ROOT))
    conf.set_string("pipeline.name", app)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_runtime_mode(RuntimeExecutionMode.BATCH)
    env.set_parallelism(int(os.environ.get(PARALLELISM_ENV, "2")))
    return env


def job_name(*parts: str) -> str:
    """The Flink job's name: its parts, then JOB_TAG with the DCluster job id when DCluster runs it."""
    job_id = os.environ.get(JOB_ID_ENV)
    return " ".join((*parts, JOB_TAG.format(job_id=job_id)) if job_id else parts)


def worker_error(exc: BaseException) -> str:
    """The Python error a Flink worker raised, dug out of the Java exception that carries it.

    A failure inside a Python function reaches the client as a Py4JJavaError whose text holds
    the worker's traceback; its first unindented line after "Traceback (most recent call last):"
    is the exception. Other errors give jobs.common.one_line's answer.
    """
    lines = str(exc).splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.rstrip().endswith("Traceback (most recent call last):")]
    if starts:
        for ln in lines[starts[-1] + 1 :]:
            if ln.strip() and not ln[0].isspace():
                return ln.strip()
    return one_line(exc)


def flink_main(app: str, description: str, body: Callable[[JobContext], str], argv: list[str] | None) -> int:
    """client_day_main for a Flink job: a worker's Python error is the cause shown."""
    return client_day_main(app, description, body, argv, describe=worker_error)
