"""The shipper end to end: batching, retries and drops against scripted answers; an outage of a real
Vigil server with an agent restart in between (one connection and several); sharding across connections
(exactly once, in order per series, balanced) and changes of the shard count with data queued; Debian's
VictoriaMetrics and Prometheus as receivers; and HMAC-signed writes against Vigil's write API."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cramjam
import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry, generate_latest

from tests.conftest import VigilProcess, free_port, require_binary, wait_http
from tests.ship.test_client import Receiver
from tests.waiting import returns, wait_until
from vigil.ingest.ingester import Ingester, IngestMetrics
from vigil.ingest.validate import Limits
from vigil.model.matcher import Matcher
from vigil.prompb import WriteRequest
from vigil.prompb.encode import encode_write_request
from vigil.ship import DurableQueue, RemoteWriteClient, SendResult, Shipper
from vigil.ship.shipper import ShardedShipper, build_shipper
from vigil.ship.signing import sign
from vigil.tsdb.db import DB, MAX_TIME, MIN_TIME, Options
from vigil.web.app import create_app
from vigil.web.auth import TokenAuth
from vigil.web.write import WriteAPI, WriteOptions

Series = list[tuple[str, str]]


def make_shipper(
    queue_dir: Path, url: str, registry: CollectorRegistry | None = None, **kwargs: object
) -> Shipper:
    """A started `Shipper` (start=False: not yet), with short backoffs."""
    client_args = {k: kwargs.pop(k) for k in ("bearer_token", "hmac_key") if k in kwargs}
    start = kwargs.pop("start", True)
    opts: dict = {"min_backoff_s": 0.02, "max_backoff_s": 0.3} | kwargs
    shipper = Shipper(
        DurableQueue(queue_dir), RemoteWriteClient(url, timeout_s=5, **client_args), registry, **opts
    )
    if start:
        shipper.start()
    return shipper


def open_shipper(
    queue_dir: Path, url: str, connections: int | None, registry: CollectorRegistry | None = None, **kw: int
) -> Shipper | ShardedShipper:
    """A single `Shipper` (connections=None) or `build_shipper`'s sharded one, with short backoffs."""
    if connections is None:
        return make_shipper(queue_dir, url, registry, **kw)
    sharded = build_shipper(
        directory=queue_dir,
        url=url,
        registry=registry,
        connections=connections,
        max_samples=kw.get("max_samples_per_send", 2000),
        min_backoff_s=0.02,
        max_backoff_s=0.3,
    )
    sharded.start()
    return sharded


def record_sends(shipper: ShardedShipper) -> list[list[WriteRequest]]:
    """Wraps each shard's client: per shard, the requests the server accepted, in the order sent."""
    logs: list[list[WriteRequest]] = [[] for _ in shipper.shards]
    for shard, out in zip(shipper.shards, logs, strict=True):
        send = shard._client.send

        def recording(body: bytes, send=send, out=out) -> SendResult:  # type: ignore[no-untyped-def]
            result = send(body)
            if result.ok:
                req = WriteRequest()
                req.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
                out.append(req)
            return result

        shard._client.send = recording  # type: ignore[method-assign]
    return logs


def points_in_order(
    requests: list[WriteRequest],
) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    """Samples by series, in the order they were sent, asserting that timestamps only go forward."""
    out: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
    for req in requests:
        for ts in req.timeseries:
            key = tuple((lb.name, lb.value) for lb in ts.labels)
            pts = out.setdefault(key, [])
            for s in ts.samples:
                assert not pts or s.timestamp > pts[-1][0], (key, pts[-1], s.timestamp)
                pts.append((s.timestamp, s.value))
    return out


def received_points(rx: Receiver) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    out: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
    for req in rx.received:
        for ts in req.timeseries:
            key = tuple((lb.name, lb.value) for lb in ts.labels)
            out.setdefault(key, []).extend((s.timestamp, s.value) for s in ts.samples)
    return out


