"""The labels absent()/absent_over_time() give their output series, from the selector's matchers.

Prometheus walks the matchers in order: the first `=` matcher on a name sets that label, any later
matcher on the same name (of any type) deletes it, and a non-`=` matcher deletes it without counting
as "seen", so a later `=` sets it again. Checked against promtool 2.42 (`test rules`):
`absent(nope{job=~"a",job="b"})` is `{job="b"}`, `absent(nope{job="a",job=~"b",job="c"})` is `{}`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.model.labels import Labels
from vigil.model.matcher import Matcher
from vigil.promql.engine import Engine
from vigil.promql.selectors import selector_labels
from vigil.tsdb.db import DB, Options


@pytest.mark.parametrize(
    ("matchers", "want"),
    [
        ([Matcher.eq("__name__", "x"), Matcher.eq("job", "a")], {"job": "a"}),
        ([Matcher.eq("job", "a"), Matcher.re("env", "p.*")], {"job": "a"}),
        ([Matcher.eq("job", "a"), Matcher.eq("job", "b")], {}),
        ([Matcher.eq("job", "a"), Matcher.eq("job", "a")], {}),
        ([Matcher.eq("job", "a"), Matcher.re("job", "b")], {}),
        ([Matcher.re("job", "a"), Matcher.eq("job", "b")], {"job": "b"}),
        ([Matcher.neq("job", "a"), Matcher.eq("job", "b")], {"job": "b"}),
        ([Matcher.eq("job", "a"), Matcher.re("job", "b"), Matcher.eq("job", "c")], {}),
    ],
)
def test_selector_labels(matchers: list[Matcher], want: dict[str, str]) -> None:
    assert selector_labels(matchers) == Labels.from_dict(want)


def test_absent_after_a_regex_matcher_on_the_same_label(tmp_path: Path) -> None:
    db = DB(tmp_path, Options(fsync=False), now_ms=lambda: 600_000)
    try:
        engine = Engine(db)
        for q in ('absent(nope{job=~"a",job="b"})', 'absent_over_time(nope{job=~"a",job="b"}[5m])'):
            series = engine.instant_query(q, 300_000).series
            assert [s.labels for s in series] == [Labels.from_dict({"job": "b"})], q
    finally:
        db.close()
