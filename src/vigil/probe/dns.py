"""DNS prober: one query over UDP or TCP with a minimal RFC 1035 encoder/decoder (stdlib only).

Families, as blackbox_exporter 0.23's `dns` prober: probe_dns_duration_seconds{phase=resolve|connect|
request}, probe_dns_answer_rrs, probe_dns_authority_rrs, probe_dns_additional_rrs,
probe_dns_query_succeeded, probe_dns_serial (SOA queries only) and the resolution families of
`vigil.probe.resolve`. The probe succeeds when a response arrives with one of `valid_rcodes`.
blackbox's answer/authority/additional regex validation is not implemented.

The query carries no EDNS record, like blackbox's, so the additional count matches its count.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass

from vigil.config.probes import ProbeConfig
from vigil.probe import ProbeError, ProbeResult, resolve, run_probe_step

__all__ = [
    "QTYPES",
    "RCODES",
    "DNSResponse",
    "ResourceRecord",
    "decode_response",
    "encode_query",
    "probe_dns",
]

QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
QTYPES |= {"SRV": 33, "CAA": 257, "ANY": 255}
RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4, "REFUSED": 5}

_DURATION = "Duration of the DNS request by phase, in seconds."


def encode_name(name: str) -> bytes:
    """A domain name in wire format (no compression); raises ValueError for bad labels."""
    out = bytearray()
    for label in name.rstrip(".").split(".") if name.strip(".") else []:
        raw = label.encode("idna") if not label.isascii() else label.encode()
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad label in {name!r}")
        out += bytes([len(raw)]) + raw
    return bytes(out + b"\x00")


def encode_query(qid: int, name: str, qtype: int, recursion_desired: bool = True, qclass: int = 1) -> bytes:
    """A standard query with one question."""
    flags = 0x0100 if recursion_desired else 0
    return (
        struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 0) + encode_name(name) + struct.pack("!HH", qtype, qclass)
    )


@dataclass(frozen=True)
class ResourceRecord:
    name: str
    type: int
    rclass: int
    ttl: int
    rdata: bytes
    soa_serial: int | None = None


@dataclass(frozen=True)
class DNSResponse:
    id: int
    rcode: int
    truncated: bool
    answer: tuple[ResourceRecord, ...]
    authority: tuple[ResourceRecord, ...]
    additional: tuple[ResourceRecord, ...]


def _read_name(msg: bytes, pos: int) -> tuple[str, int]:
    """Decode a possibly compressed name at `pos`; returns it and the position after it."""
    labels: list[str] = []
    end = -1
    for _ in range(128):  # bounds pointer loops
        if pos >= len(msg):
            raise ValueError("name runs past the message")
        n = msg[pos]
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(msg):
                raise ValueError("truncated pointer")
            if end < 0:
                end = pos + 2
            pos = ((n & 0x3F) << 8) | msg[pos + 1]
            continue
        if n & 0xC0:
            raise ValueError("unsupported label type")
        if n == 0:
            return ".".join(labels) + ".", (end if end >= 0 else pos + 1)
        labels.append(msg[pos + 1 : pos + 1 + n].decode("ascii", errors="replace"))
        pos += 1 + n
    raise ValueError("compression loop")


def _records(msg: bytes, pos: int, count: int) -> tuple[list[ResourceRecord], int]:
    out: list[ResourceRecord] = []
    for _ in range(count):
        name, pos = _read_name(msg, pos)
        if pos + 10 > len(msg):
            raise ValueError("truncated record")
        rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", msg, pos)
        pos += 10
        if pos + rdlen > len(msg):
            raise ValueError("truncated record data")
        serial = None
        if rtype == QTYPES["SOA"]:
            _, p = _read_name(msg, pos)  # MNAME
            _, p = _read_name(msg, p)  # RNAME
            serial = struct.unpack_from("!I", msg, p)[0]
        out.append(ResourceRecord(name, rtype, rclass, ttl, msg[pos : pos + rdlen], serial))
        pos += rdlen
    return out, pos


def decode_response(msg: bytes) -> DNSResponse:
    """Parse a DNS response; raises ValueError when it is malformed."""
    try:
        if len(msg) < 12:
            raise ValueError("shorter than a DNS header")
        qid, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", msg, 0)
        if not flags & 0x8000:
            raise ValueError("not a response")
        pos = 12
        for _ in range(qd):
            _, pos = _read_name(msg, pos)
            pos += 4
            if pos > len(msg):
                raise ValueError("truncated question")
        answer, pos = _records(msg, pos, an)
        authority, pos = _records(msg, pos, ns)
        additional, pos = _records(msg, pos, ar)
    except struct.error as e:
        raise ValueError(f"truncated message: {e}") from None
    return DNSResponse(
        qid, flags & 0xF, bool(flags & 0x0200), tuple(answer), tuple(authority), tuple(additional)
    )


def probe_dns(config: ProbeConfig) -> ProbeResult:
    """Run one DNS probe; never raises."""
    return run_probe_step(_probe, config)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ProbeError("connection closed mid-response")
        data += chunk
    return data


def _probe(config: ProbeConfig, result: ProbeResult, started: float) -> bool:
    dc = config.dns
    deadline = started + config.timeout_seconds
    for phase in ("resolve", "connect", "request"):
        result.add("probe_dns_duration_seconds", _DURATION, 0, phase=phase)
    counts = {
        "probe_dns_answer_rrs": "Number of records in the answer section.",
        "probe_dns_authority_rrs": "Number of records in the authority section.",
        "probe_dns_additional_rrs": "Number of records in the additional section.",
        "probe_dns_query_succeeded": "Whether a response arrived (1) or not (0).",
    }
    for name, help in counts.items():
        result.gauge(name, help)
    target = config.target
    if target.count(":") == 1 or target.startswith("["):  # host:port; a bare IPv6 address has many colons
        host, _, port_text = target.rpartition(":")
        host, port = host.strip("[]"), int(port_text)
    else:
        host, port = target.strip("[]"), 53
    addr = resolve(result, host, config.ip_protocol, config.ip_protocol_fallback)
    result.add("probe_dns_duration_seconds", _DURATION, addr.lookup_seconds, phase="resolve")
    qtype = QTYPES[dc.query_type]
    qid = int.from_bytes(os.urandom(2), "big")
    query = encode_query(qid, dc.query_name, qtype, dc.recursion_desired)
    kind = socket.SOCK_DGRAM if dc.transport == "udp" else socket.SOCK_STREAM
    request_start = time.monotonic()
    rtt_start = request_start
    try:
        with socket.socket(addr.family, kind) as sock:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.connect((addr.ip, port))
            rtt_start = time.monotonic()
            if kind == socket.SOCK_DGRAM:
                sock.send(query)
                while True:  # skip stray datagrams that answer something else
                    sock.settimeout(max(deadline - time.monotonic(), 0.001))
                    data = sock.recv(65535)
                    if len(data) >= 2 and int.from_bytes(data[:2], "big") == qid:
                        break
            else:
                sock.sendall(struct.pack("!H", len(query)) + query)
                (length,) = struct.unpack("!H", _recv_exact(sock, 2))
                data = _recv_exact(sock, length)
    except OSError as e:
        raise ProbeError(f"DNS query to {addr.ip} port {port}: {e}") from None
    finally:
        now = time.monotonic()
        result.set("probe_dns_duration_seconds", _DURATION, rtt_start - request_start, phase="connect")
        result.set("probe_dns_duration_seconds", _DURATION, now - rtt_start, phase="request")
    try:
        response = decode_response(data)
    except ValueError as e:
        raise ProbeError(f"bad DNS response: {e}") from None
    result.set("probe_dns_answer_rrs", counts["probe_dns_answer_rrs"], len(response.answer))
    result.set("probe_dns_authority_rrs", counts["probe_dns_authority_rrs"], len(response.authority))
    result.set("probe_dns_additional_rrs", counts["probe_dns_additional_rrs"], len(response.additional))
    result.set("probe_dns_query_succeeded", counts["probe_dns_query_succeeded"], 1)
    if qtype == QTYPES["SOA"]:
        serials = [r.soa_serial for r in response.answer if r.soa_serial is not None]
        result.set(
            "probe_dns_serial", "Serial number of the zone (SOA queries).", serials[-1] if serials else 0
        )
    valid = {RCODES[c] for c in dc.valid_rcodes}
    if response.rcode not in valid:
        raise ProbeError(f"rcode {response.rcode} is not one of {', '.join(dc.valid_rcodes)}")
    return True
