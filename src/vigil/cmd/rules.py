"""`vigil rules check|test FILE…`: promtool's `check rules` and `test rules` for Prometheus rule files.

`check` prints what promtool prints:

    Checking FILE
      SUCCESS: N rules found          (stdout)
      FAILED:                         (stderr, then one line per problem:)
    file:line:col: group "g", rule N, "name": message

and exits 0 when every file is valid, 1 when one is not or a file does not exist (checked before any
other, as promtool does), 3 with `--lint-fatal` when only the duplicate-rules lint found something.

`test` runs promtool-format rule unit tests: `Unit Testing:  FILE` and `  SUCCESS` on stdout, or
`  FAILED:` with each failure (expected vs got, and a diff) on stderr; exit 0 when every file
passes, 1 when any fails or cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vigil.rules.rulefmt import TemplateCheck, duplicate_rules, parse_rule_file
from vigil.rules.testrun import GroupContext, UnitGroup
from vigil.rules.testrun import main as run_tests

EXIT_OK, EXIT_FAILED, EXIT_LINT = 0, 1, 3


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `rules` (with `check` and `test`) to the top-level subcommands."""
    rules: argparse.ArgumentParser = subparsers.add_parser(
        "rules", help="alerting and recording rule tools (promtool-compatible)"
    )
    sub = rules.add_subparsers(dest="rules_command", required=True)
    check = sub.add_parser("check", help="validate rule files as `promtool check rules` does")
    check.add_argument("files", nargs="+", help="rule files")
    check.add_argument(
        "--lint", default="duplicate-rules", choices=["duplicate-rules", "none"], help="lint checks to run"
    )
    check.add_argument("--lint-fatal", action="store_true", help="exit 3 on lint findings")
    test = sub.add_parser(
        "test",
        help="run rule unit tests written for `promtool test rules`",
        description="Run rule unit tests in promtool's format; exit 0 if all pass, 1 otherwise.",
    )
    test.add_argument("files", nargs="+", type=Path, metavar="FILE", help="unit-test files")
    return rules


def template_check() -> TemplateCheck:
    """Vigil's Go-template parse check, as promtool's for annotations and labels."""
    from vigil.template import prometheus

    check: TemplateCheck = prometheus.check
    return check


def check_files(files: list[str], lint: bool, lint_fatal: bool, out: Any, err: Any) -> int:
    for f in files:
        if not Path(f).exists():
            print(f"vigil: error: path '{f}' does not exist", file=err)
            return EXIT_FAILED
    failed = has_errors = False
    tcheck = template_check()
    for f in files:
        print("Checking", f, file=out)
        spec, errors = parse_rule_file(f, tcheck)
        if errors or spec is None:
            failed = has_errors = True
            print("  FAILED:", file=err)
            for e in errors:
                print(e, file=err)
            print(file=out)
            continue
        dups = duplicate_rules(spec) if lint else []
        if dups:
            failed = True
            lines = [f"lint error {len(dups)} duplicate rule(s) found."]
            for name, labels in dups:
                lines += [f"Metric: {name}", "Label(s):"] + [f"\t{k}: {v}" for k, v in labels]
            lines.append("Might cause inconsistency while recording expressions")
            print("  FAILED:", file=err)
            print(f"{f}: " + "\n".join(lines), file=err)
        else:
            print(f"  SUCCESS: {spec.rule_count()} rules found", file=out)
        print(file=out)
    if failed and has_errors:
        return EXIT_FAILED
    if failed and lint_fatal:
        return EXIT_LINT
    return EXIT_OK


def _load_groups(files: Sequence[Path], ctx: GroupContext) -> Sequence[UnitGroup]:
    from vigil.rules.testbackend import load_groups  # the rule and template engines, only when needed

    return load_groups(files, ctx)


def run(args: argparse.Namespace) -> int:
    if args.rules_command == "check":
        return check_files(args.files, args.lint != "none", args.lint_fatal, sys.stdout, sys.stderr)
    if args.rules_command == "test":
        return run_tests(args.files, _load_groups)
    raise AssertionError(args.rules_command)  # argparse allows no other value
