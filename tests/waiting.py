"""Waiting in tests without asserting on time: conditions polled until a generous deadline, calls that
must return at all, and work run in a child process so that a runaway (e.g. a backtracking regex,
which holds the GIL) is stopped from outside.

The deadlines here are hang guards, tens of times what the work takes on a loaded machine: a test
fails on them only when the awaited thing never happens (a hang, an unbounded read, exponential
backtracking), never because the machine is slow. Tests say what they prove with counts and states;
speed is measured in bench/.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

GENEROUS_S = 60.0
ROOT = Path(__file__).resolve().parent.parent


def wait_until(cond: Callable[[], object], timeout: float = GENEROUS_S, what: str = "") -> None:
    """Poll `cond` until it is truthy; AssertionError naming `what` if it is still false at the deadline."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout:.0f}s: {what or cond}")
        time.sleep(0.01)


def returns(fn: Callable[[], T], timeout: float = GENEROUS_S, what: str = "") -> T:
    """`fn()`, run in a daemon thread; AssertionError if it has not returned by the deadline (it is
    left running: the point is that it would never return). Exceptions from `fn` are re-raised."""
    out: list[T] = []
    err: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            err.append(exc)

    thread = threading.Thread(target=run, daemon=True, name=f"returns:{what}")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"did not return within {timeout:.0f}s: {what or fn}")
    if err:
        raise err[0]
    return out[0]


def run_python(code: str, timeout: float = GENEROUS_S) -> str:
    """Run `code` in a fresh interpreter (the project root as working directory, so `tests.*` and
    `vigil.*` import); returns its stdout. AssertionError if it fails or is still running at the
    deadline (then it is killed)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running after {timeout:.0f}s (killed): {code}") from None
    assert proc.returncode == 0, f"exit {proc.returncode}: {code}\n{proc.stderr[-4000:]}"
    return proc.stdout
