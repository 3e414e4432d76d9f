"""Remote-write 1.0 payloads to and from columnar arrays.

Decoding is the measured bottleneck of ingest, so the common shape of a WriteRequest (what
Prometheus, vmagent and Vigil's agent send: each TimeSeries is its Label fields, then its Sample
fields) is walked with numpy, all series in lock step, without a Python object per label or sample.
Each series is returned as the raw bytes of its label fields: identical bytes mean an identical
label set, so the ingester can map them to a series ref with one dict lookup and parse labels only
for series it has not seen. Anything outside that shape falls back to a strict decode with upb,
which also produces the error messages for malformed input.

Fastest of all, when every series ends in exactly one sample (a scrape's worth, the usual case),
that sample is read backwards from the end of each series and everything before it is taken as
the label section without walking it ("unverified" keys). That cut can only be wrong if a series
is not in that shape, and then its key is neither a known label section nor parses as one: the
ingester detects it and asks for `DecodedWrite.verified()`, the walked decode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cramjam
import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError as _PBDecodeError

from vigil.prompb import METRIC_TYPES, RawWriteRequest, TimeSeries, WriteRequest

# Wire tags inside TimeSeries: field number << 3 | wire type (2 = length-delimited).
_TAG_LABEL, _TAG_SAMPLE, _TAG_EXEMPLAR, _TAG_HISTOGRAM = 0x0A, 0x12, 0x1A, 0x22
# Inside Sample: value is field 1 fixed64, timestamp field 2 varint.
_TAG_VALUE, _TAG_TIMESTAMP = 0x09, 0x10
_PAD = 16  # zero bytes after the buffer so fixed-width gathers never read out of bounds


class DecodeError(ValueError):
    """The payload is not a valid remote-write request; the message says why."""


@dataclass(frozen=True)
class DecodedWrite:
    """A decoded WriteRequest: series as raw label bytes, samples as columns."""

    label_keys: list[bytes]
    sample_series: npt.NDArray[np.int64]
    timestamps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    histograms: int = 0
    exemplars: int = 0
    metadata: list[tuple[str, str, str, str]] = field(default_factory=list)
    # Set when keys were cut without walking the labels: unknown keys must be checked strictly.
    unverified_body: bytes | None = None

    def verified(self) -> DecodedWrite:
        """The same request decoded by walking every field (keys are exact label sections)."""
        if self.unverified_body is None:
            return self
        return decode_write_request(self.unverified_body, tail_fast_path=False)


class _Unusual(Exception):
    """The fast path met a shape it does not handle; the strict decoder takes over."""


def decode_snappy(body: bytes, max_decompressed: int) -> bytes:
    """Snappy block format, as remote write uses; refuses to inflate beyond `max_decompressed`."""
    try:
        size = int(cramjam.snappy.decompress_raw_len(body))
    except Exception as exc:
        raise DecodeError(f"snappy: {exc}") from None
    if size > max_decompressed:
        raise DecompressedTooLarge(size)
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except Exception as exc:
        raise DecodeError(f"snappy: {exc}") from None


class DecompressedTooLarge(DecodeError):
    def __init__(self, size: int) -> None:
        super().__init__(f"decompressed body of {size} bytes exceeds the limit")
        self.size = size


def decode_write_request(body: bytes, tail_fast_path: bool = True) -> DecodedWrite:
    """Decode an uncompressed WriteRequest. Raises DecodeError on malformed protobuf."""
    raw = RawWriteRequest()
    try:
        raw.ParseFromString(body)
    except _PBDecodeError as exc:
        raise DecodeError(f"protobuf: {exc}") from None
    metadata = _decode_metadata(raw.metadata) if len(raw.metadata) else []
    decoded = _decode_tail(raw.timeseries, body) if tail_fast_path else None
    if decoded is None:
        try:
            decoded = _decode_fast(raw.timeseries)
        except _Unusual:
            decoded = _decode_strict(body)
    if metadata:
        object.__setattr__(decoded, "metadata", metadata)
    return decoded


def parse_label_key(key: bytes) -> list[tuple[str, str]]:
    """The (name, value) pairs encoded in a series' label bytes, in wire order. Strict."""
    ts = TimeSeries()
    try:
        ts.ParseFromString(key)
    except _PBDecodeError as exc:
        raise DecodeError(f"protobuf: invalid labels: {exc}") from None
    if len(ts.samples) or len(ts.exemplars) or len(ts.histograms):
        raise DecodeError("protobuf: invalid labels")
    return [(lb.name, lb.value) for lb in ts.labels]


