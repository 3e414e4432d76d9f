"""The `agent.probes` and `agent.certificates` schema: blackbox_exporter-style probes and cert files.

One probe is one module run against one target; field names follow blackbox_exporter's modules
(`valid_status_codes`, `fail_if_body_matches_regexp`, `query_name`, `valid_rcodes`, ...) so a
blackbox configuration translates key for key. Unlike blackbox, the TLS settings sit in one `tls:`
key shared by the modules that speak TLS (https URLs, `tcp` with `tls: true`, and `tls`, which is
`tcp` with TLS always on). Example:

    agent:
      probes:
        - name: website
          module: http
          target: https://example.com/health
          interval: 30s
          http: {valid_status_codes: [200], fail_if_body_not_matches_regexp: ["ok"]}
        - {name: smtp-tls, module: tls, target: "mail.example.com:465"}
        - {name: resolver, module: dns, target: 127.0.0.53, dns: {query_name: example.com, query_type: A}}
        - {name: gateway, module: icmp, target: 192.168.1.1}
      certificates:
        files: ["/etc/ssl/private/*.pem", "/etc/letsencrypt/live/*/fullchain.pem"]

The lead wires `probes: Probes = ()` and `certificates: CertificatesConfig = CertificatesConfig()`
into `AgentConfig`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from vigil.config.types import (
    Bool,
    OptionalPath,
    PositiveDuration,
    RE2Regex,
    Section,
    Size,
    check_re2_regex,
    integer,
)
from vigil.model.duration import parse_duration, parse_size
from vigil.model.show import show

__all__ = [
    "DNS_QUERY_TYPES",
    "DNS_RCODES",
    "MODULES",
    "CertificatesConfig",
    "DNSProbeConfig",
    "HTTPProbeConfig",
    "ICMPProbeConfig",
    "ProbeConfig",
    "ProbeTLSConfig",
    "Probes",
    "QueryResponse",
    "TCPProbeConfig",
]

MODULES = ("http", "tcp", "tls", "dns", "icmp")
DNS_QUERY_TYPES = ("A", "NS", "CNAME", "SOA", "PTR", "MX", "TXT", "AAAA", "SRV", "CAA", "ANY")
DNS_RCODES = ("NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED")
# As often as the agent collects: a target that goes down is seen within one collection.
DEFAULT_INTERVAL_MS = parse_duration("10s")
DEFAULT_TIMEOUT_MS = parse_duration("10s")


def _one_of(choices: tuple[str, ...], *, upper: bool = False) -> BeforeValidator:
    def validate(value: object) -> str:
        if isinstance(value, str) and (value.upper() if upper else value) in choices:
            return value.upper() if upper else value
        raise ValueError(f"expected one of {', '.join(choices)}, got {show(value)}")

    return BeforeValidator(validate)


def _list(what: str) -> BeforeValidator:
    def validate(value: object) -> object:
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a list of {what}, got {show(value)}")
        return value

    return BeforeValidator(validate)


def _status_code(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise ValueError(f"expected an HTTP status code from 100 to 599, got {show(value)}")
    return value


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: methods and header names


def _method(value: object) -> str:
    if not isinstance(value, str) or _TOKEN.fullmatch(value) is None:
        raise ValueError(f"expected an HTTP method like GET, got {show(value)}")
    return value.upper()


def _headers(value: object) -> object:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and _TOKEN.fullmatch(k) and isinstance(v, str) and "\n" not in v
        for k, v in value.items()
    ):
        raise ValueError(f"expected a mapping of header names to text values, got {show(value)}")
    return value


def _text(what: str, *, empty: bool = True) -> BeforeValidator:
    def validate(value: object) -> str:
        if not isinstance(value, str) or (not empty and value == ""):
            raise ValueError(f"expected {what}, got {show(value)}")
        return value

    return BeforeValidator(validate)


Regex = RE2Regex
Regexes = Annotated[tuple[Regex, ...], _list("regular expressions")]


class ProbeTLSConfig(Section):
    ca_file: OptionalPath = None
    """PEM bundle of the CAs to trust; absent, the system store."""
    insecure_skip_verify: Bool = False
    """Report the certificate but do not fail the probe when it does not verify."""
    server_name: Annotated[str, _text("a host name")] = ""
    """Name sent in SNI and verified; absent, the target's host."""


class HTTPProbeConfig(Section):
    method: Annotated[str, BeforeValidator(_method)] = "GET"
    headers: Annotated[dict[str, str], BeforeValidator(_headers)] = Field(default_factory=dict)
    body: Annotated[str, _text("the request body as text")] = ""
    valid_status_codes: Annotated[
        tuple[Annotated[int, BeforeValidator(_status_code)], ...], _list("HTTP status codes")
    ] = ()
    """Empty means any 2xx."""
    follow_redirects: Bool = True
    fail_if_ssl: Bool = False
    fail_if_not_ssl: Bool = False
    fail_if_body_matches_regexp: Regexes = ()
    fail_if_body_not_matches_regexp: Regexes = ()
    body_size_limit: Size = parse_size("10MiB")
    """Most bytes of body read, counted after decompression (blackbox's `body_size_limit`); a longer
    body fails the probe. Unlike blackbox there is no 0 for "no limit": a probe's memory stays bounded."""


