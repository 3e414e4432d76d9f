"""The columnar remote-write decoder agrees with upb's strict decoding on every input."""

from __future__ import annotations

import math
import sys
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.prompb import RawWriteRequest, TimeSeries, WriteRequest
from vigil.prompb.codec import (
    DecodedWrite,
    DecodeError,
    OverLimit,
    WireLimits,
    _decode_fast,
    _decode_strict,
    _uvarint,
    decode_write_request,
    parse_label_key,
)
from vigil.prompb.encode import encode_write_request

_name = st.text("abcdefghij_", min_size=1, max_size=8)
_value = st.text(min_size=0, max_size=20)
_labels = st.lists(st.tuples(_name, _value), max_size=6)
_samples = st.lists(
    st.tuples(st.integers(-(2**62), 2**62), st.floats(allow_nan=True, allow_infinity=True)), max_size=4
)


def same(a, b) -> None:
    assert a.label_keys == b.label_keys
    assert a.sample_series.tolist() == b.sample_series.tolist()
    assert a.timestamps.tolist() == b.timestamps.tolist()
    assert a.values.view(np.int64).tolist() == b.values.view(np.int64).tolist()
    assert (a.histograms, a.exemplars) == (b.histograms, b.exemplars)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_labels, _samples), max_size=20))
def test_fast_path_equals_strict(series) -> None:
    body = encode_write_request([s for s, _ in series], [p for _, p in series])
    fast = decode_write_request(body).verified()
    same(fast, _decode_strict(body))
    for key, (labels, _) in zip(fast.label_keys, series, strict=True):
        # proto3 drops empty strings on the wire; they come back as "".
        assert parse_label_key(key) == [(n, v) for n, v in labels]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_labels, _samples), max_size=20))
def test_unwalked_keys_are_exact_or_rejected(series) -> None:
    # The contract the ingester relies on: a key cut without walking is either the series' exact
    # label section or does not parse as labels at all (so it is never mistaken for another series).
    body = encode_write_request([s for s, _ in series], [p for _, p in series])
    tail = decode_write_request(body)
    strict = _decode_strict(body)
    if tail.unverified_body is None:
        same(tail, strict)
        return
    for key, exact in zip(tail.label_keys, strict.label_keys, strict=True):
        if key != exact:
            with pytest.raises(DecodeError):
                parse_label_key(key)


def test_unusual_field_order_is_still_decoded() -> None:
    # Samples before labels and a sample with timestamp before value: legal protobuf, not Prometheus' order.
    lab = TimeSeries(labels=[{"name": "__name__", "value": "up"}]).SerializeToString()
    sample = b"\x10\x05\x09" + np.float64(2.5).tobytes()
    ts = b"\x12" + bytes([len(sample)]) + sample + lab
    body = b"\x0a" + bytes([len(ts)]) + ts
    d = decode_write_request(body)
    assert d.timestamps.tolist() == [5] and d.values.tolist() == [2.5]
    assert parse_label_key(d.label_keys[0]) == [("__name__", "up")]


def test_histograms_and_exemplars_are_counted() -> None:
    req = WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="x")
    ts.samples.add(timestamp=1, value=1.0)
    ts.exemplars.add(value=1.0, timestamp=1)
    ts.histograms.append(b"\x08\x01")
    d = decode_write_request(req.SerializeToString())
    assert (d.histograms, d.exemplars, d.timestamps.tolist()) == (1, 1, [1])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_is_a_decode_error_or_consistent(data: bytes) -> None:
    try:
        d = decode_write_request(data)
    except DecodeError:
        return
    same(d, _decode_strict(data))


def test_invalid_utf8_label_is_rejected_when_parsed() -> None:
    lab = b"\x0a\x08\x0a\x01a\x12\x03\xff\xfe\xfd"
    body = b"\x0a" + bytes([len(lab)]) + lab
    d = decode_write_request(body)  # label bytes are opaque to the fast path...
    with pytest.raises(DecodeError):
        parse_label_key(d.label_keys[0])  # ...and strict when first parsed


