"""`POST /api/v1/events` bounds its work before spending it: JSON depth, labels, fields and gzip members
are refused with 400 naming what was too much, nothing of such a batch is stored, and `vigil server`
takes the limits from `limits:`."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cramjam
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import VigilProcess
from tests.web.asgi import Client as TestClient
from vigil.events.store import EventStore
from vigil.model.event import EventLimits
from vigil.web import events_api
from vigil.web.app import create_app
from vigil.web.auth import TokenAuth
from vigil.web.events_api import MAX_GZIP_MEMBERS, EventsAPI

NOW_S = 1_700_000_000.0
T0 = int(NOW_S * 1000) - 60_000


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, EventStore]]:
    store = EventStore(tmp_path / "events.db", 86_400_000, clock=lambda: NOW_S)
    limits = EventLimits(
        max_labels=4, max_label_value_length=16, max_fields=3, max_field_length=32, max_depth=4
    )
    handler = EventsAPI(
        store, TokenAuth([], []), 64 << 20, max_decompressed=64 << 20, clock=lambda: NOW_S, limits=limits
    )
    yield TestClient(create_app([handler], registry=None)), store
    store.close()


def event(**over: Any) -> dict[str, Any]:
    return {"time_ms": T0, "kind": "auth", "labels": {"instance": "h1"}, "fields": {"user": "bob"}, **over}


def post(c: TestClient, body: bytes, **headers: str) -> httpx.Response:
    return c.post("/api/v1/events", content=body, headers=headers)


def refused(c: TestClient, store: EventStore, body: bytes, *fragments: str, **headers: str) -> None:
    r = post(c, body, **headers)
    assert r.status_code == 400, r.text
    assert all(f in r.json()["error"] for f in fragments), r.json()["error"]
    assert store.count() == 0


def test_json_nested_100k_deep_is_400_not_500(api: tuple[TestClient, EventStore]) -> None:
    c, store = api
    deep = b'{"time_ms": 1, "kind": "auth", "fields": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    refused(c, store, json.dumps(event()).encode() + b"\n" + deep + b"\n", "line 2: nested deeper than 4")


def test_brackets_in_strings_do_not_count_as_depth(api: tuple[TestClient, EventStore]) -> None:
    c, store = api
    r = post(c, json.dumps(event(message='[[[[[[[[{{{{{{{{ \\" [[[[')).encode())
    assert r.status_code == 200, r.text
    assert store.count() == 1


@pytest.mark.parametrize(
    ("over", "fragment"),
    [
        ({"labels": {f"l{i}": "v" for i in range(100_000)}}, "labels: 100000 labels exceed the limit of 4"),
        ({"labels": {"instance": "v" * (10 << 20)}}, "labels.instance: value longer than 16"),
        ({"labels": {"x" * 300: "v"}}, "name longer than 256"),
        ({"fields": {f"f{i}": i for i in range(200_000)}}, "fields: 200000 fields exceed the limit of 3"),
        ({"fields": {"user": "u" * 33}}, "fields.user: longer than 32"),
        ({"fields": {"y" * 300: 1}}, "name longer than 256"),
    ],
    ids=[
        "100k-labels",
        "10MiB-label-value",
        "long-label-name",
        "200k-fields",
        "long-field",
        "long-field-name",
    ],
)
def test_event_sizes_are_limited(
    api: tuple[TestClient, EventStore], over: dict[str, Any], fragment: str
) -> None:
    c, store = api
    refused(
        c,
        store,
        json.dumps(event()).encode() + b"\n" + json.dumps(event(**over)).encode(),
        "line 2: ",
        fragment,
    )


def test_gzip_members_are_bounded(
    api: tuple[TestClient, EventStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    c, store = api
    inflaters = 0
    real = zlib.decompressobj

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal inflaters
        inflaters += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(events_api.zlib, "decompressobj", counting)
    refused(
        c,
        store,
        gzip.compress(b"") * 200_000,
        f"more than {MAX_GZIP_MEMBERS} gzip members",
        **{"Content-Encoding": "gzip"},
    )
    assert inflaters == MAX_GZIP_MEMBERS  # the members past the limit are never inflated
    # As many members as allowed (one event each, as `cat a.gz b.gz` makes) are read in order.
    lines = [json.dumps(event(id=f"e{i}")).encode() + b"\n" for i in range(MAX_GZIP_MEMBERS)]
    r = post(c, b"".join(gzip.compress(x) for x in lines), **{"Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["stored"] == MAX_GZIP_MEMBERS


def test_gzip_member_boundaries_anywhere(api: tuple[TestClient, EventStore]) -> None:
    # Members larger than the slice the inflater is fed, and a member cut off at the end.
    c, _ = api
    big = [json.dumps(event(id=f"b{i}", message="m" * 1000)).encode() + b"\n" for i in range(300)]
    body = gzip.compress(b"".join(big[:150]), compresslevel=0) + gzip.compress(
        b"".join(big[150:]), compresslevel=0
    )
    assert len(body) > 2 * (1 << 16)
    r = post(c, body, **{"Content-Encoding": "gzip"})
    assert r.status_code == 200 and r.json()["data"]["stored"] == 300, r.text
    r = post(c, body[:-5], **{"Content-Encoding": "gzip"})
    assert r.status_code == 400 and "truncated" in r.json()["error"], r.text


def test_server_takes_event_limits_from_the_config(tmp_path: Path) -> None:
    cfg = tmp_path / "vigil.yml"
    cfg.write_text("limits:\n  max_event_fields: 2\n  max_json_depth: 3\n  max_label_names_per_series: 2\n")
    v = VigilProcess(tmp_path / "data", extra_args=["--config", str(cfg)]).start()
    try:
        with httpx.Client(base_url=v.url, timeout=10) as c:
            for over, fragment in (
                ({"fields": {"a": 1, "b": 2, "c": 3}}, "3 fields exceed the limit of 2"),
                ({"fields": {"a": [[[1]]]}}, "nested deeper than 3"),
                ({"labels": {"a": "1", "b": "2", "c": "3"}}, "3 labels exceed the limit of 2"),
            ):
                r = c.post("/api/v1/events", content=json.dumps(event(**over)).encode())
                assert r.status_code == 400 and fragment in r.json()["error"], r.text
            ok = c.post("/api/v1/events", content=json.dumps(event(fields={"a": 1, "b": 2})).encode())
            assert ok.status_code == 200, ok.text
    finally:
        v.stop()


_VALID = (
    json.dumps(event(id="a", message="m", fields={"user": "bob", "n": 1, "ok": True, "x": None})).encode()
    + b"\n"
    + json.dumps(event(id="b", labels={"instance": "h2", "job": "node"})).encode()
    + b"\n"
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    bits=st.lists(st.integers(0, 8 * len(_VALID) - 1), min_size=1, max_size=6),
    encoding=st.sampled_from(["identity", "gzip", "snappy", "zstd"]),
    after_compression=st.booleans(),
)
def test_flipped_event_bodies_are_200_or_4xx(
    api: tuple[TestClient, EventStore], bits: list[int], encoding: str, after_compression: bool
) -> None:
    # The in-process client re-raises anything the handler lets escape, so a 500 cannot hide.
    c, _ = api
    compress = {
        "identity": lambda b: b,
        "gzip": lambda b: gzip.compress(b, mtime=0),
        "snappy": lambda b: bytes(cramjam.snappy.compress_raw(b)),
        "zstd": lambda b: bytes(cramjam.zstd.compress(b)),
    }[encoding]
    body = _flip(compress(_VALID), bits) if after_compression else compress(_flip(_VALID, bits))
    r = post(c, body, **{"Content-Encoding": encoding})
    assert r.status_code in (200, 400, 413), r.text
    if r.status_code != 200:
        assert r.json()["error"]


def test_non_finite_numbers_are_refused(api: tuple[TestClient, EventStore]) -> None:
    c, store = api
    for text in ("NaN", "Infinity", "-Infinity", "1e999"):
        line = b'{"time_ms": %d, "kind": "auth", "fields": {"x": %s}}' % (T0, text.encode())
        refused(c, store, line, "fields.x: expected a finite number")


def _flip(data: bytes, bits: list[int]) -> bytes:
    out = bytearray(data)
    for b in bits:
        out[b // 8 % len(out)] ^= 1 << (b % 8)
    return bytes(out)
