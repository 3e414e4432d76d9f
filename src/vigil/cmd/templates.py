"""`vigil logs templates`: review and accept the log-template baselines of unknown-line detection.

    vigil logs templates list [--source S] [--status pending]    the templates, as a table
    vigil logs templates accept auth 12 15                        these pending templates become known
    vigil logs templates accept auth --all                        every pending template of `auth`
    vigil logs templates reject auth 17                           forget a pending template

The baselines live in `<agent.data_dir>/templates` (one JSON file per log source); `--config` picks
the configuration as for `vigil agent`, `--data-dir` overrides `agent.data_dir`, `--dir` names the
templates directory itself. Changes are made under the lock the agent uses, and a running agent
applies them within seconds (it re-reads a baseline file when the file changes). Errors print one
line on stderr; the exit code is 1 (2 for a configuration error).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vigil.config import ConfigError, load_config
from vigil.logs.baseline import (
    ACCEPTED,
    PENDING,
    STATUSES,
    BaselineError,
    Template,
    TemplateBaseline,
    baseline_lock,
    load_baselines,
)

EXIT_ERROR = 1
EXIT_CONFIG = 2
TEMPLATES_SUBDIR = "templates"


class TemplatesError(Exception):
    """Anything that stops the command; str() is the one line shown."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `logs` (with its `templates` group) to the top-level subcommands."""
    logs: argparse.ArgumentParser = subparsers.add_parser("logs", help="log pipeline tools")
    add_templates_parser(logs.add_subparsers(dest="logs_command", required=True))
    return logs


def add_templates_parser(logs_subparsers: Any) -> argparse.ArgumentParser:
    """Add `templates` under an existing `logs` group."""
    p: argparse.ArgumentParser = logs_subparsers.add_parser(
        "templates",
        help="review the learned log templates; accept or reject pending ones",
        description="Review the log-template baselines of unknown-line detection.",
    )
    sub = p.add_subparsers(dest="templates_command", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--config", "-c", type=Path, help="path to vigil.yml (default: ./vigil.yml if present)"
        )
        q.add_argument("--data-dir", help="the agent's data directory (agent.data_dir)")
        q.add_argument(
            "--dir", type=Path, help="the templates directory (default: <agent.data_dir>/templates)"
        )

    ls = sub.add_parser("list", help="list templates as a table")
    common(ls)
    ls.add_argument("--source", help="only this log source")
    ls.add_argument("--status", choices=STATUSES, help="only templates with this status")
    for name, what in (
        ("accept", "accept pending templates of a source: lines of their shape become known"),
        ("reject", "forget pending templates of a source: their lines are reported anew"),
    ):
        q = sub.add_parser(name, help=what)
        common(q)
        q.add_argument("source", help="the log source")
        q.add_argument("ids", nargs="*", type=int, metavar="template-id", help="template ids (see list)")
        q.add_argument("--all", action="store_true", help="every pending template of the source")
    return p


def run(args: argparse.Namespace) -> int:
    try:
        directory = templates_dir(args)
        if args.templates_command == "list":
            print(render(list_templates(directory, args.source, args.status)))
            return 0
        if not args.all and not args.ids:
            raise TemplatesError("name template ids, or --all for every pending template")
        if args.all and args.ids:
            raise TemplatesError("give template ids or --all, not both")
        ids = None if args.all else args.ids
        if args.templates_command == "accept":
            done = accept(directory, args.source, ids)
        else:
            done = reject(directory, args.source, ids)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except (TemplatesError, BaselineError, OSError) as exc:
        print(f"vigil logs templates: {exc}", file=sys.stderr)
        return EXIT_ERROR
    past = "accepted" if args.templates_command == "accept" else "rejected"
    print(
        f"{args.source}: {len(done)} template(s) {past}" + (f": {', '.join(map(str, done))}" if done else "")
    )
    return 0


def templates_dir(args: argparse.Namespace) -> Path:
    """`--dir`, else `<--data-dir or agent.data_dir>/templates` (agent.data_dir from the config)."""
    if getattr(args, "dir", None) is not None:
        return Path(args.dir)
    if getattr(args, "data_dir", None):
        return Path(args.data_dir) / TEMPLATES_SUBDIR
    path = args.config
    if path is None and Path("vigil.yml").exists():
        path = Path("vigil.yml")
    return load_config(path).agent.data_dir / TEMPLATES_SUBDIR


def list_templates(
    directory: Path, source: str | None = None, status: str | None = None
) -> list[tuple[str, Template]]:
    """(source, template) pairs, by source then id."""
    out: list[tuple[str, Template]] = []
    for b in load_baselines(directory):
        if source is not None and b.source != source:
            continue
        out.extend((b.source, t) for t in sorted(b.templates.values(), key=lambda t: t.id))
    if source is not None and not out and TemplateBaseline.load(directory, source) is None:
        raise TemplatesError(f"no templates for source {source!r} in {directory}")
    return [(s, t) for s, t in out if status is None or t.status == status]


def accept(directory: Path, source: str, ids: list[int] | None) -> list[int]:
    """Accept pending templates (all of them when `ids` is None); returns the ids changed."""

    def change(b: TemplateBaseline, chosen: list[Template]) -> list[int]:
        done = []
        for t in chosen:
            if t.status == PENDING:
                t.status = ACCEPTED
                done.append(t.id)
        return done

    return _update(directory, source, ids, change, must_be_pending=False)


def reject(directory: Path, source: str, ids: list[int] | None) -> list[int]:
    """Forget pending templates (all of them when `ids` is None); returns the ids removed."""

    def change(b: TemplateBaseline, chosen: list[Template]) -> list[int]:
        for t in chosen:
            del b.templates[t.id]
        return [t.id for t in chosen]

    return _update(directory, source, ids, change, must_be_pending=True)


def _update(
    directory: Path,
    source: str,
    ids: list[int] | None,
    change: Callable[[TemplateBaseline, list[Template]], list[int]],
    *,
    must_be_pending: bool,
) -> list[int]:
    # Read-modify-write under the agent's lock; all ids are checked before anything changes.
    with baseline_lock(directory):
        b = TemplateBaseline.load(directory, source)
        if b is None:
            raise TemplatesError(f"no templates for source {source!r} in {directory}")
        if ids is None:
            chosen = [t for t in b.templates.values() if t.status == PENDING]
        else:
            chosen = []
            for tid in dict.fromkeys(ids):
                t = b.templates.get(tid)
                if t is None:
                    raise TemplatesError(f"{source}: no template {tid}")
                if must_be_pending and t.status != PENDING:
                    raise TemplatesError(f"{source}: template {tid} is {t.status}, not pending")
                chosen.append(t)
        done = change(b, chosen)
        if done:
            b.save(directory)
    return done


def render(rows: list[tuple[str, Template]]) -> str:
    """An aligned table: id, source, status, count, last seen, template."""
    if not rows:
        return "no templates"
    table = [("ID", "SOURCE", "STATUS", "COUNT", "LAST SEEN", "TEMPLATE")]
    for source, t in rows:
        seen = datetime.fromtimestamp(t.last_seen_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.append((str(t.id), source, t.status, str(t.count), seen, t.template))
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    lines = []
    for r in table:
        cells = [r[0].rjust(widths[0]), *(c.ljust(w) for c, w in zip(r[1:5], widths[1:], strict=True)), r[5]]
        lines.append("  ".join(cells))
    return "\n".join(lines)
