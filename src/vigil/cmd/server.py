"""Builds a server from a Config (store, ingester, HTTP app) and runs it with uvicorn.

`vigil server` and `vigil up` are a run group (vigil.cmd.run): the TSDB, the event store, the HTTP
server and, for `up` or `server.syslog`, the agent's parts, started in that order and stopped in
reverse by the main thread on SIGINT/SIGTERM. uvicorn runs in a thread of its own, where it installs
no signal handlers, so there is one stop path and the DB has one owner that closes it.
"""

from __future__ import annotations

import logging
import resource
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, Gauge, PlatformCollector, ProcessCollector
from starlette.applications import Starlette

from vigil import __version__
from vigil.cmd.listen import address, bind_tcp
from vigil.cmd.notify import NotifierParts, NotifierSender, RunningConfig, open_notifier
from vigil.cmd.rules import template_check
from vigil.cmd.run import Group, Service, run_until_signal, stop_all
from vigil.config import Config, ConfigError, check_exposure, load_config
from vigil.events.store import EventStore
from vigil.ingest.ingester import Ingester, IngestMetrics
from vigil.ingest.series_limit import SeriesLimiter, SeriesLimitMetrics, SeriesLimits
from vigil.ingest.validate import Limits
from vigil.model.event import EventLimits
from vigil.model.listen import parse_listen
from vigil.promql.engine import Engine, EngineOptions
from vigil.rules.events import EventRules, compile_event_rules, with_builtin
from vigil.rules.group import RuleLoadError
from vigil.rules.manager import AlertSender, LogSender, Manager, settings_from_config
from vigil.rules.query import DefaultTenantView, StorageAppender, engine_query
from vigil.storage.errors import StorageError
from vigil.storage.metadata import MetadataStore
from vigil.template.prometheus import expand
from vigil.tsdb.db import DB, Options
from vigil.web.admin import AdminAPI
from vigil.web.alertmanager_api import AlertmanagerAPI, MarkerInhibition
from vigil.web.app import API, create_app
from vigil.web.auth import TokenAuth
from vigil.web.connections import ConnectionLimits, ConnectionMetrics, guarded_protocol
from vigil.web.events_api import EventsAPI
from vigil.web.login import LoginAPI
from vigil.web.query_api import QueryAPI
from vigil.web.rules_api import RulesAPI, RuleSource
from vigil.web.session import SessionAuth
from vigil.web.status import StatusAPI
from vigil.web.ui.pages import PagesAPI
from vigil.web.write import WriteAPI, WriteOptions

log = logging.getLogger("vigil")


def open_db(cfg: Config, registry: CollectorRegistry | None) -> DB:
    st = cfg.storage
    opts = Options(
        retention_ms=st.retention,
        out_of_order_window_ms=st.out_of_order_window,
        future_grace_ms=cfg.limits.future_grace,
        head_flush_span_ms=st.head_flush_interval,
        wal_segment_size=st.wal_segment_size,
        maintenance_interval_s=60.0,
    )
    return DB(st.path, opts, registry=registry)


def open_events(cfg: Config) -> EventStore:
    """The event store next to the TSDB, with the same retention, expired every minute like it (from
    `start()`)."""
    path = cfg.storage.path / "events.db"
    try:
        return EventStore(path, cfg.storage.retention, maintenance_interval_s=60.0)
    except sqlite3.Error as exc:  # e.g. not writable, or not an SQLite file: stop with the path
        raise StorageError(f"{path}: {exc}") from None


