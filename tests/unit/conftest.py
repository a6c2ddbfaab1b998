"""The unit tier: plain logic, no sockets and no processes.

Every test here runs with network sockets and new processes refused, so a test that
reaches for a server or a JVM fails at once instead of making the tier slow.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.tiers import mark_tier


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_tier(items, Path(__file__).parent, "unit")


class IsolationError(AssertionError):
    """A unit test tried to open a network socket or start a process."""


def _refuse(what: str):
    def refuse(*args, **kwargs):
        raise IsolationError(f"unit tests do not {what}; move the test to tests/service or tests/integration")

    return refuse


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect, real_bind = socket.socket.connect, socket.socket.bind

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _refuse("open network connections")()
        return real_connect(self, address)

    def bind(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _refuse("listen on network ports")()
        return real_bind(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "bind", bind)
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("start processes"))
