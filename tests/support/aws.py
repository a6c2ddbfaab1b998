"""Fakes around EC2 and the instance metadata service for the AWS capacity tests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from dcluster.ec2 import InterruptionWatcher


class Ec2Wrapper:
    """Passes every call through to the real moto client unless a subclass overrides it."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def client_error(code: str, message: str, operation: str) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


class NoSpotCapacity(Ec2Wrapper):
    """EC2 with no spot capacity: spot launches fail with InsufficientInstanceCapacity, on-demand works."""

    def __init__(self, real: Any, *, on_demand_too: bool = False) -> None:
        super().__init__(real)
        self.on_demand_too = on_demand_too

    def run_instances(self, **kwargs: Any) -> Any:
        if "InstanceMarketOptions" in kwargs or self.on_demand_too:
            raise client_error(
                "InsufficientInstanceCapacity",
                "We currently do not have sufficient r5.2xlarge capacity.",
                "RunInstances",
            )
        return self.real.run_instances(**kwargs)


class FakeImds:
    """A tiny IMDSv2 on loopback: session tokens, then scripted answers per metadata path."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, str | None]] = []
        self.answers: dict[str, list[tuple[int, str]]] = {}
        self.tokens = 0
        self.valid_token: str | None = None
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                imds.log.append(("PUT", self.path, ttl))
                if self.path != InterruptionWatcher.TOKEN_PATH or not ttl:
                    self._send(400, "")
                    return
                imds.tokens += 1
                imds.valid_token = f"token-{imds.tokens}"
                self._send(200, imds.valid_token)

            def do_GET(self) -> None:
                token = self.headers.get("X-aws-ec2-metadata-token")
                imds.log.append(("GET", self.path, token))
                if token is None or token != imds.valid_token:
                    self._send(401, "")
                    return
                queue = imds.answers.get(self.path) or [(404, "")]
                self._send(*(queue.pop(0) if len(queue) > 1 else queue[0]))

            def _send(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return None  # keep the test output free of per-request lines

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeImds:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
