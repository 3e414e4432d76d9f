"""`vigil dashboards list|check|export|import`: dashboard files, and Grafana's JSON both ways.

    list [--dir D]                     the built-in dashboards and D's (default: ui.dashboards_dir)
    check FILE…                        validate dashboard files: one line per bad file, exit 1 if any
    export --grafana OUT [--dir D]     one Grafana dashboard JSON per dashboard, named <uid>.json
    import FILE.json [-o OUT.yml]      a Grafana dashboard as a Vigil one; skipped panels on stderr

The directory comes from `--dir`, else from `ui.dashboards_dir` of `--config` (default ./vigil.yml
when present), relative to that file's directory as the server reads it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from vigil.config import ConfigError, load_config
from vigil.dashboards.grafana import MAX_IMPORT_BYTES, from_grafana, parse_grafana, to_grafana
from vigil.dashboards.load import Limits, configured_dir, load_all, load_file
from vigil.dashboards.model import to_yaml

EXIT_OK, EXIT_FAILED = 0, 1


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `dashboards` (list, check, export, import) to the top-level subcommands."""
    p: argparse.ArgumentParser = subparsers.add_parser("dashboards", help="dashboard files and Grafana JSON")
    sub = p.add_subparsers(dest="dashboards_command", required=True)

    def with_dir(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dir", type=Path, help="dashboards directory (default: ui.dashboards_dir)")
        q.add_argument("--config", "-c", type=Path, help="vigil.yml (default: ./vigil.yml if present)")

    with_dir(sub.add_parser("list", help="list the built-in and the directory's dashboards"))
    check = sub.add_parser("check", help="validate dashboard files; exit 1 if one is wrong")
    check.add_argument("files", nargs="+", type=Path, metavar="FILE")
    export = sub.add_parser("export", help="write the dashboards as Grafana dashboard JSON")
    export.add_argument("--grafana", type=Path, required=True, metavar="DIR", help="output directory")
    with_dir(export)
    imp = sub.add_parser("import", help="turn a Grafana dashboard JSON file into a Vigil dashboard")
    imp.add_argument("file", type=Path, metavar="FILE.json")
    imp.add_argument("-o", "--output", type=Path, metavar="OUT.yml", help="write here (default: stdout)")
    return p


def _directory(args: argparse.Namespace) -> Path | None:
    if args.dir is not None:
        return Path(args.dir)
    path = args.config or (Path("vigil.yml") if Path("vigil.yml").exists() else None)
    if path is None:
        return None
    return configured_dir(load_config(path).ui.dashboards_dir, path.parent)


def _list(args: argparse.Namespace, out: TextIO) -> int:
    for item in load_all(_directory(args)):
        d = item.dashboard
        print(f"{d.uid}\t{d.title}\t{len(d.all_panels())} panels\t{item.source}", file=out)
    return EXIT_OK


def _check(files: list[Path], out: TextIO, err: TextIO) -> int:
    failed = False
    for f in files:
        try:
            d = load_file(f, Limits())
        except ConfigError as e:
            failed = True
            print(e, file=err)
            continue
        print(f"{f}: OK ({len(d.all_panels())} panels)", file=out)
    return EXIT_FAILED if failed else EXIT_OK


def _export(args: argparse.Namespace, out: TextIO) -> int:
    found = load_all(_directory(args))
    target: Path = args.grafana
    target.mkdir(parents=True, exist_ok=True)
    for item in found:
        path = target / f"{item.dashboard.uid}.json"
        path.write_text(json.dumps(to_grafana(item.dashboard), indent=2, ensure_ascii=False) + "\n")
        print(f"{item.source} -> {path}", file=out)
    return EXIT_OK


def _import(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    source = str(args.file)
    try:
        with args.file.open("rb") as f:
            raw = f.read(MAX_IMPORT_BYTES + 1)  # parse_grafana refuses more; never read a huge file whole
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", source=source) from None
    result = from_grafana(parse_grafana(raw, source), source)
    for s in result.skipped:
        print(f"{source}: {s}", file=err)
    for n in result.notes:
        print(f"{source}: note: {n}", file=err)
    text = to_yaml(result.dashboard)
    if args.output is not None:
        args.output.write_text(text)
        kept = len(result.dashboard.all_panels())
        print(f"{args.output}: {kept} panels, {len(result.skipped)} skipped", file=out)
    else:
        out.write(text)
    return EXIT_OK


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run a `dashboards` subcommand; a ConfigError (a bad file, directory or config) is one line on
    `err` (default: stderr, looked up when called) and exit 1."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        if args.dashboards_command == "list":
            return _list(args, out)
        if args.dashboards_command == "check":
            return _check(args.files, out, err)
        if args.dashboards_command == "export":
            return _export(args, out)
        return _import(args, out, err)
    except ConfigError as e:
        print(e, file=err)
        return EXIT_FAILED
