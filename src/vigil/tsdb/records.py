"""Encoding of the WAL's records: series definitions and sample batches."""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence

import numpy as np

from vigil.model.labels import Labels
from vigil.tsdb.samples import Samples

SERIES = b"S"
SAMPLES = b"A"
_U32 = struct.Struct("<I")
_SERIES_ENTRY = struct.Struct("<QI")


class RecordError(ValueError):
    pass


def encode_series(series: Sequence[tuple[int, Labels]]) -> bytes:
    parts = [SERIES, _U32.pack(len(series))]
    for ref, labels in series:
        blob = labels.encode()
        parts.append(_SERIES_ENTRY.pack(ref, len(blob)))
        parts.append(blob)
    return b"".join(parts)


def encode_samples(s: Samples) -> bytes:
    return b"".join(
        [
            SAMPLES,
            _U32.pack(len(s)),
            s.refs.astype("<i8", copy=False).tobytes(),
            s.timestamps.astype("<i8", copy=False).tobytes(),
            s.values.astype("<f8", copy=False).tobytes(),
        ]
    )


def decode_series(rec: bytes) -> Iterator[tuple[int, Labels]]:
    try:
        (n,) = _U32.unpack_from(rec, 1)
        pos = 1 + _U32.size
        for _ in range(n):
            ref, length = _SERIES_ENTRY.unpack_from(rec, pos)
            pos += _SERIES_ENTRY.size
            yield ref, Labels.decode(rec[pos : pos + length])
            pos += length
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise RecordError(f"bad series record: {exc}") from None


def decode_samples(rec: bytes) -> Samples:
    try:
        (n,) = _U32.unpack_from(rec, 1)
        pos = 1 + _U32.size
        if len(rec) != pos + 24 * n:
            raise RecordError(f"bad samples record: {len(rec)} bytes for {n} samples")
        refs = np.frombuffer(rec, "<i8", n, pos).astype(np.int64)
        ts = np.frombuffer(rec, "<i8", n, pos + 8 * n).astype(np.int64)
        vals = np.frombuffer(rec, "<f8", n, pos + 16 * n).astype(np.float64)
    except struct.error as exc:
        raise RecordError(f"bad samples record: {exc}") from None
    return Samples(refs, ts, vals)
