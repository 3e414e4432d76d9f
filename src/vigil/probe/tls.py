"""Certificate inspection shared by the HTTP and TCP probers and by certificate files.

Parsing is a minimal, pure X.509 DER reader (`parse_certificate`): serial, issuer, subject, validity
and subjectAltName, the fields the metrics need, with no dependency beyond the standard library.
Names are rendered as Go's `pkix.Name.String()` does, so `probe_ssl_last_chain_info{subject,issuer}`
reads the same as blackbox_exporter's.

Handshakes verify first (CA file or the system store, and the host name). When verification fails
the presented chain is fetched again without verification, so an expired or misissued certificate
still reports its expiry; the probe fails unless `insecure_skip_verify` is set. Vigil adds
`vigil_probe_tls_chain_valid` and `vigil_probe_tls_hostname_valid` to say which check failed.
"""

from __future__ import annotations

import calendar
import hashlib
import ipaddress
import socket
import ssl
from _ssl import ENCODING_DER  # the C module's constant, which ssl does not re-export
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vigil.probe import ProbeError, ProbeResult

__all__ = [
    "GO_ZERO_TIME",
    "Certificate",
    "TLSOptions",
    "TLSState",
    "emit_tls",
    "hostname_matches",
    "make_context",
    "parse_certificate",
    "pem_certificates",
    "tls_state",
    "wrap",
]

# Go's time.Time{}.Unix(): what blackbox reports as the last chain expiry when nothing was verified.
GO_ZERO_TIME = -62135596800

X509_V_ERR_HOSTNAME_MISMATCH = 62


# --- DER ------------------------------------------------------------------------------------------


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the DER element at `pos`."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("high tag numbers are not used in certificates")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    pos = start
    while pos < end:
        tag, s, e = _tlv(data, pos)
        yield tag, s, e
        pos = e


def _oid(raw: bytes) -> str:
    if not raw:
        raise ValueError("empty OID")
    parts = [min(raw[0] // 40, 2), raw[0] - 40 * min(raw[0] // 40, 2)]
    n = 0
    for b in raw[1:]:
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(n)
            n = 0
    return ".".join(map(str, parts))


def _time(tag: int, raw: bytes) -> int:
    text = raw.decode("ascii")
    if not text.endswith("Z"):
        raise ValueError(f"expected a UTC time, got {text!r}")
    if tag == 0x17:  # UTCTime: two-digit year, 50-99 mean 19xx (RFC 5280 4.1.2.5.1)
        yy = int(text[:2])
        text = ("19" if yy >= 50 else "20") + text
    elif tag != 0x18:
        raise ValueError("expected UTCTime or GeneralizedTime")
    y, mo, d, h, mi, s = (int(text[i : i + n]) for i, n in ((0, 4), (4, 2), (6, 2), (8, 2), (10, 2), (12, 2)))
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))


