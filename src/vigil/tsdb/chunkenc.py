"""Columnar codec for a *group* of series stored together in a block chunk file.

A group is up to about a thousand series encoded as one frame: series ``i`` has ref ``refs[i]`` and owns
``timestamps[offsets[i]:offsets[i + 1]]`` and the matching ``values``. Everything is vectorised over the
whole group with numpy (no Python loop per sample or per series) and compressed with zstd.

Frame layout, version 1 (all integers little-endian)::

    u8   version
    u32  n_series, u32 n_samples
    u32  compressed length of each of the 4 sections: meta, timestamps, int values, float values
    ...  the sections, each a zstd frame, or nothing at all when its raw content is empty

* meta: per-series columns. The u64 columns (ref deltas, sample counts, first-timestamp deltas, all
  zigzagged where signed) are byte-shuffled together, followed by one u8 column each for the value
  exponent and the value mode.
* timestamps: for every sample but each series' first, its delta-of-delta (the series' first delta for
  its second sample), zigzagged and byte-shuffled.
* int values: samples of series whose values are all exactly ``integer / 10**exponent`` ("decimal"
  series), stored as those integers: first value, then per series either deltas or deltas-of-deltas,
  whichever is cheaper; zigzagged and byte-shuffled.
* float values: the remaining series, XOR of each value's bit pattern with the previous one (the first
  value raw), byte-shuffled. This path keeps NaN payloads such as the stale marker, -0.0 and infinities.

All integer arithmetic is done on uint64 so it wraps instead of overflowing: timestamps may span the
whole int64 range and the round trip is still exact. There is no checksum; the block file carries one.
"""

from __future__ import annotations

import struct
from typing import TypeVar

import cramjam
import numpy as np
from numpy.typing import NDArray

__all__ = ["ChunkDecodeError", "decode_group", "encode_group"]

VERSION = 1

# Value modes, one per series.
_MODE_DELTA = 0  # decimal series, integer deltas
_MODE_DOD = 1  # decimal series, integer deltas of deltas
_MODE_XOR = 2  # anything else, XOR of float64 bit patterns

# 10**e is exact in float64 for every e used here, so encoder and decoder divide by the same number.
_MAX_EXPONENT = 15
_POW10 = 10.0 ** np.arange(_MAX_EXPONENT + 1, dtype=np.float64)
# Integers beyond 2**53 do not all convert to float64 exactly.
_MAX_EXACT_INT = float(2**53)

_HEADER = struct.Struct("<BII4I")
_N_SECTIONS = 4
_META_U64_COLUMNS = 3
_META_BYTES_PER_SERIES = 8 * _META_U64_COLUMNS + 2

# A zstd block of at most 128 KiB costs at least 4 bytes (3-byte header plus one RLE byte), so no valid
# frame decompresses to more than 32768 times its size. Checking this before allocating keeps a corrupt
# header from making us allocate gigabytes.
_MAX_ZSTD_RATIO = 1 << 15

# zstd's default level. On node_exporter-like data levels 1 to 9 land within 2% of each other in size
# and speed; 19 saves about 8% but encodes some 40 times slower.
_ZSTD_LEVEL = 3

_U64_ONE = np.uint64(1)

_Scalar = TypeVar("_Scalar", bound=np.generic)


class ChunkDecodeError(ValueError):
    """The bytes are not a valid group frame (truncated, corrupt, or an unknown version)."""


# --------------------------------------------------------------------------- small vectorised helpers


