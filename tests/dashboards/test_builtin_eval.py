"""The built-in dashboards against real data: every query evaluates on Vigil's engine over what this
host's agent collects, the Host dashboard's basic panels have data for the agent's `instance`, and
every metric they name is one Vigil produces (collected here, or documented in the README's
security collector table and used by the built-in rule pack)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests.tsdb.clock import FakeClock
from vigil.cmd.agent import build_agent
from vigil.config import Config
from vigil.dashboards.load import load_builtin
from vigil.dashboards.model import Dashboard, substitute
from vigil.model.labels import Labels
from vigil.promql import ast
from vigil.promql.engine import Engine
from vigil.promql.parser import parse
from vigil.tsdb.db import DB, Options

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000_000
STEP = 15_000
ROUNDS = 9  # two minutes of collections, enough for rate() over the substituted 1m windows


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, set[str], str]]:
    """A DB holding ROUNDS collections of this host's agent (host collectors), the metric names seen
    and the agent's instance label."""
    agent = build_agent(Config(), CollectorRegistry())
    clock = FakeClock(T0 + ROUNDS * STEP)
    db = DB(tmp_path_factory.mktemp("db"), Options(fsync=False), now_ms=clock)
    names: set[str] = set()
    instance = ""
    for i in range(ROUNDS):
        series, points = agent.collect(T0 + i * STEP)[0]
        for labels, pts in zip(series, points, strict=True):
            lb = dict(labels)
            names.add(lb["__name__"])
            instance = lb.get("instance", instance)
            ref = db.series_ref(Labels.from_dict(lb))
            ts = np.array([t for t, _ in pts], np.int64)
            db.append(np.full(ts.size, ref), ts, np.array([v for _, v in pts], np.float64))
    yield Engine(db), names, instance
    db.close()


def _queries(d: Dashboard) -> list[tuple[str, str, bool]]:
    return [(f"{key}: {p.title}", q.expr, q.instant) for key, p in d.all_panels() for q in p.queries]


def _values(d: Dashboard, instance: str) -> dict[str, str]:
    values = {v.name: v.sample_value() for v in d.variables}
    values.update(instance=instance, job="vigil-agent")
    return values


@pytest.mark.parametrize("d", [x.dashboard for x in load_builtin()], ids=lambda d: d.uid)
def test_every_query_evaluates(d: Dashboard, loaded: tuple[Engine, set[str], str]) -> None:
    engine, _, instance = loaded
    end = T0 + (ROUNDS - 1) * STEP
    values = _values(d, instance)
    for _, expr, instant in _queries(d):
        text = substitute(expr, values)
        engine.instant_query(text, end)  # raises on an evaluation error: the test fails naming it
        if not instant:
            engine.range_query(text, T0 + 60_000, end, STEP)


def test_host_dashboard_shows_this_host(loaded: tuple[Engine, set[str], str]) -> None:
    engine, _, instance = loaded
    [node] = [x.dashboard for x in load_builtin() if x.dashboard.uid == "vigil-node"]
    assert instance, "the agent labels its series with an instance"
    end = T0 + (ROUNDS - 1) * STEP
    values = _values(node, instance)
    # Panels whose metrics every Linux host has (no swap, PSI or a root filesystem assumed).
    must_have = {
        "CPU busy",
        "Load per core",
        "RAM used",
        "CPUs",
        "RAM total",
        "Uptime",
        "CPU by mode",
        "Memory",
        "Load average",
        "Network traffic",
    }
    empty = []
    for _, p in node.all_panels():
        if p.title in must_have:
            result = engine.instant_query(substitute(p.queries[0].expr, values), end)
            if not result.series and result.scalar is None:
                empty.append(p.title)
    assert empty == []


def _metric_names(expr: object) -> Iterator[str]:
    if isinstance(expr, ast.VectorSelector):
        for m in expr.matchers:
            if m.name == "__name__":
                yield m.value
        return
    if isinstance(expr, tuple | list):
        for e in expr:
            yield from _metric_names(e)
        return
    for field in getattr(expr, "__dataclass_fields__", {}):
        yield from _metric_names(getattr(expr, field))


def test_only_metrics_vigil_produces(loaded: tuple[Engine, set[str], str]) -> None:
    _, collected, _ = loaded
    readme = (ROOT / "README.md").read_text()
    rules = "".join(p.read_text() for p in (ROOT / "src/vigil/rules/builtin").glob("*.yml"))
    unknown = set()
    for x in load_builtin():
        values = _values(x.dashboard, "host")
        for _, expr, _ in _queries(x.dashboard):
            for name in _metric_names(parse(substitute(expr, values))):
                documented = re.search(rf"`{re.escape(name)}[`{{]", readme) and name in rules
                if name not in collected and not documented:
                    unknown.add((x.source, name))
    assert unknown == set()
