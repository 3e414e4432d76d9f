"""`POST`/`GET /api/v1/events`: handlers in-process (auth, HMAC, tenants, encodings, limits, all-or-
nothing batches, query parameters and errors), then once through a real `vigil server`."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cramjam
import httpx
import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import VigilProcess
from tests.web.asgi import Client as TestClient
from vigil.events.store import EventStore
from vigil.model.event import Event
from vigil.ship import signing
from vigil.web.app import create_app
from vigil.web.auth import TokenAuth
from vigil.web.events_api import EventsAPI

NOW_S = 1_700_000_000.0
T0 = int(NOW_S * 1000) - 60_000  # a minute before "now": inside the default one-hour window
KEY = "s3cret"


def make_client(
    tmp_path: Path,
    auth: TokenAuth | None = None,
    hmac_key: str | None = None,
    max_body: int = 64 * 1024,
    max_decompressed: int = 256 * 1024,
    registry: CollectorRegistry | None = None,
) -> tuple[TestClient, EventStore]:
    store = EventStore(tmp_path / "events.db", 86_400_000, clock=lambda: NOW_S)
    api = EventsAPI(
        store,
        auth or TokenAuth([], []),
        max_body,
        hmac_key,
        max_decompressed,
        clock=lambda: NOW_S,
        registry=registry,
    )
    app = create_app([api], registry=None)
    return TestClient(app), store


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    c, store = make_client(tmp_path)
    yield c
    store.close()


def line(i: int, **over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": f"e{i}",
        "time_ms": T0 + i,
        "kind": "auth" if i % 2 else "file_changed",
        "labels": {"instance": f"h{i % 3}"},
        "fields": {"user": "root" if i % 4 == 1 else "bob", "n": i},
        "message": f"event {i}",
    }
    raw.update(over)
    return raw


def ndjson(*objs: dict[str, Any]) -> bytes:
    return ("\n".join(json.dumps(o) for o in objs) + "\n").encode()


def post(c: TestClient, body: bytes, **headers: str) -> httpx.Response:
    return c.post("/api/v1/events", content=body, headers={"Content-Type": "application/x-ndjson", **headers})


def get_events(c: TestClient, **params: Any) -> tuple[list[dict[str, Any]], str | None]:
    r = c.get("/api/v1/events", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success"
    return body["data"]["events"], body["data"]["next_cursor"]


def test_post_then_get_round_trip(client: TestClient) -> None:
    sent = [line(i) for i in range(10)]
    r = post(client, ndjson(*sent))
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "success", "data": {"stored": 10, "duplicates": 0}}
    # Re-sent after a lost acknowledgement: stored once.
    assert post(client, ndjson(*sent)).json()["data"] == {"stored": 0, "duplicates": 10}
    events, cursor = get_events(client)
    assert cursor is None
    assert events == [json.loads(Event.from_dict(s).to_json()) for s in reversed(sent)]
    events, _ = get_events(client, direction="forward", kind="auth")
    assert [e["id"] for e in events] == ["e1", "e3", "e5", "e7", "e9"]
    events, _ = get_events(client, **{"match[]": '{kind="auth", user="root"}'})
    assert [e["id"] for e in events] == ["e9", "e5", "e1"]
    events, _ = get_events(client, match='file_changed{instance="h0"}', direction="forward")
    assert [e["id"] for e in events] == ["e0", "e6"]


def test_get_parameters(client: TestClient) -> None:
    post(client, ndjson(*[line(i) for i in range(30)]))
    # Paging with a cursor.
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 7}
        if cursor:
            params["cursor"] = cursor
        events, cursor = get_events(client, **params)
        seen += [e["id"] for e in events]
        if cursor is None:
            break
    assert seen == [f"e{i}" for i in reversed(range(30))]
    # Repeated and comma-separated kinds; several selectors OR'ed.
    r = client.get("/api/v1/events?kind=auth,file_changed&kind=other&limit=1000")
    assert len(r.json()["data"]["events"]) == 30
    r = client.get(
        "/api/v1/events",
        params=[("match[]", '{n="3"}'), ("match[]", '{n="4"}'), ("direction", "forward")],
    )
    assert [e["id"] for e in r.json()["data"]["events"]] == ["e3", "e4"]
    # start/end: Unix seconds or RFC 3339, inclusive.
    events, _ = get_events(client, start=(T0 + 5) / 1000, end=(T0 + 7) / 1000)
    assert [e["id"] for e in events] == ["e7", "e6", "e5"]
    rfc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((T0 + 10) // 1000))
    events, _ = get_events(client, end=f"{rfc}.{(T0 + 10) % 1000:03d}Z", limit=2)
    assert [e["id"] for e in events] == ["e10", "e9"]
    # The default window is the last hour before now.
    post(client, ndjson(line(99, time_ms=T0 - 3_600_000)))
    events, _ = get_events(client, limit=1000)
    assert "e99" not in [e["id"] for e in events]
    events, _ = get_events(client, start=0, limit=1000)
    assert "e99" in [e["id"] for e in events]


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("match[]=up{", "match[]"),
        ("match={}", "match[]"),
        ('match[]={kind="a"}[5m]', "match[]"),
        ("start=yesterday", "start"),
        ("end=x", "end"),
        ("start=200&end=100", "end timestamp must not be before start time"),
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=ten", "limit"),
        ("cursor=garbage", "cursor"),
        ("direction=up", "direction"),
    ],
)
def test_get_bad_parameters(client: TestClient, query: str, fragment: str) -> None:
    r = client.get("/api/v1/events?" + query)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data"
    assert fragment in body["error"]


def test_bad_line_refuses_the_whole_request(client: TestClient) -> None:
    good = json.dumps(line(1))
    cases = [
        (f"{good}\nnot json\n", "line 2: not JSON"),
        (f"{good}\n\n{json.dumps(line(2, kind='Bad Kind'))}", "line 3: kind"),
        (f"{good}\n{json.dumps(line(2, time_ms='soon'))}", "line 2: time_ms"),
        (f"{good}\n[1, 2]", "line 2: expected a JSON object"),
        (f"{good}\n{json.dumps(line(2, extra=1))}", "line 2: extra: unknown key"),
        (f'{good}\n{{"time_ms": 1, "kind": "auth", "message": "\\ud800"}}', "line 2: message"),
    ]
    for body, fragment in cases:
        r = post(client, body.encode())
        assert r.status_code == 400, r.text
        assert r.json()["errorType"] == "bad_data"
        assert fragment in r.json()["error"], (fragment, r.text)
    events, _ = get_events(client, start=0)
    assert events == []  # not even the good first lines


def test_tenant_comes_from_the_token(tmp_path: Path) -> None:
    auth = TokenAuth(["plain"], ["reader"], [("acme", ["acme-token"])])
    c, store = make_client(tmp_path, auth=auth)
    forged = line(1, labels={"instance": "h", "tenant": "victim"})
    assert post(c, ndjson(forged), Authorization="Bearer acme-token").status_code == 200
    assert post(c, ndjson(forged), Authorization="Bearer plain").status_code == 200  # other tenant: new
    assert post(c, ndjson(line(2)), Authorization="Bearer reader").status_code == 401
    assert post(c, ndjson(line(2))).status_code == 401
    assert c.get("/api/v1/events").status_code == 401  # read token required
    assert c.get("/api/v1/events", headers={"Authorization": "Bearer plain"}).status_code == 401
    r = c.get("/api/v1/events?start=0&direction=forward", headers={"Authorization": "Bearer reader"})
    assert [e["labels"] for e in r.json()["data"]["events"]] == [
        {"instance": "h", "tenant": "acme"},
        {"instance": "h"},
    ]
    store.close()


def test_hmac_signature_required_when_configured(tmp_path: Path) -> None:
    c, store = make_client(tmp_path, hmac_key=KEY)
    body = bytes(cramjam.snappy.compress_raw(ndjson(line(1))))
    assert post(c, body, **{"Content-Encoding": "snappy"}).status_code == 401  # unsigned
    bad = signing.sign("wrong key", body, NOW_S)
    r = post(c, body, **{"Content-Encoding": "snappy"}, **bad)
    assert r.status_code == 401 and "signature mismatch" in r.json()["error"]
    stale = signing.sign(KEY, body, NOW_S - 3600)
    assert post(c, body, **{"Content-Encoding": "snappy"}, **stale).status_code == 401
    assert store.count() == 0
    ok = signing.sign(KEY, body, NOW_S)  # the signature covers the compressed bytes on the wire
    r = post(c, body, **{"Content-Encoding": "snappy"}, **ok)
    assert r.status_code == 200, r.text
    assert store.count() == 1
    store.close()


@pytest.mark.parametrize("encoding", ["identity", "gzip", "snappy", "zstd"])
def test_content_encodings(client: TestClient, encoding: str) -> None:
    raw = ndjson(*[line(i) for i in range(50)])
    body = {
        "identity": lambda b: b,
        "gzip": gzip.compress,
        "snappy": lambda b: bytes(cramjam.snappy.compress_raw(b)),
        "zstd": lambda b: bytes(cramjam.zstd.compress(b)),
    }[encoding](raw)
    r = post(client, body, **{"Content-Encoding": encoding})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["stored"] == 50
    r = post(client, b"\x00garbage\xff" * 10, **{"Content-Encoding": encoding})
    assert r.status_code == 400, r.text


def test_unsupported_encoding_and_type(client: TestClient) -> None:
    assert post(client, ndjson(line(1)), **{"Content-Encoding": "br"}).status_code == 415
    r = client.post("/api/v1/events", content=b"x", headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 415 and "/api/v1/write" in r.json()["error"]


@pytest.mark.parametrize("encoding", ["identity", "gzip", "snappy", "zstd"])
def test_too_large(tmp_path: Path, encoding: str) -> None:
    c, store = make_client(tmp_path, max_body=4096, max_decompressed=16 * 1024)
    big = ndjson(*[line(i, message="x" * 200) for i in range(200)])  # ~60 KB, compresses well
    compressed = {
        "identity": big,
        "gzip": gzip.compress(big),
        "snappy": bytes(cramjam.snappy.compress_raw(big)),
        "zstd": bytes(cramjam.zstd.compress(big)),
    }[encoding]
    r = post(c, compressed, **{"Content-Encoding": encoding})
    assert r.status_code == 413, r.text
    assert "exceeds" in r.json()["error"]
    assert store.count() == 0
    store.close()


def test_body_over_the_wire_limit(tmp_path: Path) -> None:
    c, store = make_client(tmp_path, max_body=1024)
    r = post(c, b"x" * 2048)
    assert r.status_code == 413 and "request body" in r.json()["error"]
    store.close()


def test_real_server_stores_events_across_restart(tmp_path: Path) -> None:
    cfg = tmp_path / "vigil.yml"
    cfg.write_text("server:\n  auth:\n    tenants:\n      acme: [acme-token]\n")
    v = VigilProcess(tmp_path / "data", extra_args=["--config", str(cfg)]).start()
    now = int(time.time() * 1000)
    sent = [line(i, time_ms=now - i, labels={"instance": "h", "tenant": "x"}) for i in range(5)]
    body = bytes(cramjam.snappy.compress_raw(ndjson(*sent)))
    headers = {"Content-Encoding": "snappy", "Authorization": "Bearer acme-token"}
    try:
        r = httpx.post(v.url + "/api/v1/events", content=body, headers=headers, timeout=10)
        assert r.status_code == 200, r.text
    finally:
        v.kill9()  # acknowledged, so it must be there after a crash
    assert (tmp_path / "data" / "events.db").exists()
    v.start()
    try:
        r = httpx.get(v.url + "/api/v1/events", params={"match[]": '{tenant="acme"}'}, timeout=10)
        assert r.status_code == 200, r.text
        assert [e["id"] for e in r.json()["data"]["events"]] == [f"e{i}" for i in range(5)]
        r = httpx.post(v.url + "/api/v1/events", content=body, headers=headers, timeout=10)
        assert r.json()["data"] == {"stored": 0, "duplicates": 5}
    finally:
        v.stop()


def test_own_metrics_count_stored_duplicates_and_refusals(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    c, store = make_client(tmp_path, registry=registry)
    try:
        assert post(c, ndjson(line(1), line(2), line(3, kind="custom_thing"))).status_code == 200
        assert post(c, ndjson(line(1), line(4))).status_code == 200  # one re-sent, one new
        assert post(c, b"not json\n").status_code == 400
    finally:
        store.close()

    def value(name: str, labels: dict[str, str] | None = None) -> float | None:
        return registry.get_sample_value(name, labels or {})

    assert value("vigil_events_stored_total", {"kind": "auth"}) == 1
    assert value("vigil_events_stored_total", {"kind": "file_changed"}) == 1
    assert value("vigil_events_stored_total", {"kind": "other"}) == 1  # client kinds stay bounded
    assert value("vigil_events_stored_total", {"kind": "mixed"}) == 1
    assert value("vigil_events_duplicates_total") == 1
    assert value("vigil_events_requests_rejected_total", {"status": "400"}) == 1


def test_time_out_of_range_is_a_bad_line(client: TestClient) -> None:
    r = post(client, ndjson(line(1), line(2, time_ms=10**30)))
    assert r.status_code == 400 and "line 2: time_ms" in r.json()["error"]