_STRING_CODECS = {0x0C: "utf-8", 0x12: "ascii", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1"}
_STRING_CODECS |= {0x1E: "utf-16-be", 0x1C: "utf-32-be"}


@dataclass(frozen=True)
class Attribute:
    oid: str
    value: str


def _name(data: bytes, start: int, end: int) -> tuple[Attribute, ...]:
    out: list[Attribute] = []
    for _, rs, re_ in _children(data, start, end):  # RDN SETs
        for _, as_, ae in _children(data, rs, re_):  # AttributeTypeAndValue SEQUENCEs
            (_, os_, oe), (vtag, vs, ve) = list(_children(data, as_, ae))[:2]
            codec = _STRING_CODECS.get(vtag)
            value = data[vs:ve].decode(codec, errors="replace") if codec else ""
            out.append(Attribute(_oid(data[os_:oe]), value))
    return tuple(out)


# Go's pkix.Name: attributes it parses into fields, in ToRDNSequence's order, with String()'s names.
_GO_FIELDS = (
    ("2.5.4.6", "C"),
    ("2.5.4.8", "ST"),
    ("2.5.4.7", "L"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.17", "POSTALCODE"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.3", "CN"),
    ("2.5.4.5", "SERIALNUMBER"),
)
_GO_SINGLE = {"2.5.4.3", "2.5.4.5"}  # CommonName and SerialNumber keep only the last value
_PRINTABLE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?*&")


def _go_escape(value: str) -> str:
    raw = value.encode()
    out: list[str] = []
    pos = 0
    for ch in value:
        k = pos  # Go indexes by byte
        pos += len(ch.encode())
        if ch in ',+"\\<>;' or (ch == " " and (k == 0 or k == len(raw) - 1)) or (ch == "#" and k == 0):
            out.append("\\")
        out.append(ch)
    return "".join(out)


def _go_marshal(value: str) -> bytes:
    """Go's asn1.Marshal of a string: PrintableString when it can be, else UTF8String."""
    body = value.encode()
    tag = 0x13 if all(c in _PRINTABLE for c in value) else 0x0C
    n = len(body)
    length = (
        bytes([n])
        if n < 0x80
        else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    )
    return bytes([tag]) + length + body


def go_name_string(attrs: tuple[Attribute, ...]) -> str:
    """Render a Name the way Go's `pkix.Name.String()` does (what blackbox puts in its labels)."""
    known = dict(_GO_FIELDS)
    rdns: list[list[str]] = [[f"{a.oid}=#{_go_marshal(a.value).hex()}"] for a in attrs if a.oid not in known]
    for oid, short in _GO_FIELDS:
        values = [a.value for a in attrs if a.oid == oid]
        if oid in _GO_SINGLE:
            values = values[-1:] if values and values[-1] else []
        if values:
            rdns.append([f"{short}={_go_escape(v)}" for v in values])
    return ",".join("+".join(rdn) for rdn in reversed(rdns))


@dataclass(frozen=True)
class Certificate:
    """The fields of an X.509 certificate the probes report."""

    der: bytes
    serial: int
    issuer: tuple[Attribute, ...]
    subject: tuple[Attribute, ...]
    not_before: int  # unix seconds
    not_after: int
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]

    @property
    def subject_string(self) -> str:
        return go_name_string(self.subject)

    @property
    def issuer_string(self) -> str:
        return go_name_string(self.issuer)

    @property
    def fingerprint_sha256(self) -> str:
        return hashlib.sha256(self.der).hexdigest()


def parse_certificate(der: bytes) -> Certificate:
    """Parse a DER certificate. Raises ValueError on anything malformed."""
    try:
        _, cs, ce = _tlv(der, 0)
        _, ts, te = _tlv(der, cs)  # tbsCertificate
        fields = list(_children(der, ts, te))
        if fields and fields[0][0] == 0xA0:  # [0] version
            fields = fields[1:]
        (stag, ss, se), _sig, (_, is_, ie), (_, vs, ve), (_, sus, sue) = fields[:5]
        if stag != 0x02:
            raise ValueError("expected the serial number")
        (t1, b1, e1), (t2, b2, e2) = list(_children(der, vs, ve))[:2]
        dns: list[str] = []
        ips: list[str] = []
        for tag, s, _ in fields[6:]:
            if tag != 0xA3:  # [3] extensions
                continue
            _, xs, xe = _tlv(der, s)
            for _, es, ee in _children(der, xs, xe):
                parts = list(_children(der, es, ee))
                if _oid(der[parts[0][1] : parts[0][2]]) != "2.5.29.17":
                    continue
                _, os_, _oe = parts[-1]  # extnValue OCTET STRING
                _, gs, ge = _tlv(der, os_)
                for gtag, ns, ne in _children(der, gs, ge):
                    if gtag == 0x82:
                        dns.append(der[ns:ne].decode("ascii", errors="replace"))
                    elif gtag == 0x87 and ne - ns in (4, 16):
                        ips.append(str(ipaddress.ip_address(der[ns:ne])))
        return Certificate(
            der=bytes(der[:ce]),
            serial=int.from_bytes(der[ss:se], "big", signed=True),
            issuer=_name(der, is_, ie),
            subject=_name(der, sus, sue),
            not_before=_time(t1, der[b1:e1]),
            not_after=_time(t2, der[b2:e2]),
            dns_names=tuple(dns),
            ip_addresses=tuple(ips),
        )
    except (ValueError, IndexError, UnicodeDecodeError) as e:
        raise ValueError(f"not a valid X.509 certificate: {e}") from None


