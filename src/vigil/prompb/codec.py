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

The lock-step walk costs one round of numpy calls per field position, so it only pays while many
series are still being walked; a series with many more fields than the rest (one series with a
million samples) is finished by a sequential walk that takes each run of equally long samples in
one strided numpy check. Work and memory stay proportional to the body and to `WireLimits`: the
series, samples and labels a request may hold are counted before any of them is materialised, and
a request beyond them raises `OverLimit` as soon as the count passes the limit.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cramjam
import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError as _PBDecodeError

from vigil.prompb import METRIC_TYPES, CountedTimeSeries, RawWriteRequest, TimeSeries, WriteRequest

# Wire tags inside TimeSeries: field number << 3 | wire type (2 = length-delimited).
_TAG_LABEL, _TAG_SAMPLE, _TAG_EXEMPLAR, _TAG_HISTOGRAM = 0x0A, 0x12, 0x1A, 0x22
# Inside Sample: value is field 1 fixed64, timestamp field 2 varint.
_TAG_VALUE, _TAG_TIMESTAMP = 0x09, 0x10
_PAD = 16  # zero bytes after the buffer so fixed-width gathers never read out of bounds
# Below this many series still being walked, a numpy round per field costs more than walking the
# rest one field at a time (measured: ~30 us a round against ~1 us a field in Python).
_LOCKSTEP_MIN = 32
_RUN_MIN = 16  # samples a strided run must reach to be worth its numpy calls
_RUN_MAX = 1 << 16  # positions checked per strided step (bounds its scratch memory)
_PRESCAN_ABOVE = 4096  # series bytes above which the strict path counts fields before upb parses them
_UNLIMITED = 1 << 62


class DecodeError(ValueError):
    """The payload is not a valid remote-write request; the message says why."""


