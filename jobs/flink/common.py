"""What every Flink job shares: the batch-mode environment and the entry point's error handling."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from jobs.common import JobContext, client_day_main, one_line

if TYPE_CHECKING:
    from pyflink.datastream import StreamExecutionEnvironment

PARALLELISM_ENV = "FRAUDBATCH_FLINK_PARALLELISM"


def batch_env(app: str) -> StreamExecutionEnvironment:
    """A local Flink environment in BATCH mode whose Python workers use this interpreter."""
    from pyflink.common import Configuration
    from pyflink.datastream import RuntimeExecutionMode, StreamExecutionEnvironment

    conf = Configuration()
    # Workers are started by the JVM; without this they would run whatever `python` is on PATH.
    conf.set_string("python.executable", sys.executable)
    conf.set_string("pipeline.name", app)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    env.set_runtime_mode(RuntimeExecutionMode.BATCH)
    env.set_parallelism(int(os.environ.get(PARALLELISM_ENV, "2")))
    return env


def worker_error(exc: BaseException) -> str:
    """The Python error a Flink worker raised, dug out of the Java exception that carries it.

    A failure inside a Python function reaches the client as a Py4JJavaError whose text holds
    the worker's traceback; its first unindented line after "Traceback (most recent call last):"
    is the exception. Other errors give jobs.common.one_line's answer.
    """
    lines = str(exc).splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.rstrip().endswith("Traceback (most recent call last):")]
    if starts:
        for ln in lines[starts[-1] + 1:]:
            if ln.strip() and not ln[0].isspace():
                return ln.strip()
    return one_line(exc)


def flink_main(app: str, description: str, body: Callable[[JobContext], str], argv: list[str] | None) -> int:
    """client_day_main for a Flink job: a worker's Python error is the cause shown."""
    return client_day_main(app, description, body, argv, describe=worker_error)