def now_ms() -> int:
    return int(time.time() * 1000)


# -- scripted receiver ----------------------------------------------------------------------------


def test_batching_splits_series_in_order_and_sorts_labels(tmp_path: Path) -> None:
    t = now_ms() - 10_000
    series = [[("job", "a"), ("__name__", "m")], [("__name__", "m"), ("job", "b")], [("__name__", "n")]]
    points = [[(t + i, float(i)) for i in range(5)], [(t + i, -float(i)) for i in range(5)], []]
    with Receiver() as rx:
        shipper = make_shipper(tmp_path / "q", rx.url, max_samples_per_send=4)
        try:
            assert shipper.enqueue(series, points) == 3  # 10 samples in payloads of at most 4
            assert shipper.flush(60)
        finally:
            shipper.close()
    sizes = [sum(len(ts.samples) for ts in req.timeseries) for req in rx.received]
    assert sizes == [4, 4, 2]
    assert received_points(rx) == {
        (("__name__", "m"), ("job", "a")): points[0],
        (("__name__", "m"), ("job", "b")): points[1],
    }


def test_build_shipper_from_config_values(tmp_path: Path) -> None:
    """What `vigil agent` calls; the agent runner's sink passes one (series, samples) batch."""
    registry = CollectorRegistry()
    with Receiver() as rx:
        shipper = build_shipper(
            directory=tmp_path / "agent" / "queue", url=rx.url, token="t0k", hmac_key="", registry=registry
        )
        shipper.start()
        try:
            assert shipper.enqueue(([[("__name__", "b")]], [[(now_ms(), 4.0)]])) == 1
            assert shipper.flush(60)
        finally:
            shipper.close()
    assert rx.headers[0]["Authorization"] == "Bearer t0k" and "X-Vigil-Signature" not in rx.headers[0]
    assert received_points(rx)[(("__name__", "b"),)][0][1] == 4.0


def test_retries_with_backoff_then_delivers_once(tmp_path: Path) -> None:
    registry = CollectorRegistry()

    def retries() -> float | None:
        return registry.get_sample_value("vigil_agent_ship_retries_total")

    script = [(503, {}), (500, {}), (429, {"Retry-After": "1"})]
    with Receiver(script=script) as rx:
        shipper = make_shipper(tmp_path / "q", rx.url, registry)
        waits: list[float] = []  # what the sender waited for between attempts, not a clock reading
        stop_wait = shipper._stop.wait

        def recording_wait(timeout: float | None = None) -> bool:
            waits.append(-1.0 if timeout is None else timeout)
            return stop_wait(timeout)

        shipper._stop.wait = recording_wait  # type: ignore[method-assign]
        try:
            shipper.enqueue([[("__name__", "r")]], [[(now_ms(), 1.0)]])
            assert shipper.flush(60)
            assert retries() == 3
            assert registry.get_sample_value("vigil_agent_ship_samples_total") == 1
        finally:
            shipper.close()
    # Backoffs of at most 0.3 s after the 503 and the 500; Retry-After: 1 was honoured after the 429
    # although the backoff was shorter.
    assert len(waits) == 3 and all(0 < w <= 0.3 for w in waits[:2]) and waits[2] >= 1.0, waits
    assert len(rx.headers) == 4 and len(rx.received) == 1
    # close() unregistered the metrics, so a new Shipper can register into the same registry.
    assert retries() is None
    shipper = make_shipper(tmp_path / "q", rx.url, registry, start=False)
    assert retries() == 0  # counts are per process
    shipper.close()


