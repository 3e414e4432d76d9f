"""PromQL conformance: one summary line at the end of the session.

A plugin named by tests/conftest.py rather than a conftest of its own: under pytest-xdist the
terminal summary is written by the controller, which never collects, so it loads only the conftest
files of the paths it was given (tests/), not tests/promql/conftest.py.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

_MODULE = "test_conformance.py::"


# An outermost wrapper, so the line comes after pytest's short test summary (which -ra fills with
# one line per xfailed case), just before the final counts.
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Generator[None, None, None]:
    yield
    stats = terminalreporter.stats
    counts = {
        key: sum(1 for r in stats.get(key, []) if _MODULE in getattr(r, "nodeid", ""))
        for key in ("passed", "xfailed", "failed", "xpassed", "error")
    }
    if not any(counts.values()):
        return  # not collected, or skipped because the engine does not exist yet
    line = f"promql conformance: {counts['passed']} passed, {counts['xfailed']} xfailed"
    # Strict xpasses are reported as failures; list anything that is not green separately.
    extra = [f"{n} {key}" for key in ("failed", "xpassed", "error") if (n := counts[key])]
    terminalreporter.write_line(", ".join([line, *extra]))
