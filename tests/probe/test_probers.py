"""Probers against local services only (127.0.0.1): HTTP(S) with trustme certificates, a TCP listener,
a tiny UDP DNS server written here, and ICMP echo to 127.0.0.1. The fixtures are reused by the
blackbox parity test."""

from __future__ import annotations

import contextlib
import http.server
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.waiting import returns
from vigil.config.probes import ProbeConfig
from vigil.probe import ProbeResult, fnv32a
from vigil.probe.collector import run_probe
from vigil.probe.dns import QTYPES, encode_name
from vigil.probe.tls import parse_certificate, pem_certificates

BODY = b"<html>status: ok</html>"
SOA_SERIAL = 2024010101


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/slow":
            time.sleep(30.0)  # far past any probe's timeout: a probe that waits for it fails
        status = 404 if self.path == "/missing" else 200
        self.send_response(status)
        self.send_header("Content-Length", str(len(BODY)))
        self.send_header("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Servers:
    http_port: int
    https_port: int
    tcp_port: int
    dns_port: int
    ca_file: Path
    leaf_pem: bytes


def _serve_http(tls: ssl.SSLContext | None) -> http.server.ThreadingHTTPServer:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    if tls is not None:
        srv.socket = tls.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def dns_answer(query: bytes) -> bytes:
    """A tiny authoritative server for `test.`: A and SOA answers, NXDOMAIN for anything else."""
    qid = query[:2]
    pos = 12
    labels = []
    while query[pos]:
        labels.append(query[pos + 1 : pos + 1 + query[pos]].decode())
        pos += 1 + query[pos]
    qtype = struct.unpack_from("!H", query, pos + 1)[0]
    question = query[12 : pos + 5]
    name = ".".join(labels)
    answers: list[bytes] = []
    rcode = 0
    if name == "host.test" and qtype in (QTYPES["A"], QTYPES["ANY"]):
        answers.append(b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("127.0.0.1"))
    elif name == "test" and qtype == QTYPES["SOA"]:
        rdata = encode_name("ns.test") + b"\xc0\x0c" + struct.pack("!IIIII", SOA_SERIAL, 3600, 600, 86400, 60)
        answers.append(b"\xc0\x0c" + struct.pack("!HHIH", 6, 1, 60, len(rdata)) + rdata)
    elif name != "test" and name != "host.test":
        rcode = 3
    flags = 0x8400 | rcode  # response, authoritative
    header = qid + struct.pack("!HHHHH", flags, 1, len(answers), 0, 0)
    return header + question + b"".join(answers)


def _serve_dns(stop: threading.Event) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)

    def loop() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            sock.sendto(dns_answer(data), peer)

    threading.Thread(target=loop, daemon=True).start()
    return sock


def _serve_tcp(stop: threading.Event) -> socket.socket:
    sock = socket.create_server(("127.0.0.1", 0))
    sock.settimeout(0.1)

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(b"220 hello vigil\r\n")
                    conn.settimeout(1)
                    conn.recv(100)
                except OSError:
                    pass

    threading.Thread(target=loop, daemon=True).start()
    return sock


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(ctx)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    stop = threading.Event()
    plain, secure = _serve_http(None), _serve_http(ctx)
    dns, tcp = _serve_dns(stop), _serve_tcp(stop)
    yield Servers(
        plain.server_port,
        secure.server_port,
        tcp.getsockname()[1],
        dns.getsockname()[1],
        ca_file,
        leaf.cert_chain_pems[0].bytes(),
    )
    stop.set()
    for srv in (plain, secure):
        srv.shutdown()
        srv.server_close()
    dns.close()
    tcp.close()


def probe(**kw: Any) -> ProbeResult:
    return run_probe(ProbeConfig.model_validate({"name": "t", "timeout": "3s", **kw}))


def value(r: ProbeResult, name: str, **labels: str) -> float:
    fam = r.families[name]
    return fam.samples[tuple(labels[n] for n in fam.labelnames)]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- HTTP -----------------------------------------------------------------------------------------


