"""The built-in pages' panels: PromQL per host, unit and thresholds, and how a panel is narrowed.

A panel's expression is written per host (`by (instance)`) with `$sel` where the instance matcher
goes inside each selector (`node_load1{$sel}`, `x{mode="idle",$sel}`): empty for the fleet,
`instance="h"` on a host's page, `instance=~"a|b"` for the top hosts of a fleet chart and
`instance!~"a|b"` for the others. `$__rate_interval` is left for the chart script, which picks it
from the step (vigil/web/ui/static/charts.js); server-side instant queries use `INSTANT_RATE`.
Label values are attacker-controlled, so they enter PromQL only through `quote` and `regex_any`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from vigil.web.promapi import go_quote

__all__ = [
    "FLEET_PANELS",
    "HOST_PANELS",
    "INSTANT_RATE",
    "Panel",
    "Threshold",
    "narrow",
    "regex_any",
    "sel_eq",
]

INSTANT_RATE = "5m"  # the window of rates in the pages' instant queries, as the built-in rule pack
_REGEX_META = set("\\.+*?()|[]{}^$")
_REAL_FS = 'fstype!~"tmpfs|overlay|squashfs|ramfs|devtmpfs|nsfs|proc|sysfs"'


@dataclass(frozen=True)
class Threshold:
    value: float
    level: str  # "warn" | "crit": the CSS colour of the line


@dataclass(frozen=True)
class Series:
    expr: str  # with $sel and $__rate_interval
    legend: str = "instance"  # labels (comma-separated) whose values name a series ("": all labels)


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    unit: str  # percentunit | percent | bytes | Bps | s | ops | short
    series: Sequence[Series]
    thresholds: Sequence[Threshold] = field(default_factory=tuple)
    higher_is_worse: bool = True


def regex_literal(value: str) -> str:
    """`value` as an RE2 pattern that matches exactly it."""
    return "".join("\\" + c if c in _REGEX_META else c for c in value)


def regex_any(values: Sequence[str]) -> str:
    """An RE2 pattern matching exactly one of `values` (PromQL anchors regex matchers)."""
    return "|".join(regex_literal(v) for v in values)


def sel_eq(label: str, value: str) -> str:
    return f"{label}={go_quote(value)}"


def narrow(expr: str, sel: str) -> str:
    """`expr` with its `$sel` placeholders replaced by the matcher `sel` ("" for none)."""
    return expr.replace(",$sel}", ("," + sel if sel else "") + "}").replace("$sel", sel)


def instant(expr: str, sel: str = "") -> str:
    """`expr` for an instant query: narrowed, with the instant rate window."""
    return narrow(expr, sel).replace("$__rate_interval", INSTANT_RATE)


# Counters' increase over the page's range: exact (`increase`) up to a day; beyond, the difference
# of two instants, so a 30-day page reads two samples per series instead of 30 days of them
# (a counter reset or a series newer than the range then undercounts; the page says "approx.").
EXACT_INCREASE_MS = 86_400_000
_INCREASE = re.compile(r"increase\(([^()\[\]]+)\[\$range\]\)")


def over_range(expr: str, span_ms: int) -> str:
    """A template's `increase(sel[$range])` for a range of `span_ms` (see above). Call before
    `narrow`: the selector text is still the template's own, with no label value in it."""
    span = f"{max(1, span_ms // 1000)}s"
    if span_ms <= EXACT_INCREASE_MS:
        return _INCREASE.sub(lambda m: f"increase({m[1]}[{span}])", expr)
    return _INCREASE.sub(lambda m: f"clamp_min({m[1]} - {m[1]} offset {span}, 0)", expr)


_PCT = (Threshold(0.8, "warn"), Threshold(0.9, "crit"))

CPU_BUSY = '1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle",$sel}[$__rate_interval]))'
MEM_USED = (
    "1 - sum by (instance) (node_memory_MemAvailable_bytes{$sel})"
    " / sum by (instance) (node_memory_MemTotal_bytes{$sel})"
)
DISK_USED = (
    f"max by (instance) (1 - node_filesystem_avail_bytes{{{_REAL_FS},$sel}}"
    f" / node_filesystem_size_bytes{{{_REAL_FS},$sel}})"
)
NET_BYTES = (
    'sum by (instance) (rate(node_network_receive_bytes_total{device!="lo",$sel}[$__rate_interval])'
    ' + rate(node_network_transmit_bytes_total{device!="lo",$sel}[$__rate_interval]))'
)
LOAD_PER_CPU = (
    'max by (instance) (node_load1{$sel}) / count by (instance) (node_cpu_seconds_total{mode="idle",$sel})'
)
PSI_CPU = "max by (instance) (rate(node_pressure_cpu_waiting_seconds_total{$sel}[$__rate_interval]))"

