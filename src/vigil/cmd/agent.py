"""`vigil agent`: builds the agent from the `agent:` section of vigil.yml and runs it."""

from __future__ import annotations

import errno
import logging
import signal
import socket
import sys
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app

from vigil.agent.collectors import default_collectors, optional_collectors
from vigil.agent.collectors.containers import ContainersCollector
from vigil.agent.identity import Identity, detect
from vigil.agent.runner import Agent
from vigil.agent.security import SECURITY_COLLECTORS, Security, build_security
from vigil.agent.statsd import StatsdServer
from vigil.cmd.listen import address, bind_tcp
from vigil.config import Config, ConfigError
from vigil.model.collector import Collector

log = logging.getLogger("vigil.agent")


def select_collectors(cfg: Config) -> list[Collector]:
    """Default collectors minus `agent.disable`, plus `agent.enable`d optional ones (host collectors;
    the security side reads `agent.disable` itself)."""
    a = cfg.agent
    defaults = [*default_collectors(), ContainersCollector()]
    optional = {c.name: c for c in optional_collectors()}
    known = {c.name for c in defaults} | set(SECURITY_COLLECTORS)
    for key, names, allowed in (
        ("agent.disable", a.disable, known),
        ("agent.enable", a.enable, set(optional)),
    ):
        unknown = sorted(set(names) - allowed)
        if unknown:
            expected = ", ".join(sorted(allowed))
            raise ConfigError(f"unknown collector {unknown[0]!r} (expected one of: {expected})", key=key)
    return [c for c in defaults if c.name not in a.disable] + [optional[n] for n in a.enable]


def start_statsd(cfg: Config) -> StatsdServer | None:
    """The StatsD receiver, started; None when turned off or when its address is taken (logged)."""
    st = cfg.agent.statsd
    if not st.udp_listen and not st.tcp_listen:
        return None
    server = StatsdServer(
        udp_listen=st.udp_listen or None,
        tcp_listen=st.tcp_listen or None,
        histogram_buckets=st.histogram_buckets,
        max_series=st.max_series,
        prefix=st.prefix,
        set_interval=cfg.agent.interval / 1000,
        max_packet_bytes=st.max_packet_bytes,
    )
    try:
        server.start()
    except (OSError, ValueError) as exc:
        # The rest of the agent is worth running without it; say so once, and how to fix it.
        where = st.udp_listen or st.tcp_listen
        hint = (
            " (another Vigil agent or `vigil up` on this host receives StatsD there: set"
            ' agent.statsd.udp_listen/tcp_listen to another address, or to "" to turn it off)'
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE
            else ""
        )
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        log.warning("StatsD receiver not started on %s: %s%s", where, reason, hint)
        return None
    return server


def build_agent(
    cfg: Config,
    registry: CollectorRegistry,
    sink: Any = None,
    statsd: Any = None,
    security: Security | None = None,
    identity: Identity | None = None,
    host: bool = True,
) -> Agent:
    """The collection loop over the host collectors (unless `host` is false), StatsD and `security`."""
    a = cfg.agent
    identity = identity or detect(cluster=a.cluster, app=a.app, instance=a.instance)
    collectors = (select_collectors(cfg) if host else []) + ([statsd] if statsd is not None else [])
    if security is not None:
        collectors += security.collectors
    return Agent(collectors, identity, a.job, registry, interval_s=a.interval / 1000, sink=sink)


def print_once(cfg: Config) -> int:
    """`vigil agent --once`: one collection printed, host and security collectors (logs excepted)."""
    registry = CollectorRegistry()
    agent = build_agent(cfg, registry)
    # Without the log pipeline: reading logs would move the (maybe running) agent's checkpoint past
    # lines whose events this command cannot ship.
    quiet = cfg.model_copy(
        update={"agent": cfg.agent.model_copy(update={"disable": (*cfg.agent.disable, "logs")})}
    )
    security = build_security(quiet, agent.extra_labels(), None)
    for c in security.collectors:
        registry.register(c)
    sys.stdout.write(generate_latest(registry).decode())
    security.stop()
    return 0


def build_shipper(cfg: Config, registry: CollectorRegistry, url: str, token: str = "") -> Any:
    """The durable shipper for `url`, or None when there is nowhere to ship."""
    if not url:
        return None
    from vigil.ship.shipper import build_shipper as _build

    s = cfg.agent.ship
    return _build(
        directory=cfg.agent.data_dir / "queue",
        url=url,
        token=s.token or token,
        hmac_key=s.hmac_key,
        ca_file=s.ca_file,
        cert_file=s.cert_file,
        key_file=s.key_file,
        max_bytes=s.queue_max_size,
        max_age_s=s.queue_max_age / 1000,
        max_samples=s.max_samples_per_send,
        connections=s.connections,
        registry=registry,
    )


def run_agent(cfg: Config) -> int:
    """Run until SIGINT/SIGTERM: collect, ship, and serve /metrics on `agent.listen` (bound before
    anything starts: a taken address is one line and exit 2, see `vigil.cmd.listen`)."""
    sock = bind_tcp(cfg.agent.listen, "agent.listen", "`vigil up` serves its agent's there; set agent.listen")
    try:
        running = start_agent(cfg, cfg.agent.ship.url, metrics_socket=sock)
    except BaseException:
        sock.close()
        raise
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info(
        "Vigil agent collecting every %ss, /metrics on http://%s, shipping to %s",
        cfg.agent.interval / 1000,
        address(sock),
        cfg.agent.ship.url or "nowhere",
    )
    try:
        stop.wait()
    finally:
        running.stop()
    return 0


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in flight does not hold up the agent's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not worth a log line each
        pass


