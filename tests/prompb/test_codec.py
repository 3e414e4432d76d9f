"""The columnar remote-write decoder agrees with upb's strict decoding on every input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.prompb import TimeSeries, WriteRequest
from vigil.prompb.codec import (
    DecodeError,
    _decode_strict,
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
