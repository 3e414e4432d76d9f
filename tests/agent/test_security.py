"""The agent's security side built from vigil.yml: every source and processor wired, syslog in,
events out with identity, bounded series whatever the logs contain, config errors named."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import free_port
from vigil.agent.security import build_security
from vigil.config import ConfigError, config_from_yaml
from vigil.model.event import Event

LABELS = {"instance": "web1", "job": "vigil-agent"}
RULES = """
rules:
  - name: app_login_failures_total
    match: 'login failed for (?P<user>\\S+) from (?P<ip>\\S+)'
    label_groups: [ip]
    max_series: 1000
    event: true
"""


def access_line(ip: str, status: int) -> str:
    return f'{ip} - - [22/Nov/2026:10:00:00 +0000] "GET /x HTTP/1.1" {status} 12 "-" "curl/8" 0.004\n'


def auth_line(ip: str) -> str:
    return f"Nov 22 10:00:00 web1 sshd[1]: Failed password for root from {ip} port 4000 ssh2\n"


def configure(tmp_path: Path, extra: str = "") -> str:
    (tmp_path / "rules.yml").write_text(RULES)
    for name in ("auth.log", "access.log", "app.log"):
        (tmp_path / name).write_text("")
    return f"""
agent:
  data_dir: {tmp_path / "agent"}
  disable: [listening_ports, file_integrity, updates]
  logs:
    auth: {{paths: ["{tmp_path / "auth.log"}"]}}
    rule_files: ["{tmp_path / "rules.yml"}"]
    sources:
      - {{name: web, paths: ["{tmp_path / "access.log"}"], format: access}}
      - {{name: app, paths: ["{tmp_path / "app.log"}"]}}
{extra}
"""


def series_count(registry: CollectorRegistry) -> int:
    return sum(len(fam.samples) for fam in registry.collect())


def test_sources_processors_syslog_and_events(tmp_path: Path) -> None:
    udp = free_port()
    cfg = config_from_yaml(configure(tmp_path, f"    syslog: {{udp_listen: 127.0.0.1:{udp}}}"))
    events: list[Event] = []
    security = build_security(cfg, LABELS, events.extend)
    registry = CollectorRegistry()
    for c in security.collectors:
        registry.register(c)
    security.start()
    try:
        with (tmp_path / "auth.log").open("a") as f:
            f.write(auth_line("203.0.113.5"))
        with (tmp_path / "access.log").open("a") as f:
            f.write(access_line("203.0.113.5", 404) + access_line("203.0.113.6", 200))
        with (tmp_path / "app.log").open("a") as f:
            f.write("login failed for bob from 198.51.100.7\n")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"<38>" + auth_line("192.0.2.9").encode().rstrip(), ("127.0.0.1", udp))
        assert security.pipeline is not None
        deadline = time.monotonic() + 60
        while len(events) < 3 and time.monotonic() < deadline:
            security.pipeline.poll_once()
            time.sleep(0.02)
    finally:
        security.stop()

    def value(name: str, labels: dict[str, str]) -> float | None:
        return registry.get_sample_value(name, labels)

    assert (
        value("vigil_auth_attempts_total", {"service": "sshd", "result": "failure", "method": "password"})
        == 2
    )
    http = {"source": "web", "vhost": "", "method": "GET"}
    assert value("vigil_http_requests_total", {**http, "status_class": "4xx"}) == 1
    assert value("vigil_http_requests_total", {**http, "status_class": "2xx"}) == 1
    assert value("app_login_failures_total", {"ip": "198.51.100.7"}) == 1
    kinds = sorted((e.kind, e.labels["source"]) for e in events)
    assert kinds == [("auth", "auth"), ("auth", "syslog"), ("log_match", "app")]
    match = next(e for e in events if e.kind == "log_match")
    assert match.fields["user"] == "bob" and match.labels["instance"] == "web1"
    syslog = next(e for e in events if e.labels["source"] == "syslog")
    assert syslog.fields["source_address"] == "192.0.2.9"


@pytest.mark.slow
def test_100k_distinct_addresses_keep_series_bounded(tmp_path: Path) -> None:
    """No collector creates an unbounded label set: 100,000 distinct client addresses through auth
    parsing, access logs and a rule that labels by address (capped at 1000 series + "other")."""
    cfg = config_from_yaml(configure(tmp_path))
    security = build_security(cfg, LABELS, None)
    registry = CollectorRegistry()
    for c in security.collectors:
        registry.register(c)
    assert security.pipeline is not None
    security.pipeline.poll_once()  # positions the (empty) files
    before = series_count(registry)
    n = 100_000
    addresses = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n)]
    (tmp_path / "auth.log").write_text("".join(auth_line(a) for a in addresses))
    (tmp_path / "access.log").write_text(
        "".join(access_line(a, 200 + i % 400) for i, a in enumerate(addresses))
    )
    (tmp_path / "app.log").write_text(
        "".join(f"login failed for u{i} from {a}\n" for i, a in enumerate(addresses))
    )
    read = 0
    while batch := security.pipeline.poll_once():  # a round reads at most a few MiB per file
        read += batch
    assert read == 3 * n
    security.stop()
    rule_series = [
        s for fam in registry.collect() for s in fam.samples if s.name == "app_login_failures_total"
    ]
    assert len(rule_series) == 1001  # the cap, plus the "other" bucket
    assert sum(s.value for s in rule_series) == n
    assert series_count(registry) - before < 1200


def test_rule_file_errors_name_the_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = config_from_yaml(configure(tmp_path))
    (tmp_path / "rules.yml").write_text("rules:\n  - name: x_total\n    match: '(?<=a)b'\n")
    with pytest.raises(ConfigError, match=r"rules\.yml: rules\[0\]\.match"):
        build_security(cfg, LABELS, None)
    missing = config_from_yaml(configure(tmp_path).replace("rules.yml", "nope.yml"))
    with pytest.raises(ConfigError, match=r"nope\.yml: cannot read"):
        build_security(missing, LABELS, None)
    # A glob matching nothing yet (an empty rules directory) is a warning: the agent still runs.
    empty = config_from_yaml(configure(tmp_path).replace("rules.yml", "nope-*.yml"))
    with caplog.at_level("WARNING"):
        build_security(empty, LABELS, None).stop()
    assert "vigil.yml: agent.logs.rule_files: no file matches" in caplog.text


def test_reserved_and_duplicate_source_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="reserved"):
        config_from_yaml("agent:\n  logs:\n    sources: [{name: auth, paths: [/x]}]\n")
    with pytest.raises(ConfigError, match="used twice"):
        config_from_yaml("agent:\n  logs:\n    sources: [{name: a, paths: [/x]}, {name: a, paths: [/y]}]\n")
    with pytest.raises(ConfigError, match=r"agent\.listening_ports\.baseline"):
        config_from_yaml("agent:\n  listening_ports: {baseline: [tcp/notaport]}\n")


def test_unknown_lines_after_learning(tmp_path: Path) -> None:
    cfg = config_from_yaml(
        configure(tmp_path).replace("{name: app, paths:", "{name: app, unknown_lines: true, paths:")
        + "    unknown_lines: {learning_period: 1s, events_per_source: 1}\n"
    )
    events: list[Event] = []
    security = build_security(cfg, LABELS, events.extend)
    assert security.pipeline is not None
    security.pipeline.poll_once()
    app = tmp_path / "app.log"
    normal = "Nov 22 10:00:00 web1 app[{pid}]: request {n} served in {n}ms for 10.0.0.{n}\n"
    with app.open("a") as f:
        f.writelines(normal.format(pid=100 + i, n=i) for i in range(50))
    security.pipeline.poll_once()
    time.sleep(1.1)  # learning is over one second after the source's first line
    with app.open("a") as f:
        f.writelines(normal.format(pid=200 + i, n=i) for i in range(50, 60))
        f.write("Nov 22 10:00:05 web1 app[300]: spawning shell for uid 0 from 203.0.113.66\n")
        f.write("Nov 22 10:00:06 web1 app[300]: disabling audit rules on request of uid 0\n")
    security.pipeline.poll_once()
    security.stop()
    unknown = [e for e in events if e.kind == "log_unknown"]
    assert len(unknown) == 1 and "spawning shell" in str(unknown[0].fields["line"])
    # `events_per_source` reaches the detector: the second new line is held back, and said so.
    [held] = [e for e in events if e.kind == "log_unknown_suppressed"]
    assert held.fields["limit"] == 1 and "disabling audit" in str(held.fields["line"])
    assert (tmp_path / "agent" / "templates" / "app.json").exists()  # saved on stop, reviewable
