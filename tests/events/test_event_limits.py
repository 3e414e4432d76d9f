"""Event validation bounds: the JSON depth scan agrees with the structure json.loads builds, and
oversized events are refused naming what is too large."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.model.event import Event, EventError, EventLimits, json_depth

_text = st.text(alphabet='[]{}"\\ax,:\n\u00e9\u2028', max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=30,
)


def depth(v: Any) -> int:
    if isinstance(v, list):
        return 1 + max(map(depth, v), default=0)
    if isinstance(v, dict):
        return 1 + max(map(depth, v.values()), default=0)
    return 0


@settings(max_examples=500, deadline=None)
@given(_json, st.booleans())
def test_depth_scan_matches_the_parsed_structure(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert json_depth(text) == depth(value)


def test_deep_nesting_is_refused_before_json_loads_recurses() -> None:
    deep = '{"time_ms": 1, "kind": "auth", "fields": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    for text in (deep, deep.encode()):
        with pytest.raises(EventError, match="nested deeper than 8 levels"):
            Event.from_json(text)


def test_limits_apply_to_labels_and_fields() -> None:
    lim = EventLimits(max_labels=2, max_fields=2, max_label_value_length=3, max_field_length=4)
    ok = {"time_ms": 1, "kind": "auth", "labels": {"a": "123", "b": "x"}, "fields": {"f": "1234", "g": 1}}
    assert Event.from_dict(ok, lim).fields == {"f": "1234", "g": 1}
    for over, fragment in (
        ({"labels": {"a": "1", "b": "2", "c": "3"}}, "3 labels exceed the limit of 2"),
        ({"labels": {"a": "1234"}}, "labels.a: value longer than 3"),
        ({"fields": {"f": 1, "g": 2, "h": 3}}, "3 fields exceed the limit of 2"),
        ({"fields": {"f": "12345"}}, "fields.f: longer than 4"),
    ):
        with pytest.raises(EventError, match=fragment):
            Event.from_dict({**ok, **over}, lim)
