"""Connection guards (vigil.web.connections) on the real server stack: the app `vigil server` builds,
under uvicorn with the options `run_server` gives it, on a loopback port, driven by raw sockets.

Slow clients are simulated in steps (one byte per step); assertions count steps and bytes, never time.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.conftest import free_port
from vigil.cmd.server import (
    RESERVED_FILES,
    build_app,
    ensure_open_files,
    http_options,
    new_registry,
    open_events,
)
from vigil.config import ConfigError, config_from_dict, config_from_yaml
from vigil.tsdb.db import DB, Options

STEP_S = 0.25  # pause between the bytes of a slow client
HEALTHY = b"GET /-/healthy HTTP/1.1\r\nHost: vigil\r\n\r\n"


class Served:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return s

    def metric(self, line_prefix: str) -> float:
        text = httpx.get(self.url + "/metrics", timeout=10).text
        return sum(float(x.split()[-1]) for x in text.splitlines() if x.startswith(line_prefix))


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start the server with the given `server:` settings; stopped when the test ends."""
    running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**server: Any) -> Served:
        cfg = config_from_dict({"server": server, "storage": {"path": str(tmp_path / "data")}})
        registry = new_registry()
        db = DB(cfg.storage.path, Options(fsync=False), registry=registry)
        app = build_app(cfg, db, registry, open_events(cfg))
        port = free_port()
        options = http_options(cfg, registry)
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **options)
        srv = uvicorn.Server(config)
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        running.append((srv, thread))
        deadline = time.monotonic() + 20
        while not srv.started:
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.02)
        return Served(port)

    yield start
    for srv, thread in running:
        srv.should_exit = True
        thread.join(timeout=30)


