"""The unit tier refuses what would make it slow or flaky: network sockets and new processes."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.unit.conftest import IsolationError


def test_a_network_connection_is_refused() -> None:
    with socket.socket() as s, pytest.raises(IsolationError, match="open network connections"):
        s.connect(("127.0.0.1", 9))


def test_listening_on_a_port_is_refused() -> None:
    with socket.socket() as s, pytest.raises(IsolationError, match="listen on network ports"):
        s.bind(("127.0.0.1", 0))


def test_starting_a_process_is_refused() -> None:
    with pytest.raises(IsolationError, match="start processes"):
        subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_local_socket_pairs_still_work() -> None:
    # asyncio and multiprocessing helpers use AF_UNIX pairs; they never leave the process.
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"x")
        assert b.recv(1) == b"x"
