"""Run a snippet of Python in a child process with an address-space limit and a generous deadline.

For regression tests of work that, if the fix regresses, would crash the interpreter (a stack
overflow in an extension), hold the GIL for hours (a backtracking regex, which no signal or
pytest-timeout can interrupt) or allocate GiBs: the child dies or is killed, the test fails with
what it printed, and the test process carries on.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass

_PRELUDE = """
import resource
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
"""


@dataclass(frozen=True)
class Outcome:
    returncode: int | None  # None: killed at the deadline
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_isolated(code: str, *, max_bytes: int = 2 << 30, deadline_s: float = 120.0) -> Outcome:
    """Run `code` (dedented) under RLIMIT_AS = `max_bytes`; kill it after `deadline_s` (meant as a
    deadline for a hang, far above the time the code needs, never as a measurement)."""
    source = _PRELUDE.format(limit=max_bytes) + textwrap.dedent(code)
    try:
        done = subprocess.run(
            [sys.executable, "-c", source], capture_output=True, text=True, timeout=deadline_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return Outcome(None, out, f"killed after {deadline_s} s")
    return Outcome(done.returncode, done.stdout, done.stderr)
