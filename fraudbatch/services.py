"""Start, check and stop the embedded services: luigid, DCluster and the Feature Platform.

Each service runs as a child process on 127.0.0.1 with its pid file and log under var/.
A service that already answers on its port is left alone (and not stopped afterwards).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Service:
    """How to run one service and how to tell that it is up."""

    name: str
    argv: list[str]
    health_url: str


@dataclass(frozen=True)
class Ports:
    luigid: int = 8082
    dcluster: int = 8091
    fp: int = 8092


def service_specs(var_dir: Path, ports: Ports = Ports()) -> dict[str, Service]:
    """The three embedded services, with their state kept under var_dir."""
    var_dir = Path(var_dir)
    return {
        "luigid": Service(
            "luigid",
            [
                str(BIN / "luigid"),
                "--address",
                "127.0.0.1",
                "--port",
                str(ports.luigid),
                "--state-path",
                str(var_dir / "luigi" / "luigi-state.pickle"),
            ],
            f"http://127.0.0.1:{ports.luigid}/",
        ),
        "dcluster": Service(
            "dcluster",
            [
                str(BIN / "dcluster-server"),
                "--host",
                "127.0.0.1",
                "--port",
                str(ports.dcluster),
                "--state-dir",
                str(var_dir / "dcluster"),
            ],
            f"http://127.0.0.1:{ports.dcluster}/cluster/health",
        ),
        "fp": Service(
            "fp",
            [
                str(BIN / "fp-server"),
                "--host",
                "127.0.0.1",
                "--port",
                str(ports.fp),
                "--db",
                str(var_dir / "fp" / "features.sqlite"),
            ],
            f"http://127.0.0.1:{ports.fp}/fp/v1/health",
        ),
    }


def is_up(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (OSError, ValueError):
        return False


def _pidfile(var_dir: Path, name: str) -> Path:
    return Path(var_dir) / "run" / f"{name}.pid"


def start(
    services: Iterable[Service],
    var_dir: Path,
    env: dict[str, str] | None = None,
    wait_s: float = 60.0,
    log=print,
) -> list[str]:
    """Start every service that is not already up; return the names this call started."""
    var_dir = Path(var_dir)
    (var_dir / "run").mkdir(parents=True, exist_ok=True)
    (var_dir / "log").mkdir(parents=True, exist_ok=True)
    for sub in ("luigi", "dcluster", "fp"):
        (var_dir / sub).mkdir(parents=True, exist_ok=True)
    started: list[str] = []
    procs: dict[str, subprocess.Popen] = {}
    for svc in services:
        if is_up(svc.health_url):
            log(f"{svc.name}: already running ({svc.health_url})")
            continue
        logf = open(var_dir / "log" / f"{svc.name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            svc.argv,
            stdout=logf,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        _pidfile(var_dir, svc.name).write_text(str(proc.pid), encoding="utf-8")
        procs[svc.name] = proc
        started.append(svc.name)
    try:
        _wait_until_up([s for s in services if s.name in procs], procs, var_dir, wait_s, log)
    except RuntimeError:
        stop(started, var_dir, log=log)  # leave nothing half-started behind
        raise
    return started


def _wait_until_up(
    services: list[Service], procs: dict[str, subprocess.Popen], var_dir: Path, wait_s: float, log
) -> None:
    deadline = time.monotonic() + wait_s
    for svc in services:
        logfile = var_dir / "log" / f"{svc.name}.log"
        while not is_up(svc.health_url):
            if procs[svc.name].poll() is not None:
                raise RuntimeError(
                    f"{svc.name} exited with code {procs[svc.name].returncode} at start; see {logfile}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{svc.name} did not answer {svc.health_url} within {wait_s:.0f}s; see {logfile}"
                )
            time.sleep(0.3)
        log(f"{svc.name}: started, pid {procs[svc.name].pid} ({svc.health_url})")


def stop(names: Iterable[str], var_dir: Path, grace_s: float = 20.0, log=print) -> None:
    """Stop the named services started earlier (SIGTERM, then SIGKILL after the grace period)."""
    for name in names:
        pf = _pidfile(var_dir, name)
        if not pf.is_file():
            continue
        pid = int(pf.read_text(encoding="utf-8").strip())
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pf.unlink(missing_ok=True)
            continue
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
        pf.unlink(missing_ok=True)
        log(f"{name}: stopped")


def _alive(pid: int) -> bool:
    try:
        # Reap our own child if it already exited, so it does not linger as a zombie.
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def status(services: Iterable[Service]) -> dict[str, bool]:
    return {svc.name: is_up(svc.health_url) for svc in services}
