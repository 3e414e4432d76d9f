"""The agent's security sections of `vigil.yml`: logs (auth, sources, rules, unknown lines, syslog),
listening ports, file integrity and pending updates.

Everything is on by default where it needs no configuration and costs little (auth logs, listening
ports against a learned baseline, file integrity of the usual files, pending updates hourly); log
sources, rule files, syslog listeners, probes and certificate files are opt-in because only the
operator knows where they are.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol

from pydantic import BeforeValidator, model_validator

from vigil.config.types import (
    Bool,
    PositiveDuration,
    Section,
    Size,
    check_listen,
    integer,
)
from vigil.model.duration import parse_duration, parse_size
from vigil.model.show import show

__all__ = [
    "DEFAULT_PATHS",
    "AuthLogsConfig",
    "BaselineEntry",
    "FileIntegrityConfig",
    "ListeningPortsConfig",
    "LogSourceConfig",
    "LogsConfig",
    "SyslogConfig",
    "UnknownLinesConfig",
    "UpdatesConfig",
    "parse_baseline_entry",
]

# The files an intruder edits to stay in (accounts, sudo, sshd, cron, units): what file integrity
# watches unless `file_integrity.paths` says otherwise. Here, not in vigil.security.integrity, because
# it is the config's default and the config sits below the collectors that use it.
DEFAULT_PATHS: tuple[str, ...] = (
    "/etc/passwd",
    "/etc/shadow",
    "/etc/group",
    "/etc/sudoers",
    "/etc/sudoers.d/*",
    "/etc/ssh/sshd_config",
    "/root/.ssh/authorized_keys",
    "/home/*/.ssh/authorized_keys",
    "/etc/crontab",
    "/etc/cron.d/*",
    "/var/spool/cron/crontabs/*",
    "/etc/systemd/system/*",
)


class _Listening(Protocol):
    """What a baseline entry is matched against (vigil.security.ports.Listener)."""

    @property
    def protocol(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def port(self) -> int: ...


@dataclass(frozen=True)
class BaselineEntry:
    """One parsed `listening_ports.baseline` entry (syntax in vigil.security.ports' docstring)."""

    protocol: str  # "*" for any
    address: str  # "*" for any
    port: str  # "*" for any, else decimal

    def matches(self, listener: _Listening) -> bool:
        return (
            self.protocol in ("*", listener.protocol)
            and self.address in ("*", listener.address)
            and self.port in ("*", str(listener.port))
        )


def parse_baseline_entry(entry: str) -> BaselineEntry:
    """Parse one baseline entry (tcp/22, udp/127.0.0.1:53, tcp/[::1]:9400, */53, udp/*); ValueError
    when malformed. Lives with the config, which validates every entry with it at load time."""
    proto, sep, rest = entry.strip().partition("/")
    proto = proto.lower()
    if not sep or proto not in ("tcp", "udp", "*") or not rest:
        raise ValueError(f"bad listening-port baseline entry {entry!r}: want proto/port or proto/addr:port")
    if rest == "*":
        return BaselineEntry(proto, "*", "*")
    if rest.startswith("["):  # [v6addr]:port
        addr, close, port = rest[1:].partition("]")
        if not close or not port.startswith(":"):
            raise ValueError(f"bad listening-port baseline entry {entry!r}")
        port = port[1:]
    elif ":" in rest:
        addr, _, port = rest.rpartition(":")
    else:
        addr, port = "*", rest
    if port != "*" and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"bad port in listening-port baseline entry {entry!r}")
    if addr != "*":
        try:  # normalise so "::0001" matches the kernel's "::1"
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            addr = socket.inet_ntop(family, socket.inet_pton(family, addr))
        except OSError as exc:
            raise ValueError(f"bad address in listening-port baseline entry {entry!r}") from exc
    return BaselineEntry(proto, addr, port if port == "*" else str(int(port)))


def _paths(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(p, str) and p for p in value):
        raise ValueError(f"expected a list of file paths or globs, got {show(value)}")
    return tuple(value)


def _optional_listen(value: object) -> str:
    return "" if value in ("", None) else check_listen(value)


def _baseline(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list of entries like tcp/22 or udp/127.0.0.1:53, got {show(value)}")
    for entry in value:
        try:
            parse_baseline_entry(entry)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"expected an entry like tcp/22 or udp/127.0.0.1:53, got {show(entry)} ({exc})"
            ) from None
    return tuple(value)


def _source_name(value: object) -> str:
    if not isinstance(value, str) or not value.replace("_", "a").replace("-", "a").isalnum():
        raise ValueError(
            f"expected a short name of letters, digits, _ or - (it becomes a label), got {show(value)}"
        )
    return value


