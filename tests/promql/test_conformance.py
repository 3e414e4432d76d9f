"""Prometheus' own PromQL test files (promqltest) run against Vigil's engine, one test per eval.

Ids are `<file>.test:<line of the eval>`. Storage per file is built lazily and shared by the cases
of that file (see promqltest.FileSession), so an eval sees exactly the loads and clears before it.
Cases in `xfail.XFAIL` are strict xfails; native-histogram cases are xfailed without running.
Skipped as a whole until `vigil.promql.engine` exists or when the test data is missing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.promql import promqltest as dsl
from tests.promql.unsupported import reason
from tests.promql.xfail import XFAIL

# find_spec rather than importorskip: skip while the module is absent, but let a broken engine
# module fail loudly instead of silently skipping the whole suite.
if importlib.util.find_spec("vigil.promql.engine") is None:
    pytest.skip("vigil.promql.engine does not exist yet", allow_module_level=True)
if not dsl.testdata_files():
    pytest.skip(f"no *.test files in {dsl.TESTDATA_DIR}", allow_module_level=True)

SCRIPTS = {p.name: dsl.parse_file(p) for p in dsl.testdata_files()}


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
