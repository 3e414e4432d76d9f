"""`vigil rules check FILE…`: validate Prometheus rule files with promtool's `check rules` output.

    Checking FILE
      SUCCESS: N rules found          (stdout)
      FAILED:                         (stderr, then one line per problem:)
    file:line:col: group "g", rule N, "name": message

Exit 0 when every file is valid, 1 when one is not or a file does not exist (checked before any
other, as promtool does), 3 with `--lint-fatal` when only the duplicate-rules lint found something.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vigil.rules.rulefmt import TemplateCheck, duplicate_rules, parse_rule_file

EXIT_OK, EXIT_FAILED, EXIT_LINT = 0, 1, 3


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser("rules", help="rule file tools (promtool-compatible)")
    sub = p.add_subparsers(dest="rules_command", required=True)
    check = sub.add_parser("check", help="validate rule files as `promtool check rules` does")
    check.add_argument("files", nargs="+", help="rule files")
    check.add_argument(
        "--lint", default="duplicate-rules", choices=["duplicate-rules", "none"], help="lint checks to run"
    )
    check.add_argument("--lint-fatal", action="store_true", help="exit 3 on lint findings")
    return p


def _template_check() -> TemplateCheck | None:
    try:
        from vigil.template import prometheus
    except ImportError:
        return None
    check: TemplateCheck = prometheus.check
    return check


def check_files(files: list[str], lint: bool, lint_fatal: bool, out: Any, err: Any) -> int:
    for f in files:
        if not Path(f).exists():
            print(f"vigil: error: path '{f}' does not exist", file=err)
            return EXIT_FAILED
    failed = has_errors = False
    tcheck = _template_check()
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


def run(args: argparse.Namespace) -> int:
    return check_files(args.files, args.lint != "none", args.lint_fatal, sys.stdout, sys.stderr)