def _decode_metadata(parts: Sequence[bytes]) -> list[tuple[str, str, str, str]]:
    req = WriteRequest()
    try:
        req.ParseFromString(b"".join(b"\x1a" + _uvarint(len(p)) + p for p in parts))
    except _PBDecodeError as exc:
        raise DecodeError(f"protobuf: invalid metadata: {exc}") from None
    out = []
    for m in req.metadata:
        mtype = METRIC_TYPES[m.type] if 0 <= m.type < len(METRIC_TYPES) else "unknown"
        out.append((m.metric_family_name, mtype, m.help, m.unit))
    return out


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _varints(
    buf: npt.NDArray[np.uint8], pos: npt.NDArray[np.int64], width: int
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
    """Decode one varint at each position (at most `width` bytes); returns values and lengths."""
    b = buf[pos[:, None] + np.arange(width)]
    stops = b < 0x80
    if not stops.any(axis=1).all():
        raise _Unusual
    lengths = stops.argmax(axis=1) + 1
    shifts = (7 * np.arange(width)).astype(np.uint64)
    parts = (b & 0x7F).astype(np.uint64) << shifts
    parts[np.arange(width) >= lengths[:, None]] = 0
    return parts.sum(axis=1, dtype=np.uint64), lengths.astype(np.int64)


_FRONT = 24  # zero bytes before the buffer, so backward gathers never index below it


def _decode_tail(parts: Sequence[bytes], body: bytes) -> DecodedWrite | None:
    """Series that each end in exactly one sample, read from the end; None if any does not."""
    n = len(parts)
    if n == 0:
        return None
    joined = b"".join(parts)
    buf = np.frombuffer(bytes(_FRONT) + joined, np.uint8)
    lens = np.fromiter(map(len, parts), np.int64, n)
    ends = np.cumsum(lens) + _FRONT
    starts = ends - lens
    # The timestamp varint ends the series: its last byte is < 0x80, the ones before it >= 0x80.
    if (buf[ends - 1] >= 0x80).any():
        return None
    back = buf[(ends - 2)[:, None] - np.arange(9)] >= 0x80
    vlen = np.where(back.all(axis=1), 9, back.argmin(axis=1)) + 1
    ts_tag = ends - vlen - 1
    # Sample = 0x12 L [0x09 <8 bytes>] 0x10 <varint>: with a value (L = vlen + 10) or, when the
    # value is 0.0 and proto3 left it out, without (L = vlen + 1).
    s_val = ts_tag - 11
    with_value = (buf[s_val] == _TAG_SAMPLE) & (buf[s_val + 1] == vlen + 10) & (buf[s_val + 2] == _TAG_VALUE)
    s_nov = ts_tag - 2
    without = (buf[s_nov] == _TAG_SAMPLE) & (buf[s_nov + 1] == vlen + 1)
    cut = np.where(with_value, s_val, s_nov)
    if not ((buf[ts_tag] == _TAG_TIMESTAMP) & (with_value | without) & (cut >= starts)).all():
        return None
    values = np.zeros(n, np.float64)
    if with_value.any():
        q = s_val[with_value] + 3
        values[with_value] = np.ascontiguousarray(buf[q[:, None] + np.arange(8)]).view("<f8").ravel()
    padded = np.concatenate([buf, np.zeros(_PAD, np.uint8)])
    tv, _ = _varints(padded, ts_tag + 1, 10)
    keys = [joined[a:b] for a, b in zip((starts - _FRONT).tolist(), (cut - _FRONT).tolist(), strict=True)]
    return DecodedWrite(keys, np.arange(n, dtype=np.int64), tv.view(np.int64), values, unverified_body=body)


def _decode_fast(parts: Sequence[bytes]) -> DecodedWrite:
    n = len(parts)
    if n == 0:
        return DecodedWrite([], np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
    joined = b"".join(parts)
    buf = np.frombuffer(joined + bytes(_PAD), np.uint8)
    lens = np.fromiter(map(len, parts), np.int64, n)
    ends = np.cumsum(lens)
    starts = ends - lens
    pos = starts.copy()
    label_end = np.full(n, -1, np.int64)
    in_tail = np.zeros(n, bool)  # past the samples: only exemplars/histograms may follow
    s_series: list[npt.NDArray[np.int64]] = []
    s_pos: list[npt.NDArray[np.int64]] = []
    s_len: list[npt.NDArray[np.int64]] = []
    histograms = exemplars = 0
    active = np.arange(n)
    while True:
        active = active[pos[active] < ends[active]]
        if active.size == 0:
            break
        p = pos[active]
        tag = buf[p]
        length = buf[p + 1].astype(np.int64)
        vlen = np.ones_like(length)
        long = length >= 0x80
        if long.any():
            v, ln = _varints(buf, p[long] + 1, 5)
            length[long] = v.astype(np.int64)
            vlen[long] = ln
        payload = p + 1 + vlen
        nxt = payload + length
        if (nxt > ends[active]).any():
            raise _Unusual
        is_label = tag == _TAG_LABEL
        is_sample = tag == _TAG_SAMPLE
        is_tail = (tag == _TAG_EXEMPLAR) | (tag == _TAG_HISTOGRAM)
        if not (is_label | is_sample | is_tail).all():
            raise _Unusual
        seen_sample = label_end[active] >= 0
        # Field order other than labels, samples, extras goes to the strict path.
        if (is_label & seen_sample).any() or (is_sample & in_tail[active]).any():
            raise _Unusual
        first = (is_sample | is_tail) & ~seen_sample
        label_end[active[first]] = p[first]
        in_tail[active[is_tail]] = True
        if is_tail.any():
            histograms += int(np.count_nonzero(tag == _TAG_HISTOGRAM))
            exemplars += int(np.count_nonzero(tag == _TAG_EXEMPLAR))
        if is_sample.any():
            s_series.append(active[is_sample])
            s_pos.append(payload[is_sample])
            s_len.append(length[is_sample])
        pos[active] = nxt
    no_samples = label_end < 0
    label_end[no_samples] = ends[no_samples]
    keys = [joined[a:b] for a, b in zip(starts.tolist(), label_end.tolist(), strict=True)]
    if not s_series:
        return DecodedWrite(
            keys, np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64), histograms, exemplars
        )
    series = np.concatenate(s_series)
    q = np.concatenate(s_pos)
    qlen = np.concatenate(s_len)
    qend = q + qlen
    has_value = (qlen > 0) & (buf[q] == _TAG_VALUE)
    values = np.zeros(q.size, np.float64)
    if has_value.any():
        qv = q[has_value] + 1
        raw = np.ascontiguousarray(buf[qv[:, None] + np.arange(8)])
        values[has_value] = raw.view("<f8").ravel()
    r = np.where(has_value, q + 9, q)
    if (r > qend).any():
        raise _Unusual
    has_ts = r < qend
    timestamps = np.zeros(q.size, np.int64)
    if has_ts.any():
        rt = r[has_ts]
        if (buf[rt] != _TAG_TIMESTAMP).any():
            raise _Unusual
        tv, tl = _varints(buf, rt + 1, 10)
        if (rt + 1 + tl != qend[has_ts]).any():
            raise _Unusual
        timestamps[has_ts] = tv.view(np.int64)
    # Samples were gathered step by step; restore per-series wire order.
    order = np.argsort(series, kind="stable")
    return DecodedWrite(keys, series[order], timestamps[order], values[order], histograms, exemplars)


def _decode_strict(body: bytes) -> DecodedWrite:
    req = WriteRequest()
    try:
        req.ParseFromString(body)
    except _PBDecodeError as exc:
        raise DecodeError(f"protobuf: {exc}") from None
    keys: list[bytes] = []
    series: list[int] = []
    timestamps: list[int] = []
    values: list[float] = []
    histograms = exemplars = 0
    for i, ts in enumerate(req.timeseries):
        keys.append(bytes(TimeSeries(labels=ts.labels).SerializeToString()))
        for s in ts.samples:
            series.append(i)
            timestamps.append(s.timestamp)
            values.append(s.value)
        histograms += len(ts.histograms)
        exemplars += len(ts.exemplars)
    return DecodedWrite(
        keys,
        np.array(series, np.int64),
        np.array(timestamps, np.int64),
        np.array(values, np.float64),
        histograms,
        exemplars,
    )
