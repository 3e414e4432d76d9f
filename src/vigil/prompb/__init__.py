"""Prometheus remote-write protobuf messages, built at run time from descriptors (no protoc needed).

The schema follows `prompb/types.proto` and `prompb/remote.proto` of Prometheus (remote write 1.0).
`RawWriteRequest` reads the same bytes but keeps each TimeSeries as an opaque byte string, which
the columnar decoder in `vigil.prompb.codec` walks with numpy.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED

# (message, [(field, number, type, label, message type or None)])
_SCHEMA: list[tuple[str, list[tuple[str, int, int, int, str | None]]]] = [
    ("Label", [("name", 1, _F.TYPE_STRING, _OPT, None), ("value", 2, _F.TYPE_STRING, _OPT, None)]),
    ("Sample", [("value", 1, _F.TYPE_DOUBLE, _OPT, None), ("timestamp", 2, _F.TYPE_INT64, _OPT, None)]),
    (
        "Exemplar",
        [
            ("labels", 1, _F.TYPE_MESSAGE, _REP, "Label"),
            ("value", 2, _F.TYPE_DOUBLE, _OPT, None),
            ("timestamp", 3, _F.TYPE_INT64, _OPT, None),
        ],
    ),
    (
        "TimeSeries",
        [
            ("labels", 1, _F.TYPE_MESSAGE, _REP, "Label"),
            ("samples", 2, _F.TYPE_MESSAGE, _REP, "Sample"),
            ("exemplars", 3, _F.TYPE_MESSAGE, _REP, "Exemplar"),
            # Native histograms are counted and dropped, so their inner layout is not needed.
            ("histograms", 4, _F.TYPE_BYTES, _REP, None),
        ],
    ),
    (
        # What the strict decoder parses a TimeSeries as: exemplars stay opaque (they are only
        # counted), so a hostile exemplar cannot make upb build a Python-visible object per label.
        "CountedTimeSeries",
        [
            ("labels", 1, _F.TYPE_MESSAGE, _REP, "Label"),
            ("samples", 2, _F.TYPE_MESSAGE, _REP, "Sample"),
            ("exemplars", 3, _F.TYPE_BYTES, _REP, None),
            ("histograms", 4, _F.TYPE_BYTES, _REP, None),
        ],
    ),
    (
        "MetricMetadata",
        [
            ("type", 1, _F.TYPE_INT32, _OPT, None),
            ("metric_family_name", 2, _F.TYPE_STRING, _OPT, None),
            ("help", 4, _F.TYPE_STRING, _OPT, None),
            ("unit", 5, _F.TYPE_STRING, _OPT, None),
        ],
    ),
    (
        "WriteRequest",
        [
            ("timeseries", 1, _F.TYPE_MESSAGE, _REP, "TimeSeries"),
            ("metadata", 3, _F.TYPE_MESSAGE, _REP, "MetricMetadata"),
        ],
    ),
    (
        "RawWriteRequest",
        [("timeseries", 1, _F.TYPE_BYTES, _REP, None), ("metadata", 3, _F.TYPE_BYTES, _REP, None)],
    ),
]

METRIC_TYPES = ["unknown", "counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset"]


def _build() -> dict[str, Any]:
    fd = descriptor_pb2.FileDescriptorProto(name="vigil_prompb.proto", package="prometheus", syntax="proto3")
    for name, fields in _SCHEMA:
        msg = fd.message_type.add(name=name)
        for fname, number, ftype, label, tname in fields:
            field = msg.field.add(name=fname, number=number, type=ftype, label=label)
            if tname:
                field.type_name = f".prometheus.{tname}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"prometheus.{name}"))
        for name, _ in _SCHEMA
    }


_CLASSES = _build()
Label = _CLASSES["Label"]
Sample = _CLASSES["Sample"]
TimeSeries = _CLASSES["TimeSeries"]
CountedTimeSeries = _CLASSES["CountedTimeSeries"]
MetricMetadata = _CLASSES["MetricMetadata"]
WriteRequest = _CLASSES["WriteRequest"]
RawWriteRequest = _CLASSES["RawWriteRequest"]

__all__ = [
    "METRIC_TYPES",
    "CountedTimeSeries",
    "Label",
    "MetricMetadata",
    "RawWriteRequest",
    "Sample",
    "TimeSeries",
    "WriteRequest",
]