def _zigzag(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """Map two's-complement words to unsigned so small negative numbers get small codes."""
    s = x.view(np.int64)
    out = s << 1
    out ^= s >> 63
    return out.view(np.uint64)


def _unzigzag(z: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """Inverse of `_zigzag`, in place: decoding only ever passes freshly decompressed arrays."""
    sign = z & _U64_ONE
    np.negative(sign, out=sign)
    z >>= _U64_ONE
    z ^= sign
    return z


def _shuffle(x: NDArray[np.uint64]) -> bytes:
    """Byte planes, least significant first: small numbers leave the high planes all zero for zstd."""
    return x.astype("<u8", copy=False).view(np.uint8).reshape(-1, 8).T.tobytes()


def _unshuffle(raw: NDArray[np.uint8]) -> NDArray[np.uint64]:
    """Inverse of `_shuffle`; `raw` must hold a multiple of 8 bytes."""
    planes = raw.reshape(8, -1)
    # Plane by plane is about twice as fast as numpy's generic transposing copy.
    out = np.empty((planes.shape[1], 8), dtype=np.uint8)
    for k in range(8):
        out[:, k] = planes[k]
    return out.view("<u8").reshape(-1).astype(np.uint64, copy=False)


def _seg_cumsum(x: NDArray[np.uint64], starts: NDArray[np.intp]) -> NDArray[np.uint64]:
    """Cumulative sum restarting at every segment start, computed in place in `x`.

    Subtracting each previous segment's total at a start turns this into one plain cumsum, without
    an array per sample to undo it. uint64 wraps, which exactly inverts wrapped differences.
    """
    totals = np.add.reduceat(x, starts)
    x[starts[1:]] -= totals[:-1]
    np.cumsum(x, out=x)
    return x


def _diff_from_zero(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """Wrapping differences to the previous element, the first taken against zero."""
    d = x.copy()
    np.subtract(x[1:], x[:-1], out=d[1:])
    return d


def _deltas(x: NDArray[np.uint64], is_start: NDArray[np.bool_]) -> NDArray[np.uint64]:
    """Differences to the previous sample of the same series; a series' first sample keeps its value."""
    d = _diff_from_zero(x)
    d[is_start] = x[is_start]
    return d


def _dods(
    d: NDArray[np.uint64], is_start: NDArray[np.bool_], is_second: NDArray[np.bool_]
) -> NDArray[np.uint64]:
    """Deltas of `_deltas` output; first and second samples of each series keep value and first delta."""
    dd = d.copy()
    np.subtract(d[1:], d[:-1], out=dd[1:])
    keep = is_start | is_second
    dd[keep] = d[keep]
    return dd


def _undo_dod(
    words: NDArray[np.uint64], starts: NDArray[np.intp], dod: NDArray[np.bool_] | None
) -> NDArray[np.uint64]:
    """Inverse of `_deltas` (where `dod` is false) or `_dods` (where true; None means everywhere).

    Consumes `words`, which is modified in place.
    """
    if dod is not None and not dod.any():
        return _seg_cumsum(words, starts)
    first = words[starts]
    # With each first sample zeroed, the segmented sum of deltas-of-deltas gives the deltas.
    inner = words if dod is None else words.copy()
    inner[starts] = 0
    inner = _seg_cumsum(inner, starts)
    d = inner if dod is None else np.where(dod, inner, words)
    d[starts] = first
    return _seg_cumsum(d, starts)


def _positions(counts: NDArray[np.intp]) -> tuple[NDArray[np.intp], NDArray[np.bool_], NDArray[np.bool_]]:
    """Start index of each series, and per-sample masks of first and second samples. counts must be >= 1."""
    n = int(counts.sum())
    starts = np.zeros(len(counts), dtype=np.intp)
    np.cumsum(counts[:-1], out=starts[1:])
    is_start = np.zeros(n, dtype=np.bool_)
    is_start[starts] = True
    is_second = np.zeros(n, dtype=np.bool_)
    is_second[1:] = is_start[:-1] & ~is_start[1:]
    return starts, is_start, is_second


# --------------------------------------------------------------------------------------------- encode


def _as_1d(name: str, x: object, dtype: type[_Scalar]) -> NDArray[_Scalar]:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    try:
        return np.ascontiguousarray(arr.astype(dtype, casting="safe", copy=False))
    except TypeError:
        raise ValueError(f"{name} must be {np.dtype(dtype).name}, got {arr.dtype}") from None


def _find_exponents(
    values: NDArray[np.float64], starts: NDArray[np.intp], counts: NDArray[np.intp]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Smallest exponent e per series such that every value is exactly round(v * 10**e) / 10**e.

    Returns (exponent per series, -1 where none works; the integers per sample, 0 where unused).
    Only the decode computation is required to hold bit for bit, so values like 1.15, whose product
    1.15 * 100 is not an integer in float64 but whose 115 / 100 is exactly 1.15, are still decimal.
    """
    n_series = len(counts)
    exponents = np.full(n_series, -1, dtype=np.int64)
    ints = np.zeros(len(values), dtype=np.int64)
    pending = np.arange(n_series)
    sample_idx = np.arange(len(values))
    sub_starts = starts
    with np.errstate(over="ignore", invalid="ignore"):
        for e in range(_MAX_EXPONENT + 1):
            v = values[sample_idx]
            r = np.rint(v * _POW10[e])
            fits = np.abs(r) < _MAX_EXACT_INT  # false for NaN and inf as well
            r_int = np.where(fits, r, 0.0).astype(np.int64)
            exact = fits & ((r_int.astype(np.float64) / _POW10[e]).view(np.int64) == v.view(np.int64))
            ok = np.logical_and.reduceat(exact, sub_starts)
            # Magnitude only grows with e, so a series that overflows now never becomes decimal.
            hopeless = ~np.logical_and.reduceat(fits, sub_starts)
            done = ok | hopeless
            if ok.any():
                exponents[pending[ok]] = e
                take = np.repeat(ok, counts[pending])
                ints[sample_idx[take]] = r_int[take]
            if done.all():
                break
            keep_samples = ~np.repeat(done, counts[pending])
            pending = pending[~done]
            sample_idx = sample_idx[keep_samples]
            sub_starts = np.zeros(len(pending), dtype=np.intp)
            np.cumsum(counts[pending][:-1], out=sub_starts[1:])
    return exponents, ints


def _compress(raw: bytes) -> bytes:
    # An empty section is stored as nothing rather than as an empty zstd frame.
    return bytes(cramjam.zstd.compress(raw, _ZSTD_LEVEL)) if raw else b""


def encode_group(
    refs: NDArray[np.int64],
    offsets: NDArray[np.int64],
    timestamps: NDArray[np.int64],
    values: NDArray[np.float64],
) -> bytes:
    """Encode a group of series; raises ValueError if the arrays break the group invariants."""
    refs = _as_1d("refs", refs, np.int64)
    offsets = _as_1d("offsets", offsets, np.int64)
    timestamps = _as_1d("timestamps", timestamps, np.int64)
    values = _as_1d("values", values, np.float64)

    n_series = len(refs)
    n_samples = len(timestamps)
    if len(offsets) != n_series + 1 or offsets[0] != 0:
        raise ValueError("offsets must have len(refs) + 1 entries and start at 0")
    if len(values) != n_samples or offsets[-1] != n_samples:
        raise ValueError("offsets[-1], len(timestamps) and len(values) must agree")
    if n_samples >= 2**32:
        raise ValueError("too many samples for one group")
    counts = np.diff(offsets).astype(np.intp)
    if n_series and counts.min() < 1:
        raise ValueError("every series needs at least one sample")
    if not np.all(refs[1:] > refs[:-1]):
        raise ValueError("refs must be strictly ascending")

    if n_series == 0:
        return _HEADER.pack(VERSION, 0, 0, 0, 0, 0, 0)

    starts, is_start, is_second = _positions(counts)
    if not np.all((timestamps[1:] > timestamps[:-1]) | is_start[1:]):
        raise ValueError("timestamps must be strictly ascending within each series")

    # Meta: refs and first timestamps are both close to their neighbours', so store differences.
    t_first = timestamps[starts].view(np.uint64)
    meta_u64 = np.concatenate(
        [
            _zigzag(_diff_from_zero(refs.view(np.uint64))),
            counts.astype(np.uint64),
            _zigzag(_diff_from_zero(t_first)),
        ]
    )

    ts_words = _zigzag(_dods(_deltas(timestamps.view(np.uint64), is_start), is_start, is_second))
    ts_raw = _shuffle(ts_words[~is_start])

    exponents, ints = _find_exponents(values, starts, counts)
    is_decimal = exponents >= 0
    modes = np.full(n_series, _MODE_XOR, dtype=np.uint8)
    int_raw = b""
    if is_decimal.any():
        if is_decimal.all():  # the common case: skip selecting what is already there
            dec_counts, d_starts, d_start, d_second = counts, starts, is_start, is_second
            x = ints.view(np.uint64)
        else:
            dec_counts = counts[is_decimal]
            d_starts, d_start, d_second = _positions(dec_counts)
            x = ints[np.repeat(is_decimal, counts)].view(np.uint64)
        d = _deltas(x, d_start)
        dd = _dods(d, d_start, d_second)
        zd, zdd = _zigzag(d), _zigzag(dd)
        # Cost proxy: sum of the zigzag codes (in float64, which cannot wrap). Summing their bit lengths
        # instead chose the same on node_exporter-like data at twice the cost. First samples are the same
        # in both encodings and cancel out.
        cost_d = np.add.reduceat(zd.astype(np.float64), d_starts)
        cost_dd = np.add.reduceat(zdd.astype(np.float64), d_starts)
        use_dod = cost_dd < cost_d
        modes[is_decimal] = np.where(use_dod, _MODE_DOD, _MODE_DELTA)
        int_raw = _shuffle(np.where(np.repeat(use_dod, dec_counts), zdd, zd))

    float_raw = b""
    if not is_decimal.all():
        f_counts = counts[~is_decimal]
        _, f_start, _ = _positions(f_counts)
        bits = values.view(np.uint64)[np.repeat(~is_decimal, counts)]
        xored = bits.copy()
        np.bitwise_xor(bits[1:], bits[:-1], out=xored[1:])
        xored[f_start] = bits[f_start]
        float_raw = _shuffle(xored)

    meta_raw = (
        _shuffle(meta_u64) + np.where(is_decimal, exponents, 0).astype(np.uint8).tobytes() + modes.tobytes()
    )
    sections = [_compress(raw) for raw in (meta_raw, ts_raw, int_raw, float_raw)]
    header = _HEADER.pack(VERSION, n_series, n_samples, *(len(s) for s in sections))
    return header + b"".join(sections)


# --------------------------------------------------------------------------------------------- decode


def _decompress(section: memoryview, expected: int, name: str) -> NDArray[np.uint8]:
    if expected == 0:
        if len(section):
            raise ChunkDecodeError(f"unexpected {name} section")
        return np.empty(0, dtype=np.uint8)
    if expected > len(section) * _MAX_ZSTD_RATIO:
        raise ChunkDecodeError(f"{name} section too short for its sample count")
    out = np.empty(expected, dtype=np.uint8)  # not a bytearray, which would be zero-filled first
    try:
        written = cramjam.zstd.decompress_into(section, out)  # type: ignore[arg-type]  # a buffer
    except Exception as exc:  # cramjam raises its own DecompressionError, or others on odd input
        raise ChunkDecodeError(f"corrupt {name} section") from exc
    if written != expected:
        raise ChunkDecodeError(f"{name} section has the wrong length")
    return out


def decode_group(
    data: bytes | memoryview,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Decode a frame from `encode_group` into (refs, offsets, timestamps, values)."""
    try:
        buf = memoryview(data).cast("B")
    except (TypeError, ValueError) as exc:
        raise ChunkDecodeError("chunk data is not a contiguous byte buffer") from exc
    if len(buf) < 1:
        raise ChunkDecodeError("empty chunk")
    if buf[0] != VERSION:
        raise ChunkDecodeError(f"unsupported chunk version {buf[0]}")
    if len(buf) < _HEADER.size:
        raise ChunkDecodeError("truncated chunk header")
    _, n_series, n_samples, *lengths = _HEADER.unpack_from(buf)
    if _HEADER.size + sum(lengths) != len(buf):
        raise ChunkDecodeError("chunk length does not match its section lengths")
    if n_series > n_samples:
        raise ChunkDecodeError("more series than samples")
    bounds = np.cumsum([_HEADER.size, *lengths]).tolist()
    meta_s, ts_s, int_s, float_s = (buf[bounds[i] : bounds[i + 1]] for i in range(_N_SECTIONS))

    if n_series == 0:
        if any(lengths):
            raise ChunkDecodeError("empty group with data")
        empty = np.empty(0, dtype=np.int64)
        return empty, np.zeros(1, dtype=np.int64), empty.copy(), np.empty(0, dtype=np.float64)

    meta = _decompress(meta_s, _META_BYTES_PER_SERIES * n_series, "meta")
    u64_end = 8 * _META_U64_COLUMNS * n_series
    cols = _unshuffle(meta[:u64_end]).reshape(_META_U64_COLUMNS, n_series)
    exponents = meta[u64_end : u64_end + n_series].astype(np.intp)
    modes = meta[u64_end + n_series :]
    counts_u = cols[1]
    # Below 2**32 each, so the sum of at most 2**32 of them cannot wrap.
    if counts_u.min() < 1 or counts_u.max() >= 2**32 or int(counts_u.sum()) != n_samples:
        raise ChunkDecodeError("series sample counts do not add up")
    if modes.max() > _MODE_XOR or exponents.max() > _MAX_EXPONENT:
        raise ChunkDecodeError("unknown value encoding")
    counts = counts_u.astype(np.intp)

    refs = np.cumsum(_unzigzag(cols[0]), dtype=np.uint64).view(np.int64)
    if not np.all(refs[1:] > refs[:-1]):
        raise ChunkDecodeError("refs are not strictly ascending")
    offsets = np.zeros(n_series + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])

    starts, is_start, _ = _positions(counts)
    ts_words = np.empty(n_samples, dtype=np.uint64)
    ts_words[is_start] = np.cumsum(_unzigzag(cols[2]), dtype=np.uint64)
    ts_words[~is_start] = _unzigzag(_unshuffle(_decompress(ts_s, 8 * (n_samples - n_series), "timestamp")))
    timestamps = _undo_dod(ts_words, starts, None).view(np.int64)
    if not np.all((timestamps[1:] > timestamps[:-1]) | is_start[1:]):
        raise ChunkDecodeError("timestamps are not strictly ascending")

    is_decimal = modes != _MODE_XOR
    dec_samples = np.repeat(is_decimal, counts)
    n_dec = int(counts[is_decimal].sum())
    int_raw = _decompress(int_s, 8 * n_dec, "int value")
    float_raw = _decompress(float_s, 8 * (n_samples - n_dec), "float value")

    values = np.empty(n_samples, dtype=np.float64)
    if n_dec:
        dec_counts = counts[is_decimal]
        d_starts, _, _ = _positions(dec_counts)
        dod = np.repeat(modes[is_decimal] == _MODE_DOD, dec_counts)
        ints = _undo_dod(_unzigzag(_unshuffle(int_raw)), d_starts, dod).view(np.int64)
        decoded = ints.astype(np.float64)
        decoded /= _POW10[np.repeat(exponents[is_decimal], dec_counts)]
        if n_dec == n_samples:
            return refs, offsets, timestamps, decoded
        values[dec_samples] = decoded
    if n_dec < n_samples:
        f_counts = counts[~is_decimal]
        f_starts, _, _ = _positions(f_counts)
        words = _unshuffle(float_raw)
        # As in `_seg_cumsum`: folding each previous series' total into a start makes one running XOR.
        totals = np.bitwise_xor.reduceat(words, f_starts)
        words[f_starts[1:]] ^= totals[:-1]
        np.bitwise_xor.accumulate(words, out=words)
        values[~dec_samples] = words.view(np.float64)
    return refs, offsets, timestamps, values
