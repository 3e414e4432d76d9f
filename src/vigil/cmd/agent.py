"""`vigil agent`: builds the agent from the `agent:` section of vigil.yml and runs it."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from vigil.agent.collector import Collector
from vigil.agent.collectors import default_collectors, optional_collectors
from vigil.agent.collectors.containers import ContainersCollector
from vigil.agent.identity import detect
from vigil.agent.runner import Agent
from vigil.agent.statsd import StatsdServer
from vigil.config import Config, ConfigError

log = logging.getLogger("vigil.agent")


def select_collectors(cfg: Config) -> list[Collector]:
    """Default collectors minus `agent.disable`, plus `agent.enable`d optional ones."""
    a = cfg.agent
    defaults = [*default_collectors(), ContainersCollector()]
    optional = {c.name: c for c in optional_collectors()}
    known = {c.name for c in defaults}
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
        # The rest of the agent is worth running without it; say so once.
        log.error("StatsD receiver not started on %s: %s", st.udp_listen or st.tcp_listen, exc)
        return None
    return server


def build_agent(cfg: Config, registry: CollectorRegistry, sink: Any = None, statsd: Any = None) -> Agent:
    a = cfg.agent
    identity = detect(cluster=a.cluster, app=a.app, instance=a.instance)
    collectors = select_collectors(cfg) + ([statsd] if statsd is not None else [])
    return Agent(collectors, identity, a.job, registry, interval_s=a.interval / 1000, sink=sink)


def print_once(cfg: Config) -> int:
    registry = CollectorRegistry()
    build_agent(cfg, registry)
    sys.stdout.write(generate_latest(registry).decode())
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
    """Run until SIGINT/SIGTERM: collect, ship, and serve /metrics (prometheus_client's small server,
    which negotiates OpenMetrics too and keeps the agent free of the server's web stack)."""
    from prometheus_client import start_http_server

    from vigil.config import parse_listen

    registry = CollectorRegistry()
    shipper = build_shipper(cfg, registry, cfg.agent.ship.url)
    sink = shipper.enqueue if shipper else None
    statsd = start_statsd(cfg)
    agent = build_agent(cfg, registry, sink=sink, statsd=statsd)
    scrapes = start_scrapes(cfg, registry, sink)
    host, port = parse_listen(cfg.agent.listen)
    httpd, _ = start_http_server(port, addr=host, registry=registry)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agent.start()
    log.info(
        "Vigil agent collecting every %ss, /metrics on http://%s, shipping to %s",
        cfg.agent.interval / 1000,
        cfg.agent.listen,
        cfg.agent.ship.url or "nowhere",
    )
    try:
        stop.wait()
    finally:
        agent.stop()
        if scrapes:
            scrapes.stop()
        if statsd:
            statsd.stop()
        httpd.shutdown()
        if shipper:
            shipper.close()
    return 0


def start_scrapes(cfg: Config, registry: CollectorRegistry, sink: Any) -> Any:
    """Scrape jobs from `scrape_configs`, feeding the same shipper; None when there are none."""
    if not cfg.scrape_configs or sink is None:
        return None
    # Only now: scraping brings in the text parser (and numpy), which a plain host agent never needs.
    from vigil.scrape.manager import ScrapeManager

    manager = ScrapeManager(cfg.scrape_configs, cfg.agent.interval / 1000, sink, registry)
    manager.start()
    return manager


def start_in_process(cfg: Config, server_url: str, token: str) -> InProcessAgent:
    """`vigil up`: the agent runs beside the server, shipping to it through the same durable path."""
    registry = CollectorRegistry()
    shipper = build_shipper(cfg, registry, cfg.agent.ship.url or server_url, token)
    sink = shipper.enqueue if shipper else None
    statsd = start_statsd(cfg)
    agent = build_agent(cfg, registry, sink=sink, statsd=statsd)
    agent.start()
    return InProcessAgent(agent, shipper, statsd, start_scrapes(cfg, registry, sink))


class InProcessAgent:
    """Everything `vigil up` started for the local host, stopped together."""

    def __init__(self, agent: Agent, shipper: Any, statsd: StatsdServer | None, scrapes: Any) -> None:
        self.agent, self.shipper, self.statsd, self.scrapes = agent, shipper, statsd, scrapes

    def stop(self) -> None:
        self.agent.stop()
        for part in (self.scrapes, self.statsd):
            if part is not None:
                part.stop()
        if self.shipper is not None:
            self.shipper.close()