def test_http_success_reports_blackbox_families(servers: Servers) -> None:
    r = probe(module="http", target=f"http://127.0.0.1:{servers.http_port}/")
    assert r.success, r.error
    assert value(r, "probe_success") == 1
    assert value(r, "probe_http_status_code") == 200
    assert value(r, "probe_http_content_length") == len(BODY)
    assert value(r, "probe_http_uncompressed_body_length") == len(BODY)
    assert value(r, "probe_http_version") == 1.1
    assert value(r, "probe_http_ssl") == 0
    assert value(r, "probe_http_redirects") == 0
    assert value(r, "probe_http_last_modified_timestamp_seconds") == 1445412480
    assert value(r, "probe_ip_protocol") == 4
    assert value(r, "probe_ip_addr_hash") == fnv32a(socket.inet_aton("127.0.0.1"))
    phases = r.families["probe_http_duration_seconds"].samples
    assert {k[0] for k in phases} == {"resolve", "connect", "tls", "processing", "transfer"}
    assert phases[("connect",)] > 0 and phases[("tls",)] == 0
    assert 0 < sum(phases.values()) <= value(r, "probe_duration_seconds")
    assert "probe_ssl_earliest_cert_expiry" not in r.families


def test_http_redirect_status_and_regex(servers: Servers) -> None:
    base = f"http://127.0.0.1:{servers.http_port}"
    r = probe(module="http", target=base + "/redirect")
    assert r.success and value(r, "probe_http_redirects") == 1

    r = probe(module="http", target=base + "/missing")
    assert not r.success and value(r, "probe_http_status_code") == 404
    r = probe(module="http", target=base + "/missing", http={"valid_status_codes": [404]})
    assert r.success

    r = probe(
        module="http", target=base + "/", http={"fail_if_body_not_matches_regexp": ["status: (ok|fine)"]}
    )
    assert r.success and value(r, "probe_failed_due_to_regex") == 0
    r = probe(module="http", target=base + "/", http={"fail_if_body_matches_regexp": ["status: ok"]})
    assert not r.success and value(r, "probe_failed_due_to_regex") == 1
    assert "regexp" in r.error


def test_https_verified_chain_and_certificate_families(servers: Servers) -> None:
    leaf = parse_certificate(pem_certificates(servers.leaf_pem)[0])
    r = probe(
        module="http",
        target=f"https://localhost:{servers.https_port}/",
        tls={"ca_file": str(servers.ca_file)},
    )
    assert r.success, r.error
    assert value(r, "probe_http_ssl") == 1
    assert value(r, "probe_ssl_earliest_cert_expiry") == leaf.not_after
    assert value(r, "probe_ssl_last_chain_expiry_timestamp_seconds") == leaf.not_after
    assert value(r, "vigil_probe_tls_chain_valid") == 1
    assert value(r, "vigil_probe_tls_hostname_valid") == 1
    (labels,) = r.families["probe_ssl_last_chain_info"].samples
    assert labels == (leaf.fingerprint_sha256, leaf.subject_string, leaf.issuer_string, "localhost")
    assert r.families["probe_http_duration_seconds"].samples[("tls",)] > 0
    (version,) = r.families["probe_tls_version_info"].samples
    assert version[0].startswith("TLS 1.")


def test_https_untrusted_fails_but_reports_expiry(servers: Servers) -> None:
    target = f"https://127.0.0.1:{servers.https_port}/"
    r = probe(module="http", target=target)  # the trustme CA is not in the system store
    assert not r.success and "verif" in r.error
    assert value(r, "probe_http_status_code") == 0
    assert value(r, "vigil_probe_tls_chain_valid") == 0
    assert value(r, "probe_ssl_earliest_cert_expiry") > time.time()

    r = probe(module="http", target=target, tls={"insecure_skip_verify": True})
    assert r.success, r.error
    assert value(r, "probe_http_status_code") == 200
    assert value(r, "vigil_probe_tls_chain_valid") == 0


def test_http_timeout_is_honoured(servers: Servers) -> None:
    # /slow answers after 30 s: ending before that (a generous deadline, not a measured time) with a
    # timeout error is the timeout being honoured.
    target = f"http://127.0.0.1:{servers.http_port}/slow"
    r = returns(lambda: probe(module="http", target=target, timeout="300ms"), timeout=25)
    assert not r.success and "timeout" in r.error.lower(), r.error
    assert value(r, "probe_http_status_code") == 0


def test_http_connection_refused() -> None:
    r = probe(module="http", target=f"127.0.0.1:{_closed_port()}")
    assert not r.success and value(r, "probe_http_status_code") == 0


# --- TCP / TLS ------------------------------------------------------------------------------------


