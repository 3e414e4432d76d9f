"""Pure parts of the probes: DNS codec, certificate parsing and names, ICMP packets, cert files,
the configuration schema and the collector's scheduling and labels."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import BaseModel, ValidationError

from tests.waiting import wait_until
from vigil.config.probes import CertificatesConfig, ProbeConfig, Probes
from vigil.config.validate import error_message, key_path
from vigil.probe import fnv32a
from vigil.probe.certfile import inspect_files
from vigil.probe.collector import ProbesCollector
from vigil.probe.dns import decode_response, encode_query
from vigil.probe.icmp import checksum, echo_request, parse_reply
from vigil.probe.tls import go_name_string, hostname_matches, parse_certificate, pem_certificates

# --- DNS codec ------------------------------------------------------------------------------------


def test_dns_query_encoding() -> None:
    q = encode_query(0x1234, "example.com", 1)
    assert q == bytes.fromhex("123401000001000000000000") + b"\x07example\x03com\x00\x00\x01\x00\x01"
    assert encode_query(1, "example.com.", 6, recursion_desired=False)[2:4] == b"\x00\x00"


def test_dns_response_decoding_with_compression() -> None:
    from tests.probe.test_probers import SOA_SERIAL, dns_answer

    resp = decode_response(dns_answer(encode_query(7, "test", 6)))
    assert (resp.id, resp.rcode, len(resp.answer)) == (7, 0, 1)
    assert resp.answer[0].name == "test." and resp.answer[0].soa_serial == SOA_SERIAL
    assert decode_response(dns_answer(encode_query(8, "x.example", 1))).rcode == 3


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 11,
        bytes.fromhex("0001") + b"\x00" * 10,
        bytes.fromhex("000180000001000000000000c00c"),  # a name pointing at itself,
    ],
)
def test_dns_malformed_responses_are_value_errors(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_response(data)


# --- certificates ---------------------------------------------------------------------------------


def _self_signed(subject: x509.Name, sans: list[x509.GeneralName]) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(0xABCDEF)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_parse_certificate_fields_and_go_names() -> None:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme, Inc"),
            x509.NameAttribute(NameOID.COMMON_NAME, " web+1 "),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@b.c"),
        ]
    )
    import ipaddress

    der = _self_signed(
        subject, [x509.DNSName("*.example.com"), x509.IPAddress(ipaddress.ip_address("10.0.0.1"))]
    )
    c = parse_certificate(der)
    assert c.serial == 0xABCDEF
    assert c.not_after == int(datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC).timestamp())
    assert c.not_after - c.not_before == 86400
    assert c.dns_names == ("*.example.com",) and c.ip_addresses == ("10.0.0.1",)
    # Go: known attributes in fixed order, reversed; others as OID=#<DER hex>; RFC 4514 escaping.
    email = "1.2.840.113549.1.9.1=#0c056140622e63"
    assert c.subject_string == f"CN=\\ web\\+1\\ ,O=Acme\\, Inc,C=DE,{email}"
    assert c.issuer_string == c.subject_string
    assert hostname_matches("www.example.com", c) and not hostname_matches("a.b.example.com", c)
    assert not hostname_matches("example.com", c)
    assert hostname_matches("10.0.0.1", c) and not hostname_matches("10.0.0.2", c)


def test_parse_certificate_rejects_garbage() -> None:
    with pytest.raises(ValueError, match=r"X\.509"):
        parse_certificate(b"\x30\x03\x02\x01")
    assert go_name_string(()) == ""


# --- ICMP packets ---------------------------------------------------------------------------------


def test_icmp_packets() -> None:
    req = echo_request(0x1234, 7, b"abc", v6=False)
    assert checksum(req) == 0  # a correct checksum sums to zero
    reply = bytes([0]) + req[1:]
    assert parse_reply(reply, v6=False, with_ip_header=False) == (0, 0x1234, 7, b"abc", None)
    ip_header = bytes([0x45]) + b"\x00" * 7 + bytes([61]) + b"\x00" * 11
    assert parse_reply(ip_header + reply, v6=False, with_ip_header=True)[4] == 61
    assert fnv32a(bytes([127, 0, 0, 1])) == 3668918509


# --- certificate files ----------------------------------------------------------------------------


def test_certificate_files(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("example.test")
    (tmp_path / "a").mkdir()
    chain = b"".join(p.bytes() for p in leaf.cert_chain_pems) + ca.cert_pem.bytes()
    (tmp_path / "a" / "chain.pem").write_bytes(leaf.private_key_pem.bytes() + chain)
    (tmp_path / "broken.pem").write_text("not a certificate")
    result, errors = inspect_files([f"{tmp_path}/**/*.pem"])
    good, bad = str(tmp_path / "a" / "chain.pem"), str(tmp_path / "broken.pem")
    assert result.families["vigil_cert_files_matched"].samples[()] == 2
    assert result.families["vigil_cert_file_valid"].samples == {(good,): 1, (bad,): 0}
    assert len(errors) == 1 and bad in errors[0]
    certs = [parse_certificate(d) for d in pem_certificates(chain)]
    expiry = result.families["vigil_cert_file_earliest_expiry_timestamp_seconds"].samples
    assert expiry == {(good,): min(c.not_after for c in certs)}
    series = result.families["vigil_cert_not_after_timestamp_seconds"].samples
    assert len(series) == 2  # leaf + CA, the CA listed twice collapses to one series
    assert (good, certs[0].subject_string, certs[0].issuer_string, format(certs[0].serial, "x")) in series

    _, errors = inspect_files([f"{tmp_path}/**/*.pem"], max_files=1)
    assert "matched 2 files" in errors[0]


# --- configuration --------------------------------------------------------------------------------


class _Agent(BaseModel):
    probes: Probes = ()
    certificates: CertificatesConfig = CertificatesConfig()


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as exc:
        _Agent.model_validate(data)
    err = exc.value.errors()[0]
    return f"{key_path(tuple(err['loc']))}: {error_message(err, _Agent)}"


def test_config_defaults_and_shapes() -> None:
    cfg = _Agent.model_validate(
        {
            "probes": [
                {"name": "web", "module": "http", "target": "https://example.com/x", "interval": "5s"},
                {
                    "name": "dns",
                    "module": "dns",
                    "target": "9.9.9.9",
                    "dns": {"query_name": "a.b", "query_type": "mx"},
                },
            ],
            "certificates": {"files": ["/etc/ssl/*.pem"]},
        }
    )
    web, dns = cfg.probes
    assert web.interval == 5000 and web.timeout_seconds == 5.0  # default 10s shortened to the interval
    assert web.http.valid_status_codes == () and web.ip_protocol == "ip6"
    assert dns.dns.query_type == "MX" and dns.dns.valid_rcodes == ("NOERROR",)
    assert cfg.certificates.interval == 60_000


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"probes": [{"name": "a", "module": "ftp", "target": "x"}]},
            "probes[0].module: expected one of http, tcp",
        ),
        (
            {"probes": [{"name": "a", "module": "tcp", "target": "example.com"}]},
            "expected a target for module tcp",
        ),
        (
            {"probes": [{"name": "a", "module": "dns", "target": "1.1.1.1"}]},
            "module dns needs dns.query_name",
        ),
        (
            {
                "probes": [
                    {"name": "a", "module": "http", "target": "x", "http": {"valid_status_codes": [99]}}
                ]
            },
            "probes[0].http.valid_status_codes[0]: expected an HTTP status code from 100 to 599, got 99",
        ),
        (
            {
                "probes": [
                    {
                        "name": "a",
                        "module": "http",
                        "target": "x",
                        "http": {"fail_if_body_matches_regexp": ["("]},
                    }
                ]
            },
            "probes[0].http.fail_if_body_matches_regexp[0]: expected a valid RE2 regular expression",
        ),
        (
            {"probes": [{"name": "a", "module": "http", "target": "x", "interval": "1s", "timeout": "2s"}]},
            "timeout must not be greater than interval",
        ),
        (
            {"probes": [{"name": "a", "module": "icmp", "target": "h", "icmp": {"ttl": 3}}]},
            "probes[0].icmp.ttl: unknown key",
        ),
        (
            {
                "probes": [
                    {"name": "a", "module": "icmp", "target": "h"},
                    {"name": "a", "module": "icmp", "target": "g"},
                ]
            },
            'probes: expected unique probe names, got "a" twice',
        ),
        (
            {"certificates": {"files": ["relative/*.pem"]}},
            "certificates.files[0]: expected an absolute path or glob",
        ),
    ],
)
def test_config_errors_name_the_key(data: dict[str, Any], message: str) -> None:
    assert message in _error(data)


# --- collector ------------------------------------------------------------------------------------


def _render(collector: ProbesCollector) -> str:
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


def test_collector_labels_and_background_schedule(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tests.probe.test_probers import _closed_port

    down = ProbeConfig(name="down", module="tcp", target=f"127.0.0.1:{_closed_port()}", interval="100ms")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    collector = ProbesCollector([down], CertificatesConfig(files=[f"{tmp_path}/*.pem"]))
    assert _render(collector) == ""  # nothing before the first run
    recorded = [0]  # runs of "down" whose outcome was recorded (and logged, or not)
    record = collector._record

    def counting(job: Any, outcome: Any) -> None:
        record(job, outcome)
        recorded[0] += job.key == "down"

    collector._record = counting  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO), collector:
        # Several runs, counted rather than slept for: the failure is logged once, not every run.
        wait_until(lambda: recorded[0] >= 4, what="four runs of the probe")
    text = _render(collector)
    assert f'probe_success{{probe="down",target="{down.target}"}} 0.0' in text
    assert 'vigil_cert_file_valid{path="' in text
    failures = [r for r in caplog.records if "probe 'down' failed" in r.getMessage()]
    assert len(failures) == 1


def test_collector_never_raises_from_collect() -> None:
    bad = ProbeConfig(name="x", module="http", target="http://name.invalid/", ip_protocol="ip4", timeout="1s")
    collector = ProbesCollector([bad])
    collector._jobs[0].run = lambda: (_ for _ in ()).throw(RuntimeError("boom"))  # type: ignore[method-assign]
    collector.run_once()
    assert list(collector.collect()) == []  # the failed run left an empty result, and collect is fine