def serve_metrics(sock: socket.socket, registry: CollectorRegistry) -> WSGIServer:
    """The agent's /metrics on an already bound socket, in a thread: prometheus_client's exposition
    app (Prometheus text, OpenMetrics when asked, gzip) on the standard library's small threaded server,
    which keeps the agent free of the server's web stack."""
    server_cls = type("_MetricsServer", (_ThreadingWSGIServer,), {"address_family": sock.family})
    httpd = server_cls(sock.getsockname()[:2], _QuietHandler, bind_and_activate=False)
    httpd.socket.close()
    httpd.socket = sock
    # What server_bind() would have recorded for the WSGI environ (without its reverse DNS lookup).
    httpd.server_address = sock.getsockname()
    httpd.server_name, httpd.server_port = str(httpd.server_address[0]), int(httpd.server_address[1])
    httpd.setup_environ()
    httpd.set_app(make_wsgi_app(registry))
    threading.Thread(target=httpd.serve_forever, name="agent-metrics", daemon=True).start()
    return httpd


def start_scrapes(cfg: Config, registry: CollectorRegistry, sink: Any) -> Any:
    """Scrape jobs from `scrape_configs`, feeding the same shipper; None when there are none."""
    if not cfg.scrape_configs or sink is None:
        return None
    # Only now: scraping brings in the text parser (and numpy), which a plain host agent never needs.
    from vigil.scrape.manager import ScrapeManager

    manager = ScrapeManager(cfg.scrape_configs, cfg.agent.interval / 1000, sink, registry)
    manager.start()
    return manager


def build_event_shipper(cfg: Config, registry: CollectorRegistry, url: str, token: str = "") -> Any:
    """The durable event shipper beside the sample shipper, or None when events are not shipped."""
    s = cfg.agent.ship
    if not url or not s.events:
        return None
    from vigil.ship.events import EventShipper, events_url

    return EventShipper(
        cfg.agent.data_dir / "events-queue",
        events_url(url),
        token=s.token or token,
        hmac_key=s.hmac_key,
        ca_file=s.ca_file,
        cert_file=s.cert_file,
        key_file=s.key_file,
        max_age_s=s.queue_max_age / 1000,
        registry=registry,
    )


def start_agent(
    cfg: Config,
    url: str,
    token: str = "",
    host_collectors: bool = True,
    metrics_socket: socket.socket | None = None,
) -> RunningAgent:
    """Everything the agent runs, started: collection, shipping (samples and events), StatsD,
    scrapes, the security side and, on `metrics_socket`, its /metrics. `url` is where to ship ("" ships
    nowhere)."""
    registry = CollectorRegistry()
    a = cfg.agent
    identity = detect(cluster=a.cluster, app=a.app, instance=a.instance)
    shipper = build_shipper(cfg, registry, url, token)
    events = build_event_shipper(cfg, registry, url, token)
    sink = shipper.enqueue if shipper else None
    statsd = start_statsd(cfg)
    labels = {**identity.labels(), "job": a.job}
    security = build_security(cfg, labels, events.send if events else None)
    agent = build_agent(
        cfg, registry, sink=sink, statsd=statsd, security=security, identity=identity, host=host_collectors
    )
    security.start()
    agent.start()
    scrapes = start_scrapes(cfg, registry, sink)
    http = serve_metrics(metrics_socket, registry) if metrics_socket is not None else None
    return RunningAgent(registry, agent, shipper, events, statsd, scrapes, security, http)


def start_in_process(
    cfg: Config, server_url: str, token: str, metrics_socket: socket.socket | None = None
) -> RunningAgent:
    """`vigil up`: the agent runs beside the server, shipping to it through the same durable path and
    serving its /metrics (on `metrics_socket`, bound to `agent.listen`) as a standalone agent does."""
    return start_agent(cfg, cfg.agent.ship.url or server_url, token, metrics_socket=metrics_socket)


def start_syslog_relay(cfg: Config, server_url: str, token: str) -> RunningAgent:
    """`server.syslog`: the server's own syslog receiver. It is the agent's log pipeline with nothing
    but syslog as input (auth parsing, log rules, unknown lines), shipping to this server through the
    same durable queues, so what arrives by syslog is counted and kept exactly like an agent's."""
    from vigil.config.security import AuthLogsConfig, LogsConfig

    a = cfg.agent
    logs = LogsConfig(
        auth=AuthLogsConfig(paths=()),
        rule_files=a.logs.rule_files,
        unknown_lines=a.logs.unknown_lines,
        syslog=cfg.server.syslog,
    )
    agent = a.model_copy(
        update={
            "data_dir": cfg.storage.path / "syslog",
            "job": "vigil-syslog",
            "statsd": a.statsd.model_copy(update={"udp_listen": "", "tcp_listen": ""}),
            "logs": logs,
            "disable": ("listening_ports", "file_integrity", "updates", "probes"),
            "probes": (),
            "ship": a.ship.model_copy(update={"url": ""}),
        }
    )
    relay = cfg.model_copy(update={"agent": agent, "scrape_configs": ()})
    return start_agent(relay, server_url, token, host_collectors=False)


class RunningAgent:
    """Everything `start_agent` started, stopped together (producers first, shippers last)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        agent: Agent,
        shipper: Any,
        events: Any,
        statsd: StatsdServer | None,
        scrapes: Any,
        security: Security,
        http: WSGIServer | None = None,
    ) -> None:
        self.registry, self.agent, self.shipper, self.events = registry, agent, shipper, events
        self.statsd, self.scrapes, self.security, self.http = statsd, scrapes, security, http

    def stop(self) -> None:
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        self.agent.stop()
        self.security.stop()
        for part in (self.scrapes, self.statsd):
            if part is not None:
                part.stop()
        for shipper in (self.shipper, self.events):
            if shipper is not None:
                shipper.close()