def open_rules(
    cfg: Config,
    db: DB,
    registry: CollectorRegistry | None,
    config_dir: Path,
    external_url: str = "",
    events: EventStore | None = None,
    sender: AlertSender | None = None,
) -> Manager:
    """The rule manager over the default tenant's share of the DB (its own engine over untenanted
    series; writes to the DB, refusing tenant-labelled results), with the event rules subscribed to
    `events`, annotations and labels rendered as Prometheus renders them. Alerts go to `sender` (the
    notifier; None: a sender that logs and counts them). Raises ConfigError when a rule file or event
    rule is invalid."""
    q = cfg.query
    view = DefaultTenantView(db)  # rules are the default tenant's: untenanted series only
    engine = Engine(view, EngineOptions(lookback_delta_ms=q.lookback_delta, timeout_s=q.timeout / 1000))
    settings = settings_from_config(cfg, config_dir, external_url=external_url, expander=expand)
    if sender is None:
        sender = LogSender(registry)
    event_rules = EventRules(
        compile_event_rules(
            with_builtin(cfg.event_rules, cfg.rules.builtin), template_check=template_check()
        ),
        sender=sender,
        options=settings.options,
        registry=registry,
    )
    try:
        manager = Manager(
            settings,
            query=engine_query(engine),
            appender=StorageAppender(db, untenanted=True),
            storage=view,
            sender=sender,
            registry=registry,
            template_check=template_check(),
            event_rules=event_rules,
        )
    except RuleLoadError as exc:
        raise ConfigError(f"invalid rule files:\n{exc}", key="rule_files") from None
    if events is not None:
        events.subscribe(event_rules.observe)
    return manager


def build_app(
    cfg: Config,
    db: DB,
    registry: CollectorRegistry,
    events: EventStore | None = None,
    rules: RuleSource | None = None,
    alerting: NotifierParts | None = None,
) -> Starlette:
    lim = cfg.limits
    metadata = MetadataStore()
    series_limits = SeriesLimits(lim.max_series, lim.max_series_per_tenant, lim.max_series_per_metric)
    ingester = Ingester(
        db,
        Limits(
            lim.max_label_names_per_series,
            lim.max_label_name_length,
            lim.max_label_value_length,
            lim.max_samples_per_request,
        ),
        IngestMetrics(registry),
        metadata,
        SeriesLimiter(db, series_limits, SeriesLimitMetrics(registry, series_limits)),
    )
    q = cfg.query
    engine = Engine(
        db,
        EngineOptions(
            lookback_delta_ms=q.lookback_delta, timeout_s=q.timeout / 1000, max_samples=q.max_samples
        ),
    )
    sessions = SessionAuth.from_config(cfg)  # UI logins; the UI pages take it too
    auth = TokenAuth.from_config(cfg.server.auth, sessions)
    hmac_key = cfg.server.auth.hmac_key or None
    apis: list[API] = [
        QueryAPI(engine, db, auth, metadata),
        WriteAPI(
            ingester,
            auth,
            WriteOptions(
                max_body=lim.max_request_body_bytes,
                max_decompressed=lim.max_decompressed_bytes,
                max_samples=lim.max_samples_per_request,
                hmac_key=hmac_key,
            ),
        ),
        AdminAPI(auth, db),
        StatusAPI(auth, registry, [db] if events is None else [db, events], db.refresh_metrics),
        LoginAPI.from_config(cfg, sessions),
    ]
    if alerting is not None:
        apis.append(_alertmanager_api(cfg, auth, alerting))
    if rules is not None:
        apis.append(RulesAPI(rules, auth))
    apis.append(PagesAPI(engine, db, auth, events, rules))
    if events is not None:
        apis.append(
            EventsAPI(
                events,
                auth,
                max_body=lim.max_request_body_bytes,
                hmac_key=hmac_key,
                max_decompressed=lim.max_decompressed_bytes,
                registry=registry,
                limits=EventLimits(
                    lim.max_label_names_per_series,
                    lim.max_label_name_length,
                    lim.max_label_value_length,
                    lim.max_event_fields,
                    lim.max_event_field_length,
                    lim.max_json_depth,
                ),
            )
        )
    return create_app(apis, registry=registry)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _alertmanager_api(cfg: Config, auth: TokenAuth, alerting: NotifierParts) -> AlertmanagerAPI:
    """Alertmanager's v2 API over the notifier's alert store, groups and marker and the silences."""
    n = alerting.notifier
    return AlertmanagerAPI(
        auth,
        alerting.silences,
        RunningConfig(alerting),  # what runs (the no-receiver default when vigil.yml has none)
        clock=_now_ms,
        alerts=n.store,
        sink=n.store.external_sink(),  # posted alerts cannot crowd out Vigil's own
        groups=n,
        inhibition=MarkerInhibition(n.marker),
        max_body=cfg.limits.max_request_body_bytes,
    )


