"""Prometheus' own PromQL test files (promqltest) run against Vigil's engine, one test per eval.

Ids are `<file>.test:<line of the eval>`. Storage per file is built lazily and shared by the cases
of that file (see promqltest.FileSession), so an eval sees exactly the loads and clears before it.
Cases in `xfail.XFAIL` are strict xfails; native-histogram cases are xfailed without running.
Without the test data the module is skipped, except on CI, where that fails (see require_testdata).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.promql import promqltest as dsl
from tests.promql.unsupported import reason
from tests.promql.xfail import XFAIL

SCRIPTS = {p.name: dsl.parse_file(p) for p in dsl.require_testdata()}


def _params() -> Iterator[object]:
    for script in SCRIPTS.values():
        for ev in script.evals:
            if ev.native_histograms:
                marks = [pytest.mark.xfail(run=False, reason=dsl.NATIVE_HISTOGRAMS)]
            elif ev.id in XFAIL:
                marks = [pytest.mark.xfail(strict=True, reason=reason(ev.id, XFAIL[ev.id]))]
            else:
                marks = []
            yield pytest.param(ev, id=ev.id, marks=marks)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dsl.SessionPool]:
    pool = dsl.SessionPool(SCRIPTS, dsl.default_engine_factory(), Path(tmp_path_factory.mktemp("promql")))
    yield pool
    pool.close()


@pytest.mark.parametrize("case", list(_params()))
def test_promql(case: dsl.Eval, sessions: dsl.SessionPool) -> None:
    result = sessions.run(case)
    if result.status == "failed":
        pytest.fail(result.message, pytrace=False)