def read_response(s: socket.socket) -> bytes:
    """One whole response (headers and Content-Length body), or what came before EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    fields = (h.partition(b":") for h in head.split(b"\r\n"))
    length = next((int(v) for k, _, v in fields if k.lower() == b"content-length"), 0)
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def closed_by_server(s: socket.socket) -> bool:
    """True once the server has closed `s` (after whatever it wrote is read)."""
    s.setblocking(False)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return True
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        s.setblocking(True)


def trickle(s: socket.socket, payload: bytes, served: Served) -> tuple[int, bytes, int]:
    """Send `payload` one byte per step until the server answers or closes, serving a /-/healthy
    request on another connection at every step. Returns (bytes sent, what the server wrote, healthy
    requests that got 200)."""
    got, sent, healthy = b"", 0, 0
    with httpx.Client(base_url=served.url, timeout=10) as other:
        for byte in payload:
            try:
                s.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1
            healthy += other.get("/-/healthy").status_code == 200
            time.sleep(STEP_S)
            s.setblocking(False)
            try:
                chunk = s.recv(65536)
                got += chunk
                if not chunk or got:
                    break
            except BlockingIOError:
                pass
            except ConnectionResetError:
                break
            finally:
                s.setblocking(True)
    s.settimeout(10)
    with contextlib.suppress(ConnectionResetError, TimeoutError):
        got += read_response(s)
    return sent, got, healthy


@pytest.mark.parametrize(
    "before",
    [b"", HEALTHY],
    ids=["first request", "after a request on the same connection"],
)
@pytest.mark.parametrize(
    "payload",
    [HEALTHY, b"\r\n" * 40],
    ids=["header bytes", "blank lines before the request line"],
)
def test_slowloris_is_cut_after_the_header_timeout(
    serve: Callable[..., Served], before: bytes, payload: bytes
) -> None:
    served = serve(read_header_timeout="1s")
    with served.connect() as s:
        if before:
            s.sendall(before)
            assert read_response(s).startswith(b"HTTP/1.1 200")
        sent, got, healthy = trickle(s, payload, served)
        assert got.startswith(b"HTTP/1.1 408"), got
        assert b"server.read_header_timeout" in got
        assert sent < len(payload)  # cut before the client finished (1 s is ~4 steps)
        assert healthy == sent  # everyone else was served meanwhile
        assert closed_by_server(s)
    assert served.metric('vigil_http_connections_closed_total{reason="header_timeout"}') == 1


def test_a_silent_connection_is_closed(serve: Callable[..., Served]) -> None:
    served = serve(read_header_timeout="1s")
    with served.connect() as s:
        assert s.recv(100) == b""  # closed (recv would time out after 10 s if it stayed open)


@pytest.mark.parametrize(
    "head",
    [
        b"POST /api/v1/write HTTP/1.1\r\nHost: vigil\r\nContent-Type: application/x-protobuf\r\n"
        b"Content-Encoding: snappy\r\nContent-Length: 200\r\n\r\n",
        b"POST /api/v1/events HTTP/1.1\r\nHost: vigil\r\nContent-Length: 200\r\n\r\n",
        b"POST /api/v1/query HTTP/1.1\r\nHost: vigil\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n",
        b"POST /api/v1/write HTTP/1.1\r\nHost: vigil\r\nTransfer-Encoding: chunked\r\n\r\n",
    ],
    ids=["remote write", "events", "query form", "chunked"],
)
def test_a_trickling_body_is_cut_after_the_read_timeout(serve: Callable[..., Served], head: bytes) -> None:
    served = serve(read_timeout="1s")
    with served.connect() as s:
        s.sendall(head)
        body = b"1\r\nx\r\n" * 40 if b"chunked" in head else b"x" * 200
        sent, got, healthy = trickle(s, body, served)
        assert got.startswith(b"HTTP/1.1 408"), got
        assert b"server.read_timeout" in got
        assert got.count(b"HTTP/1.1") == 1  # the handler, seeing the disconnect, wrote nothing after it
        assert sent < len(body) and healthy == sent
        assert closed_by_server(s)
    assert served.metric('vigil_http_connections_closed_total{reason="body_timeout"}') == 1


def test_a_request_answered_before_its_body_ended_still_idles_out(serve: Callable[..., Served]) -> None:
    """A 401 goes out before the body is read; the body's bytes then stopped uvicorn's idle timer,
    so the connection stayed open for good."""
    served = serve(keep_alive_timeout="1s", auth={"write_tokens": ["secret"]})
    with served.connect() as s:
        s.sendall(b"POST /api/v1/write HTTP/1.1\r\nHost: vigil\r\nContent-Length: 10\r\n\r\n")
        assert read_response(s).startswith(b"HTTP/1.1 401")
        s.sendall(b"0123456789")
        assert s.recv(100) == b""  # closed after the idle timeout, not left open


def test_connections_beyond_the_cap_get_503_and_the_others_are_served(serve: Callable[..., Served]) -> None:
    served = serve(max_connections=3)
    held = [served.connect() for _ in range(3)]
    try:
        for s in held:
            s.sendall(HEALTHY)
            assert read_response(s).startswith(b"HTTP/1.1 200")
        with served.connect() as extra:
            extra.sendall(HEALTHY)
            answer = read_response(extra)
            assert answer.startswith(b"HTTP/1.1 503"), answer
            assert b"server.max_connections is 3" in answer
            assert extra.recv(100) == b""  # and closed
        for s in held:  # the connections already open go on being served
            s.sendall(HEALTHY)
            assert read_response(s).startswith(b"HTTP/1.1 200")
        held.pop().close()
        deadline = time.monotonic() + 10  # the server notices the close on its next loop turn
        while True:
            with served.connect() as again:
                again.sendall(HEALTHY)
                if read_response(again).startswith(b"HTTP/1.1 200"):
                    break
            assert time.monotonic() < deadline, "a freed slot was not reused"
            time.sleep(0.05)
        refused = served.metric('vigil_http_connections_closed_total{reason="too_many_connections"}')
        assert refused >= 1  # more if a retry above came before the server saw the close
    finally:
        for s in held:
            s.close()


def test_idle_keep_alive_connections_are_closed_after_the_configured_timeout(
    serve: Callable[..., Served],
) -> None:
    served = serve(keep_alive_timeout="1s")
    with served.connect() as s:
        s.sendall(HEALTHY)
        assert read_response(s).startswith(b"HTTP/1.1 200")
        assert s.recv(100) == b""


def test_by_default_a_connection_idle_for_a_batch_deadline_stays_open(serve: Callable[..., Served]) -> None:
    """Regression: uvicorn's 5 s keep-alive closed a connection just as a sender with a 5 s batch
    deadline reused it. The default (2m) keeps it well past one such deadline (6 s here)."""
    served = serve()
    with served.connect() as s:
        s.sendall(HEALTHY)
        assert read_response(s).startswith(b"HTTP/1.1 200")
        time.sleep(6)
        assert not closed_by_server(s)
        s.sendall(HEALTHY)
        assert read_response(s).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "server:\n  read_header_timeout: 0s\n",
            'vigil.yml: server.read_header_timeout: expected a duration greater than zero like 15d, got "0s"',
        ),
        (
            "server:\n  max_connections: 0\n",
            "vigil.yml: server.max_connections: expected an integer >= 1, got 0",
        ),
        (
            "server:\n  keep_alive_timeout: 5\n",
            "vigil.yml: server.keep_alive_timeout: expected a duration like 15d, got 5"
            " (add a unit, e.g. 5s or 5m)",
        ),
    ],
)
def test_bad_connection_settings_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_yaml(text, "vigil.yml")
    assert str(exc.value) == message


def test_the_open_file_limit_is_raised_to_fit_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    monkeypatch.setattr(resource, "setrlimit", lambda _, limits: calls.append(limits))
    ensure_open_files(2000 + RESERVED_FILES, 2000)
    assert calls == [(2000 + RESERVED_FILES, 4096)]
    calls.clear()
    ensure_open_files(512 + RESERVED_FILES, 512)  # fits already: left alone
    assert calls == []


def test_a_cap_beyond_the_hard_open_file_limit_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    cfg = config_from_dict({"server": {"max_connections": 10_000}})
    with pytest.raises(ConfigError) as exc:
        http_options(cfg, None)
    assert str(exc.value) == (
        f"server.max_connections: expected at most {4096 - RESERVED_FILES} "
        "(the open-file limit, ulimit -Hn, is 4096), got 10000"
    )