# Fleet USE: utilisation and saturation per resource, one value per host (ranked worst first).
FLEET_PANELS: tuple[Panel, ...] = (
    Panel(
        "cpu",
        "CPU busy",
        "percentunit",
        (Series(CPU_BUSY),),
        (Threshold(0.85, "warn"), Threshold(0.95, "crit")),
    ),
    Panel("mem", "Memory used", "percentunit", (Series(MEM_USED),), _PCT),
    Panel("disk", "Disk used (fullest filesystem)", "percentunit", (Series(DISK_USED),), _PCT),
    Panel("net", "Network traffic (rx+tx)", "Bps", (Series(NET_BYTES),)),
    Panel(
        "load",
        "Load per CPU",
        "short",
        (Series(LOAD_PER_CPU),),
        (Threshold(0.85, "warn"), Threshold(0.95, "crit")),
    ),
    Panel(
        "psi",
        "CPU pressure (waiting)",
        "percentunit",
        (Series(PSI_CPU),),
        (Threshold(0.7, "warn"), Threshold(0.9, "crit")),
    ),
)

# One host, node_exporter style (Node Exporter Full's basic rows); `$sel` is the host's matcher.
HOST_PANELS: tuple[Panel, ...] = (
    Panel(
        "cpu_modes",
        "CPU by mode",
        "percentunit",
        (
            Series(
                'sum by (mode) (rate(node_cpu_seconds_total{mode!="idle",$sel}[$__rate_interval]))'
                ' / scalar(count(node_cpu_seconds_total{mode="idle",$sel}))',
                "mode",
            ),
        ),
    ),
    Panel(
        "memory",
        "Memory",
        "bytes",
        (
            Series('label_replace(node_memory_MemTotal_bytes{$sel}, "kind", "total", "", "")', "kind"),
            Series(
                "label_replace(node_memory_MemTotal_bytes{$sel} - node_memory_MemAvailable_bytes{$sel},"
                ' "kind", "used", "", "")',
                "kind",
            ),
            Series('label_replace(node_memory_Cached_bytes{$sel}, "kind", "cached", "", "")', "kind"),
            Series(
                "label_replace(node_memory_SwapTotal_bytes{$sel} - node_memory_SwapFree_bytes{$sel},"
                ' "kind", "swap used", "", "")',
                "kind",
            ),
        ),
    ),
    Panel(
        "filesystems",
        "Filesystem used",
        "percentunit",
        (
            Series(
                f"1 - node_filesystem_avail_bytes{{{_REAL_FS},$sel}}"
                f" / node_filesystem_size_bytes{{{_REAL_FS},$sel}}",
                "mountpoint",
            ),
        ),
        _PCT,
    ),
    Panel(
        "disk_io",
        "Disk IO (read + written)",
        "Bps",
        (
            Series(
                "label_replace(rate(node_disk_read_bytes_total{$sel}[$__rate_interval]),"
                ' "op", "read", "", "")',
                "device,op",
            ),
            Series(
                "label_replace(rate(node_disk_written_bytes_total{$sel}[$__rate_interval]),"
                ' "op", "written", "", "")',
                "device,op",
            ),
        ),
    ),
    Panel(
        "network",
        "Network",
        "Bps",
        (
            Series(
                'label_replace(rate(node_network_receive_bytes_total{device!="lo",$sel}[$__rate_interval]),'
                ' "dir", "rx", "", "")',
                "device,dir",
            ),
            Series(
                'label_replace(rate(node_network_transmit_bytes_total{device!="lo",$sel}[$__rate_interval]),'
                ' "dir", "tx", "", "")',
                "device,dir",
            ),
        ),
    ),
    Panel(
        "load",
        "Load and pressure",
        "short",
        (
            Series('label_replace(node_load1{$sel}, "what", "load1", "", "")', "what"),
            Series('label_replace(node_load5{$sel}, "what", "load5", "", "")', "what"),
            Series('label_replace(node_load15{$sel}, "what", "load15", "", "")', "what"),
            Series(
                "label_replace(rate(node_pressure_cpu_waiting_seconds_total{$sel}[$__rate_interval]),"
                ' "what", "psi cpu", "", "")',
                "what",
            ),
            Series(
                "label_replace(rate(node_pressure_io_stalled_seconds_total{$sel}[$__rate_interval]),"
                ' "what", "psi io", "", "")',
                "what",
            ),
        ),
    ),
)


