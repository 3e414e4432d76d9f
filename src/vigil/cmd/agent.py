"""`vigil agent`: builds the agent from the `agent:` section of vigil.yml and runs it."""

from __future__ import annotations

import errno
import logging
import socket
import sys
import threading
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app

from vigil.agent.collectors import default_collectors, optional_collectors
from vigil.agent.collectors.containers import ContainersCollector
from vigil.agent.identity import Identity, detect
from vigil.agent.runner import Agent
from vigil.agent.security import SECURITY_COLLECTORS, Security, build_security
from vigil.agent.statsd import StatsdServer
from vigil.cmd.listen import address, bind_tcp
from vigil.cmd.run import Group, Service, renamed, run_until_signal
from vigil.config import Config, ConfigError
from vigil.model.batch import Sink
from vigil.model.collector import Collector

if TYPE_CHECKING:  # imported where used: a plain host agent never loads scraping or shipping
    from vigil.scrape.manager import ScrapeManager
    from vigil.ship.events import EventShipper
    from vigil.ship.shipper import ShardedShipper

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


def build_statsd(cfg: Config) -> StatsdServer | None:
    """The StatsD receiver, not started; None when turned off."""
    st = cfg.agent.statsd
    if not st.udp_listen and not st.tcp_listen:
        return None
    return StatsdServer(
        udp_listen=st.udp_listen or None,
        tcp_listen=st.tcp_listen or None,
        histogram_buckets=st.histogram_buckets,
        max_series=st.max_series,
        prefix=st.prefix,
        set_interval=cfg.agent.interval / 1000,
        max_packet_bytes=st.max_packet_bytes,
    )


def start_statsd(cfg: Config) -> StatsdServer | None:
    """The StatsD receiver, started; None when turned off or when its address is taken (logged)."""
    server = build_statsd(cfg)
    return server if server is not None and _start_statsd(cfg, server) else None


def _start_statsd(cfg: Config, server: StatsdServer) -> bool:
    """Start `server`; False (and one warning saying how to fix it) when its address is taken."""
    st = cfg.agent.statsd
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
        return False
    return True


class _StatsdService:
    """StatsD as a service: a taken address is a warning, not a failed start (the rest of the agent
    is worth running without it), and its series join the agent's rounds only once it receives."""

    name = "statsd"

    def __init__(self, cfg: Config, server: StatsdServer, agent: Agent) -> None:
        self._cfg, self._server, self._agent = cfg, server, agent

    def start(self) -> None:
        if _start_statsd(self._cfg, self._server):
            self._agent.add(self._server)

    def stop(self) -> None:
        self._server.stop()