class OverLimit(DecodeError):
    """The request holds more than `WireLimits` allow; `reason` is a short metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class WireLimits:
    """What one request may hold, checked while decoding (None: no limit).

    `max_samples` bounds samples plus histograms, exemplars and unknown fields of a series (each
    is work to walk), and also the series and metadata entries of the request; `max_labels` the
    labels of one series."""

    max_samples: int | None = None
    max_labels: int | None = None

    @property
    def samples(self) -> int:
        return _UNLIMITED if self.max_samples is None else self.max_samples

    @property
    def labels(self) -> int:
        return _UNLIMITED if self.max_labels is None else self.max_labels

    def too_many_samples(self) -> OverLimit:
        return OverLimit(
            "too_many_samples",
            f"more than {self.max_samples} samples in one request (the limit; histograms, "
            "exemplars and unknown fields count as samples)",
        )

    def too_many_labels(self, series: int) -> OverLimit:
        return OverLimit(
            "too_many_labels", f"series {series + 1} of the request has more than {self.max_labels} labels"
        )


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
    limits: WireLimits = WireLimits()

    def verified(self) -> DecodedWrite:
        """The same request decoded by walking every field (keys are exact label sections), under
        the same limits. Raises DecodeError (OverLimit beyond them)."""
        if self.unverified_body is None:
            return self
        return decode_write_request(self.unverified_body, tail_fast_path=False, limits=self.limits)


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


def decode_write_request(
    body: bytes, tail_fast_path: bool = True, limits: WireLimits = WireLimits()
) -> DecodedWrite:
    """Decode an uncompressed WriteRequest. Raises DecodeError on malformed protobuf, OverLimit
    (a DecodeError) when it holds more than `limits` allow.

    With the tail fast path, samples are counted exactly only once the request is `verified()`;
    the unverified decode holds at most one sample per series, and series are within the limit."""
    raw = _parse_raw(body, limits)
    metadata = _decode_metadata(raw.metadata) if len(raw.metadata) else []
    decoded = _decode_tail(raw.timeseries, body, limits) if tail_fast_path else None
    if decoded is None:
        try:
            decoded = _decode_fast(raw.timeseries, limits)
        except _Unusual:
            decoded = _decode_strict(body, limits)
    if metadata:
        object.__setattr__(decoded, "metadata", metadata)
    return decoded


def _parse_raw(body: bytes, limits: WireLimits) -> Any:
    """The request with each series as opaque bytes, once its entries are known to be few enough.

    upb keeps ~40 bytes per entry, so entries are counted first: each takes at least two bytes, and
    each series or metadata entry starts with its own tag byte, so most bodies pass on a bound
    alone; the rest are walked field by field up to the limit."""
    cap = limits.samples
    if len(body) > 2 * cap and body.count(b"\x0a") + body.count(b"\x1a") > cap:
        counts = _count_fields(body, 0, len(body), cap, cap)
        if counts[1] > cap or counts[0] + counts[3] > cap:
            raise OverLimit(
                "too_many_series",
                f"more than {limits.max_samples} series or metadata entries in one request "
                "(the per-request sample limit)",
            )
    raw = RawWriteRequest()
    try:
        raw.ParseFromString(body)
    except _PBDecodeError as exc:
        raise DecodeError(f"protobuf: {exc}") from None
    return raw


def _count_fields(data: bytes, p: int, end: int, max_first: int, max_rest: int) -> list[int]:
    """Fields of the message in data[p:end] counted by number: [any other, 1, 2, 3, 4], walking
    every field one by one. Stops as soon as field 1 was seen more than `max_first` times or the
    others together more than `max_rest`. Malformed input ends the count early (upb reports it
    afterwards), so the counts are exact only for a well-formed message."""
    counts = [0, 0, 0, 0, 0]
    rest = 0
    groups = 0  # open groups (wire types 3/4: long deprecated, still legal protobuf)
    while p < end:
        tag, p = _py_varint(data, p, end)
        if p < 0:
            break
        wire, number = tag & 7, tag >> 3
        if wire == 0:
            _, p = _py_varint(data, p, end)
        elif wire == 1:
            p += 8
        elif wire == 5:
            p += 4
        elif wire == 2:
            length, p = _py_varint(data, p, end)
            p = -1 if p < 0 else p + length
        elif wire == 3:
            groups += 1
        elif wire == 4 and groups:
            groups -= 1
            continue
        else:
            break
        if p < 0 or p > end:
            break
        if number == 1 and wire == 2 and not groups:
            counts[1] += 1
            if counts[1] > max_first:
                break
        else:
            counts[number if 2 <= number <= 4 and wire == 2 and not groups else 0] += 1
            rest += 1
            if rest > max_rest:
                break
    return counts


def _py_varint(data: bytes, p: int, end: int) -> tuple[int, int]:
    """The varint at data[p] and the position after it; (0, -1) if it is cut off or too long."""
    value = shift = 0
    while p < end and shift < 64:
        b = data[p]
        value |= (b & 0x7F) << shift
        p += 1
        if b < 0x80:
            return value, p
        shift += 7
    return 0, -1


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


def _rows(buf: npt.NDArray[np.uint8], pos: npt.NDArray[np.int64], width: int) -> npt.NDArray[np.uint8]:
    """buf[p : p + width] for each p, as one (n, width) array, without an index per byte."""
    return np.lib.stride_tricks.sliding_window_view(buf, width)[pos]


def _varints(
    buf: npt.NDArray[np.uint8], pos: npt.NDArray[np.int64], width: int
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
    """Decode one varint at each position (at most `width` bytes); returns values and lengths."""
    stops = _rows(buf, pos, width) < 0x80
    if not stops.any(axis=1).all():
        raise _Unusual
    lengths = stops.argmax(axis=1) + 1
    # Column by column, only as far as the longest varint: a timestamp takes 6 of its 10 bytes.
    out = np.zeros(pos.size, np.uint64)
    for j in range(int(lengths.max())):
        part = (buf[pos + j] & 0x7F).astype(np.uint64) << np.uint64(7 * j)
        part[lengths <= j] = 0
        out |= part
    return out, lengths.astype(np.int64)


_FRONT = 24  # zero bytes before the buffer, so backward gathers never index below it


def _decode_tail(parts: Sequence[bytes], body: bytes, limits: WireLimits) -> DecodedWrite | None:
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
        values[with_value] = _rows(buf, q, 8).view("<f8").ravel()
    padded = np.concatenate([buf, np.zeros(_PAD, np.uint8)])
    tv, _ = _varints(padded, ts_tag + 1, 10)
    keys = [joined[a:b] for a, b in zip((starts - _FRONT).tolist(), (cut - _FRONT).tolist(), strict=True)]
    return DecodedWrite(
        keys, np.arange(n, dtype=np.int64), tv.view(np.int64), values, unverified_body=body, limits=limits
    )


@dataclass
class _Walk:
    """Where the walk of each series stands, and the sample fields found so far: payload positions
    in `joined` (so their order is series order, then wire order), one by one or as runs of
    `count` equally long fields `length + 2` bytes apart from `first`."""

    pos: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]
    label_end: npt.NDArray[np.int64]  # start of the first non-label field; -1 while only labels
    in_tail: npt.NDArray[np.bool_]  # past the samples: only exemplars/histograms may follow
    labels: npt.NDArray[np.int64]
    taken: int = 0  # samples, histograms and exemplars so far, against the limit
    histograms: int = 0
    exemplars: int = 0
    singles: list[npt.NDArray[np.int64]] = field(default_factory=list)
    run_first: list[npt.NDArray[np.int64]] = field(default_factory=list)
    run_len: list[npt.NDArray[np.int64]] = field(default_factory=list)
    run_count: list[npt.NDArray[np.int64]] = field(default_factory=list)

    def payloads(self, buf: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Payload position and length of every sample, in series and wire order."""
        count = np.concatenate([np.empty(0, np.int64), *self.run_count])
        first = np.concatenate([np.empty(0, np.int64), *self.run_first])
        rank = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        run_len = np.repeat(np.concatenate([np.empty(0, np.int64), *self.run_len]), count)
        single = np.concatenate([np.empty(0, np.int64), *self.singles])
        q = np.concatenate([single, np.repeat(first, count) + rank * (run_len + 2)])
        length = np.concatenate([buf[single - 1].astype(np.int64), run_len])
        order = np.argsort(q)
        return q[order], length[order]


