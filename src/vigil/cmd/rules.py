"""`vigil rules`: tools for Prometheus-format rule files.

    vigil rules test FILE...     run promtool-format rule unit tests (`promtool test rules`)

`test` prints and exits as promtool does: `Unit Testing:  FILE` and `  SUCCESS` on stdout, or
`  FAILED:` with each failure (expected vs got, and a diff) on stderr; exit 0 when every file
passes, 1 when any fails or cannot be read.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vigil.rules.testrun import GroupContext, LoadError, UnitGroup
from vigil.rules.testrun import main as run_tests


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `rules` (with `test`) to the top-level subcommands."""
    rules: argparse.ArgumentParser = subparsers.add_parser("rules", help="alerting and recording rule tools")
    sub = rules.add_subparsers(dest="rules_command", required=True)
    test = sub.add_parser(
        "test",
        help="run rule unit tests written for `promtool test rules`",
        description="Run rule unit tests in promtool's format; exit 0 if all pass, 1 otherwise.",
    )
    test.add_argument("files", nargs="+", type=Path, metavar="FILE", help="unit-test files")
    return rules


def _load_groups(files: Sequence[Path], ctx: GroupContext) -> Sequence[UnitGroup]:
    # The rules and template engines are imported only when a test names rule files.
    try:
        from vigil.rules.testbackend import load_groups
    except ImportError as e:  # a build without them: every test with rules fails, saying why
        raise LoadError([f"cannot evaluate rules: {e}"]) from None
    return load_groups(files, ctx)


def run(args: argparse.Namespace) -> int:
    if args.rules_command == "test":
        return run_tests(args.files, _load_groups)
    raise AssertionError(args.rules_command)  # argparse allows no other value
