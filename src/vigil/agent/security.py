"""Builds the agent's security side from the `agent:` section: the SIEM inside the monitoring.

Collectors that run on each collection (listening ports, file integrity, pending updates, probes,
certificate files) and the log pipeline (auth logs, log sources, log rules, access logs, unknown-line
detection, syslog) with its own thread. Everything that finds something an investigator wants in
detail (a failed login's source address, a new listener, a changed file, an unknown log line) also
produces events, handed to `emit` (the durable event queue) with the host's identity labels.
"""

from __future__ import annotations

import glob
import itertools
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vigil.agent.eventing import EventingCollector
from vigil.agent.portwatch import ListenerWatcher
from vigil.config import Config, ConfigError
from vigil.logs.access import AccessLogProcessor
from vigil.logs.pipeline import FileSource, JournalSource, LogPipeline
from vigil.logs.processor import LineProcessor
from vigil.logs.syslog import SyslogServer
from vigil.logs.syslogparse import SyslogMessage, to_log_line
from vigil.model.collector import Collector
from vigil.model.event import Event

if TYPE_CHECKING:
    from vigil.logs.linerules import LineRule
    from vigil.probe.collector import ProbesCollector  # imported only when probes are configured
from vigil.security.authlog import AuthLogProcessor
from vigil.security.integrity import FileIntegrityCollector
from vigil.security.ports import ListeningPortsCollector
from vigil.security.updates import UpdatesCollector

log = logging.getLogger(__name__)

# Names `agent.disable` accepts for the security side (besides the host collectors').
SECURITY_COLLECTORS = ("authlog", "listening_ports", "file_integrity", "updates", "logs", "probes")

Emit = Callable[[list[Event]], None]


@dataclass
class Security:
    """The security collectors and the running parts behind them (started and stopped together)."""

    collectors: list[Collector] = field(default_factory=list)
    pipeline: LogPipeline | None = None
    syslog: SyslogServer | None = None
    watcher: ListenerWatcher | None = None  # its own service: reads the socket tables between collections
    probes: ProbesCollector | None = None  # its `on_change` asks the agent for a round at once
    starters: list[Callable[[], None]] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)
    name: str = "security"  # a service of vigil.cmd.run

    def start(self) -> None:
        for start in self.starters:
            start()
        if self.pipeline is not None:
            self.pipeline.start()
        if self.syslog is not None:
            try:
                self.syslog.start()
            except OSError as exc:  # the rest is worth running without it; say so once
                log.error("syslog receiver not started: %s", exc)
                self.syslog = None

    def stop(self) -> None:
        if self.syslog is not None:
            self.syslog.stop()
        if self.pipeline is not None:
            self.pipeline.stop()
        for close in self.closers:
            try:
                close()
            except Exception:
                log.exception("could not stop a security component")


def _drop(_: list[Event]) -> None:
    """Without anywhere to ship them, events exist only as the counters that counted them."""


def build_security(cfg: Config, labels: dict[str, str], emit: Emit | None) -> Security:
    a = cfg.agent
    state = a.data_dir / "state"
    state.mkdir(parents=True, exist_ok=True)
    sink = emit or _drop
    out = Security()
    if "listening_ports" not in a.disable:
        ports = ListeningPortsCollector(
            baseline=a.listening_ports.baseline,
            learn=a.listening_ports.learn,
            state_file=state / "listening_ports.json",
            interval_s=a.listening_ports.interval / 1000,
            own_pid=os.getpid(),  # Vigil's own listeners (in `vigil up`, the server's too) are expected
        )
        # Changes are read and shipped by the watcher once it runs; the wrapper ships them when
        # collections read themselves (`vigil agent --once`, a watcher never started).
        out.collectors.append(EventingCollector(ports, sink, labels))
        out.watcher = ListenerWatcher(ports, sink, labels)
    if "file_integrity" not in a.disable:
        integrity = FileIntegrityCollector(a.file_integrity.paths, state_file=state / "file_integrity.json")
        out.collectors.append(EventingCollector(integrity, sink, labels))
    if "updates" not in a.disable and a.updates.manager != "none":
        updates = UpdatesCollector(manager=a.updates.manager, interval_s=a.updates.interval / 1000)
        out.collectors.append(updates)
        out.closers.append(updates.close)
    if (a.probes or a.certificates.files) and "probes" not in a.disable:
        # Imported only when used: probes bring in httpx's transport and the TLS/DNS code.
        from vigil.probe.collector import ProbesCollector

        probes = ProbesCollector(a.probes, a.certificates)
        out.probes = probes
        out.collectors.append(probes)
        out.starters.append(probes.start)
        out.closers.append(probes.stop)
    if "logs" not in a.disable:
        out.pipeline = _pipeline(cfg, labels, emit, state, out.closers)
        if out.pipeline is not None:
            out.collectors += out.pipeline.collectors()
            out.syslog = _syslog(cfg, out.pipeline)
            if out.syslog is not None:
                out.collectors.append(out.syslog)
    return out