Paths = Annotated[tuple[str, ...], BeforeValidator(_paths)]
OptionalListen = Annotated[str, BeforeValidator(_optional_listen)]
SourceName = Annotated[str, BeforeValidator(_source_name)]


class AuthLogsConfig(Section):
    paths: Paths = ("/var/log/auth.log", "/var/log/secure")
    """Auth logs to follow (Debian/Ubuntu, RHEL family); missing files are skipped silently."""
    journal: Literal["auto", "always", "never"] = "auto"
    """Read the systemd journal (auth and authpriv facilities) instead: `auto` does when none of
    `paths` exists and journalctl is installed (hosts without rsyslog)."""
    unknown_lines: Bool = False
    """Also look for auth-log lines that match no learned template."""


class LogSourceConfig(Section):
    name: SourceName
    """The `source` label of everything this source produces."""
    paths: Paths
    format: Literal["plain", "access", "auth"] = "plain"
    """`access`: web access log (nginx/apache combined or JSON) → RED metrics; `auth`: auth-log parsing;
    `plain`: only log rules and unknown-line detection."""
    unknown_lines: Bool = False
    from_beginning: Bool = False
    """Read files found at the first start from their beginning (default: from their end)."""


class UnknownLinesConfig(Section):
    learning_period: PositiveDuration = parse_duration("1d")
    """How long a source's templates are learned before unknown lines are reported."""
    events_per_template: Annotated[int, integer(minimum=0)] = 10
    """Events kept per new template and hour; further lines are counted only."""
    events_per_source: Annotated[int, integer(minimum=0)] = 100
    """Events kept per source and hour, whatever the template (a flood of distinct new lines); further
    lines are counted only, and a `log_unknown_suppressed` event says so (another, how many)."""


class SyslogConfig(Section):
    udp_listen: OptionalListen = ""
    """UDP address of the syslog receiver, e.g. 127.0.0.1:5514; empty: off."""
    tcp_listen: OptionalListen = ""
    """TCP address (RFC 6587: octet counting or newline framing); empty: off."""
    max_message_bytes: Size = parse_size("64KiB")
    max_senders: Annotated[int, integer(minimum=1)] = 1000
    """Sending addresses with their own `vigil_syslog_sender_*` series; more share sender="other"."""
    auth: Bool = True
    """Count and keep auth lines (sshd, sudo, PAM, …) received by syslog, as from auth logs."""
    unknown_lines: Bool = False


class LogsConfig(Section):
    auth: AuthLogsConfig = AuthLogsConfig()
    sources: tuple[LogSourceConfig, ...] = ()
    rule_files: Paths = ()
    """Files (globs) of log line rules: mtail-like YAML that counts matching log lines
    (`vigil.logs.linerules`), not alerting or recording rules."""
    unknown_lines: UnknownLinesConfig = UnknownLinesConfig()
    syslog: SyslogConfig = SyslogConfig()

    @model_validator(mode="after")
    def _unique_sources(self) -> LogsConfig:
        names = [s.name for s in self.sources]
        for reserved in ("auth", "syslog"):
            if reserved in names:
                raise ValueError(f"source name {reserved!r} is reserved for the built-in {reserved} source")
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"source names must be unique, {sorted(dup)[0]!r} is used twice")
        return self


class ListeningPortsConfig(Section):
    baseline: Annotated[tuple[str, ...], BeforeValidator(_baseline)] = ()
    """Expected listeners (tcp/22, udp/127.0.0.1:53, */53); others count as unexpected."""
    learn: Bool = True
    """Also expect the listeners present at the first collection (saved in the data directory)."""
    interval: PositiveDuration = parse_duration("1s")
    """How often the agent's watcher reads the socket tables, shipping `listener_new`/`listener_gone`
    events as soon as a reading shows the change (netlink: ~0.1 ms of CPU a reading). Where only
    /proc/net is readable a reading walks the kernel's whole socket hash (~5 ms on a busy host), so
    it is read at most every 5 s. Collections report the latest reading."""


class FileIntegrityConfig(Section):
    paths: Paths = DEFAULT_PATHS
    """Files (globs) to watch. Replaces the default list (accounts, sudoers, sshd_config,
    authorized_keys, crontabs, systemd units): list the defaults you want to keep. Files that join or
    leave the list when it changes are learned or forgotten, not reported as created or deleted."""


class UpdatesConfig(Section):
    interval: PositiveDuration = parse_duration("1h")
    """How often the package manager is asked (in the background; collections use the last answer)."""
    manager: Literal["auto", "apt", "dnf", "yum", "none"] = "auto"
