"""Label-set validation for ingested series: names, order, duplicates and size limits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vigil.model.labels import METRIC_NAME, Labels, is_valid_label_name, is_valid_metric_name


@dataclass(frozen=True)
class Limits:
    max_label_names_per_series: int = 64
    max_label_name_length: int = 256
    max_label_value_length: int = 4096
    max_samples_per_request: int = 1_000_000

    @property
    def max_label_section_bytes(self) -> int:
        """The most bytes a valid series' labels can take on the wire (limits count characters,
        which are up to 4 bytes in UTF-8; a label adds at most 11 bytes of tags and lengths)."""
        per_label = 4 * (self.max_label_name_length + self.max_label_value_length) + 11
        return self.max_label_names_per_series * per_label


class InvalidSeries(ValueError):
    """A series cannot be stored; `reason` is a short metric label, str() the message for the sender."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _show(pairs: Sequence[tuple[str, str]]) -> str:
    shown = ", ".join(f'{n}="{v[:64]}"' for n, v in pairs[:8])
    return "{" + shown + (", ..." if len(pairs) > 8 else "") + "}"


def validate_labels(pairs: Sequence[tuple[str, str]], limits: Limits, require_sorted: bool = True) -> Labels:
    """Check a series' label pairs as sent; returns the canonical label set or raises InvalidSeries."""
    if len(pairs) > limits.max_label_names_per_series:
        raise InvalidSeries(
            "too_many_labels",
            f"series {_show(pairs)}: {len(pairs)} labels exceed the limit of "
            f"{limits.max_label_names_per_series}",
        )
    prev = ""
    for i, (name, value) in enumerate(pairs):
        if len(name) > limits.max_label_name_length:
            raise InvalidSeries(
                "label_name_too_long",
                f"series {_show(pairs)}: label name {name[:64]!r}... "
                f"is longer than {limits.max_label_name_length} characters",
            )
        if len(value) > limits.max_label_value_length:
            raise InvalidSeries(
                "label_value_too_long",
                f"series {_show(pairs)}: value of label {name!r} is "
                f"longer than {limits.max_label_value_length} characters",
            )
        if not is_valid_label_name(name):
            raise InvalidSeries("invalid_label_name", f"series {_show(pairs)}: invalid label name {name!r}")
        if i and name == prev:
            raise InvalidSeries(
                "duplicate_label_name", f"series {_show(pairs)}: duplicate label name {name!r}"
            )
        if i and name < prev and require_sorted:
            raise InvalidSeries(
                "unsorted_labels",
                f"series {_show(pairs)}: labels are not sorted by name ({name!r} after {prev!r})",
            )
        prev = name
    labels = Labels.from_pairs(pairs)
    if len(set(labels.names())) != len(labels):
        dup = next(n for n in labels.names() if labels.names().count(n) > 1)
        raise InvalidSeries("duplicate_label_name", f"series {_show(pairs)}: duplicate label name {dup!r}")
    name = labels.metric_name
    if not name:
        raise InvalidSeries(
            "missing_metric_name", f"series {_show(pairs)}: missing metric name ({METRIC_NAME})"
        )
    if not is_valid_metric_name(name):
        raise InvalidSeries("invalid_metric_name", f"series {_show(pairs)}: invalid metric name {name!r}")
    return labels
