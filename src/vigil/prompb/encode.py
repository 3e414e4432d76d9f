"""Encoding remote-write requests, with protobuf only (the agent's shipper needs nothing heavier)."""

from __future__ import annotations

from collections.abc import Sequence

from vigil.prompb import METRIC_TYPES, WriteRequest


def encode_write_request(
    series: Sequence[Sequence[tuple[str, str]]],
    samples: Sequence[Sequence[tuple[int, float]]],
    metadata: Sequence[tuple[str, str, str, str]] = (),
) -> bytes:
    """Encode series (label pairs, sent in the order given) with their (timestamp ms, value) samples."""
    req = WriteRequest()
    for labels, points in zip(series, samples, strict=True):
        ts = req.timeseries.add()
        for name, value in labels:
            ts.labels.add(name=name, value=value)
        for t, v in points:
            ts.samples.add(timestamp=t, value=v)
    for family, mtype, help_, unit in metadata:
        req.metadata.add(metric_family_name=family, type=METRIC_TYPES.index(mtype), help=help_, unit=unit)
    return bytes(req.SerializeToString())
