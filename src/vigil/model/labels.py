"""Label sets: the identity of a series, with Prometheus' naming and encoding rules.

A `Labels` is an immutable tuple of `(name, value)` pairs sorted by name, without empty values
(an empty value means the label is absent, as in Prometheus).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

METRIC_NAME = "__name__"
TENANT = "tenant"  # set by the server from the writer's token; reads of a tenant are scoped by it

# Prometheus' "legacy" name rules; UTF-8 names are not accepted on ingest.
_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

# The byte 0xff never occurs in UTF-8, so it separates encoded names and values unambiguously.
_SEP = b"\xff"


def is_valid_label_name(name: str) -> bool:
    return _LABEL_NAME_RE.fullmatch(name) is not None


def is_valid_metric_name(name: str) -> bool:
    return _METRIC_NAME_RE.fullmatch(name) is not None


def label_safe(value: str) -> str:
    """A label value that encodes as UTF-8: undecodable bytes (kept as surrogates) become U+FFFD."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


class Labels(tuple[tuple[str, str], ...]):
    """A sorted, immutable label set. Construct with `Labels.from_pairs` or `Labels.from_dict`."""

    __slots__ = ()

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> Labels:
        return cls(sorted((n, v) for n, v in pairs if v != ""))

    @classmethod
    def from_dict(cls, mapping: Mapping[str, str]) -> Labels:
        return cls.from_pairs(mapping.items())

    def get(self, name: str, default: str = "") -> str:
        for n, v in self:
            if n == name:
                return v
        return default

    @property
    def metric_name(self) -> str:
        return self.get(METRIC_NAME)

    def to_dict(self) -> dict[str, str]:
        return dict(self)

    def names(self) -> list[str]:
        return [n for n, _ in self]

    def without(self, *names: str) -> Labels:
        drop = set(names)
        return Labels(p for p in self if p[0] not in drop)

    def encode(self) -> bytes:
        """Canonical byte form, used as the persisted identity of a series."""
        return _SEP.join(part.encode() for pair in self for part in pair)

    @classmethod
    def decode(cls, data: bytes) -> Labels:
        if not data:
            return cls()
        parts = [p.decode() for p in data.split(_SEP)]
        return cls(zip(parts[0::2], parts[1::2], strict=True))

    def __str__(self) -> str:
        name = self.metric_name
        inner = ", ".join(f'{n}="{_escape(v)}"' for n, v in self if n != METRIC_NAME)
        if name and not inner:
            return name
        return f"{name}{{{inner}}}"

    def __repr__(self) -> str:
        return f"Labels({self!s})"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