def test_stale_marker_bits_survive() -> None:
    stale = np.array([0x7FF0000000000002], np.int64).view(np.float64)[0]
    d = decode_write_request(
        encode_write_request([[("__name__", "a")]], [[(1, stale), (2, -0.0)]])
    ).verified()
    assert d.values.view(np.int64).tolist() == [0x7FF0000000000002, np.float64(-0.0).view(np.int64)]
    assert math.copysign(1, d.values[1]) == -1


# -- the walks agree with upb whatever the shape; limits hold in every path -------------------------

_long_samples = st.lists(
    st.tuples(
        st.sampled_from([0, 1, 127, 128, 2**20, 1_700_000_000_000, -1]), st.sampled_from([0.0, 1.5, -0.0])
    ),
    max_size=300,
)


_NO_LIMITS = WireLimits()


def _fast(body: bytes, lockstep_min: int, limits: WireLimits = _NO_LIMITS) -> DecodedWrite:
    raw = RawWriteRequest()
    raw.ParseFromString(body)
    return _decode_fast(raw.timeseries, limits, lockstep_min=lockstep_min)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(_labels, st.one_of(_samples, _long_samples)), max_size=40),
    st.sampled_from([0, 3, 10**9]),
)
def test_lockstep_and_sequential_walks_equal_strict(series, lockstep_min: int) -> None:
    # lockstep_min 0: every field in numpy rounds; 10**9: every series walked on its own (strided
    # runs included: long series of equal and mixed sample lengths); 3: the hand-over between them.
    body = encode_write_request([s for s, _ in series], [p for _, p in series])
    same(_fast(body, lockstep_min), _decode_strict(body))


def _one_series(n: int, labels: int = 1) -> bytes:
    pairs = [("__name__", "m")] + [(f"l{i:03}", "v") for i in range(labels - 1)]
    return encode_write_request([pairs], [[(1_700_000_000_000 + i, float(i % 3)) for i in range(n)]])


def _labels_after_samples(n: int) -> bytes:
    """One series whose label comes after its samples: legal, but only the strict path takes it."""
    sample = b"\x09" + np.float64(1).tobytes() + b"\x10\x01"
    ts = (b"\x12" + bytes([len(sample)]) + sample) * n + b"\x0a\x05\x0a\x01a\x12\x00"
    return b"\x0a" + _uvarint(len(ts)) + ts


@pytest.mark.parametrize(
    "decode",
    [
        pytest.param(lambda b, lim: decode_write_request(b, limits=lim).verified(), id="tail+verified"),
        pytest.param(lambda b, lim: decode_write_request(b, False, lim), id="walked"),
        pytest.param(lambda b, lim: _fast(b, 0, lim), id="lockstep"),
        pytest.param(lambda b, lim: _fast(b, 10**9, lim), id="sequential"),
        pytest.param(lambda b, lim: _decode_strict(b, lim), id="strict"),
    ],
)
def test_sample_limit_in_every_path(decode) -> None:
    lim = WireLimits(max_samples=500)
    assert decode(_one_series(500), lim).timestamps.size == 500
    with pytest.raises(OverLimit, match="more than 500 samples") as exc:
        decode(_one_series(501), lim)
    assert exc.value.reason == "too_many_samples"
    many = encode_write_request([[("__name__", f"m{i}")] for i in range(100)], [[(1, 1.0)] * 5] * 100)
    assert decode(many, lim).timestamps.size == 500
    more = encode_write_request([[("__name__", f"m{i}")] for i in range(101)], [[(1, 1.0)] * 5] * 101)
    with pytest.raises(OverLimit):
        decode(more, lim)


def test_sample_limit_on_the_strict_path() -> None:
    lim = WireLimits(max_samples=3000)
    assert decode_write_request(_labels_after_samples(3000), False, lim).timestamps.size == 3000
    with pytest.raises(OverLimit, match="more than 3000 samples"):
        decode_write_request(_labels_after_samples(3001), False, lim)


