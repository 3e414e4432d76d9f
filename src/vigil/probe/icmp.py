"""ICMP prober: one echo request, over an unprivileged ICMP socket when the kernel allows it
(`net.ipv4.ping_group_range` covers our group) or else a raw socket (root or CAP_NET_RAW).

Families, as blackbox_exporter 0.23's `icmp` prober: probe_icmp_duration_seconds{phase=resolve|
setup|rtt}, probe_icmp_reply_hop_limit (when a reply arrived) and the resolution families of
`vigil.probe.resolve`. When neither socket kind is permitted the probe fails with that reason.
"""

from __future__ import annotations

import os
import socket
import struct
import time

from vigil.config.probes import ProbeConfig
from vigil.probe import ProbeError, ProbeResult, resolve, run_probe_step

__all__ = ["checksum", "echo_request", "parse_reply", "probe_icmp"]

_DURATION = "Duration of the ICMP echo by phase, in seconds."
_HOP_LIMIT = "Hop limit (IPv4 TTL) of the echo reply."
_PAYLOAD = b"Vigil ICMP probe"
_IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)  # Linux value; Python 3.11 lacks the constant


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))  # unpack is typed tuple[Any, ...]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes, v6: bool) -> bytes:
    """An echo request; the IPv6 checksum is left to the kernel (it covers a pseudo-header)."""
    kind = 128 if v6 else 8
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if v6:
        return header + payload
    return struct.pack("!BBHHH", kind, 0, checksum(header + payload), ident, seq) + payload


def parse_reply(packet: bytes, v6: bool, with_ip_header: bool) -> tuple[int, int, int, bytes, int | None]:
    """(type, id, seq, payload, IPv4 TTL or None) of an ICMP packet; raises ValueError if too short."""
    ttl: int | None = None
    if with_ip_header:  # raw IPv4 sockets deliver the IP header too
        if len(packet) < 20:
            raise ValueError("short IP packet")
        ttl = packet[8]
        packet = packet[(packet[0] & 0x0F) * 4 :]
    if len(packet) < 8:
        raise ValueError("short ICMP packet")
    kind, _, _, ident, seq = struct.unpack_from("!BBHHH", packet)
    return kind, ident, seq, packet[8:], ttl


def _open(family: socket.AddressFamily) -> tuple[socket.socket, bool]:
    """(socket, privileged). Tries the unprivileged kind first, as blackbox does on Linux."""
    proto = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
    try:
        return socket.socket(family, socket.SOCK_DGRAM, proto), False
    except OSError:
        pass
    try:
        return socket.socket(family, socket.SOCK_RAW, proto), True
    except OSError as e:
        raise ProbeError(
            f"ICMP not permitted ({e.strerror}): run as root, grant CAP_NET_RAW, "
            "or widen net.ipv4.ping_group_range"
        ) from None


def probe_icmp(config: ProbeConfig) -> ProbeResult:
    """Run one ICMP echo probe; never raises."""
    return run_probe_step(_probe, config)


def _probe(config: ProbeConfig, result: ProbeResult, started: float) -> bool:
    deadline = started + config.timeout_seconds
    for phase in ("resolve", "setup", "rtt"):
        result.add("probe_icmp_duration_seconds", _DURATION, 0, phase=phase)
    addr = resolve(result, config.target.strip("[]"), config.ip_protocol, config.ip_protocol_fallback)
    result.add("probe_icmp_duration_seconds", _DURATION, addr.lookup_seconds, phase="resolve")
    v6 = addr.family == socket.AF_INET6
    setup_start = time.monotonic()
    sock, privileged = _open(addr.family)
    with sock:
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        elif not privileged:
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)
        ident = int.from_bytes(os.urandom(2), "big")
        seq = int.from_bytes(os.urandom(2), "big")
        payload = _PAYLOAD + os.urandom(config.icmp.payload_size)
        packet = echo_request(ident, seq, payload, v6)
        result.add("probe_icmp_duration_seconds", _DURATION, time.monotonic() - setup_start, phase="setup")
        rtt_start = time.monotonic()
        try:
            sock.sendto(packet, (addr.ip, 0))
            while True:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                data, ancillary, _, _ = sock.recvmsg(65535, socket.CMSG_SPACE(4))
                try:
                    kind, rid, rseq, rpayload, ttl = parse_reply(data, v6, privileged and not v6)
                except ValueError:
                    continue
                # Unprivileged sockets get their id rewritten by the kernel, which also filters replies.
                if kind != (129 if v6 else 0) or rseq != seq or rpayload != payload:
                    continue
                if privileged and rid != ident:
                    continue
                break
        except OSError as e:
            raise ProbeError(f"ICMP echo to {addr.ip}: {e}") from None
        result.add("probe_icmp_duration_seconds", _DURATION, time.monotonic() - rtt_start, phase="rtt")
        for level, kind_, value in ancillary:
            if (level, kind_) in (
                (socket.IPPROTO_IP, socket.IP_TTL),
                (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT),
            ):
                ttl = struct.unpack("=i", value[:4])[0] if len(value) >= 4 else value[0]  # a native int
        if ttl is not None:
            result.set("probe_icmp_reply_hop_limit", _HOP_LIMIT, ttl)
    return True
