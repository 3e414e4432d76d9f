"""Probes stay within their deadline and bounded memory against servers that trickle or flood.

No clock is read here: a trickling server would go on forever, so a probe that returns at all (under a
generous hang guard) with a timeout error stopped at its deadline; how many bytes the server got to
send before the probe hung up bounds how long it kept reading (one byte per 50 ms sleep, so fewer,
never more, on a loaded machine).
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests.probe.test_probers import probe, value
from tests.waiting import returns

Handler = Callable[[socket.socket, threading.Event], None]


@contextmanager
def serve(handler: Handler) -> Iterator[int]:
    """A loopback TCP server running `handler(conn, stop)` for each connection; yields its port."""
    stop = threading.Event()
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.05)

    def run(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # OSError: the probe hung up
            handler(conn, stop)

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=run, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        srv.close()


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise OSError("closed")
        data += chunk


def _trickle(
    conn: socket.socket, stop: threading.Event, data: bytes = b"x", sent: list[int] | None = None
) -> None:
    """Sends `data` every 50 ms until the peer hangs up or the server stops; counts sends in `sent`."""
    while not stop.is_set():
        conn.sendall(data)
        if sent is not None:
            sent[0] += 1
        time.sleep(0.05)


# A 500 ms probe timeout lets about 10 trickled sends through; 100 would be 5 s of reading.
MAX_TRICKLES = 100


def _respond(body: bytes, *headers: str) -> Handler:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        _read_request(conn)
        head = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", "Connection: close", *headers]
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    return handler


# --- HTTP -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "framing", ["Transfer-Encoding: chunked", "Connection: close", "Content-Length: 100000"]
)
def test_http_trickled_body_ends_at_the_deadline(framing: str) -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        _read_request(conn)
        conn.sendall(f"HTTP/1.1 200 OK\r\n{framing}\r\n\r\n".encode())
        _trickle(conn, stop, b"1\r\nx\r\n" if "chunked" in framing else b"x")

    with serve(handler) as port:
        r = returns(lambda: probe(module="http", target=f"http://127.0.0.1:{port}/", timeout="500ms"))
    assert not r.success and "timeout" in r.error, r.error
    assert value(r, "probe_success") == 0
    assert value(r, "probe_http_status_code") == 200  # the response's families are kept, as blackbox
    assert 0 < value(r, "probe_http_uncompressed_body_length") < MAX_TRICKLES


def test_http_trickled_headers_end_at_the_deadline() -> None:
    sent = [0]

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        _trickle(conn, stop, sent=sent)

    with serve(handler) as port:
        r = returns(lambda: probe(module="http", target=f"http://127.0.0.1:{port}/", timeout="500ms"))
    assert not r.success and "timeout" in r.error, r.error
    assert 0 < sent[0] < MAX_TRICKLES, sent


def test_http_redirect_bodies_are_not_read() -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nConnection: close\r\n\r\n")
        _trickle(conn, stop)

    # The trickled bodies never end, so reading one would run into the (long) timeout and fail with
    # "timeout" instead of the answers checked here.
    with serve(handler) as port:
        target = f"http://127.0.0.1:{port}/"
        r = returns(lambda: probe(module="http", target=target, interval="30s", timeout="20s"))
        # Every hop redirects again: stopped after 10, the trickles never read (as Go's client).
        assert not r.success and "redirects" in r.error, r.error
        assert value(r, "probe_http_redirects") == 10
        no_follow = {"follow_redirects": False, "valid_status_codes": [302]}
        r = returns(
            lambda: probe(module="http", target=target, interval="30s", timeout="20s", http=no_follow)
        )
        assert r.success, r.error
        assert value(r, "probe_http_uncompressed_body_length") == 0  # as blackbox: closed unread


def test_http_body_size_limit() -> None:
    with serve(_respond(b"a" * 2048)) as port:
        target = f"http://127.0.0.1:{port}/"
        r = probe(module="http", target=target, http={"body_size_limit": "1KiB"})
        assert not r.success and "body_size_limit" in r.error, r.error
        assert value(r, "probe_http_uncompressed_body_length") == 1024  # what was read, as blackbox
        assert value(r, "probe_http_status_code") == 200
        assert value(r, "probe_failed_due_to_regex") == 0
        r = probe(
            module="http",
            target=target,
            http={"body_size_limit": "1KiB", "fail_if_body_not_matches_regexp": ["a"]},
        )
        assert not r.success and "body_size_limit" in r.error
        assert value(r, "probe_failed_due_to_regex") == 1  # blackbox's regexps fail on an unread body
        r = probe(module="http", target=target, http={"body_size_limit": 2048})  # exactly: passes
        assert r.success, r.error
        assert value(r, "probe_http_uncompressed_body_length") == 2048
        r = probe(module="http", target=target)  # the default, 10MiB
        assert r.success, r.error


def test_http_body_size_limit_counts_decoded_bytes_and_stops_decoding() -> None:
    bomb = gzip.compress(b"\0" * (64 << 20), 9)  # 64 MiB from about 64 KiB
    assert len(bomb) < 100_000
    with serve(_respond(bomb, "Content-Encoding: gzip")) as port:
        tracemalloc.start()
        try:
            r = probe(module="http", target=f"http://127.0.0.1:{port}/", http={"body_size_limit": "1MiB"})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert not r.success and "body_size_limit" in r.error, r.error
    assert value(r, "probe_http_uncompressed_body_length") == 1 << 20
    assert peak < 8 << 20, peak  # never the whole 64 MiB, nor one 64 KiB read's worth decoded at once


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),  # zlib-wrapped, as the RFC says
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw, as some servers send
        ("gzip, gzip", lambda b: gzip.compress(gzip.compress(b))),
        ("identity", lambda b: b),
    ],
)
def test_http_compressed_bodies_are_decoded(encoding: str, encode: Callable[[bytes], bytes]) -> None:
    text = b"status: ok\n" * 20_000
    with serve(_respond(encode(text), f"Content-Encoding: {encoding}")) as port:
        r = probe(
            module="http",
            target=f"http://127.0.0.1:{port}/",
            http={"fail_if_body_not_matches_regexp": ["status: ok"]},
        )
    assert r.success, r.error
    assert value(r, "probe_http_uncompressed_body_length") == len(text)


def test_http_corrupt_gzip_fails_with_a_reason() -> None:
    with serve(_respond(b"not gzip at all", "Content-Encoding: gzip")) as port:
        r = probe(module="http", target=f"http://127.0.0.1:{port}/")
    assert not r.success and "decoding the body" in r.error, r.error


# --- TCP ------------------------------------------------------------------------------------------


def test_tcp_expect_flood_without_newline_hits_the_line_cap() -> None:
    def handler(conn: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            conn.sendall(b"x" * 65536)

    # The flood never ends: returning with the line-cap error (not a timeout) is the cap working.
    with serve(handler) as port:
        target = f"127.0.0.1:{port}"
        r = returns(lambda: probe(module="tcp", target=target, tcp={"query_response": [{"expect": "^OK"}]}))
    assert not r.success and "line longer than 65536 bytes" in r.error, r.error
    assert value(r, "probe_failed_due_to_regex") == 0  # a read error, as blackbox's scanner reports it


@pytest.mark.parametrize("data", [b"x", b"nope\n"], ids=["no-newline", "unmatched-lines"])
def test_tcp_expect_trickle_ends_at_the_deadline(data: bytes) -> None:
    sent = [0]

    def handler(conn: socket.socket, stop: threading.Event) -> None:
        _trickle(conn, stop, data, sent)

    with serve(handler) as port:
        target = f"127.0.0.1:{port}"
        r = returns(
            lambda: probe(
                module="tcp", target=target, timeout="500ms", tcp={"query_response": [{"expect": "^OK"}]}
            )
        )
    assert not r.success and "timeout" in r.error, r.error
    assert 0 < sent[0] < MAX_TRICKLES, sent