def _decode_fast(
    parts: Sequence[bytes], limits: WireLimits = WireLimits(), lockstep_min: int = _LOCKSTEP_MIN
) -> DecodedWrite:
    n = len(parts)
    if n == 0:
        return DecodedWrite([], np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
    joined = b"".join(parts)
    padded = joined + bytes(_PAD)
    buf = np.frombuffer(padded, np.uint8)
    lens = np.fromiter(map(len, parts), np.int64, n)
    ends = np.cumsum(lens)
    starts = ends - lens
    w = _Walk(starts.copy(), ends, np.full(n, -1, np.int64), np.zeros(n, bool), np.zeros(n, np.int64))
    rest = _walk_lockstep(buf, w, limits, lockstep_min)
    for i in rest.tolist():
        _walk_one(padded, buf, w, i, limits)
    no_samples = w.label_end < 0
    w.label_end[no_samples] = ends[no_samples]
    keys = [joined[a:b] for a, b in zip(starts.tolist(), w.label_end.tolist(), strict=True)]
    q, qlen = w.payloads(buf)
    if not q.size:
        empty = np.empty(0, np.int64)
        return DecodedWrite(keys, empty, empty, np.empty(0, np.float64), w.histograms, w.exemplars)
    series = np.searchsorted(ends, q - 1, side="right")  # q - 1: the length byte, inside its series
    qend = q + qlen
    has_value = (qlen > 0) & (buf[q] == _TAG_VALUE)
    values = np.zeros(q.size, np.float64)
    if has_value.any():
        values[has_value] = _rows(buf, q[has_value] + 1, 8).view("<f8").ravel()
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
    return DecodedWrite(keys, series, timestamps, values, w.histograms, w.exemplars)


def _walk_lockstep(
    buf: npt.NDArray[np.uint8], w: _Walk, limits: WireLimits, lockstep_min: int
) -> npt.NDArray[np.int64]:
    """Walk all series a field per round, while at least `lockstep_min` are left; returns the rest."""
    pos, ends = w.pos, w.ends
    active = np.arange(pos.size)
    while True:
        active = active[pos[active] < ends[active]]
        if active.size < max(lockstep_min, 1):
            return active
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
        seen_sample = w.label_end[active] >= 0
        # Field order other than labels, samples, extras goes to the strict path, and so does a
        # sample of 128 bytes or more (a Sample is at most 20: it would hold other fields).
        if (is_label & seen_sample).any() or (is_sample & (w.in_tail[active] | long)).any():
            raise _Unusual
        if is_label.any():
            labelled = active[is_label]
            w.labels[labelled] += 1
            over = w.labels[labelled] > limits.labels
            if over.any():
                raise limits.too_many_labels(int(labelled[over.argmax()]))
        w.taken += int(np.count_nonzero(is_sample | is_tail))
        if w.taken > limits.samples:
            raise limits.too_many_samples()
        first = (is_sample | is_tail) & ~seen_sample
        w.label_end[active[first]] = p[first]
        w.in_tail[active[is_tail]] = True
        if is_tail.any():
            w.histograms += int(np.count_nonzero(tag == _TAG_HISTOGRAM))
            w.exemplars += int(np.count_nonzero(tag == _TAG_EXEMPLAR))
        if is_sample.any():
            w.singles.append(payload[is_sample])
        pos[active] = nxt


def _walk_one(data: bytes, buf: npt.NDArray[np.uint8], w: _Walk, i: int, limits: WireLimits) -> None:
    """Finish walking series `i` on its own: fields one by one in Python, and runs of equally long
    sample fields (the usual shape of a long series) checked in strided numpy steps. `data` is the
    padded buffer as bytes (indexing bytes is several times cheaper than indexing numpy)."""
    p, end = int(w.pos[i]), int(w.ends[i])
    label_end, in_tail, labels = int(w.label_end[i]), bool(w.in_tail[i]), int(w.labels[i])
    singles, run_first, run_len, run_count = array("q"), array("q"), array("q"), array("q")
    add_single = singles.append
    taken, cap = w.taken, limits.samples
    backoff = single = 0  # fields to take one at a time before trying a strided run again
    while p < end:
        tag = data[p]
        if tag == _TAG_SAMPLE and not in_tail:
            if label_end < 0:
                label_end = p
            length = data[p + 1]
            if not single and end - p >= _RUN_MIN * (length + 2) and length < 0x80:
                k = _run_length(buf, p, length, end, cap - taken)
                if k >= _RUN_MIN:
                    run_first.append(p + 2)
                    run_len.append(length)
                    run_count.append(k)
                    taken += k
                    if taken > cap:
                        raise limits.too_many_samples()
                    p += k * (length + 2)
                    backoff = 0
                    continue
                backoff = min(2 * backoff or _RUN_MIN, 4096)  # runs are short here: try less often
                single = backoff
            while True:  # samples one by one, until something else or time for a strided try
                length = data[p + 1]
                nxt = p + 2 + length
                if length >= 0x80 or nxt > end:
                    raise _Unusual
                add_single(p + 2)
                taken += 1
                if taken > cap:
                    raise limits.too_many_samples()
                p = nxt
                if single:
                    single -= 1
                if p >= end or data[p] != _TAG_SAMPLE or not single:
                    break
            continue
        length, q = _py_varint(data, p + 1, end)
        nxt = q + length
        if q < 0 or nxt > end:
            raise _Unusual
        if tag == _TAG_LABEL:
            if label_end >= 0:
                raise _Unusual
            labels += 1
            if labels > limits.labels:
                raise limits.too_many_labels(i)
        elif tag in (_TAG_EXEMPLAR, _TAG_HISTOGRAM):
            if label_end < 0:
                label_end = p
            in_tail = True
            taken += 1
            if taken > cap:
                raise limits.too_many_samples()
            if tag == _TAG_EXEMPLAR:
                w.exemplars += 1
            else:
                w.histograms += 1
        else:
            raise _Unusual  # includes a sample after exemplars or histograms
        p = nxt
    w.pos[i], w.label_end[i], w.in_tail[i], w.labels[i], w.taken = p, label_end, in_tail, labels, taken
    if singles:
        w.singles.append(np.frombuffer(singles, np.int64).copy())
    if run_count:
        w.run_first.append(np.frombuffer(run_first, np.int64).copy())
        w.run_len.append(np.frombuffer(run_len, np.int64).copy())
        w.run_count.append(np.frombuffer(run_count, np.int64).copy())


def _run_length(buf: npt.NDArray[np.uint8], p: int, length: int, end: int, budget: int) -> int:
    """How many sample fields of payload `length` follow each other from `p` (a sample field of that
    length), counting at most `budget` + 1 of them. Each field checked to be `0x12 length` proves
    that the next one starts `length + 2` bytes on, so the run is exact."""
    stride = length + 2
    fit = (end - p) // stride
    k, step = 1, _RUN_MIN
    while k < fit and k <= budget:
        m = min(step, fit - k, _RUN_MAX)
        c = p + (k + np.arange(m)) * stride
        ok = (buf[c] == _TAG_SAMPLE) & (buf[c + 1] == length)
        if not ok.all():
            return k + int(ok.argmin())
        k += m
        step *= 4
    return k


def _decode_strict(body: bytes, limits: WireLimits = WireLimits()) -> DecodedWrite:
    """Any valid WriteRequest, through upb one series at a time, each counted before it is parsed
    when it is large enough to hold more than the limits."""
    raw = _parse_raw(body, limits)
    keys: list[bytes] = []
    series: list[npt.NDArray[np.int64]] = []
    timestamps: list[npt.NDArray[np.int64]] = []
    values: list[npt.NDArray[np.float64]] = []
    histograms = exemplars = taken = 0
    for i, part in enumerate(raw.timeseries):
        if len(part) > _PRESCAN_ABOVE:
            counts = _count_fields(part, 0, len(part), limits.labels, limits.samples - taken)
            if counts[1] > limits.labels:
                raise limits.too_many_labels(i)
            if taken + counts[0] + counts[2] + counts[3] + counts[4] > limits.samples:
                raise limits.too_many_samples()
        ts = CountedTimeSeries()
        try:
            ts.ParseFromString(part)
        except _PBDecodeError as exc:
            raise DecodeError(f"protobuf: {exc}") from None
        if len(ts.labels) > limits.labels:
            raise limits.too_many_labels(i)
        n = len(ts.samples)
        taken += n + len(ts.histograms) + len(ts.exemplars)
        if taken > limits.samples:
            raise limits.too_many_samples()
        keys.append(bytes(TimeSeries(labels=ts.labels).SerializeToString()))
        series.append(np.full(n, i, np.int64))
        timestamps.append(np.fromiter((s.timestamp for s in ts.samples), np.int64, n))
        values.append(np.fromiter((s.value for s in ts.samples), np.float64, n))
        histograms += len(ts.histograms)
        exemplars += len(ts.exemplars)
    if not keys:
        return DecodedWrite([], np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
    return DecodedWrite(
        keys,
        np.concatenate(series),
        np.concatenate(timestamps),
        np.concatenate(values),
        histograms,
        exemplars,
    )
