"""Bit-flipped remote-write bodies against a real server: only ever 204, 400, 413 or 415 (never a
5xx, which senders retry forever), and the keep-alive connection they came on keeps serving."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from pathlib import Path

import cramjam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import VigilProcess
from vigil.prompb import WriteRequest
from vigil.prompb.encode import encode_write_request

HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}
T0 = int(time.time() * 1000) - 600_000  # sent to a real server: sample times near its clock


def _with_exemplar_and_histogram() -> bytes:
    req = WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="hist")
    ts.samples.add(timestamp=T0, value=1.0)
    ts.exemplars.add(value=1.0, timestamp=T0)
    ts.histograms.append(b"\x08\x01")
    return bytes(req.SerializeToString())


# Valid bodies of every shape the decoder treats differently: one sample per series (the unwalked
# tail path), several samples per series (the lock-step walk), one long series (the sequential
# walk with strided runs), metadata, and an exemplar and a histogram (the tail of a series).
_BODIES = [
    encode_write_request(
        [[("__name__", "up"), ("instance", f"h{i}"), ("job", "node")] for i in range(40)],
        [[(T0 + i, float(i))] for i in range(40)],
    ),
    encode_write_request(
        [[("__name__", "cpu"), ("mode", m)] for m in ("idle", "user", "system")],
        [[(T0 + k * 15_000, k * 0.5) for k in range(6)] for _ in range(3)],
        [("cpu", "counter", "CPU seconds.", "seconds")],
    ),
    encode_write_request([[("__name__", "long")]], [[(T0 + k, float(k % 3)) for k in range(300)]]),
    _with_exemplar_and_histogram(),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VigilProcess]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    cfg = tmp / "vigil.yml"
    cfg.write_text("limits:\n  max_samples_per_request: 1000\n  max_label_names_per_series: 8\n")
    v = VigilProcess(tmp / "data", extra_args=["--config", str(cfg)]).start()
    yield v
    v.stop()


@pytest.fixture(scope="module")
def conn(server: VigilProcess) -> Iterator[http.client.HTTPConnection]:
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    yield c
    c.close()


def _flip(data: bytes, bits: list[int]) -> bytes:
    out = bytearray(data)
    for b in bits:
        out[b // 8 % len(out)] ^= 1 << (b % 8)
    return bytes(out)


def _post(conn: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes]:
    conn.request("POST", "/api/v1/write", body=body, headers=HEADERS)
    r = conn.getresponse()
    return r.status, r.read()


def test_unflipped_bodies_are_stored(conn: http.client.HTTPConnection) -> None:
    # First, before flipped timestamps can move the server's newest sample far ahead.
    statuses = [_post(conn, bytes(cramjam.snappy.compress_raw(b)))[0] for b in _BODIES]
    # The histogram body is a partial write (400: native histograms are not supported).
    assert statuses[:3] == [204, 204, 204] and statuses[3] == 400


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.integers(0, len(_BODIES) - 1),
    bits=st.lists(st.integers(0, 1 << 20), min_size=1, max_size=4),
    after_compression=st.booleans(),
)
def test_bit_flips_are_refused_with_4xx_and_the_connection_lives(
    server: VigilProcess,
    conn: http.client.HTTPConnection,
    which: int,
    bits: list[int],
    after_compression: bool,
) -> None:
    raw = _BODIES[which]
    if after_compression:
        body = _flip(bytes(cramjam.snappy.compress_raw(raw)), bits)
    else:
        body = bytes(cramjam.snappy.compress_raw(_flip(raw, bits)))
    status, text = _post(conn, body)
    assert status in (204, 400, 413, 415), (status, text, server.log()[-2000:])
    assert status == 204 or text.strip(), "a refusal says why"
    # The same keep-alive connection still answers (a 500 used to reset it).
    conn.request("GET", "/-/healthy")
    r = conn.getresponse()
    assert (r.status, r.read()) == (200, b"Vigil is Healthy.\n")
