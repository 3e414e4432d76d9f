"""`vigil`: the one command-line entry point (`up`, `server`, `config check`, `rules test`, `--version`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vigil import __version__
from vigil.cmd import dashboards as dashboards_cmd
from vigil.cmd import query as query_cmd
from vigil.cmd import routes as routes_cmd
from vigil.cmd import rules as rules_cmd
from vigil.cmd import silence as silence_cmd
from vigil.cmd import templates as templates_cmd
from vigil.cmd import users as users_cmd
from vigil.cmd.listen import ListenError
from vigil.config import Config, ConfigError, load_config
from vigil.storage.errors import StorageError

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def _add_server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", type=Path, help="path to vigil.yml (default: ./vigil.yml if present)")
    p.add_argument("--data-dir", help="data directory (storage.path)")
    p.add_argument("--listen", help="address to listen on, host:port (server.listen)")
    p.add_argument("--retention", help="how long to keep data, e.g. 15d (storage.retention)")
    p.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow a non-loopback --listen without auth tokens",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vigil", description="Metric-driven security monitoring.")
    p.add_argument("--version", action="version", version=f"vigil {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run everything on this host: the server and an agent shipping to it")
    _add_server_flags(up)
    server = sub.add_parser("server", help="run the server: ingest, storage, HTTP API")
    _add_server_flags(server)
    agent = sub.add_parser("agent", help="collect this host's metrics and ship them to a server")
    agent.add_argument(
        "--config", "-c", type=Path, help="path to vigil.yml (default: ./vigil.yml if present)"
    )
    agent.add_argument("--once", action="store_true", help="print one collection (Prometheus text) and exit")
    agent.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    query_cmd.add_parser(sub)
    routes_cmd.add_parser(sub)
    silence_cmd.add_parser(sub)
    templates_cmd.add_parser(sub)
    rules_cmd.add_parser(sub)
    users_cmd.add_parser(sub)
    dashboards_cmd.add_parser(sub)
    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a configuration file and exit")
    check.add_argument("file", nargs="?", type=Path, help="file to check (default: ./vigil.yml)")
    check.add_argument("--config", "-c", type=Path, dest="config_flag", help=argparse.SUPPRESS)
    return p


def _load(path: Path | None) -> Config:
    if path is None and Path("vigil.yml").exists():
        path = Path("vigil.yml")
    return load_config(path)


def _server_config(args: argparse.Namespace) -> Config:
    return _load(args.config).with_overrides(
        listen=args.listen, data_dir=args.data_dir, retention=args.retention, insecure=args.insecure
    )


def _config_check(path: Path | None) -> int:
    """`vigil config check [FILE]`: the file (default ./vigil.yml) and the rule files it names; with no
    file at all, the defaults Vigil would run with (no file is needed)."""
    from vigil.agent.security import load_rule_files

    if path is None and not Path("vigil.yml").exists():
        checked, name = Config(), "no vigil.yml, the defaults"
    else:
        path = path or Path("vigil.yml")
        checked, name = load_config(path), str(path)
    load_rule_files(  # the log rules it names are part of it
        checked.agent.logs.rule_files,
        source=str(path or "vigil.yml"),
        warn=lambda w: print(w, file=sys.stderr),
    )
    from vigil.notifier.config import load_alerting  # and so is the Alertmanager configuration

    load_alerting(checked.alerting, str(path or "vigil.yml"), (path or Path("vigil.yml")).parent)
    from vigil.rules.events import compile_event_rules, with_builtin  # and the rule files and event rules
    from vigil.rules.group import RuleLoadError
    from vigil.rules.manager import check_rule_files

    source = str(path or "vigil.yml")
    compile_event_rules(
        with_builtin(checked.event_rules, checked.rules.builtin), source, rules_cmd.template_check()
    )
    try:
        check_rule_files(
            checked,
            (path or Path("vigil.yml")).parent,
            rules_cmd.template_check(),
            warn=lambda w: print(w, file=sys.stderr),
        )
    except RuleLoadError as exc:
        raise ConfigError(f"invalid rule files:\n{exc}", source=source, key="rule_files") from None
    from vigil.dashboards.load import configured_dir, load_all  # and the dashboards directory

    dashboards = configured_dir(checked.ui.dashboards_dir, (path or Path("vigil.yml")).parent)
    if dashboards is not None and not dashboards.is_dir():
        print(f"{source}: ui.dashboards_dir: {dashboards} is not a directory (yet)", file=sys.stderr)
    else:
        load_all(dashboards)
    print(f"{name}: OK")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "query":
            return query_cmd.run(args)
        if args.command == "routes":
            return routes_cmd.run(args)
        if args.command == "rules":
            return rules_cmd.run(args)
        if args.command == "silence":
            return silence_cmd.run(args)
        if args.command == "dashboards":
            return dashboards_cmd.run(args)
        if args.command == "logs":
            return templates_cmd.run(args)
        if args.command == "users":
            return users_cmd.run(args)
        if args.command == "agent":
            from vigil.cmd import agent as agent_cmd  # the agent's imports only when running it
            from vigil.cmd.logs import setup_logging

            cfg = _load(args.config)
            setup_logging(args.log_level)
            return agent_cmd.print_once(cfg) if args.once else agent_cmd.run_agent(cfg)
        if args.command == "config":
            return _config_check(args.file or args.config_flag)
        cfg = _server_config(args)
        from vigil.cmd.logs import setup_logging
        from vigil.cmd.server import run_server  # heavy imports only when serving

        setup_logging(args.log_level)
        path = args.config or (Path("vigil.yml") if Path("vigil.yml").exists() else None)
        config_dir = path.parent if path else Path(".")  # relative rule_files are under it
        return run_server(cfg, with_agent=args.command == "up", config_dir=config_dir, config_path=path)
    except (ConfigError, ListenError) as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except StorageError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