def _syslog(cfg: Config, pipeline: LogPipeline) -> SyslogServer | None:
    sl = cfg.agent.logs.syslog
    if not sl.udp_listen and not sl.tcp_listen:
        return None
    # Line origins must not repeat across restarts (they seed event ids): number from the start time.
    boot = time.time_ns()
    counter = itertools.count()

    def on_message(msg: SyslogMessage, peer: str) -> None:
        pipeline.push(to_log_line(msg, peer, f"{boot}.{next(counter)}"))

    return SyslogServer(
        sl.udp_listen or None,
        sl.tcp_listen or None,
        on_message,
        sl.max_message_bytes,
        max_senders=sl.max_senders,
    )


def _pipeline(
    cfg: Config, labels: dict[str, str], emit: Emit | None, state: Path, closers: list[Callable[[], None]]
) -> LogPipeline | None:
    logs = cfg.agent.logs
    sources: list[FileSource | JournalSource] = []
    # One processor of each kind serves every source (the line's source is a label), so their
    # series caps are global and each family is exposed once.
    auth = AuthLogProcessor()
    access = AccessLogProcessor()
    common: list[LineProcessor] = []
    if logs.rule_files:
        from vigil.logs.linerules import LineRuleProcessor  # RE2 only when there are rules

        common.append(LineRuleProcessor(load_rule_files(logs.rule_files)))
    syslog_on = bool(logs.syslog.udp_listen or logs.syslog.tcp_listen)
    auth_on = "authlog" not in cfg.agent.disable and bool(logs.auth.paths)
    unknown_sources = [s.name for s in logs.sources if s.unknown_lines]
    unknown_sources += ["auth"] if auth_on and logs.auth.unknown_lines else []
    unknown_sources += ["syslog"] if syslog_on and logs.syslog.unknown_lines else []
    detector: LineProcessor | None = None
    if unknown_sources:
        # drain3 only when unknown-line detection is on: it is most of the agent's import weight.
        from vigil.logs.unknownlines import DetectorSettings, UnknownLineDetector

        u = logs.unknown_lines
        unknown_lines = UnknownLineDetector(
            cfg.agent.data_dir / "templates",
            sources=unknown_sources,
            settings=DetectorSettings(
                learning_period_s=u.learning_period / 1000,
                events_per_template=u.events_per_template,
                events_per_source=u.events_per_source,
            ),
        )
        closers.append(unknown_lines.save)  # after the pipeline stopped: the counts of its last round
        detector = unknown_lines

    def unknown(name: str) -> list[LineProcessor]:
        return [detector] if detector is not None and name in unknown_sources else []

    if auth_on:
        processors = [auth, *common, *unknown("auth")]
        if _use_journal(logs.auth.journal, logs.auth.paths):
            sources.append(JournalSource("auth", processors=processors))
        else:
            sources.append(FileSource("auth", logs.auth.paths, processors))
    for src in logs.sources:
        by_format: dict[str, list[LineProcessor]] = {"auth": [auth], "access": [access], "plain": []}
        processors = by_format[src.format] + common + unknown(src.name)
        sources.append(FileSource(src.name, src.paths, processors, start_at_end=not src.from_beginning))
    syslog_processors: list[LineProcessor] = []
    if syslog_on:
        syslog_processors = ([auth] if logs.syslog.auth else []) + common + unknown("syslog")
    if not sources and not syslog_on:
        return None
    return LogPipeline(
        sources, state / "logs.json", emit=emit, labels=labels, syslog_processors=syslog_processors
    )


def _use_journal(mode: str, paths: Sequence[str]) -> bool:
    if mode != "auto":
        return mode == "always"
    return shutil.which("journalctl") is not None and not any(glob.glob(p) for p in paths)


def load_rule_files(
    patterns: Sequence[str], source: str = "vigil.yml", warn: Callable[[str], None] | None = None
) -> list[LineRule]:
    """Every rule of the files matching `patterns` (a key of `source`), in file order.

    A glob matching no file yet (a rules directory still empty) is `warn`ed about (default: logged), not
    an error: the rest of the agent is worth running. A plain path that does not exist is an error, like
    any unreadable rule file (ConfigError naming it)."""
    from vigil.logs.linerules import load_line_rules

    rules: list[LineRule] = []
    for pattern in patterns:
        paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not paths:
            message = f"no file matches {pattern!r} yet, so it adds no rules"
            (warn or log.warning)(str(ConfigError(message, source=source, key="agent.logs.rule_files")))
        for path in paths:
            rules += load_line_rules(path)
    return rules