def test_permanent_failure_drops_batch_counts_and_continues(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    t = now_ms()
    with Receiver(script=[(400, {})]) as rx:
        shipper = make_shipper(tmp_path / "q", rx.url, registry, max_samples_per_send=2, start=False)
        try:
            shipper.enqueue([[("__name__", "p")]], [[(t, 1.0), (t + 1, 2.0), (t + 2, 3.0)]])
            metrics = generate_latest(registry).decode()
            assert "vigil_agent_queue_entries 2.0" in metrics
            assert "vigil_agent_queue_bytes " in metrics
            assert "vigil_agent_queue_oldest_sample_age_seconds " in metrics
            assert 'vigil_agent_ship_dropped_samples_total{reason="full"} 0.0' in metrics
            assert 'vigil_agent_ship_dropped_samples_total{reason="too_old"} 0.0' in metrics
            shipper.start()
            assert shipper.flush(60)
            values = {
                name: registry.get_sample_value(name, labels)
                for name, labels in [
                    ("vigil_agent_ship_samples_total", {}),
                    ("vigil_agent_ship_bytes_total", {}),
                    ("vigil_agent_ship_retries_total", {}),
                    ("vigil_agent_ship_dropped_samples_total", {"reason": "http_400"}),
                    ("vigil_agent_queue_entries", {}),
                    ("vigil_agent_queue_bytes", {}),
                    ("vigil_agent_queue_oldest_sample_age_seconds", {}),
                ]
            }
        finally:
            shipper.close()
    assert received_points(rx) == {(("__name__", "p"),): [(t + 2, 3.0)]}
    assert values["vigil_agent_ship_samples_total"] == 1
    assert values["vigil_agent_ship_bytes_total"] and values["vigil_agent_ship_bytes_total"] > 0
    assert values["vigil_agent_ship_retries_total"] == 0
    assert values["vigil_agent_ship_dropped_samples_total"] == 2
    assert values["vigil_agent_queue_entries"] == values["vigil_agent_queue_bytes"] == 0
    assert values["vigil_agent_queue_oldest_sample_age_seconds"] == 0


def test_close_is_prompt_during_an_outage_and_keeps_the_queue(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/api/v1/write"
    # After a failed attempt the sender backs off for half an hour or more: close() returning within
    # the hang guard is the wait being interrupted, whatever the machine's speed.
    shipper = make_shipper(tmp_path / "q", dead, min_backoff_s=3600, max_backoff_s=3600)
    shipper.enqueue([[("__name__", "c")]], [[(now_ms(), 1.0)]])
    wait_until(lambda: shipper.retries >= 1, what="a failed attempt")
    returns(shipper.close, what="close() during a backoff")
    assert shipper.retries == 1
    with Receiver() as rx:
        shipper = make_shipper(tmp_path / "q", rx.url)
        try:
            assert shipper.flush(60)
        finally:
            shipper.close()
    assert len(rx.received) == 1


# -- a real Vigil server, with an outage and an agent restart --------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("connections", [None, 3], ids=["single", "sharded3"])
def test_outage_and_agent_restart_deliver_every_sample_exactly_once(
    tmp_path: Path, connections: int | None
) -> None:
    vigil = VigilProcess(tmp_path / "vigil").start()
    url = vigil.url + "/api/v1/write"
    names = [[("__name__", "outage_test"), ("host", f"h{i}")] for i in range(5)]
    expected: dict[str, list[tuple[int, float]]] = {f"h{i}": [] for i in range(5)}
    last_t = 0
    step = 0

    def produce(shipper: Shipper | ShardedShipper, steps: int) -> None:
        # What the agent's collection loop does: a sample per series every 20 ms, enqueued at once.
        # Counted in steps, not timed: the test proves delivery, not throughput.
        nonlocal last_t, step
        for _ in range(steps):
            last_t = max(last_t + 1, now_ms())
            step += 1
            pts = [[(last_t, float(step * 10 + i))] for i in range(5)]
            shipper.enqueue(names, pts)
            for i, p in enumerate(pts):
                expected[f"h{i}"] += p
            time.sleep(0.02)

    sent = []
    try:
        shipper = open_shipper(tmp_path / "q", url, connections, max_samples_per_send=40)
        try:
            produce(shipper, 50)
            vigil.stop()
            produce(shipper, 75)  # the server is down: everything queues, the sender retries
            wait_until(lambda: shipper.retries > 0, what="a retry during the outage")
        finally:
            shipper.close()  # the agent restarts during the outage, with a backlog
        sent.append(shipper.samples_sent)
        shipper = open_shipper(tmp_path / "q", url, connections, max_samples_per_send=40)
        try:
            assert shipper.depth()[0] > 10  # the backlog survived the restart
            produce(shipper, 50)
            vigil.start()
            produce(shipper, 50)
        finally:
            shipper.close()  # and restarts again while delivering
        sent.append(shipper.samples_sent)
        shipper = open_shipper(tmp_path / "q", url, connections, max_samples_per_send=40)
        try:
            produce(shipper, 25)
            assert shipper.flush(60)
            assert shipper.dropped_samples() == {"full": 0, "too_old": 0}
        finally:
            shipper.close()
        sent.append(shipper.samples_sent)
    finally:
        vigil.stop()
    total = sum(map(len, expected.values()))
    assert total == 250 * 5
    # Acknowledged payloads were not sent again by a later shipper, and nothing was lost.
    assert sum(sent) == total, (sent, total)
    with DB(vigil.data_dir) as db:
        got = {
            lb.to_dict()["host"]: list(zip(ts.tolist(), v.tolist(), strict=True))
            for lb, ts, v in db.select([Matcher.eq("__name__", "outage_test")], MIN_TIME, MAX_TIME)
        }
    assert got == expected


# -- sharding across connections -------------------------------------------------------------------


@pytest.mark.slow
def test_sharded_delivery_exactly_once_in_order_and_balanced(tmp_path: Path) -> None:
    vigil = VigilProcess(tmp_path / "vigil").start()
    registry = CollectorRegistry()
    n_series, rounds, per_round = 200, 6, 10
    names = [[("job", "shard_test"), ("__name__", "sharded"), ("host", f"h{i}")] for i in range(n_series)]
    t0 = now_ms() - 120_000
    expected: dict[str, list[tuple[int, float]]] = {f"h{i}": [] for i in range(n_series)}
    try:
        shipper = build_shipper(
            directory=tmp_path / "q",
            url=vigil.url + "/api/v1/write",
            registry=registry,
            connections=4,
            max_samples=150,
        )
        shipper.start()
        try:
            assert isinstance(shipper, ShardedShipper) and len(shipper.shards) == 4
            logs = record_sends(shipper)
            for r in range(rounds):  # each series spans several payloads, interleaved with the others
                pts = [
                    [
                        (t0 + (r * per_round + k) * 100, float(i * 1000 + r * per_round + k))
                        for k in range(per_round)
                    ]
                    for i in range(n_series)
                ]
                assert shipper.enqueue(names, pts) > 4
                for i, p in enumerate(pts):
                    expected[f"h{i}"] += p
            assert shipper.flush(60)
            assert (
                registry.get_sample_value("vigil_agent_ship_samples_total") == n_series * rounds * per_round
            )
            assert registry.get_sample_value("vigil_agent_queue_entries") == 0
            assert registry.get_sample_value("vigil_agent_ship_retries_total") == 0
        finally:
            shipper.close()
        assert registry.get_sample_value("vigil_agent_ship_samples_total") is None  # one collector, gone
    finally:
        vigil.stop()
    per_shard = [points_in_order(log) for log in logs]  # asserts the send order within each series
    owners: dict[str, list[int]] = {}
    for i, got in enumerate(per_shard):
        for key in got:
            owners.setdefault(dict(key)["host"], []).append(i)
    assert all(len(v) == 1 for v in owners.values())  # every series stayed on one shard
    series_per_shard = [len(got) for got in per_shard]
    assert sum(series_per_shard) == n_series
    assert all(n_series / 4 * 0.6 <= n <= n_series / 4 * 1.4 for n in series_per_shard), series_per_shard
    assert all(len(log) >= rounds for log in logs)  # every connection carried traffic
    sent = {dict(k)["host"]: v for got in per_shard for k, v in got.items()}
    assert sent == expected  # exactly once on the wire
    with DB(vigil.data_dir) as db:
        stored = {
            lb.to_dict()["host"]: list(zip(ts.tolist(), v.tolist(), strict=True))
            for lb, ts, v in db.select([Matcher.eq("__name__", "sharded")], MIN_TIME, MAX_TIME)
        }
    assert stored == expected


def test_changing_the_shard_count_drains_old_queues_first(tmp_path: Path) -> None:
    """Pre-sharding queue -> 2 shards -> (3 asked mid-transition) -> 3 shards, all with data queued."""
    queue_dir = tmp_path / "q"
    dead = f"http://127.0.0.1:{free_port()}/api/v1/write"
    names = [[("__name__", "reshard"), ("host", f"h{i}")] for i in range(20)]
    expected: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {
        tuple(sorted(n)): [] for n in names
    }
    t0 = now_ms() - 60_000
    rnd = 0

    def produce(shipper: Shipper | ShardedShipper) -> None:
        nonlocal rnd
        pts = [[(t0 + rnd * 10 + k, float(rnd * 100 + i)) for k in range(5)] for i in range(len(names))]
        shipper.enqueue(names, pts)
        for n, p in zip(names, pts, strict=True):
            expected[tuple(sorted(n))] += p
        rnd += 1

    def state() -> dict:
        return json.loads((queue_dir / "shards.json").read_text())

    legacy = make_shipper(queue_dir, dead, max_samples_per_send=30)  # the single queue of older versions
    for _ in range(10):  # a long backlog, so that sending new data alongside it would overtake it
        produce(legacy)
    legacy.close()
    assert (queue_dir / "wal").is_dir()
    shipper = open_shipper(queue_dir, dead, 2, max_samples_per_send=30)
    produce(shipper)
    shipper.close()
    assert state()["shards"] == 2 and set(state()["hold"]) == {".", "shard-0", "shard-1"}
    # Still changing: a different count waits for a later start, so only two generations ever exist.
    shipper = open_shipper(queue_dir, dead, 3, max_samples_per_send=30)
    assert isinstance(shipper, ShardedShipper) and len(shipper.shards) == 2 and len(shipper.draining) == 1
    produce(shipper)
    shipper.close()
    with Receiver() as rx:
        shipper = open_shipper(queue_dir, rx.url, 3, max_samples_per_send=30)
        try:
            assert isinstance(shipper, ShardedShipper) and len(shipper.shards) == 2
            produce(shipper)
            assert shipper.flush(60)
        finally:
            shipper.close()
        states = [state()]  # the old backlog went first, then the new count was recorded
        shipper = open_shipper(queue_dir, rx.url, 3, max_samples_per_send=30)
        try:
            assert isinstance(shipper, ShardedShipper) and len(shipper.shards) == 3 and not shipper.draining
            assert all(s._barrier is None for s in shipper.shards)
            produce(shipper)
            assert shipper.flush(60)
        finally:
            shipper.close()
        states.append(state())
    # Everything exactly once and, per series, in the order produced (the receiver saw the send order).
    assert points_in_order(rx.received) == expected
    assert states == [{"shards": 2}, {"shards": 3}]


# -- Debian's peers as receivers -------------------------------------------------------------------


def ship_to(tmp_path: Path, url: str) -> dict[str, list[tuple[int, float]]]:
    """Ship three series of 100 samples each to `url`; returns what was sent, by `host`."""
    t0 = now_ms() - 100_000
    names = [[("__name__", "vigil_ship_peer"), ("host", f"h{i}"), ("job", "agent")] for i in range(3)]
    points = [[(t0 + k * 1000, float(k * (i + 1))) for k in range(100)] for i in range(3)]
    shipper = make_shipper(tmp_path / "q", url, max_samples_per_send=70)
    try:
        shipper.enqueue(names, points)
        assert shipper.flush(60), "the peer did not accept the samples"
        assert shipper.dropped_samples() == {"full": 0, "too_old": 0}
    finally:
        shipper.close()
    return {f"h{i}": pts for i, pts in enumerate(points)}


def poll(fetch: object, expected: object, timeout: float = 60) -> object:
    """Call `fetch` until it returns `expected` or the time is up; returns the last result."""
    assert callable(fetch)
    deadline = time.monotonic() + timeout
    while (got := fetch()) != expected and time.monotonic() < deadline:
        time.sleep(0.3)
    return got


@pytest.mark.peer
def test_ship_to_victoria_metrics(tmp_path: Path) -> None:
    binary = require_binary("victoria-metrics")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [binary, f"-storageDataPath={tmp_path / 'vm'}", f"-httpListenAddr=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "vm.log").open("wb"),
    )
    try:
        wait_http(base + "/health", proc=proc)
        expected = ship_to(tmp_path, base + "/api/v1/write")

        def fetch() -> dict[str, list[tuple[int, float]]]:
            # Raw samples; they become searchable once VictoriaMetrics flushed its in-memory buffers.
            httpx.get(base + "/internal/force_flush", timeout=10)
            r = httpx.get(base + "/api/v1/export", params={"match[]": "vigil_ship_peer"}, timeout=10)
            rows = [json.loads(line) for line in r.text.splitlines()]
            assert all(set(row["metric"]) == {"__name__", "host", "job"} for row in rows)
            return {
                row["metric"]["host"]: list(zip(row["timestamps"], row["values"], strict=True))
                for row in rows
            }

        assert poll(fetch, expected) == expected
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.peer
def test_ship_to_prometheus(tmp_path: Path) -> None:
    binary = require_binary("prometheus")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 1m\n")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp_path / 'prom'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-remote-write-receiver",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prom.log").open("wb"),
    )
    try:
        wait_http(base + "/-/ready", proc=proc)
        expected = ship_to(tmp_path, base + "/api/v1/write")

        def fetch() -> dict[str, list[tuple[int, float]]]:
            r = httpx.get(base + "/api/v1/query", params={"query": "vigil_ship_peer[10m]"}, timeout=10)
            result = r.json()["data"]["result"]
            assert all(s["metric"]["job"] == "agent" for s in result)
            return {
                s["metric"]["host"]: [(round(float(t) * 1000), float(v)) for t, v in s["values"]]
                for s in result
            }

        assert poll(fetch, expected) == expected
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- HMAC signatures against Vigil's write API ------------------------------------------------------
# The server's config does not expose `server.auth.hmac_key` yet, so the write API runs in this process
# (under uvicorn on a loopback port, so the real client and shipper talk to it over HTTP).


@pytest.fixture
def signed_api(tmp_path: Path) -> Iterator[tuple[str, DB, CollectorRegistry]]:
    registry = CollectorRegistry()
    db = DB(tmp_path / "data", Options(fsync=False))
    api = WriteAPI(
        Ingester(db, Limits(), IngestMetrics(registry)),
        TokenAuth([], []),
        WriteOptions(max_body=1 << 20, max_decompressed=1 << 24, max_samples=10**6, hmac_key="k3y"),
    )
    app = create_app([api], registry=None)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}", db, registry
    finally:
        server.should_exit = True
        thread.join(60)
        db.close()


