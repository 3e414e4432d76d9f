"""Builds a server from a Config (store, ingester, HTTP app) and runs it with uvicorn."""

from __future__ import annotations

import logging
import resource
import signal
import socket
import sqlite3
import threading
import time
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry, Gauge, PlatformCollector, ProcessCollector
from starlette.applications import Starlette

from vigil import __version__
from vigil.cmd.listen import address, bind_tcp
from vigil.config import Config, ConfigError, check_exposure
from vigil.events.store import EventStore
from vigil.ingest.ingester import Ingester, IngestMetrics
from vigil.ingest.series_limit import SeriesLimiter, SeriesLimitMetrics, SeriesLimits
from vigil.ingest.validate import Limits
from vigil.model.event import EventLimits
from vigil.model.listen import parse_listen
from vigil.promql.engine import Engine, EngineOptions
from vigil.storage.errors import StorageError
from vigil.storage.metadata import MetadataStore
from vigil.tsdb.db import DB, Options
from vigil.web.admin import AdminAPI
from vigil.web.app import API, create_app
from vigil.web.auth import TokenAuth
from vigil.web.connections import ConnectionLimits, ConnectionMetrics, guarded_protocol
from vigil.web.events_api import EventsAPI
from vigil.web.query_api import QueryAPI
from vigil.web.status import StatusAPI
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
    """The event store next to the TSDB, with the same retention, expired every minute like it."""
    path = cfg.storage.path / "events.db"
    try:
        store = EventStore(path, cfg.storage.retention)
    except sqlite3.Error as exc:  # e.g. not writable, or not an SQLite file: stop with the path
        raise StorageError(f"{path}: {exc}") from None
    store.start_maintenance(60.0)
    return store


def build_app(
    cfg: Config, db: DB, registry: CollectorRegistry, events: EventStore | None = None
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
    auth = TokenAuth.from_config(cfg.server.auth)
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
    ]
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


def run_server(cfg: Config, with_agent: bool = False) -> int:
    """Run until SIGINT/SIGTERM. Raises ConfigError / ListenError / StorageError before listening if
    something is wrong; the addresses are bound first, so a taken one leaves nothing behind.

    `with_agent` (`vigil up`) also runs an agent for this host, shipping to this server and serving its
    own /metrics on `agent.listen`."""
    check_exposure(cfg)
    sockets = [bind_tcp(cfg.server.listen, "server.listen", "choose another with --listen or server.listen")]
    try:
        if with_agent:
            sockets.append(bind_tcp(cfg.agent.listen, "agent.listen", "choose another with agent.listen"))
        registry = new_registry()
        http = http_options(cfg, registry)
        db = open_db(cfg, registry)
        try:
            events = open_events(cfg)
        except BaseException:
            db.close()
            raise
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    host, port = parse_listen(cfg.server.listen)
    app = build_app(cfg, db, registry, events)
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
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it to the handler found at start:
    # make that a no-op so a requested stop exits 0 (and the DB is closed below).
    signal.signal(signal.SIGTERM, lambda *_: None)
    listening = address(sockets[0])  # the port actually bound, also when 0 was asked for
    log.info("Vigil %s listening on http://%s, data in %s", __version__, listening, cfg.storage.path)
    local: list[Any] = []
    syslog = cfg.server.syslog
    if with_agent or syslog.udp_listen or syslog.tcp_listen:
        agent_sock = sockets[1] if with_agent else None
        threading.Thread(
            target=_start_local_agent, args=(cfg, listening, server, local, agent_sock), daemon=True
        ).start()
    try:
        server.run(sockets=sockets[:1])
    finally:
        for agent in local:
            agent.stop()
        for sock in sockets:
            sock.close()
        events.close()
        db.close()
    return 0 if server.started else 1


def _start_local_agent(
    cfg: Config,
    listening: str,
    server: uvicorn.Server,
    started: list[Any],
    agent_sock: socket.socket | None,
) -> None:
    """`vigil up`: once the server listens, an agent for this host shipping to it (so its first
    delivery does not race the server's start-up), serving its /metrics on `agent_sock`; and the
    server's syslog receiver, if configured."""
    from vigil.cmd.agent import start_in_process, start_syslog_relay
    from vigil.cmd.query import url_for_listen

    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.05)
    url = url_for_listen(listening) + "/api/v1/write"
    tokens = cfg.server.auth.write_tokens or tuple(
        t for _, tenant in cfg.server.auth.tenants for t in tenant.write_tokens
    )
    token = tokens[0] if tokens else ""
    if agent_sock is not None:
        started.append(start_in_process(cfg, url, token, agent_sock))
    syslog = cfg.server.syslog
    if syslog.udp_listen or syslog.tcp_listen:
        started.append(start_syslog_relay(cfg, url, token))