def new_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    Gauge("vigil_build_info", "Vigil version running (always 1).", ["version"], registry=registry).labels(
        __version__
    ).set(1)
    return registry


# Files the server holds besides its connections: blocks, WAL, SQLite (each with its -wal and -shm),
# the listening sockets, logs, the in-process agent's queue and collectors.
RESERVED_FILES = 256


def http_options(cfg: Config, registry: CollectorRegistry | None) -> dict[str, Any]:
    """uvicorn.Config arguments for `server.keep_alive_timeout`, `read_header_timeout`, `read_timeout`
    and `max_connections` (vigil.web.connections). Raises the open-file limit so the cap is reachable."""
    srv = cfg.server
    ensure_open_files(srv.max_connections + RESERVED_FILES, srv.max_connections)
    limits = ConnectionLimits(
        keep_alive_s=srv.keep_alive_timeout / 1000,
        read_header_s=srv.read_header_timeout / 1000,
        read_body_s=srv.read_timeout / 1000,
        max_connections=srv.max_connections,
        metrics=ConnectionMetrics(registry),
    )
    # No WebSocket endpoints: not offering the upgrade keeps connections on the guarded protocol.
    return {"http": guarded_protocol(limits), "ws": "none"}


def ensure_open_files(needed: int, max_connections: int) -> None:
    """Raise the soft open-file limit towards `needed` (as Go programs do at start); a cap the hard
    limit cannot hold is a configuration error rather than EMFILE on the WAL under load."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ConfigError(
            f"expected at most {max(hard - RESERVED_FILES, 1)} (the open-file limit, ulimit -Hn, is {hard}), "
            f"got {max_connections}",
            key="server.max_connections",
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


class HTTPServer:
    """uvicorn serving `app` on an already bound socket, in a thread, as a service.

    `start()` returns once uvicorn has run the app's start-up and accepts connections (bounded by
    `start_timeout_s`), so what starts after it (the local agent) can reach it at once. `stop()` asks
    uvicorn to finish gracefully (its `timeout_graceful_shutdown`) and joins the thread, bounded. If
    uvicorn ends by itself, `on_exit` is called (the run group then stops everything) and `failed`
    is set.
    """

    name = "http"

    def __init__(
        self,
        server: uvicorn.Server,
        sock: socket.socket,
        on_exit: Callable[[], None],
        start_timeout_s: float = 120.0,
        stop_timeout_s: float = 60.0,
    ) -> None:
        self._server, self._sock, self._on_exit = server, sock, on_exit
        self._start_timeout, self._stop_timeout = start_timeout_s, stop_timeout_s
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.failed = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vigil-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not self._server.started:  # uvicorn offers no event for it; the thread's end is one
            if not self._thread.is_alive():
                raise RuntimeError("the HTTP server stopped during start-up (see above)")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the HTTP server did not start within {self._start_timeout:.0f}s")
            self._thread.join(0.01)

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException:  # SystemExit too: uvicorn exits on some start-up failures
            log.exception("HTTP server failed")
        if not self._stopping:
            self.failed = True
            self._on_exit()

    def stop(self) -> None:
        self._stopping = True
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._server.should_exit = True
        thread.join(self._stop_timeout)
        if thread.is_alive():
            log.warning("HTTP server did not stop within %.0fs", self._stop_timeout)


def run_server(
    cfg: Config, with_agent: bool = False, config_dir: Path = Path("."), config_path: Path | None = None
) -> int:
    """Run until SIGINT/SIGTERM. Raises ConfigError / ListenError / StorageError before listening if
    something is wrong; the addresses are bound first, so a taken one leaves nothing behind.

    `with_agent` (`vigil up`) also runs an agent for this host, shipping to this server and serving its
    own /metrics on `agent.listen`; `server.syslog` runs the syslog relay. Both start once the HTTP
    server accepts connections, so their first delivery does not race its start-up. `config_dir` is
    the directory of vigil.yml (relative `rule_files` are under it); SIGHUP re-reads `config_path`
    (when there is one) and reloads the rules and event rules, as Prometheus reloads on SIGHUP."""
    check_exposure(cfg)
    sockets = [bind_tcp(cfg.server.listen, "server.listen", "choose another with --listen or server.listen")]
    built: list[Service] = []
    try:
        if with_agent:
            sockets.append(bind_tcp(cfg.agent.listen, "agent.listen", "choose another with agent.listen"))
        listening = address(sockets[0])  # the port actually bound, also when 0 was asked for
        registry = new_registry()
        http = http_options(cfg, registry)
        db = open_db(cfg, registry)  # first: it locks the data directory the syslog relay uses
        built.append(db)
        events = open_events(cfg)
        built.append(events)
        external_url = (cfg.server.external_url or f"http://{listening}").rstrip("/")
        alerting = open_notifier(cfg, registry, config_dir=config_dir, external_url=external_url)
        rules = open_rules(
            cfg, db, registry, config_dir, external_url, events, NotifierSender(alerting.notifier)
        )
        built.append(rules)
        local = _local_services(cfg, listening, sockets[1] if with_agent else None)
        built += local
    except BaseException:
        stop_all(built)
        for sock in sockets:
            sock.close()
        raise
    host, port = parse_listen(cfg.server.listen)
    app = build_app(cfg, db, registry, events, rules, alerting)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=10,
        **http,
    )
    stop = threading.Event()
    server = HTTPServer(uvicorn.Server(config), sockets[0], on_exit=stop.set)

    def started() -> None:
        log.info("Vigil %s listening on http://%s, data in %s", __version__, listening, cfg.storage.path)

    def reload() -> None:
        # As Prometheus and Alertmanager on SIGHUP: a wrong file keeps what runs (logged by the
        # rule manager's loop, which runs this); the notifier first, so new rules find their routes.
        new = load_config(config_path) if config_path else cfg
        alerting.reload(new, config_dir)
        rules.reload_config(new, config_dir)

    previous_hup = signal.signal(signal.SIGHUP, lambda *_: rules.request_reload(reload))
    try:
        code = run_until_signal(
            Group([db, events, alerting.notifier, rules, server, *local]), on_started=started, stop=stop
        )
    finally:
        signal.signal(signal.SIGHUP, previous_hup)
        for sock in sockets:
            sock.close()
    return 1 if server.failed else code


def _local_services(cfg: Config, listening: str, agent_sock: socket.socket | None) -> list[Service]:
    """`vigil up`: an agent for this host shipping to this server, serving its /metrics on
    `agent_sock`; and the server's syslog relay, if configured. Built here, started after the server."""
    syslog = cfg.server.syslog
    if agent_sock is None and not (syslog.udp_listen or syslog.tcp_listen):
        return []
    from vigil.cmd.agent import local_agent_services, syslog_relay_services
    from vigil.cmd.query import url_for_listen

    url = url_for_listen(listening) + "/api/v1/write"
    tokens = cfg.server.auth.write_tokens or tuple(
        t for _, tenant in cfg.server.auth.tenants for t in tenant.write_tokens
    )
    token = tokens[0] if tokens else ""
    out: list[Service] = []
    try:
        if agent_sock is not None:
            out += local_agent_services(cfg, url, token, agent_sock)
        if syslog.udp_listen or syslog.tcp_listen:
            out += syslog_relay_services(cfg, url, token)
    except BaseException:
        stop_all(out)
        raise
    return out