def test_hmac_signed_writes(tmp_path: Path, signed_api: tuple[str, DB, CollectorRegistry]) -> None:
    base, db, registry = signed_api
    t = now_ms()
    body = bytes(cramjam.snappy.compress_raw(encode_write_request([[("__name__", "signed")]], [[(t, 1.0)]])))
    other = bytes(cramjam.snappy.compress_raw(encode_write_request([[("__name__", "forged")]], [[(t, 9.0)]])))
    rw = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}
    text = f"signed_text 5 {t}\n".encode()
    cases = [
        # (path, body, signature headers, status, message fragment)
        ("/api/v1/write", body, sign("k3y", body, time.time()), 204, ""),
        ("/api/v1/write", other, sign("k3y", body, time.time()), 401, "signature mismatch"),
        ("/api/v1/write", other, sign("wrong", other, time.time()), 401, "signature mismatch"),
        ("/api/v1/write", other, sign("k3y", other, time.time() - 600), 401, "stale"),
        ("/api/v1/write", other, sign("k3y", other, time.time() + 600), 401, "future"),
        ("/api/v1/write", other, {}, 401, "missing"),
        ("/api/v1/import/prometheus", text, sign("k3y", text, time.time()), 204, ""),
        ("/api/v1/import/prometheus", b"forged 1\n", {}, 401, "missing"),
    ]
    with httpx.Client(base_url=base, timeout=10) as c:
        for path, content, signature, status, fragment in cases:
            r = c.post(path, content=content, headers=(rw if path.endswith("/write") else {}) | signature)
            assert r.status_code == status, (path, r.text)
            assert fragment in r.text
    # The shipper signs when given the key, and a wrong key is a permanent (counted) refusal.
    shipper = make_shipper(tmp_path / "q", base + "/api/v1/write", hmac_key="k3y")
    try:
        shipper.enqueue([[("__name__", "shipped_signed")]], [[(t, 2.0)]])
        assert shipper.flush(60) and shipper.samples_sent == 1
    finally:
        shipper.close()
    shipper = make_shipper(tmp_path / "q", base + "/api/v1/write", hmac_key="not-the-key")
    try:
        shipper.enqueue([[("__name__", "shipped_forged")]], [[(t, 3.0)]])
        assert shipper.flush(60) and shipper.dropped_samples()["http_401"] == 1
    finally:
        shipper.close()
    rejected = registry.get_sample_value("vigil_ingest_requests_rejected_total", {"reason": "bad_signature"})
    assert rejected == 7
    names = db.label_values("__name__", [], MIN_TIME, MAX_TIME)
    assert names == ["shipped_signed", "signed", "signed_text"]  # nothing unsigned or forged was stored


