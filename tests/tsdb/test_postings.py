"""MemPostings: Prometheus' index semantics, checked against a brute-force filter."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigil.model.labels import Labels
from vigil.model.matcher import Matcher, MatchType
from vigil.tsdb.postings import MemPostings


def L(**labels: str) -> Labels:
    return Labels.from_dict(labels)


SERIES = {
    1: L(__name__="up", job="api", instance="a:1"),
    2: L(__name__="up", job="api", instance="b:1", env="prod"),
    3: L(__name__="up", job="web", instance="a:1", env=""),
    4: L(__name__="errors_total", job="web", code="500"),
    5: L(__name__="errors_total", job="db", code="404", env="dev"),
    6: L(__name__="x", job="api\nv2"),
}


@pytest.fixture
def index() -> MemPostings:
    p = MemPostings()
    for ref, labels in SERIES.items():
        p.add(ref, labels)
    return p


def brute(series: dict[int, Labels], matchers: list[Matcher]) -> list[int]:
    return sorted(r for r, ls in series.items() if all(m.matches(ls.get(m.name)) for m in matchers))


@pytest.mark.parametrize(
    ("matchers", "expected"),
    [
        ([], [1, 2, 3, 4, 5, 6]),
        ([Matcher.eq("job", "api")], [1, 2]),
        ([Matcher.eq("job", "nope")], []),
        ([Matcher.eq("nope", "x")], []),
        ([Matcher.eq("__name__", "up"), Matcher.eq("instance", "a:1")], [1, 3]),
        # Matchers that match "" also select series without the label.
        ([Matcher.eq("env", "")], [1, 3, 4, 6]),
        ([Matcher.neq("env", "prod")], [1, 3, 4, 5, 6]),
        ([Matcher.re("env", "|dev")], [1, 3, 4, 5, 6]),
        ([Matcher.nre("env", "prod|dev")], [1, 3, 4, 6]),
        ([Matcher.eq("nope", "")], [1, 2, 3, 4, 5, 6]),
        ([Matcher.neq("nope", "x")], [1, 2, 3, 4, 5, 6]),
        ([Matcher.re("env", ".*")], [1, 2, 3, 4, 5, 6]),
        # ... and those that do not, only series with it.
        ([Matcher.neq("env", "")], [2, 5]),
        ([Matcher.re("env", ".+")], [2, 5]),
        ([Matcher.nre("env", "")], [2, 5]),
        ([Matcher.nre("env", ".*")], []),
        ([Matcher.neq("nope", "")], []),
        # Regexes are anchored; dot matches newline.
        ([Matcher.re("job", "a")], []),
        ([Matcher.re("job", "a.*")], [1, 2, 6]),
        ([Matcher.re("job", "api.+")], [6]),
        ([Matcher.re("job", "(?-s)api.+")], []),
        ([Matcher.re("job", "api|web")], [1, 2, 3, 4]),
        ([Matcher.re("job", "(?i)API|DB")], [1, 2, 5]),
        ([Matcher.re("instance", ".*:1")], [1, 2, 3]),
        ([Matcher.nre("job", "api|web")], [5, 6]),
        ([Matcher.nre("job", "w.*")], [1, 2, 5, 6]),
        ([Matcher.re("__name__", "up|errors_total"), Matcher.neq("job", "web"), Matcher.eq("env", "")], [1]),
        ([Matcher.re("__name__", ".+"), Matcher.nre("code", "5..")], [1, 2, 3, 5, 6]),
    ],
    ids=lambda ms: (
        "{" + ", ".join(map(str, ms)) + "}"
        if isinstance(ms, list) and ms and isinstance(ms[0], Matcher)
        else None
    ),
)
def test_select(index: MemPostings, matchers: list[Matcher], expected: list[int]) -> None:
    got = index.select(matchers)
    assert got.dtype == np.int64
    assert got.tolist() == expected
    assert expected == brute(SERIES, matchers)


def test_results_are_read_only_and_shared_safely(index: MemPostings) -> None:
    refs = index.select([Matcher.eq("__name__", "up")])
    with pytest.raises(ValueError):
        refs[0] = 99
    with pytest.raises(ValueError):
        index.all_refs()[0] = 99
    index.add(7, L(__name__="up"))
    assert index.select([Matcher.eq("__name__", "up")]).tolist() == [1, 2, 3, 7]
    assert refs.tolist() == [1, 2, 3]  # what a caller already holds does not change


def test_labels(index: MemPostings) -> None:
    assert len(index) == 6
    assert index.all_refs().tolist() == [1, 2, 3, 4, 5, 6]
    assert index.label_names() == ["__name__", "code", "env", "instance", "job"]
    assert index.label_names(np.array([4, 1], np.int64)) == ["__name__", "code", "instance", "job"]
    assert index.label_names(np.array([], np.int64)) == []
    assert index.label_names(np.array([999], np.int64)) == []
    assert index.label_values("job") == ["api", "api\nv2", "db", "web"]
    assert index.label_values("job", np.array([5, 1, 2, 2], np.int64)) == ["api", "db"]
    assert index.label_values("env", np.array([1, 3, 4], np.int64)) == []
    assert index.label_values("nope") == []
    assert index.label_values("job", np.array([], np.int64)) == []


def test_delete(index: MemPostings) -> None:
    index.select([Matcher.eq("job", "api")])  # fill caches, which delete must drop
    index.delete([2, 5, 42])
    assert len(index) == 4
    assert index.all_refs().tolist() == [1, 3, 4, 6]
    assert index.select([Matcher.eq("job", "api")]).tolist() == [1]
    assert index.select([Matcher.neq("env", "")]).tolist() == []
    assert index.select([Matcher.eq("env", "")]).tolist() == [1, 3, 4, 6]
    assert index.label_names() == ["__name__", "code", "instance", "job"]  # env is gone
    assert index.label_values("job") == ["api", "api\nv2", "web"]
    index.delete([])
    index.delete(np.array([1, 3, 4, 6]))
    assert len(index) == 0
    assert index.label_names() == []
    assert index.select([]).tolist() == []
    assert index.select([Matcher.eq("env", "")]).tolist() == []


def test_out_of_order_and_repeated_adds(index: MemPostings) -> None:
    index.add(6, SERIES[6])  # already there: nothing changes
    assert len(index) == 6
    index.delete([2])
    index.add(2, SERIES[2])  # replayed after a delete
    index.add(0, L(job="api"))
    assert len(index) == 7
    assert index.select([Matcher.eq("job", "api")]).tolist() == [0, 1, 2]
    assert index.select([Matcher.eq("env", "prod")]).tolist() == [2]
    assert index.all_refs().tolist() == [0, 1, 2, 3, 4, 5, 6]


def test_long_postings_cache_follows_appends() -> None:
    p = MemPostings()
    for ref in range(500):
        p.add(ref, L(job="a" if ref % 5 else "b", i=str(ref % 7)))
    first = p.select([Matcher.eq("job", "a")])
    assert len(first) == 400
    assert p.select([Matcher.eq("job", "a")]) is first  # cached while nothing changes
    p.add(500, L(job="a"))
    assert p.select([Matcher.eq("job", "a")]).tolist() == [*first.tolist(), 500]
    p.delete(range(0, 500, 2))
    again = p.select([Matcher.eq("job", "a")])
    assert again.tolist() == [r for r in [*first.tolist(), 500] if r % 2 or r == 500]
    assert p.select([Matcher.neq("i", "")]).tolist() == [r for r in range(1, 500, 2)]


# ---------------------------------------------------------------------------------------------
# Against brute force

_NAMES = ["__name__", "job", "env", "id"]
_VALUES = ["a", "b", "ab", "ba", "A", "a\nb", "x1", "x2"]
_PATTERNS = [
    "",
    "a",
    "b|ab",
    ".*",
    ".+",
    "a.*",
    ".*b",
    ".*a.*",
    "|a",
    "x[0-9]",
    "(?i)a",
    "[ab]+",
    "a\\nb",
    "x1|x2|y",
]


@st.composite
def matchers(draw: st.DrawFn) -> Matcher:
    mtype = draw(st.sampled_from(MatchType))
    name = draw(st.sampled_from([*_NAMES, "missing"]))
    pool = _PATTERNS if mtype in (MatchType.RE, MatchType.NRE) else ["", *_VALUES]
    return Matcher(mtype, name, draw(st.sampled_from(pool)))


label_sets = st.dictionaries(
    st.sampled_from(_NAMES), st.one_of(st.sampled_from(_VALUES), st.integers(0, 99).map(str)), max_size=4
).map(Labels.from_dict)

ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(label_sets, min_size=1, max_size=30)),
        st.tuples(st.just("delete"), st.lists(st.integers(0, 120), max_size=20)),
        st.tuples(st.just("readd"), st.integers(0, 120)),
    ),
    min_size=1,
    max_size=6,
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops, st.lists(st.lists(matchers(), max_size=3), min_size=1, max_size=5))
def test_select_agrees_with_brute_force(
    operations: list[tuple[str, object]], queries: list[list[Matcher]]
) -> None:
    index = MemPostings()
    live: dict[int, Labels] = {}
    history: dict[int, Labels] = {}
    next_ref = 0
    for op, arg in operations:
        if op == "add":
            for labels in arg:  # type: ignore[attr-defined]
                index.add(next_ref, labels)
                live[next_ref] = history[next_ref] = labels
                next_ref += 1
        elif op == "delete":
            index.delete(arg)  # type: ignore[arg-type]
            for ref in arg:  # type: ignore[attr-defined]
                live.pop(ref, None)
        elif arg in history:  # re-add a ref the caller knows, deleted or not
            index.add(arg, history[arg])  # type: ignore[arg-type]
            live[arg] = history[arg]  # type: ignore[index]
        # Query after every step, so caches are filled and then must notice the next change.
        for ms in queries:
            got = index.select(ms)
            assert got.tolist() == brute(live, ms), ms
            assert bool(np.all(got[1:] > got[:-1]))
        assert len(index) == len(live)
        assert index.all_refs().tolist() == sorted(live)
        assert index.label_names() == sorted({n for ls in live.values() for n in ls.names()})
        for name in _NAMES:
            assert index.label_values(name) == sorted({ls.get(name) for ls in live.values()} - {""})
        for ms in queries:
            refs = index.select(ms)
            chosen = [live[r] for r in refs.tolist()]
            assert index.label_names(refs) == sorted({n for ls in chosen for n in ls.names()})
            for name in _NAMES:
                expected = sorted({ls.get(name) for ls in chosen} - {""})
                assert index.label_values(name, refs) == expected
                assert index.label_values(name, refs[::-1].copy()) == expected  # any order