@dataclass(frozen=True)
class SecurityItem:
    """One security signal, per host; `$range` is the page's time range (counters' increase)."""

    key: str
    title: str
    expr: str
    counts_events: bool  # increase over the range (an amount) rather than a current state


SECURITY_ITEMS: tuple[SecurityItem, ...] = (
    SecurityItem(
        "failed_logins",
        "Failed logins",
        'sum by (instance) (increase(vigil_auth_attempts_total{result="failure",$sel}[$range]))',
        True,
    ),
    SecurityItem(
        "security_updates",
        "Security updates pending",
        'sum by (instance) (vigil_updates_pending{kind="security",$sel})',
        False,
    ),
    SecurityItem(
        "certs_expiring",
        "Certificates expiring in 14 days",
        "count by (instance) (vigil_cert_file_earliest_expiry_timestamp_seconds{$sel} - time() < 14 * 86400)",
        False,
    ),
    SecurityItem(
        "unexpected_ports",
        "Unexpected listening ports",
        "sum by (instance) (vigil_listening_ports_unexpected{$sel})",
        False,
    ),
    SecurityItem(
        "integrity_changes",
        "File integrity changes",
        "sum by (instance) (increase(vigil_file_integrity_changes_total{$sel}[$range]))",
        True,
    ),
    SecurityItem(
        "unknown_lines",
        "Unknown log lines",
        "sum by (instance) (increase(vigil_log_unknown_lines_total{$sel}[$range]))",
        True,
    ),
)

# Hosts: a target's `up` (1/0, by the scraper or the agent itself) and when it was last heard of
# (the heartbeat rule keeps `vigil:agent_last_seen_timestamp_seconds` for 7 days after it stops).
HOST_UP = "max by (instance) (up{$sel})"
LAST_SEEN = (
    "max by (instance) (timestamp(up{$sel}) or timestamp(vigil_agent_collections_total{$sel})"
    " or vigil:agent_last_seen_timestamp_seconds{$sel})"
)

# A filesystem that a linear fit of the last 6 hours has full within a day ("disk filling").
DISK_FILLING = (
    f"count by (instance) (predict_linear(node_filesystem_avail_bytes{{{_REAL_FS},$sel}}[6h], 86400) < 0)"
)


@dataclass(frozen=True)
class AgentItem:
    """One number about a host's agent itself (src/vigil/agent, src/vigil/ship), `$range` as above."""

    title: str
    expr: str
    unit: str


AGENT_ITEMS: tuple[AgentItem, ...] = (
    AgentItem(
        "Collections in range",
        "sum by (instance) (increase(vigil_agent_collections_total{$sel}[$range]))",
        "short",
    ),
    AgentItem(
        "Collector errors in range",
        "sum by (instance) (increase(vigil_agent_collector_errors_total{$sel}[$range]))",
        "short",
    ),
    AgentItem("Queued payloads", "sum by (instance) (vigil_agent_queue_entries{$sel})", "short"),
    AgentItem("Queued bytes", "sum by (instance) (vigil_agent_queue_bytes{$sel})", "bytes"),
    AgentItem(
        "Oldest unsent sample", "max by (instance) (vigil_agent_queue_oldest_sample_age_seconds{$sel})", "s"
    ),
    AgentItem(
        "Samples dropped in range",
        "sum by (instance) (increase(vigil_agent_ship_dropped_samples_total{$sel}[$range]))",
        "short",
    ),
)

# The Security page: security signals over time, ranked by host like the fleet charts.
SECURITY_PANELS: tuple[Panel, ...] = (
    Panel(
        "failed_logins",
        "Failed logins (per second)",
        "short",
        (
            Series(
                'sum by (instance) (rate(vigil_auth_attempts_total{result="failure",$sel}[$__rate_interval]))'
            ),
        ),
    ),
    Panel(
        "unknown_lines",
        "Unknown log lines (per second)",
        "short",
        (Series("sum by (instance) (rate(vigil_log_unknown_lines_total{$sel}[$__rate_interval]))"),),
    ),
    Panel(
        "integrity",
        "File integrity changes (per second)",
        "short",
        (Series("sum by (instance) (rate(vigil_file_integrity_changes_total{$sel}[$__rate_interval]))"),),
    ),
)
UPDATES_PENDING = "sum by (instance) (vigil_updates_pending{$sel})"
REBOOT_REQUIRED = "max by (instance) (node_reboot_required{$sel})"
# Certificates by days left: files the agent watches, and endpoints a probe checks.
CERT_FILES_DAYS = "(vigil_cert_file_earliest_expiry_timestamp_seconds - time()) / 86400"
CERT_PROBES_DAYS = "(probe_ssl_earliest_cert_expiry - time()) / 86400"
