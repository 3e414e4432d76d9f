"""`vigil agent`: builds the agent from the `agent:` section of vigil.yml and runs it."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from vigil.agent.collector import Collector
from vigil.agent.collectors import default_collectors
from vigil.agent.identity import detect
from vigil.agent.runner import Agent
from vigil.config import Config, ConfigError

log = logging.getLogger("vigil.agent")


def select_collectors(cfg: Config) -> list[Collector]:
    collectors = default_collectors()
    known = {c.name for c in collectors}
    unknown = sorted(set(cfg.agent.disable) - known)
    if unknown:
        raise ConfigError(
            f"unknown collector {unknown[0]!r} (expected one of: {', '.join(sorted(known))})",
            key="agent.disable",
        )
    return [c for c in collectors if c.name not in cfg.agent.disable]


def build_agent(cfg: Config, registry: CollectorRegistry, sink: Any = None) -> Agent:
    a = cfg.agent
    identity = detect(cluster=a.cluster, app=a.app, instance=a.instance)
    return Agent(select_collectors(cfg), identity, a.job, registry, interval_s=a.interval / 1000, sink=sink)


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
        registry=registry,
    )


def run_agent(cfg: Config) -> int:
    import uvicorn

    from vigil.agent.web import create_agent_app
    from vigil.config import parse_listen

    registry = CollectorRegistry()
    shipper = build_shipper(cfg, registry, cfg.agent.ship.url)
    agent = build_agent(cfg, registry, sink=shipper.enqueue if shipper else None)
    agent.start()
    host, port = parse_listen(cfg.agent.listen)
    server = uvicorn.Server(
        uvicorn.Config(
            create_agent_app(registry),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            server_header=False,
        )
    )
    signal.signal(signal.SIGTERM, lambda *_: None)  # see cmd/server.py: uvicorn re-raises it after shutdown
    log.info(
        "Vigil agent collecting every %ss, /metrics on http://%s, shipping to %s",
        cfg.agent.interval / 1000,
        cfg.agent.listen,
        cfg.agent.ship.url or "nowhere",
    )
    try:
        server.run()
    finally:
        agent.stop()
        if shipper:
            shipper.close()
    return 0


def start_in_process(cfg: Config, server_url: str, token: str) -> tuple[Agent, Any]:
    """`vigil up`: the agent runs beside the server, shipping to it through the same durable path."""
    registry = CollectorRegistry()
    shipper = build_shipper(cfg, registry, cfg.agent.ship.url or server_url, token)
    agent = build_agent(cfg, registry, sink=shipper.enqueue if shipper else None)
    threading.Thread(target=agent.start, daemon=True).start()
    return agent, shipper
