"""Label sets: canonical form and the persisted encoding."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vigil.model.labels import Labels


@given(st.dictionaries(st.text(min_size=1), st.text(), max_size=8))
def test_encode_round_trip(d: dict[str, str]) -> None:
    lb = Labels.from_dict(d)
    assert Labels.decode(lb.encode()) == lb


def test_values_with_y_diaeresis_survive() -> None:
    # U+00FF encodes as c3 bf in UTF-8: only the raw 0xff byte may separate fields.
    lb = Labels.from_dict({"__name__": "m", "a": "xÿy", "ÿ": "ÿ"})
    assert Labels.decode(lb.encode()) == lb


def test_canonical_form() -> None:
    lb = Labels.from_pairs([("b", "2"), ("a", "1"), ("c", "")])
    assert list(lb) == [("a", "1"), ("b", "2")]
    assert str(Labels.from_dict({"__name__": "up", "job": 'a"b'})) == 'up{job="a\\"b"}'
