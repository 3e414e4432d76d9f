"""Tests for the group chunk codec: exact round trips, robustness to corrupt input, and size."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from vigil.tsdb.chunkenc import VERSION, ChunkDecodeError, decode_group, encode_group

STALE_NAN_BITS = 0x7FF0000000000002
I64_MIN, I64_MAX = -(2**63), 2**63 - 1

Group = tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]


def _bits_to_float(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def assert_round_trip(group: Group) -> bytes:
    refs, offsets, timestamps, values = group
    data = encode_group(refs, offsets, timestamps, values)
    got = decode_group(data)
    for name, want, have in zip(("refs", "offsets", "timestamps"), group[:3], got[:3], strict=True):
        assert have.dtype == np.int64, name
        np.testing.assert_array_equal(have, want, err_msg=name)
    assert got[3].dtype == np.float64
    # Bitwise, so NaN payloads and the sign of zero count.
    np.testing.assert_array_equal(got[3].view(np.int64), values.view(np.int64))
    # memoryview input decodes the same.
    np.testing.assert_array_equal(decode_group(memoryview(data))[3].view(np.int64), values.view(np.int64))
    return data


def make_group(series: list[tuple[list[int], list[float]]], first_ref: int = 1) -> Group:
    refs = np.arange(first_ref, first_ref + 3 * len(series), 3, dtype=np.int64)
    counts = [len(ts) for ts, _ in series]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    timestamps = np.array([t for ts, _ in series for t in ts], dtype=np.int64)
    values = np.array([v for _, vs in series for v in vs], dtype=np.float64)
    return refs, offsets, timestamps, values


# ------------------------------------------------------------------------------------ hypothesis groups

special_floats = st.sampled_from(
    [
        _bits_to_float(STALE_NAN_BITS),
        float("nan"),
        -float("nan"),
        _bits_to_float(0x7FF0000000000001),  # signalling NaN
        _bits_to_float(0xFFFFFFFFFFFFFFFF),
        0.0,
        -0.0,
        float("inf"),
        -float("inf"),
        5e-324,
        -2.2250738585072014e-308,
        1.7976931348623157e308,
        2.0**53,
        2.0**53 + 2,
        -(2.0**63),
    ]
)
decimal_floats = st.builds(lambda n, e: n / 10.0**e, st.integers(-(2**53) + 1, 2**53 - 1), st.integers(0, 17))
any_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.integers(0, 2**64 - 1).map(_bits_to_float),  # every bit pattern, so every NaN payload
    special_floats,
    decimal_floats,
)


@st.composite
def series_values(draw: st.DrawFn, n: int) -> list[float]:
    kind = draw(st.sampled_from(["any", "decimal", "counter", "constant", "mixed"]))
    if kind == "any":
        return draw(st.lists(any_floats, min_size=n, max_size=n))
    if kind == "decimal":
        return draw(st.lists(decimal_floats, min_size=n, max_size=n))
    if kind == "counter":
        e = draw(st.integers(0, 6))
        start = draw(st.integers(0, 10**12))
        steps = draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n))
        return [(start + s) / 10.0**e for s in np.cumsum(steps).tolist()]
    if kind == "constant":
        return [draw(any_floats)] * n
    # A decimal series with one odd value in it, which must push the whole series to the float path.
    vals = draw(st.lists(decimal_floats, min_size=n, max_size=n))
    vals[draw(st.integers(0, n - 1))] = draw(special_floats)
    return vals


@st.composite
def series_timestamps(draw: st.DrawFn, n: int) -> list[int]:
    if draw(st.booleans()):
        # Regular scrapes with jitter, anywhere in the int64 range.
        interval = draw(st.integers(1, 100_000))
        start = draw(st.integers(I64_MIN, I64_MAX - (interval + 10) * n))
        jitter = draw(st.lists(st.integers(0, min(interval - 1, 10)), min_size=n, max_size=n))
        return [start + i * interval + j for i, j in enumerate(jitter)]
    return draw(st.lists(st.integers(I64_MIN, I64_MAX), min_size=n, max_size=n, unique=True).map(sorted))


@st.composite
def groups(draw: st.DrawFn) -> Group:
    n_series = draw(st.integers(0, 12))
    series = []
    for _ in range(n_series):
        n = draw(st.integers(1, 30))
        series.append((draw(series_timestamps(n)), draw(series_values(n))))
    first_ref = draw(st.one_of(st.integers(I64_MIN, 0), st.integers(0, 2**40)))
    refs, offsets, timestamps, values = make_group(series)
    if n_series and draw(st.booleans()):
        # Arbitrary strictly ascending refs, including both ends of the int64 range.
        refs = np.array(
            sorted(draw(st.sets(st.integers(I64_MIN, I64_MAX), min_size=n_series, max_size=n_series))),
            dtype=np.int64,
        )
    else:
        refs = refs + np.int64(first_ref)
    return refs, offsets, timestamps, values


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups())
def test_round_trip_hypothesis(group: Group) -> None:
    assert_round_trip(group)


# ------------------------------------------------------------------------------------- explicit cases


def test_empty_group() -> None:
    data = assert_round_trip(make_group([]))
    assert data[0] == VERSION


def test_single_sample_series_and_extremes() -> None:
    stale = _bits_to_float(STALE_NAN_BITS)
    group = make_group(
        [
            ([I64_MIN], [stale]),
            ([I64_MIN, I64_MAX], [-0.0, 0.0]),
            ([-1, 0, 1], [float("inf"), -float("inf"), 5e-324]),
            ([7], [1.25]),
            ([0, 15_000, 30_001, 44_999], [0.1, 0.2, 0.30000000000000004, 1e-15]),
            ([I64_MAX - 2, I64_MAX], [1.7976931348623157e308, -1.7976931348623157e308]),
        ],
        first_ref=I64_MIN,
    )
    assert_round_trip(group)


def test_decimal_values_round_trip() -> None:
    # 1.15 * 100 is 114.99999999999999 in float64, yet 115 / 100 == 1.15: still exactly decodable.
    vals = [1.15, 0.07, 123456.78, -3.5, 1e-15, 9007199254740991.0, 2.0**60, 1e300]
    group = make_group([(list(range(0, 15_000 * len(vals), 15_000)), vals)])
    assert_round_trip(group)


def test_stale_markers_inside_regular_series() -> None:
    stale = _bits_to_float(STALE_NAN_BITS)
    ts = list(range(1_700_000_000_000, 1_700_000_000_000 + 15_000 * 50, 15_000))
    vals = [float(i) for i in range(49)] + [stale]
    assert_round_trip(make_group([(ts, vals), (ts, [stale] * 50), (ts, [0.5] * 50)]))


def test_mixed_value_modes_round_trip() -> None:
    # Linear ramps favour deltas of deltas, random walks plain deltas, random floats the XOR path;
    # interleaving them checks that per-series modes line up with the right samples.
    rng = np.random.default_rng(7)
    ts = list(range(1_000, 1_000 + 15_000 * 60, 15_000))
    series = []
    for k in range(30):
        if k % 3 == 0:
            vals = (np.arange(60) * (k + 1) * 0.25 + 10).tolist()
        elif k % 3 == 1:
            vals = np.round(np.cumsum(rng.normal(0, 3, 60)), 1).tolist()
        else:
            vals = rng.random(60).tolist()
        series.append((ts[k % 7 :], vals[k % 7 :]))
    assert_round_trip(make_group(series))


def test_regular_series_are_nearly_free() -> None:
    ts = list(range(1_700_000_000_000, 1_700_000_000_000 + 15_000 * 240, 15_000))
    group = make_group([(ts, [k * i * 0.5 for i in range(240)]) for k in range(50)])
    data = assert_round_trip(group)
    assert len(data) / len(group[2]) < 0.1


@pytest.mark.parametrize(
    "group",
    [
        (np.array([2, 1]), np.array([0, 1, 2]), np.array([0, 0]), np.array([0.0, 0.0])),  # refs order
        (np.array([1, 2]), np.array([0, 1, 1]), np.array([0]), np.array([0.0])),  # empty series
        (np.array([1]), np.array([0, 2]), np.array([5, 5]), np.array([0.0, 0.0])),  # equal timestamps
        (np.array([1]), np.array([0, 2]), np.array([6, 5]), np.array([0.0, 0.0])),  # descending
        (np.array([1]), np.array([1, 2]), np.array([5, 6]), np.array([0.0, 0.0])),  # offsets[0] != 0
        (np.array([1]), np.array([0, 2]), np.array([5, 6]), np.array([0.0])),  # lengths disagree
        (np.array([1]), np.array([0, 1]), np.array([5.0]), np.array([0.0])),  # float timestamps
        (np.array([[1]]), np.array([0, 1]), np.array([5]), np.array([0.0])),  # not 1-D
    ],
)
def test_encode_rejects_invalid_groups(group: Group) -> None:
    with pytest.raises(ValueError):
        encode_group(*group)


def test_accepts_other_array_dtypes() -> None:
    data = encode_group(
        np.array([1, 2], dtype=np.int32),
        np.array([0, 1, 2], dtype=np.uint8),
        np.array([10, 20], dtype=np.uint32),
        np.array([0.5, 1.5], dtype=np.float32),
    )
    refs, offsets, timestamps, values = decode_group(data)
    assert refs.tolist() == [1, 2] and offsets.tolist() == [0, 1, 2] and timestamps.tolist() == [10, 20]
    assert values.tolist() == [0.5, 1.5]


# ------------------------------------------------------------------------------------ corrupt input


def _sample_frame() -> bytes:
    stale = _bits_to_float(STALE_NAN_BITS)
    ts = list(range(0, 15_000 * 20, 15_000))
    return encode_group(
        *make_group(
            [
                (ts, [i * 0.25 for i in range(20)]),
                (ts, [float(i * i) for i in range(20)]),
                (ts[:3], [stale, 1.0 / 3.0, float("nan")]),
                ([42], [7.0]),
            ]
        )
    )


def test_decode_rejects_version_and_truncation() -> None:
    data = _sample_frame()
    with pytest.raises(ChunkDecodeError, match="version"):
        decode_group(bytes([VERSION + 1]) + data[1:])
    for cut in range(len(data)):
        with pytest.raises(ChunkDecodeError):
            decode_group(data[:cut])
    with pytest.raises(ChunkDecodeError):
        decode_group(data + b"\0")


def _decode_or_decode_error(data: bytes) -> None:
    try:
        refs, offsets, timestamps, values = decode_group(data)
    except ChunkDecodeError:
        return
    # Whatever decodes must at least be shaped consistently.
    assert len(offsets) == len(refs) + 1 and offsets[0] == 0
    assert offsets[-1] == len(timestamps) == len(values)
    assert np.all(np.diff(offsets) > 0)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    _decode_or_decode_error(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_after_valid_version(data: bytes) -> None:
    _decode_or_decode_error(bytes([VERSION]) + data)


@settings(max_examples=1000, deadline=None)
@given(st.data())
def test_fuzz_mutated_frames(data: st.DataObject) -> None:
    frame = bytearray(_sample_frame())
    # zstd frames here carry no checksum, so flipped bytes inside sections often decompress to garbage of
    # the right size and exercise the decoder's own validation.
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(frame) - 1))
        frame[pos] = data.draw(st.integers(0, 255))
    _decode_or_decode_error(bytes(frame))


def test_decode_rejects_non_buffers() -> None:
    with pytest.raises(ChunkDecodeError):
        decode_group(memoryview(b"abcdef")[::2])  # not contiguous
    with pytest.raises(ChunkDecodeError):
        decode_group("not bytes")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- size


def node_exporter_group(n_series: int = 100, n_samples: int = 240, seed: int = 0) -> Group:
    """A synthetic group shaped like node_exporter scrapes: 15 s interval with a few ms of jitter.

    A quarter each of: CPU-seconds counters with 2 decimals, growing integer byte counters (some idle),
    fluctuating integer gauges (memory bytes in pages, small process counts), load averages (2 decimals).
    """
    rng = np.random.default_rng(seed)
    n_targets = 4
    start = 1_700_000_000_000
    target_ts = [
        start + int(rng.integers(0, 15_000)) + 15_000 * np.arange(n_samples) + rng.integers(-3, 4, n_samples)
        for _ in range(n_targets)
    ]
    timestamps: list[NDArray[Any]] = []
    values: list[NDArray[Any]] = []
    for i in range(n_series):
        timestamps.append(target_ts[i % n_targets])
        kind = (i * 4) // n_series
        v: NDArray[Any]
        if kind == 0:  # node_cpu_seconds_total
            busy = rng.uniform(0.0, 1.0)
            steps = np.clip(rng.normal(15.0 * busy, 0.5, n_samples), 0.0, 15.0)
            v = np.round(rng.uniform(1e4, 1e6) + np.cumsum(steps), 2)
        elif kind == 1:  # node_network_receive_bytes_total and the like
            rate = 0 if i % 3 == 0 else rng.uniform(1e2, 1e5)
            v = float(rng.integers(0, 10**10)) + np.cumsum(rng.poisson(rate * 15, n_samples)).astype(float)
        elif kind == 2:
            if i % 2:  # node_memory_MemAvailable_bytes
                base = int(rng.integers(2**30, 2**34)) // 4096
                v = 4096.0 * (base + np.cumsum(rng.integers(-200, 201, n_samples)))
            else:  # node_procs_running
                v = rng.integers(0, 8, n_samples).astype(float)
        else:  # node_load1
            v = np.round(np.abs(np.cumsum(rng.normal(0, 0.05, n_samples)) + rng.uniform(0, 4)), 2)
        values.append(v)
    refs = np.arange(1, n_series + 1, dtype=np.int64) * 7
    offsets = np.arange(0, (n_series + 1) * n_samples, n_samples, dtype=np.int64)
    return refs, offsets, np.concatenate(timestamps).astype(np.int64), np.concatenate(values)


def test_node_exporter_size() -> None:
    group = node_exporter_group()
    data = assert_round_trip(group)
    per_sample = len(data) / len(group[2])
    print(f"node_exporter-like group: {len(data)} bytes, {per_sample:.3f} bytes/sample")
    # Prometheus' XOR chunks take about 1.3-3.2 bytes/sample on such data.
    assert per_sample < 2.0
