"""Fixtures for the receiver tests: a real threaded HTTP server on 127.0.0.1 that records what it
receives and answers as told, a notification context, and alerts."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest
import trustme

from vigil.notifier.alert import Alert
from vigil.notifier.integration import NotifyContext

NOW_MS = 1_700_000_000_000
EXTERNAL = "https://vigil.example.com"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode())


@dataclass
class Capture:
    """What the server got, and what it answers next (`status`, `body`; `hold` keeps a request
    waiting until set, to test timeouts without sleeping)."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    status: int = 200
    body: bytes = b"ok"
    hold: threading.Event | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    capture: Capture

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        cap = self.server.capture  # type: ignore[attr-defined]
        with cap.lock:
            cap.received.append(Received("POST", self.path, dict(self.headers.items()), body))
        if cap.hold is not None:
            cap.hold.wait(60)
        self.send_response(cap.status)
        self.send_header("Content-Length", str(len(cap.body)))
        self.end_headers()
        self.wfile.write(cap.body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def _serve(tls: ssl.SSLContext | None) -> Iterator[Capture]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    cap = Capture()
    server.capture = cap  # type: ignore[attr-defined]
    scheme = "https" if tls is not None else "http"
    cap.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="test-capture", daemon=True)
    thread.start()
    try:
        yield cap
    finally:
        if cap.hold is not None:
            cap.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def capture() -> Iterator[Capture]:
    yield from _serve(None)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def https_capture(ca: trustme.CA) -> Iterator[Capture]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    yield from _serve(ctx)


def ctx(receiver: str = "ops", group_labels: dict[str, str] | None = None, **kw: Any) -> NotifyContext:
    gl = {"alertname": "BruteForce"} if group_labels is None else group_labels
    return NotifyContext(
        receiver=receiver,
        group_key='{}:{alertname="BruteForce"}',
        group_labels=gl,
        now_ms=kw.pop("now_ms", NOW_MS),
        external_url=kw.pop("external_url", EXTERNAL),
        **kw,
    )


def firing(instance: str = "bastion-1", **annotations: str) -> Alert:
    return Alert(
        labels={"alertname": "BruteForce", "instance": instance, "job": "node", "severity": "page"},
        annotations=annotations or {"summary": f"SSH brute force on {instance}"},
        starts_at_ms=NOW_MS - 600_000,
        generator_url="http://prom:9090/graph?g0.expr=rate%28ssh_failed_total%5B5m%5D%29+%3E+1&g0.tab=1",
    )


def resolved(instance: str = "bastion-2") -> Alert:
    a = firing(instance)
    return Alert(a.labels, a.annotations, a.starts_at_ms, NOW_MS - 1_000, a.generator_url)