def pem_certificates(text: bytes) -> list[bytes]:
    """The DER bytes of every `CERTIFICATE` block in PEM text (other blocks, e.g. keys, skipped)."""
    out: list[bytes] = []
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    pos = 0
    while (start := text.find(begin, pos)) >= 0:
        stop = text.find(end, start)
        if stop < 0:
            break
        out.append(ssl.PEM_cert_to_DER_cert(text[start : stop + len(end)].decode("ascii")))
        pos = stop + len(end)
    return out


def hostname_matches(name: str, cert: Certificate) -> bool:
    """RFC 6125 matching of `name` against the subjectAltName (no CN fallback, like Go and Python).

    A wildcard only stands for the whole leftmost label (`*.example.com`), as OpenSSL's defaults
    in Python's ssl module allow; an IP address matches only an IP SAN.
    """
    try:
        ip = ipaddress.ip_address(name.strip("[]"))
        return any(ipaddress.ip_address(a) == ip for a in cert.ip_addresses)
    except ValueError:
        pass
    host = name.rstrip(".").lower()
    for pattern in (d.rstrip(".").lower() for d in cert.dns_names):
        if pattern == host:
            return True
        if pattern.startswith("*.") and "." in host:
            first, rest = host.split(".", 1)
            if first and rest == pattern[2:] and "*" not in rest:
                return True
    return False


# --- handshakes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TLSOptions:
    ca_file: Path | None = None
    insecure_skip_verify: bool = False
    server_name: str = ""


def make_context(opts: TLSOptions, verify: bool) -> ssl.SSLContext:
    if not verify:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if opts.ca_file is not None:
        return ssl.create_default_context(cafile=str(opts.ca_file))
    return ssl.create_default_context()


@dataclass(frozen=True)
class TLSState:
    """What a finished handshake showed: the chain as sent, the verified chain (empty when not
    verified), the protocol version and the two validity verdicts."""

    peer: tuple[Certificate, ...]
    verified: tuple[Certificate, ...]
    version: str
    chain_valid: bool
    hostname_valid: bool


def _chain(obj: object, verified: bool) -> list[bytes]:
    # Python 3.13 made get_(un)verified_chain public; 3.10-3.12 have them on the C object only.
    name = "get_verified_chain" if verified else "get_unverified_chain"
    for o in (obj, getattr(obj, "_sslobj", None)):
        fn = getattr(o, name, None)
        if fn is not None:
            chain = fn() or []
            return [c if isinstance(c, bytes) else c.public_bytes(ENCODING_DER) for c in chain]
    if verified:
        return []
    get = getattr(obj, "getpeercert", None)
    leaf = get(binary_form=True) if get is not None else None
    return [leaf] if leaf else []


def _go_version(version: str | None) -> str:
    return {"TLSv1": "TLS 1.0", "TLSv1.1": "TLS 1.1", "TLSv1.2": "TLS 1.2", "TLSv1.3": "TLS 1.3"}.get(
        version or "", "unknown"
    )


def tls_state(obj: ssl.SSLSocket | ssl.SSLObject | object, server_name: str, verified: bool) -> TLSState:
    """Read the state of a finished handshake (`verified`: it ran with verification on)."""
    peer = tuple(parse_certificate(d) for d in _chain(obj, verified=False))
    chain = tuple(parse_certificate(d) for d in _chain(obj, verified=True)) if verified else ()
    version_fn = getattr(obj, "version", None)
    version = version_fn() if version_fn is not None else None
    host_ok = verified or (bool(peer) and hostname_matches(server_name, peer[0]))
    return TLSState(peer, chain, _go_version(version), verified, host_ok)