def build_agent(
    cfg: Config,
    registry: CollectorRegistry,
    sink: Sink | None = None,
    statsd: Collector | None = None,
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


def build_shipper(
    cfg: Config, registry: CollectorRegistry, url: str, token: str = ""
) -> ShardedShipper | None:
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
        services = agent_services(cfg, cfg.agent.ship.url, metrics_socket=sock)
    except BaseException:
        sock.close()
        raise

    def started() -> None:
        log.info(
            "Vigil agent collecting every %ss, /metrics on http://%s, shipping to %s",
            cfg.agent.interval / 1000,
            address(sock),
            cfg.agent.ship.url or "nowhere",
        )

    try:
        return run_until_signal(Group(services), on_started=started)
    finally:
        sock.close()  # already closed by the metrics server, unless start-up failed before it


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in flight does not hold up the agent's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not worth a log line each
        pass


class MetricsServer:
    """The agent's /metrics on an already bound socket, served in a thread between start and stop."""

    name = "metrics-http"

    def __init__(self, sock: socket.socket, registry: CollectorRegistry) -> None:
        self._sock, self._registry = sock, registry
        self._httpd: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._httpd is None:
            self._httpd = make_metrics_server(self._sock, self._registry)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, name="vigil-agent-metrics", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        httpd, thread, self._httpd, self._thread = self._httpd, self._thread, None, None
        if httpd is None or thread is None:
            return
        httpd.shutdown()  # returns once serve_forever has; scrapes in flight are daemon threads
        httpd.server_close()
        thread.join(10)


def make_metrics_server(sock: socket.socket, registry: CollectorRegistry) -> WSGIServer:
    """prometheus_client's exposition app (Prometheus text, OpenMetrics when asked, gzip) on the
    standard library's small threaded server, which keeps the agent free of the server's web stack;
    not yet serving."""
    server_cls: type[_ThreadingWSGIServer] = type(
        "_MetricsServer", (_ThreadingWSGIServer,), {"address_family": sock.family}
    )
    httpd = server_cls(sock.getsockname()[:2], _QuietHandler, bind_and_activate=False)
    httpd.socket.close()
    httpd.socket = sock
    # What server_bind() would have recorded for the WSGI environ (without its reverse DNS lookup).
    httpd.server_address = sock.getsockname()
    httpd.server_name, httpd.server_port = str(httpd.server_address[0]), int(httpd.server_address[1])
    httpd.setup_environ()
    httpd.set_app(make_wsgi_app(registry))
    return httpd


def build_scrapes(cfg: Config, registry: CollectorRegistry, sink: Sink | None) -> ScrapeManager | None:
    """Scrape jobs from `scrape_configs`, feeding the same shipper, not started; None when there are
    none."""
    if not cfg.scrape_configs or sink is None:
        return None
    # Only now: scraping brings in the text parser (and numpy), which a plain host agent never needs.
    from vigil.scrape.manager import ScrapeManager

    return ScrapeManager(cfg.scrape_configs, cfg.agent.interval / 1000, sink, registry)


def build_event_shipper(
    cfg: Config, registry: CollectorRegistry, url: str, token: str = ""
) -> EventShipper | None:
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


def agent_services(
    cfg: Config,
    url: str,
    token: str = "",
    host_collectors: bool = True,
    metrics_socket: socket.socket | None = None,
    prefix: str = "agent",
) -> list[Service]:
    """Everything the agent runs, built and not started, in start order: shipping (samples, then
    events), StatsD, the security side, its listening-ports watcher, collection, scrapes and, on
    `metrics_socket`, its /metrics.
    Stopped in reverse, producers stop before the shippers they feed. `url` is where to ship ("" ships
    nowhere); names are `<prefix>-<part>`."""
    registry = CollectorRegistry()
    a = cfg.agent
    identity = detect(cluster=a.cluster, app=a.app, instance=a.instance)
    shipper = build_shipper(cfg, registry, url, token)
    events = build_event_shipper(cfg, registry, url, token)
    sink = shipper.enqueue if shipper else None
    statsd = build_statsd(cfg)
    labels = {**identity.labels(), "job": a.job}
    security = build_security(cfg, labels, events.send if events else None)
    agent = build_agent(cfg, registry, sink=sink, security=security, identity=identity, host=host_collectors)
    if security.probes is not None:  # a probe that goes down or up is shipped now, not next round
        security.probes.on_change = agent.collect_now
    parts: list[Service | None] = [
        shipper,
        events,
        _StatsdService(cfg, statsd, agent) if statsd is not None else None,
        security,
        security.watcher,
        agent,
        build_scrapes(cfg, registry, sink),
        MetricsServer(metrics_socket, registry) if metrics_socket is not None else None,
    ]
    return [renamed(prefix, p) for p in parts if p is not None]


def local_agent_services(
    cfg: Config, server_url: str, token: str, metrics_socket: socket.socket
) -> list[Service]:
    """`vigil up`: the agent runs beside the server, shipping to it through the same durable path and
    serving its /metrics (on `metrics_socket`, bound to `agent.listen`) as a standalone agent does."""
    return agent_services(cfg, cfg.agent.ship.url or server_url, token, metrics_socket=metrics_socket)


def syslog_relay_services(cfg: Config, server_url: str, token: str) -> list[Service]:
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
    return agent_services(relay, server_url, token, host_collectors=False, prefix="syslog")