class QueryResponse(Section):
    """One step of a TCP dialogue: wait for a line matching `expect`, then send `send` + newline."""

    expect: Annotated[str, BeforeValidator(lambda v: "" if v is None else check_re2_regex(v))] = ""
    send: Annotated[str, _text("a line of text to send")] = ""
    starttls: Bool = False


class TCPProbeConfig(Section):
    tls: Bool = False
    query_response: Annotated[tuple[QueryResponse, ...], _list("query/response steps")] = ()


class DNSProbeConfig(Section):
    query_name: Annotated[str, _text("a domain name like example.com", empty=False)] = ""
    query_type: Annotated[str, _one_of(DNS_QUERY_TYPES, upper=True)] = "ANY"
    transport: Annotated[str, _one_of(("udp", "tcp"))] = "udp"
    recursion_desired: Bool = True
    valid_rcodes: Annotated[
        tuple[Annotated[str, _one_of(DNS_RCODES, upper=True)], ...], _list("DNS response codes")
    ] = ("NOERROR",)


class ICMPProbeConfig(Section):
    payload_size: Annotated[int, integer(minimum=0)] = 0
    """Extra bytes of payload in the echo request (blackbox's `payload_size`)."""


def _name(value: object) -> str:
    if not isinstance(value, str) or re.fullmatch(r"[A-Za-z0-9_.:-]+", value) is None:
        raise ValueError(f"expected a probe name of letters, digits, _ . : -, got {show(value)}")
    return value


_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.%]+\]|[^\s/:\[\]]+):[0-9]{1,5}")
_HOST = re.compile(r"\[?[0-9A-Fa-f:.%]+\]?|[^\s/:\[\]]+")
_URL = re.compile(r"(?:https?://)?[^\s/?#]+(?:[/?#]\S*)?")


def _check_target(module: str, target: str) -> None:
    if module == "http":
        ok = _URL.fullmatch(target) is not None and "://" not in target.split("://", 1)[-1]
        example = "an http(s) URL like https://example.com/health"
    elif module in ("tcp", "tls"):
        ok = _HOST_PORT.fullmatch(target) is not None and 1 <= int(target.rsplit(":", 1)[1]) <= 65535
        example = "host:port like example.com:443"
    elif module == "dns":
        ok = _HOST.fullmatch(target) is not None or _HOST_PORT.fullmatch(target) is not None
        example = "a DNS server like 127.0.0.53 or 9.9.9.9:53"
    else:
        ok = _HOST.fullmatch(target) is not None
        example = "a host name or IP address like 192.168.1.1"
    if not ok:
        raise ValueError(f"expected a target for module {module}: {example}, got {show(target)}")


class ProbeConfig(Section):
    name: Annotated[str, BeforeValidator(_name)]
    """Identifies the probe: the `probe` label of its series."""
    module: Annotated[str, _one_of(MODULES)]
    target: Annotated[str, _text("a target", empty=False)]
    interval: PositiveDuration = DEFAULT_INTERVAL_MS
    timeout: PositiveDuration = DEFAULT_TIMEOUT_MS
    """Default 10s, shortened to the interval when that is shorter (see timeout_seconds)."""
    ip_protocol: Annotated[str, _one_of(("ip4", "ip6"))] = "ip6"
    """Preferred IP version, as blackbox (which prefers IPv6)."""
    ip_protocol_fallback: Bool = True
    tls: ProbeTLSConfig = ProbeTLSConfig()
    http: HTTPProbeConfig = HTTPProbeConfig()
    tcp: TCPProbeConfig = TCPProbeConfig()
    dns: DNSProbeConfig = DNSProbeConfig()
    icmp: ICMPProbeConfig = ICMPProbeConfig()

    @model_validator(mode="before")
    @classmethod
    def _module_first(cls, data: Any) -> Any:
        # Report a bad target against `target`, naming the module, rather than on the whole entry.
        if (
            isinstance(data, dict)
            and isinstance(data.get("module"), str)
            and isinstance(data.get("target"), str)
        ) and data["module"] in MODULES:
            _check_target(data["module"], data["target"])
        return data

    @model_validator(mode="after")
    def _check(self) -> ProbeConfig:
        if self.module == "dns" and not self.dns.query_name:
            raise ValueError("module dns needs dns.query_name")
        if "timeout" in self.model_fields_set and self.timeout > self.interval:
            raise ValueError("timeout must not be greater than interval")
        return self

    @property
    def timeout_seconds(self) -> float:
        """The timeout in seconds; the default 10s is shortened to a shorter interval."""
        return min(self.timeout, self.interval) / 1000


def _unique_names(probes: tuple[ProbeConfig, ...]) -> tuple[ProbeConfig, ...]:
    seen: set[str] = set()
    for p in probes:
        if p.name in seen:
            raise ValueError(f"expected unique probe names, got {show(p.name)} twice")
        seen.add(p.name)
    return probes


Probes = Annotated[tuple[ProbeConfig, ...], _list("probes"), AfterValidator(_unique_names)]


def _glob(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"expected an absolute path or glob like /etc/ssl/certs/*.pem, got {show(value)}")
    return value


class CertificatesConfig(Section):
    """Local certificate files to watch (PEM, one or more certificates per file)."""

    files: Annotated[tuple[Annotated[str, BeforeValidator(_glob)], ...], _list("paths or globs")] = ()
    interval: PositiveDuration = parse_duration("60s")  # expiry moves in days: a minute is plenty
    max_files: Annotated[int, integer(minimum=1)] = 1000
    """Most files reported, so a glob like /etc/** cannot flood the store."""