def test_tcp_connect_and_dialogue(servers: Servers) -> None:
    r = probe(module="tcp", target=f"127.0.0.1:{servers.tcp_port}")
    assert r.success, r.error
    assert set(r.families) >= {"probe_success", "probe_ip_protocol", "probe_failed_due_to_regex"}
    r = probe(
        module="tcp",
        target=f"127.0.0.1:{servers.tcp_port}",
        tcp={"query_response": [{"expect": "^220 hello"}, {"send": "QUIT"}]},
    )
    assert r.success, r.error
    r = probe(
        module="tcp", target=f"127.0.0.1:{servers.tcp_port}", tcp={"query_response": [{"expect": "^500"}]}
    )
    assert not r.success and value(r, "probe_failed_due_to_regex") == 1
    r = probe(module="tcp", target=f"127.0.0.1:{_closed_port()}")
    assert not r.success and "connect" in r.error


def test_tls_module_hostname_mismatch(servers: Servers) -> None:
    tls = {"ca_file": str(servers.ca_file)}
    r = probe(module="tls", target=f"localhost:{servers.https_port}", tls=tls)
    assert r.success, r.error
    r = probe(
        module="tls", target=f"127.0.0.1:{servers.https_port}", tls={**tls, "server_name": "wrong.example"}
    )
    assert not r.success
    assert value(r, "vigil_probe_tls_chain_valid") == 1
    assert value(r, "vigil_probe_tls_hostname_valid") == 0
    assert value(r, "probe_ssl_last_chain_expiry_timestamp_seconds") == -62135596800  # Go's zero time


# --- DNS ------------------------------------------------------------------------------------------


def test_dns_answers_serial_and_rcodes(servers: Servers) -> None:
    target = f"127.0.0.1:{servers.dns_port}"
    r = probe(module="dns", target=target, dns={"query_name": "host.test", "query_type": "A"})
    assert r.success, r.error
    assert value(r, "probe_dns_answer_rrs") == 1
    assert value(r, "probe_dns_authority_rrs") == 0
    assert value(r, "probe_dns_query_succeeded") == 1
    assert {k[0] for k in r.families["probe_dns_duration_seconds"].samples} == {
        "resolve",
        "connect",
        "request",
    }
    assert "probe_dns_serial" not in r.families

    r = probe(module="dns", target=target, dns={"query_name": "test", "query_type": "soa"})
    assert r.success and value(r, "probe_dns_serial") == SOA_SERIAL

    r = probe(module="dns", target=target, dns={"query_name": "nope.example", "query_type": "A"})
    assert not r.success and value(r, "probe_dns_query_succeeded") == 1
    r = probe(module="dns", target=target, dns={"query_name": "nope.example", "valid_rcodes": ["NXDOMAIN"]})
    assert r.success


def test_dns_no_answer_times_out_for_the_whole_probe() -> None:
    """A server that never answers the query but keeps sending stray datagrams (wrong query id) every
    50 ms: the probe's timeout is for the whole probe, not per read, so it ends; the count of strays
    sent until it hung up stays small (a per-read timeout would never end)."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    srv.settimeout(0.05)
    stop = threading.Event()
    strays = [0]

    def serve() -> None:
        peer = None
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                query, peer = srv.recvfrom(512)
            if peer is not None:
                srv.sendto(bytes([query[0] ^ 0xFF, query[1]]) + query[2:], peer)
                strays[0] += 1

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        target = f"127.0.0.1:{srv.getsockname()[1]}"
        r = returns(lambda: probe(module="dns", target=target, timeout="300ms", dns={"query_name": "x.test"}))
    finally:
        stop.set()
        thread.join()
        srv.close()
    assert not r.success and "timed out" in r.error, r.error
    assert value(r, "probe_dns_query_succeeded") == 0
    assert 0 < strays[0] < 100, strays  # 50 ms apart: 100 is 5 s of strays, for a 300 ms timeout


# --- ICMP -----------------------------------------------------------------------------------------


def test_icmp_localhost() -> None:
    r = probe(module="icmp", target="127.0.0.1")
    if not r.success and "not permitted" in r.error:
        pytest.skip(r.error)
    assert r.success, r.error
    assert {k[0] for k in r.families["probe_icmp_duration_seconds"].samples} == {"resolve", "setup", "rtt"}
    assert value(r, "probe_icmp_reply_hop_limit") == 64
