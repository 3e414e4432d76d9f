"""Probes: blackbox_exporter-compatible HTTP, TCP/TLS, DNS and ICMP checks, and local certificate files.

Every prober is a plain function `probe_<kind>(target, config, timeout) -> ProbeResult` that never
raises: whatever goes wrong becomes `probe_success 0` and a reason in `ProbeResult.error`. The
families and label names are blackbox_exporter 0.23's (see each module); Vigil's additions use the
`vigil_` prefix. `vigil.probe.collector.ProbesCollector` runs them on their intervals.

This module holds what the probers share: the result being built (`ProbeResult`) and target
resolution with blackbox's `ip_protocol` preference (`resolve`), which also fills in
`probe_dns_lookup_time_seconds`, `probe_ip_protocol` and `probe_ip_addr_hash`.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

C = TypeVar("C")

__all__ = ["Family", "ProbeError", "ProbeResult", "Resolved", "fnv32a", "resolve", "run_probe_step"]


class ProbeError(Exception):
    """A probe step failed; the message becomes `ProbeResult.error` (one line, for the log)."""


@dataclass
class Family:
    """One metric family of a probe's result; `samples` maps label values to the value."""

    name: str
    help: str
    labelnames: tuple[str, ...] = ()
    samples: dict[tuple[str, ...], float] = field(default_factory=dict)


@dataclass
class ProbeResult:
    """What one probe run produced: families in the order they were declared, plus success."""

    families: dict[str, Family] = field(default_factory=dict)
    success: bool = False
    duration_seconds: float = 0.0
    error: str = ""

    def declare(self, name: str, help: str, labelnames: tuple[str, ...] = ()) -> Family:
        """Register a family (blackbox registers some before knowing their value: they read 0)."""
        fam = self.families.get(name)
        if fam is None:
            fam = self.families[name] = Family(name, help, labelnames)
        return fam

    def set(self, name: str, help: str, value: float, **labels: str) -> None:
        fam = self.declare(name, help, tuple(labels))
        fam.samples[tuple(labels[n] for n in fam.labelnames)] = float(value)

    def add(self, name: str, help: str, value: float, **labels: str) -> None:
        """Add to a sample (phases summed over redirects, as blackbox does)."""
        fam = self.declare(name, help, tuple(labels))
        key = tuple(labels[n] for n in fam.labelnames)
        fam.samples[key] = fam.samples.get(key, 0.0) + float(value)

    def gauge(self, name: str, help: str, value: float = 0.0) -> None:
        """A label-less gauge, created at `value` (0 for "registered but never set")."""
        self.declare(name, help).samples.setdefault((), float(value))

    def finish(self, success: bool, started: float, error: str = "") -> ProbeResult:
        """Record the outcome and prepend `probe_success` / `probe_duration_seconds` like blackbox."""
        self.success = success
        self.error = error
        self.duration_seconds = time.monotonic() - started
        head = ProbeResult()
        head.set("probe_success", "Whether the probe succeeded (1) or failed (0).", 1.0 if success else 0.0)
        head.set("probe_duration_seconds", "How long the probe took, in seconds.", self.duration_seconds)
        self.families = {**head.families, **self.families}
        return self


def run_probe_step(step: Callable[[C, ProbeResult, float], bool], config: C) -> ProbeResult:
    """Run a prober's body `step(config, result, started) -> success`; never raises: a failure reads
    probe_success 0 with its reason in `.error`, so one broken target cannot take the collector down."""
    started = time.monotonic()
    result = ProbeResult()
    try:
        return result.finish(step(config, result, started), started)
    except ProbeError as e:
        return result.finish(False, started, str(e))
    except Exception as e:
        return result.finish(False, started, f"{type(e).__name__}: {e}")


def fnv32a(data: bytes) -> int:
    """FNV-1a, 32 bit: blackbox's `probe_ip_addr_hash` (of the 4 or 16 address bytes)."""
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


@dataclass(frozen=True)
class Resolved:
    ip: str
    family: socket.AddressFamily
    lookup_seconds: float


_DNS_LOOKUP = "How long resolving the target's host name took, in seconds."
_IP_PROTOCOL = "The IP version the probe used: 4 or 6."
_IP_HASH = "FNV-1a hash of the target's IP address; changes when the address does."


def resolve(result: ProbeResult, host: str, ip_protocol: str = "ip6", fallback: bool = True) -> Resolved:
    """Resolve `host` preferring `ip_protocol` ("ip4"/"ip6"), falling back to the other if allowed.

    Mirrors blackbox's choice (its default prefers IPv6 with fallback) and emits its three resolution
    families. getaddrinfo has no timeout of its own; probes run in worker threads, so a hung resolver
    delays only that probe's next result. Raises ProbeError.
    """
    started = time.monotonic()
    result.gauge("probe_ip_protocol", _IP_PROTOCOL)
    result.gauge("probe_ip_addr_hash", _IP_HASH)
    want = socket.AF_INET6 if ip_protocol != "ip4" else socket.AF_INET
    try:
        host = host.strip("[]")
        try:
            literal = ipaddress.ip_address(host.split("%", 1)[0])
            addrs = [(socket.AF_INET6 if literal.version == 6 else socket.AF_INET, host)]
        except ValueError:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
            addrs = [
                (fam, str(sa[0])) for fam, _, _, _, sa in infos if fam in (socket.AF_INET, socket.AF_INET6)
            ]
        chosen = next((a for a in addrs if a[0] == want), None)
        if chosen is None and fallback and addrs:
            chosen = addrs[0]
        if chosen is None:
            raise ProbeError(f"no {ip_protocol} address for {host!r}")
    except OSError as e:
        raise ProbeError(f"resolving {host!r}: {e}") from None
    finally:
        lookup = time.monotonic() - started
        result.set("probe_dns_lookup_time_seconds", _DNS_LOOKUP, lookup)
    fam, ip = chosen
    packed = socket.inet_pton(fam, ip.split("%", 1)[0])
    result.set("probe_ip_protocol", _IP_PROTOCOL, 6 if fam == socket.AF_INET6 else 4)
    result.set("probe_ip_addr_hash", _IP_HASH, fnv32a(packed))
    return Resolved(ip, fam, lookup)
