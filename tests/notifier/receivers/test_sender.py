"""The shared HTTP sender's bounds: a peer that never stops sending cannot hold a worker (the answer
is read until a total deadline or a size cap, counted in steps of an injected clock, not wall time)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.waiting import returns
from vigil.notifier.receivers.sender import HTTPSender


@pytest.fixture
def trickler() -> Iterator[tuple[str, list[int]]]:
    """An HTTP server that answers 200 with a chunked body that never ends (one small chunk at a
    time); `sent[0]` counts the chunks it got out."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    sent = [0]
    stop = threading.Event()

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            while not stop.is_set():
                try:
                    conn.sendall(b"1\r\nx\r\n")
                except OSError:
                    return
                sent[0] += 1
                stop.wait(0.01)

    t = threading.Thread(target=serve, name="test-trickler", daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}", sent
    stop.set()
    srv.close()
    t.join(10)


def test_endless_answer_is_cut_at_the_total_deadline(trickler: tuple[str, list[int]]) -> None:
    url, _ = trickler
    ticks = [0.0]

    def clock() -> float:  # each call is one step: the deadline is 20 steps away
        ticks[0] += 1.0
        return ticks[0]

    sender = HTTPSender("webhook[0]", None, timeout_s=20.0, clock=clock)
    resp = returns(lambda: sender.post(url, json_body=b"{}"), what="post to an endless answer")
    assert resp.status == 200
    assert resp.body and ticks[0] <= 22  # one clock step per chunk read: cut after ~20


def test_endless_answer_is_cut_at_the_size_cap(trickler: tuple[str, list[int]]) -> None:
    url, _ = trickler
    sender = HTTPSender("webhook[0]", None, timeout_s=30.0, max_response_bytes=50)
    resp = returns(lambda: sender.post(url, json_body=b"{}"), what="post to an endless answer")
    assert resp.body == b"x" * 50
