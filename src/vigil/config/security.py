"""The agent's security sections of `vigil.yml`: logs (auth, sources, rules, unknown lines, syslog),
listening ports, file integrity and pending updates.

Everything is on by default where it needs no configuration and costs little (auth logs, listening
ports against a learned baseline, file integrity of the usual files, pending updates hourly); log
sources, rule files, syslog listeners, probes and certificate files are opt-in because only the
operator knows where they are.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, model_validator

from vigil.config.types import (
    Bool,
    PositiveDuration,
    Size,
    _integer,
    _listen,
    _Section,
    _show,
    parse_duration,
    parse_size,
)
from vigil.security.integrity import DEFAULT_PATHS
from vigil.security.ports import parse_baseline_entry

__all__ = [
    "AuthLogsConfig",
    "FileIntegrityConfig",
    "ListeningPortsConfig",
    "LogSourceConfig",
    "LogsConfig",
    "SyslogConfig",
    "UnknownLinesConfig",
    "UpdatesConfig",
]


def _paths(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(p, str) and p for p in value):
        raise ValueError(f"expected a list of file paths or globs, got {_show(value)}")
    return tuple(value)


def _optional_listen(value: object) -> str:
    return "" if value in ("", None) else _listen(value)


def _baseline(value: object) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list of entries like tcp/22 or udp/127.0.0.1:53, got {_show(value)}")
    for entry in value:
        try:
            parse_baseline_entry(entry)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"expected an entry like tcp/22 or udp/127.0.0.1:53, got {_show(entry)} ({exc})"
            ) from None
    return tuple(value)


def _source_name(value: object) -> str:
    if not isinstance(value, str) or not value.replace("_", "a").replace("-", "a").isalnum():
        raise ValueError(
            f"expected a short name of letters, digits, _ or - (it becomes a label), got {_show(value)}"
        )
    return value


Paths = Annotated[tuple[str, ...], BeforeValidator(_paths)]
OptionalListen = Annotated[str, BeforeValidator(_optional_listen)]
SourceName = Annotated[str, BeforeValidator(_source_name)]


class AuthLogsConfig(_Section):
    paths: Paths = ("/var/log/auth.log", "/var/log/secure")
    """Auth logs to follow (Debian/Ubuntu, RHEL family); missing files are skipped silently."""
    journal: Literal["auto", "always", "never"] = "auto"
    """Read the systemd journal (auth and authpriv facilities) instead: `auto` does when none of
    `paths` exists and journalctl is installed (hosts without rsyslog)."""
    unknown_lines: Bool = False
    """Also look for auth-log lines that match no learned template."""


class LogSourceConfig(_Section):
    name: SourceName
    """The `source` label of everything this source produces."""
    paths: Paths
    format: Literal["plain", "access", "auth"] = "plain"
    """`access`: web access log (nginx/apache combined or JSON) → RED metrics; `auth`: auth-log parsing;
    `plain`: only log rules and unknown-line detection."""
    unknown_lines: Bool = False
    from_beginning: Bool = False
    """Read files found at the first start from their beginning (default: from their end)."""


class UnknownLinesConfig(_Section):
    learning_period: PositiveDuration = parse_duration("1d")
    """How long a source's templates are learned before unknown lines are reported."""
    events_per_template: Annotated[int, _integer(minimum=0)] = 10
    """Events kept per new template and hour; further lines are counted only."""
    events_per_source: Annotated[int, _integer(minimum=0)] = 100
    """Events kept per source and hour, whatever the template (a flood of distinct new lines); further
    lines are counted only, and a `log_unknown_suppressed` event says so (another, how many)."""


class SyslogConfig(_Section):
    udp_listen: OptionalListen = ""
    """UDP address of the syslog receiver, e.g. 127.0.0.1:5514; empty: off."""
    tcp_listen: OptionalListen = ""
    """TCP address (RFC 6587: octet counting or newline framing); empty: off."""
    max_message_bytes: Size = parse_size("64KiB")
    max_senders: Annotated[int, _integer(minimum=1)] = 1000
    """Sending addresses with their own `vigil_syslog_sender_*` series; more share sender="other"."""
    auth: Bool = True
    """Count and keep auth lines (sshd, sudo, PAM, …) received by syslog, as from auth logs."""
    unknown_lines: Bool = False


class LogsConfig(_Section):
    auth: AuthLogsConfig = AuthLogsConfig()
    sources: tuple[LogSourceConfig, ...] = ()
    rule_files: Paths = ()
    """Files (globs) of mtail-like log rules (YAML)."""
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


class ListeningPortsConfig(_Section):
    baseline: Annotated[tuple[str, ...], BeforeValidator(_baseline)] = ()
    """Expected listeners (tcp/22, udp/127.0.0.1:53, */53); others count as unexpected."""
    learn: Bool = True
    """Also expect the listeners present at the first collection (saved in the data directory)."""
    interval: PositiveDuration = parse_duration("30s")
    """How often the socket tables are read (netlink: ~0.1 ms; where only /proc/net is readable, each
    table read walks the kernel's socket hash, ~2 ms); collections in between report the last reading."""


class FileIntegrityConfig(_Section):
    paths: Paths = DEFAULT_PATHS
    """Files (globs) to watch. Replaces the default list (accounts, sudoers, sshd_config,
    authorized_keys, crontabs, systemd units): list the defaults you want to keep. Files that join or
    leave the list when it changes are learned or forgotten, not reported as created or deleted."""


class UpdatesConfig(_Section):
    interval: PositiveDuration = parse_duration("1h")
    """How often the package manager is asked (in the background; collections use the last answer)."""
    manager: Literal["auto", "apt", "dnf", "yum", "none"] = "auto"
