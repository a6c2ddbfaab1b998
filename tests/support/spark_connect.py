"""A Spark Connect server of scripts/spark-connect.sh on a free loopback port, for the tests that need one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.support import REPO
from tests.support.pipeline import free_port

SCRIPT = str(REPO / "scripts" / "spark-connect.sh")


@dataclass(frozen=True)
class ConnectServer:
    """A started server: its sc:// URL, and `stop()` to end it early (a second stop does nothing)."""

    url: str
    env: dict[str, str]

    def stop(self) -> None:
        subprocess.run([SCRIPT, "stop"], env=self.env, capture_output=True, timeout=60)


@contextmanager
def spark_connect_server(folder: Path, **settings: str) -> Iterator[ConnectServer]:
    """Start a server (pid file and log in `folder`), yield it, stop it on exit.

    `settings` are the script's SPARK_CONNECT_* variables, e.g. SPARK_CONNECT_MASTER."""
    port = free_port()
    env = {
        **os.environ,
        "SPARK_CONNECT_PORT": str(port),
        "SPARK_CONNECT_WAIT": "180",
        "SPARK_CONNECT_DIR": str(folder),
        "FRAUDBATCH_VENV": str(Path(sys.executable).parent.parent),
        **settings,
    }
    server = ConnectServer(f"sc://127.0.0.1:{port}", env)
    try:
        started = subprocess.run([SCRIPT, "start"], env=env, capture_output=True, text=True, timeout=240)
        assert started.returncode == 0, started.stderr
        yield server
    finally:
        server.stop()


def resident_session_config(var: Path, url: str) -> Path:
    """config/dcluster-config.yaml with the resident session at `url` on for dev jobs too, and dev
    jobs on on-demand capacity (the session's class rule), written into var."""
    config = yaml.safe_load((REPO / "config" / "dcluster-config.yaml").read_text(encoding="utf-8"))
    session = config["resident_session"]
    session.update(enabled=True, url=url, probe_timeout_s=5, classes=[*session["classes"], "dev"])
    config["task_classes"]["dev"]["spot_share"] = 0.0
    path = var / "dcluster-config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path