@pytest.mark.parametrize("lockstep_min", [0, 10**9])
def test_label_limit_while_walking(lockstep_min: int) -> None:
    lim = WireLimits(max_labels=8)
    assert len(parse_label_key(_fast(_one_series(2, labels=8), lockstep_min, lim).label_keys[0])) == 8
    with pytest.raises(OverLimit, match="series 1 of the request has more than 8 labels") as exc:
        _fast(_one_series(2, labels=9), lockstep_min, lim)
    assert exc.value.reason == "too_many_labels"
    with pytest.raises(OverLimit, match="more than 8 labels"):
        decode_write_request(_one_series(2, labels=9), limits=lim).verified()


def test_label_limit_on_the_strict_path() -> None:
    # Big enough to be counted before upb parses it (the counting walk bounds upb's allocations).
    ts = b"\x0a\x05\x0a\x01a\x12\x00" * 1000 + b"\x12\x00"
    body = b"\x0a" + _uvarint(len(ts)) + ts
    with pytest.raises(OverLimit, match="more than 64 labels"):
        _decode_strict(body, WireLimits(max_labels=64))


def test_series_limit_is_checked_before_upb_parses_the_series() -> None:
    lim = WireLimits(max_samples=1000)
    body = encode_write_request([[("__name__", "m")]] * 1000, [[(1, 1.0)]] * 1000)
    assert len(decode_write_request(body, limits=lim).label_keys) == 1000
    tiny = b"\x0a\x00" * 1001  # 1,001 empty series: two bytes each
    with pytest.raises(OverLimit, match="more than 1000 series") as exc:
        decode_write_request(tiny, limits=lim)
    assert exc.value.reason == "too_many_series"


def _numpy_calls(f) -> int:
    calls = 0

    def count(frame, event, arg) -> None:
        nonlocal calls
        calls += event == "c_call"

    sys.setprofile(count)
    try:
        f()
    finally:
        sys.setprofile(None)
    return calls


def test_one_long_series_is_walked_in_few_numpy_rounds() -> None:
    # The cause of "one series x 1M samples took 94 s": the lock-step walk made one round of numpy
    # calls per field of the longest series. Counted, not timed: equally long samples are taken
    # as strided runs, so 100,000 of them cost a handful of calls, not a few per sample.
    points = [(1_700_000_000_000 + i, 1.5) for i in range(100_000)]
    body = encode_write_request([[("__name__", "m")]], [points])
    calls = _numpy_calls(lambda: decode_write_request(body, tail_fast_path=False))
    assert calls < 2_000
    got = decode_write_request(body, tail_fast_path=False)
    assert got.timestamps.size == 100_000 and got.timestamps[-1] == 1_700_000_000_000 + 99_999


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_labels, st.one_of(_samples, _long_samples)), max_size=10),
    st.lists(st.integers(0, 1 << 16), max_size=3),
    st.integers(1, 400),
    st.integers(1, 6),
)
def test_limited_decodes_are_exact_or_refused(series, flips, max_samples: int, max_labels: int) -> None:
    # With limits, any body either decodes to exactly what upb sees, within the limits, or is a
    # DecodeError (OverLimit included): never a different decode, never more than allowed.
    body = bytearray(encode_write_request([s for s, _ in series], [p for _, p in series]))
    for f in flips:
        if body:
            body[f // 8 % len(body)] ^= 1 << (f % 8)
    lim = WireLimits(max_samples, max_labels)
    try:
        got = decode_write_request(bytes(body), limits=lim).verified()
    except DecodeError:
        return
    try:
        want = _decode_strict(bytes(body))
    except DecodeError:
        # Only label bytes are opaque to the walk: then some key is refused when it is parsed.
        with pytest.raises(DecodeError):
            for key in got.label_keys:
                parse_label_key(key)
        return
    # Raw label bytes and upb's re-encoding of them may differ (upb moves unknown fields last),
    # but they must be the same labels.
    labels = [parse_label_key(k) for k in got.label_keys]
    assert labels == [parse_label_key(k) for k in want.label_keys]
    same(replace(got, label_keys=want.label_keys), want)
    assert got.timestamps.size + got.histograms + got.exemplars <= max_samples
    assert all(len(pairs) <= max_labels for pairs in labels)