def test_metadata_travels_once_in_the_first_payload(tmp_path: Path) -> None:
    t = now_ms() - 10_000
    series = [[("__name__", f"m{i}_total")] for i in range(6)]
    points = [[(t, float(i))] for i in range(6)]
    meta = [(f"m{i}_total", "counter", f"Things {i}.", "") for i in range(6)]
    with Receiver() as rx:
        shipper = build_shipper(directory=tmp_path / "q", url=rx.url, connections=3, max_samples=1)
        shipper.start()
        try:
            assert shipper.enqueue((series, points), metadata=meta) == 6
            assert shipper.flush(10)
        finally:
            shipper.close()
    sent = [m for req in rx.received for m in req.metadata]
    assert sorted((m.metric_family_name, m.type, m.help) for m in sent) == [
        (f"m{i}_total", 1, f"Things {i}.")
        for i in range(6)  # 1: MetricMetadata.COUNTER
    ]
    assert sum(1 for req in rx.received if req.metadata) == 1


def test_constructing_starts_no_thread_start_does(tmp_path: Path) -> None:
    """A shipper is a service: building it (queues opened, nothing sent) starts no sender; start()
    starts one per shard, once; stop() joins them."""
    with Receiver() as rx:
        before = set(threading.enumerate())
        shipper = build_shipper(directory=tmp_path / "q", url=rx.url, connections=2, max_samples=10)
        assert set(threading.enumerate()) == before
        assert shipper.enqueue(([[("__name__", "early")]], [[(now_ms(), 1.0)]])) == 1  # queued, unsent
        shipper.start()
        shipper.start()
        senders = [t for t in threading.enumerate() if t not in before and t.name == "vigil-shipper"]
        assert len(senders) == 2
        assert shipper.flush(60)
        shipper.stop()
        assert not any(t.is_alive() for t in senders)
    assert received_points(rx)[(("__name__", "early"),)][0][1] == 1.0