def wrap(
    sock: socket.socket, opts: TLSOptions, server_name: str, timeout: float
) -> tuple[ssl.SSLSocket, TLSState]:
    """TLS handshake on a connected socket, verifying first (see the module docstring).

    Returns the TLS socket and its state; raises ProbeError when the handshake fails, or when
    verification fails and `insecure_skip_verify` is off (the state is then in the exception's
    `state` attribute for the caller to report)."""
    sni = opts.server_name or server_name
    sock.settimeout(timeout)
    try:
        tls = make_context(opts, verify=True).wrap_socket(sock, server_hostname=sni)
        return tls, tls_state(tls, sni, verified=True)
    except ssl.SSLCertVerificationError as e:
        failure = e
    except (OSError, ssl.SSLError) as e:
        sock.close()
        raise ProbeError(f"TLS handshake: {e}") from None
    sock.close()
    raise TLSVerifyError(failure)


class TLSVerifyError(ProbeError):
    """Verification failed; `code` is OpenSSL's verify code (62: host name mismatch)."""

    def __init__(self, err: ssl.SSLCertVerificationError) -> None:
        super().__init__(f"TLS verification: {err.verify_message or err}")
        self.code = int(err.verify_code or 0)


def unverified_state(
    sock: socket.socket, opts: TLSOptions, server_name: str, timeout: float, code: int
) -> tuple[ssl.SSLSocket, TLSState]:
    """Handshake without verification after `TLSVerifyError` (a fresh connection in `sock`)."""
    sni = opts.server_name or server_name
    sock.settimeout(timeout)
    try:
        tls = make_context(opts, verify=False).wrap_socket(sock, server_hostname=sni)
    except (OSError, ssl.SSLError) as e:
        sock.close()
        raise ProbeError(f"TLS handshake: {e}") from None
    state = tls_state(tls, sni, verified=False)
    # A host name mismatch means the chain itself verified.
    chain_ok = code == X509_V_ERR_HOSTNAME_MISMATCH
    host_ok = False if chain_ok else state.hostname_valid
    return tls, TLSState(state.peer, (), state.version, chain_ok, host_ok)


def emit_tls(result: ProbeResult, state: TLSState) -> None:
    """The TLS families blackbox emits after a handshake, plus Vigil's two validity gauges."""
    peer = state.peer
    earliest = min((c.not_after for c in peer), default=GO_ZERO_TIME)
    # Go: the latest of the verified chains' earliest expiries; Python exposes the one chain OpenSSL built.
    last_chain = min((c.not_after for c in state.verified), default=GO_ZERO_TIME)
    result.set(
        "probe_ssl_earliest_cert_expiry",
        "Earliest expiry (unix seconds) of the certificates the server presented.",
        earliest,
    )
    result.set("probe_tls_version_info", "The TLS version the connection used.", 1, version=state.version)
    result.set(
        "probe_ssl_last_chain_expiry_timestamp_seconds",
        "Earliest expiry (unix seconds) within the verified chain.",
        last_chain,
    )
    if peer:
        leaf = peer[0]
        result.set(
            "probe_ssl_last_chain_info",
            "The leaf certificate the server presented, as labels.",
            1,
            fingerprint_sha256=leaf.fingerprint_sha256,
            subject=leaf.subject_string,
            issuer=leaf.issuer_string,
            subjectalternative=",".join(leaf.dns_names),
        )
    result.set(
        "vigil_probe_tls_chain_valid",
        "Whether the presented chain verified against the trusted CAs (1) or not (0).",
        1 if state.chain_valid else 0,
    )
    result.set(
        "vigil_probe_tls_hostname_valid",
        "Whether the leaf certificate is valid for the probed host name (1) or not (0).",
        1 if state.hostname_valid else 0,
    )
