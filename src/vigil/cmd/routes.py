"""`vigil routes`: show the routing tree and test where an alert goes, as `amtool config routes`.

    vigil routes show --config alertmanager.yml
    vigil routes test --config vigil.yml service=db severity=critical
    vigil routes test --config am.yml --tree --verify.receivers=db-pager,ops service=db

`--config` is an Alertmanager file or a vigil.yml with an `alerting:` section. `test` prints the
receivers the label set resolves to, comma-separated in tree order; with `--verify.receivers` a
different list (order matters) also prints `WARNING: Expected receivers did not match resolved
receivers.` and exits 1. Bad configuration or labels: one line on stderr, exit 1 (as amtool).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vigil.config import ConfigError
from vigil.notifier.config import load_routing_source
from vigil.notifier.matchers import MatcherError, MatchType, parse_matcher
from vigil.notifier.routing import build_routes, format_tree, receivers

EXIT_ERROR = 1
MISMATCH_WARNING = "WARNING: Expected receivers did not match resolved receivers."


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "routes",
        help="show the alert routing tree or test where labels are routed (amtool config routes)",
        description="Routing tools over an Alertmanager file or vigil.yml's alerting section.",
    )
    sub = p.add_subparsers(dest="routes_command", required=True)
    show = sub.add_parser("show", help="print the routing tree")
    show.add_argument("--config", "-c", type=Path, required=True, help="alertmanager.yml or vigil.yml")
    test = sub.add_parser("test", help="print the receivers a label set is routed to")
    test.add_argument("--config", "-c", type=Path, required=True, help="alertmanager.yml or vigil.yml")
    test.add_argument("--tree", action="store_true", help="also print the matching routes as a tree")
    test.add_argument(
        "--verify.receivers",
        dest="verify_receivers",
        default="",
        help="expected receivers, comma-separated in order; exit 1 if they differ",
    )
    test.add_argument("labels", nargs="*", help="labels as name=value")
    return p


def parse_labels(args: list[str]) -> dict[str, str]:
    """`name=value` arguments (amtool's matcher syntax; only `=`). Raises MatcherError."""
    out: dict[str, str] = {}
    for arg in args:
        m = parse_matcher(arg)
        if m.type is not MatchType.EQ:
            raise MatcherError("labels must be specified as key=value pairs")
        out[m.name] = m.value
    return out


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_routing_source(args.config)
    except ConfigError as e:
        print(f"vigil: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    assert cfg.route is not None  # the loader refuses a file without one
    root = build_routes(cfg.route)
    if args.routes_command == "show":
        print("Routing tree:")
        print(format_tree(root))
        return 0
    try:
        labels = parse_labels(args.labels)
    except MatcherError as e:
        print(f"vigil: error: Failed to parse labels: {e}", file=sys.stderr)
        return EXIT_ERROR
    if args.tree:
        print("Matching routes:")
        print(format_tree(root, labels))
        print()
    slug = ",".join(receivers(root, labels))
    print(slug)
    if args.verify_receivers and args.verify_receivers != slug:
        print(MISMATCH_WARNING)
        return EXIT_ERROR
    return 0
