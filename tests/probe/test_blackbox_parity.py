"""Parity of Vigil's probers with Debian's prometheus-blackbox-exporter (0.23) on the same local targets.

blackbox_exporter runs on a free loopback port with one module per Vigil module, and is asked to
probe the services of `test_probers` (all on 127.0.0.1). Vigil runs the same probes through
`ProbesCollector`, rendered by prometheus_client. For each module:

- the same family names, with the same types, apart from Vigil's own `vigil_` families;
- the same label names per family, once Vigil's `probe`/`target` labels are set aside;
- equal values where they are deterministic (success, status code, lengths, certificate expiry and
  leaf labels, DNS counts and serial, IP protocol and hash, ICMP hop limit).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, require_binary, wait_http
from tests.probe.test_probers import Servers, servers  # noqa: F401 - the fixture
from vigil.config.probes import ProbeConfig
from vigil.probe.collector import ProbesCollector

pytestmark = pytest.mark.peer

# Families one side has and the other deliberately lacks, with the reason.
VIGIL_ONLY = {
    "vigil_probe_tls_chain_valid": "Vigil says which TLS check failed; blackbox only fails the probe",
    "vigil_probe_tls_hostname_valid": "Vigil says which TLS check failed; blackbox only fails the probe",
}
BLACKBOX_ONLY: dict[str, str] = {}

# Values that must agree exactly (timings and the like are not deterministic).
EXACT = {
    "probe_success",
    "probe_http_status_code",
    "probe_http_content_length",
    "probe_http_uncompressed_body_length",
    "probe_http_redirects",
    "probe_http_ssl",
    "probe_http_version",
    "probe_http_last_modified_timestamp_seconds",
    "probe_failed_due_to_regex",
    "probe_ssl_earliest_cert_expiry",
    "probe_ssl_last_chain_expiry_timestamp_seconds",
    "probe_ssl_last_chain_info",
    "probe_tls_version_info",
    "probe_ip_protocol",
    "probe_ip_addr_hash",
    "probe_dns_answer_rrs",
    "probe_dns_authority_rrs",
    "probe_dns_additional_rrs",
    "probe_dns_query_succeeded",
    "probe_dns_serial",
    "probe_icmp_reply_hop_limit",
}

Series = dict[frozenset[tuple[str, str]], float]
Families = dict[str, tuple[str, set[frozenset[str]], Series]]  # name -> (type, label-name sets, series)


def parse(text: str, probe: str | None = None) -> Families:
    out: Families = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = dict(s.labels)
            if probe is not None:
                if labels.pop("probe", None) != probe:
                    continue
                labels.pop("target", None)
            _, names, series = out.setdefault(fam.name, (fam.type, set(), {}))
            names.add(frozenset(labels))
            series[frozenset(labels.items())] = s.value
    return out


def _modules(srv: Servers) -> dict[str, tuple[str, str, dict[str, object]]]:
    """module name -> (blackbox target, blackbox module YAML, Vigil probe config)."""
    ca = str(srv.ca_file)
    http = f"127.0.0.1:{srv.http_port}"
    tls = f"{{preferred_ip_protocol: ip4, tls: true, tls_config: {{ca_file: '{ca}'}}}}"
    return {
        "http_2xx": (
            f"http://{http}/",
            "{prober: http, http: {preferred_ip_protocol: ip4}}",
            {"module": "http"},
        ),
        "http_redirect": (
            f"http://{http}/redirect",
            "{prober: http, http: {preferred_ip_protocol: ip4}}",
            {"module": "http"},
        ),
        "http_regex": (
            f"http://{http}/",
            "{prober: http, http: {preferred_ip_protocol: ip4, fail_if_body_matches_regexp: ['status: ok']}}",
            {"module": "http", "http": {"fail_if_body_matches_regexp": ["status: ok"]}},
        ),
        "https": (
            f"https://localhost:{srv.https_port}/",
            f"{{prober: http, http: {{preferred_ip_protocol: ip4, tls_config: {{ca_file: '{ca}'}}}}}}",
            {"module": "http", "tls": {"ca_file": ca}},
        ),
        "tcp_connect": (
            f"127.0.0.1:{srv.tcp_port}",
            "{prober: tcp, tcp: {preferred_ip_protocol: ip4}}",
            {"module": "tcp"},
        ),
        "tls_connect": (
            f"localhost:{srv.https_port}",
            f"{{prober: tcp, tcp: {tls}}}",
            {"module": "tls", "tls": {"ca_file": ca}},
        ),
        "dns": (
            f"127.0.0.1:{srv.dns_port}",
            "{prober: dns, dns: {preferred_ip_protocol: ip4, query_name: host.test, query_type: A}}",
            {"module": "dns", "dns": {"query_name": "host.test", "query_type": "A"}},
        ),
        "dns_soa": (
            f"127.0.0.1:{srv.dns_port}",
            "{prober: dns, dns: {preferred_ip_protocol: ip4, query_name: test, query_type: SOA}}",
            {"module": "dns", "dns": {"query_name": "test", "query_type": "SOA"}},
        ),
        "icmp": ("127.0.0.1", "{prober: icmp, icmp: {preferred_ip_protocol: ip4}}", {"module": "icmp"}),
    }


@pytest.fixture(scope="module")
def blackbox(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict]]:  # noqa: F811
    binary = require_binary("prometheus-blackbox-exporter")
    modules = _modules(servers)
    config = "modules:\n" + "".join(f"  {name}: {yml}\n" for name, (_, yml, _) in modules.items())
    path: Path = tmp_path_factory.mktemp("blackbox") / "blackbox.yml"
    path.write_text(config)
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={path}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/-/healthy", proc=proc)
        yield f"http://127.0.0.1:{port}", modules
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_same_families_labels_and_values(blackbox: tuple[str, dict]) -> None:
    url, modules = blackbox
    probes = [
        ProbeConfig.model_validate(
            {"name": name, "target": target, "ip_protocol": "ip4", "timeout": "5s", **cfg}
        )
        for name, (target, _, cfg) in modules.items()
    ]
    collector = ProbesCollector(probes)
    collector.run_once()
    registry = CollectorRegistry()
    registry.register(collector)
    vigil_text = generate_latest(registry).decode()

    problems: list[str] = []
    for name, (target, _, _) in modules.items():
        resp = httpx.get(f"{url}/probe", params={"module": name, "target": target}, timeout=10)
        assert resp.status_code == 200, resp.text
        theirs = parse(resp.text)
        ours = parse(vigil_text, probe=name)
        if name == "icmp" and ours.get("probe_success", ("", set(), {}))[2].get(frozenset()) == 0:
            pytest.skip("ICMP is not permitted here")
        for fam in sorted(set(theirs) - set(ours)):
            if fam not in BLACKBOX_ONLY:
                problems.append(f"{name}: Vigil lacks {fam}")
        for fam in sorted(set(ours) - set(theirs)):
            if fam not in VIGIL_ONLY:
                problems.append(f"{name}: blackbox lacks {fam}")
        for fam in sorted(set(theirs) & set(ours)):
            (t_type, t_names, t_series), (o_type, o_names, o_series) = theirs[fam], ours[fam]
            if t_type != o_type:
                problems.append(f"{name}: {fam} is a {o_type} here, a {t_type} in blackbox")
            if t_names != o_names:
                problems.append(
                    f"{name}: {fam} labels {sorted(map(sorted, o_names))} != {sorted(map(sorted, t_names))}"
                )
            elif fam in EXACT and t_series != o_series:
                problems.append(f"{name}: {fam} = {o_series} here, {t_series} in blackbox")
        extra = sorted(set(ours) - set(theirs))
        print(f"{name}: {len(set(ours) & set(theirs))} shared families; Vigil-only: {extra}")
    for fam, why in {**VIGIL_ONLY, **BLACKBOX_ONLY}.items():
        print(f"deliberate difference: {fam}: {why}")
    assert not problems, "\n".join(problems)
