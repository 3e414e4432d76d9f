"""The event shipper: NDJSON batches through a durable queue, retried, surviving a restart.

The receiver here is a scripted HTTP server (to force 503s); the end-to-end path into Vigil's real
events API is covered by tests/system/test_security_e2e.py."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cramjam
import pytest
from prometheus_client import CollectorRegistry

from tests.waiting import wait_until
from vigil.model.event import Event
from vigil.ship.events import EventShipper, events_url


class EventReceiver:
    def __init__(self, script: list[int] | None = None) -> None:
        self.script = list(script or [])
        self.events: list[Event] = []
        self.headers: list[dict[str, str]] = []
        self.sizes: list[int] = []  # events per accepted request
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.headers.append(dict(self.headers.items()))
                status = outer.script.pop(0) if outer.script else 200
                if status == 200:
                    text = bytes(cramjam.snappy.decompress_raw(body)).decode()
                    outer.events += [Event.from_json(line) for line in text.splitlines()]
                    outer.sizes.append(len(text.splitlines()))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/events"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver() -> Iterator[EventReceiver]:
    r = EventReceiver(script=[503])
    yield r
    r.close()


NOW_MS = int(time.time() * 1000)


def events(n: int, start: int = 0) -> list[Event]:
    return [
        Event(
            NOW_MS + i,
            "auth",
            f"attempt {i}",
            {"user": "root", "n": i},
            {"instance": "h"},
            f"id{i}",
        )
        for i in range(start, start + n)
    ]


def test_events_url() -> None:
    assert events_url("http://127.0.0.1:9400/api/v1/write") == "http://127.0.0.1:9400/api/v1/events"
    assert events_url("https://vigil.example:443/") == "https://vigil.example:443/api/v1/events"


def test_batches_retries_and_order(tmp_path: Path, receiver: EventReceiver) -> None:
    registry = CollectorRegistry()
    shipper = EventShipper(
        tmp_path / "q",
        receiver.url,
        token="t0k",
        max_events_per_send=500,
        registry=registry,
        min_backoff_s=0.01,
    )
    shipper.start()
    try:
        shipper.send(events(1200))
        assert shipper.flush(60)
        assert registry.get_sample_value("vigil_agent_events_ship_events_total") == 1200
        assert registry.get_sample_value("vigil_agent_events_ship_retries_total") == 1
    finally:
        shipper.close()
    assert [e.id for e in receiver.events] == [f"id{i}" for i in range(1200)]
    assert receiver.events[3].fields == {"user": "root", "n": 3}
    assert receiver.headers[0]["Authorization"] == "Bearer t0k"
    assert receiver.headers[0]["Content-Type"] == "application/x-ndjson"
    assert len(receiver.headers) == 4  # one 503, then three payloads of at most 500 events


def test_queued_events_survive_a_restart(tmp_path: Path) -> None:
    # Nothing listens on this port: the first shipper can only queue.
    dead = EventReceiver()
    url = dead.url
    dead.close()
    first = EventShipper(tmp_path / "q", url, min_backoff_s=0.01, max_backoff_s=0.05)
    first.send(events(10))
    first.close()
    late = EventReceiver()
    try:
        second = EventShipper(tmp_path / "q", late.url, min_backoff_s=0.01)
        second.start()
        second.send(events(5, start=10))
        deadline = time.monotonic() + 60
        while len(late.events) < 15 and time.monotonic() < deadline:
            time.sleep(0.02)
        second.close()
    finally:
        late.close()
    assert [e.id for e in late.events] == [f"id{i}" for i in range(15)]


def _one_event_entries(batch: list[Event]) -> list[tuple[bytes, int, int]]:
    """Queue entries of one event each, as many separate `send`s would queue them (in one fsync)."""
    return [(bytes(cramjam.snappy.compress_raw(e.to_json().encode())), NOW_MS, 1) for e in batch]


def test_linger_sends_a_burst_as_one_request(tmp_path: Path) -> None:
    receiver = EventReceiver()
    # A linger no test outlasts: what leaves early does so because a full request was queued.
    shipper = EventShipper(tmp_path / "q", receiver.url, max_events_per_send=50, linger_s=3600)
    shipper.start()
    try:
        burst = events(50)
        for e in burst[:49]:
            shipper.send([e])  # 49 entries, each durable on its own
        assert receiver.headers == [] and shipper.shipper.depth()[0] == 49  # lingering for more
        shipper.send(burst[49:])
        wait_until(lambda: len(receiver.events) == 50, what="the burst delivered")
        assert receiver.sizes == [50]  # one request for the 50 entries
        assert shipper.flush(60)  # ...and one ack for all of them
    finally:
        shipper.close()
        receiver.close()
    assert [e.id for e in receiver.events] == [e.id for e in burst]


def test_a_burst_of_ten_thousand_goes_in_bounded_requests(tmp_path: Path) -> None:
    receiver = EventReceiver()
    registry = CollectorRegistry()
    shipper = EventShipper(tmp_path / "q", receiver.url, registry=registry)  # 500 events a request
    try:
        burst = events(10_000)
        shipper.shipper.enqueue_payloads(_one_event_entries(burst))
        shipper.start()
        assert shipper.flush(60)
        assert registry.get_sample_value("vigil_agent_events_ship_events_total") == 10_000
    finally:
        shipper.close()
        receiver.close()
    assert receiver.sizes == [500] * 20
    assert [e.id for e in receiver.events] == [e.id for e in burst]


def test_a_refused_merged_request_is_sent_again_entry_by_entry(tmp_path: Path) -> None:
    # The merged request is refused (one bad event in it), then each entry alone: the second is
    # refused again and dropped, the others are delivered.
    receiver = EventReceiver(script=[400, 200, 400, 200])
    registry = CollectorRegistry()
    shipper = EventShipper(tmp_path / "q", receiver.url, registry=registry)
    try:
        three = events(3)
        shipper.shipper.enqueue_payloads(_one_event_entries(three))
        shipper.start()
        assert shipper.flush(60)
        shipper.shipper.enqueue_payloads(_one_event_entries(events(2, start=3)))  # merged again
        assert shipper.flush(60)
        dropped = registry.get_sample_value(
            "vigil_agent_events_ship_dropped_events_total", {"reason": "http_400"}
        )
        assert dropped == 1
    finally:
        shipper.close()
        receiver.close()
    assert [e.id for e in receiver.events] == ["id0", "id2", "id3", "id4"]
    assert len(receiver.headers) == 5 and receiver.sizes == [1, 1, 2]
