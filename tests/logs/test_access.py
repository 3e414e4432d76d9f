"""AccessLogProcessor on real-format nginx/Apache/JSON access logs: counts, durations, bounds, checkpoints."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from tests.waiting import run_python
from vigil.logs.access import AccessLogProcessor
from vigil.logs.processor import LogLine

FIXTURES = Path(__file__).parent / "fixtures" / "access"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def feed(p: AccessLogProcessor, source: str, lines: list[str]) -> None:
    for i, text in enumerate(lines):
        assert list(p.process(LogLine(source, text, 1_700_000_000_000 + i, f"{source}@1:2:{i}"))) == []


def samples(p: AccessLogProcessor) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value for m in p.collect() for s in m.samples}


def requests(p: AccessLogProcessor) -> Counter[tuple[str, str, str, str]]:
    out: Counter[tuple[str, str, str, str]] = Counter()
    for (name, labels), value in samples(p).items():
        if name == "vigil_http_requests_total":
            d = dict(labels)
            out[(d["source"], d["vhost"], d["method"], d["status_class"])] += int(value)
    return out


def value(p: AccessLogProcessor, name: str, **labels: str) -> float:
    return samples(p).get((name, frozenset(labels.items())), 0.0)


def fixture_lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


_ASSERT = re.compile(
    r'results\["s01-parse"\]\["crowdsecurity/[\w-]+"\]\[(\d+)\]\.Evt\.(Meta|Parsed)\["(\w+)"\] == "(.*)"'
)


def crowdsec_expected(source: str, assert_file: str) -> tuple[Counter[tuple[str, str, str, str]], int]:
    """Expected request counts from CrowdSec's parser.assert, and the number of error-log lines."""
    per_line: dict[int, dict[str, str]] = {}
    for m in _ASSERT.finditer((FIXTURES / assert_file).read_text()):
        per_line.setdefault(int(m[1]), {})[m[3]] = m[4]
    expected: Counter[tuple[str, str, str, str]] = Counter()
    errors = 0
    for fields in per_line.values():
        if fields["log_type"] == "http_error-log":
            errors += 1
            continue
        status_class = fields["http_status"][0] + "xx"
        expected[(source, fields.get("target_fqdn", "").lower(), fields["verb"], status_class)] += 1
    return expected, errors


@pytest.mark.parametrize(
    "log, assert_file",
    [
        ("nginx_http-logs/nginx_http-logs.log", "nginx_http-logs/parser.assert"),
        ("apache2-logs/apache2-logs.log", "apache2-logs/parser.assert"),
    ],
)
def test_crowdsec_fixtures_match_crowdsec_parse(log: str, assert_file: str) -> None:
    lines = fixture_lines(log)
    expected, errors = crowdsec_expected("web", assert_file)
    assert sum(expected.values()) + errors == len(lines)
    p = AccessLogProcessor()
    feed(p, "web", lines)
    assert requests(p) == expected
    # Error-log lines mixed into the file are not requests.
    assert value(p, "vigil_access_log_unparsed_lines_total", source="web") == errors


def test_crowdsec_fixture_counts_spelled_out() -> None:
    p = AccessLogProcessor()
    feed(p, "nginx", fixture_lines("nginx_http-logs/nginx_http-logs.log"))
    assert requests(p) == {
        ("nginx", "", "GET", "2xx"): 2,
        ("nginx", "", "GET", "4xx"): 1,
        ("nginx", "", "GET", "5xx"): 2,
        ("nginx", "www.crowdsec.net", "GET", "5xx"): 1,
        ("nginx", "www.crowdsec11.net", "GET", "5xx"): 1,
        ("nginx", "www.crowdsec11.net", "GET", "3xx"): 1,  # "www.crowdsec11.net:80": the port is dropped
    }
    assert (
        value(p, "vigil_http_response_bytes_total", source="nginx", vhost="") == 522 + 550 + 803 + 150 + 100
    )


def test_apache_probing_is_all_4xx() -> None:
    lines = fixture_lines("apache-http-probing/apache-http-probing.log")
    p = AccessLogProcessor()
    feed(p, "apache", lines)
    # 75 404s and 2 400s for requests without an HTTP version ("GET /x?cmd=ls -al&..." 400).
    assert requests(p) == {("apache", "", "GET", "4xx"): 77}
    assert value(p, "vigil_access_log_unparsed_lines_total", source="apache") == 0


def test_nginx_request_time_histogram() -> None:
    p = AccessLogProcessor()
    feed(p, "nginx", fixture_lines("nginx-timed.log"))
    assert requests(p) == {
        ("nginx", "", "GET", "2xx"): 3,
        ("nginx", "", "GET", "3xx"): 1,
        ("nginx", "", "GET", "4xx"): 2,
        ("nginx", "", "POST", "2xx"): 1,
        ("nginx", "", "PUT", "2xx"): 1,
        ("nginx", "", "PUT", "5xx"): 1,
        ("nginx", "", "HEAD", "2xx"): 1,
        ("nginx", "", "OTHER", "4xx"): 2,  # a TLS handshake sent to the HTTP port, and PROPFIND
    }
    h = "vigil_http_request_duration_seconds"
    assert value(p, h + "_count", source="nginx", vhost="") == 12
    assert value(p, h + "_sum", source="nginx", vhost="") == pytest.approx(
        0.004 + 0.087 + 0.042 + 0.001 + 0.012 + 30.001 + 1.250
    )
    assert value(p, h + "_bucket", source="nginx", vhost="", le="0.005") == 7  # five 0.000, 0.004, 0.001
    assert value(p, h + "_bucket", source="nginx", vhost="", le="10.0") == 11
    assert value(p, h + "_bucket", source="nginx", vhost="", le="+Inf") == 12


def test_nginx_vhost_and_key_value_times() -> None:
    p = AccessLogProcessor()
    feed(p, "nginx", fixture_lines("nginx-vhost-kv.log"))
    assert requests(p) == {
        ("nginx", "shop.example.org", "GET", "2xx"): 2,
        ("nginx", "shop.example.org", "POST", "5xx"): 1,
        ("nginx", "shop.example.org", "GET", "4xx"): 1,  # "SHOP.example.org." is the same vhost
        ("nginx", "api.example.org", "GET", "2xx"): 1,
        ("nginx", "api.example.org", "DELETE", "4xx"): 1,
        ("nginx", "api.example.org", "PATCH", "5xx"): 1,
        ("nginx", "api.example.org", "OPTIONS", "2xx"): 1,
    }
    h = "vigil_http_request_duration_seconds"
    assert value(p, h + "_sum", source="nginx", vhost="shop.example.org") == pytest.approx(
        0.014 + 0.231 + 60.002
    )
    # rt= is taken from the log format's own field, not from "rt=99" in the user agent.
    assert value(p, h + "_sum", source="nginx", vhost="api.example.org") == pytest.approx(
        0.003 + 0.002 + 0.502
    )
    assert value(p, h + "_count", source="nginx", vhost="api.example.org") == 4


def test_json_access_logs() -> None:
    p = AccessLogProcessor()
    feed(p, "json", fixture_lines("access.jsonl"))
    assert requests(p) == {
        ("json", "shop.example.org", "GET", "2xx"): 1,  # nginx escape=json, strings everywhere
        ("json", "shop.example.org", "POST", "5xx"): 1,
        ("json", "api.example.org", "GET", "2xx"): 2,  # Caddy (nested request) and an app logger
        ("json", "api.example.org", "DELETE", "4xx"): 1,
        ("json", "traefik.example.org", "GET", "4xx"): 1,  # Traefik's CamelCase keys
        ("json", "", "OTHER", "4xx"): 1,
    }
    assert value(p, "vigil_access_log_unparsed_lines_total", source="json") == 1  # no status
    h = "vigil_http_request_duration_seconds"
    assert value(p, h + "_sum", source="json", vhost="shop.example.org") == pytest.approx(1.504)
    # Caddy seconds, "12.5ms" Go duration string.
    assert value(p, h + "_sum", source="json", vhost="api.example.org") == pytest.approx(
        0.000812 + 0.0021 + 0.0125
    )
    assert value(p, h + "_sum", source="json", vhost="traefik.example.org") == pytest.approx(
        0.003185214
    )  # ns
    assert value(p, h + "_sum", source="json", vhost="") == pytest.approx(0.007)  # duration_ms
    assert value(p, "vigil_http_response_bytes_total", source="json", vhost="api.example.org") == 41 + 3021


def test_behind_syslog_headers() -> None:
    entry = '203.0.113.7 - - [14/Nov/2023:10:02:11 +0100] "GET / HTTP/1.1" 200 612 "-" "curl/8.4.0"'
    p = AccessLogProcessor()
    feed(
        p,
        "syslog",
        [
            f"Nov 14 10:02:11 web1 nginx: {entry}",
            f"<190>Nov 14 10:02:11 web1 nginx[811]: {entry}",
            f"2023-11-14T10:02:11.120+01:00 web1 nginx: {entry}",
            f"<190>1 2023-11-14T10:02:11.120+01:00 web1 nginx 811 - - {entry}",
            'Nov 14 10:02:11 web1 nginx: {"status":503,"method":"GET","host":"a.example"}',
            "Nov 14 10:02:11 web1 nginx: 2023/11/14 10:02:11 [error] 31#31: *46 upstream timed out",
        ],
    )
    assert requests(p) == {("syslog", "", "GET", "2xx"): 4, ("syslog", "a.example", "GET", "5xx"): 1}
    assert value(p, "vigil_access_log_unparsed_lines_total", source="syslog") == 1


def test_apache_microseconds_when_configured() -> None:
    line = '10.0.0.1 - - [14/Nov/2023:10:02:11 +0100] "GET / HTTP/1.1" 200 612 "-" "curl/8.4.0" 2500'
    plain = AccessLogProcessor()
    feed(plain, "a", [line])
    assert value(plain, "vigil_http_request_duration_seconds_count", source="a", vhost="") == 0  # ambiguous
    micro = AccessLogProcessor(integer_duration="microseconds")
    feed(micro, "a", [line])
    assert value(micro, "vigil_http_request_duration_seconds_sum", source="a", vhost="") == pytest.approx(
        0.0025
    )
    with pytest.raises(ValueError, match="integer_duration"):
        AccessLogProcessor(integer_duration="fortnights")


def test_garbage_durations_are_ignored() -> None:
    base = '10.0.0.1 - - [14/Nov/2023:10:02:11 +0100] "GET / HTTP/1.1" 200 612 "-" "curl/8.4.0"'
    p = AccessLogProcessor()
    feed(
        p,
        "a",
        [f"{base} nan", f"{base} -1.5", f"{base} 1e400", f"{base} rt=inf", f"{base} rt=abc", f"{base} 1.2.3"],
    )
    assert requests(p) == {("a", "", "GET", "2xx"): 6}
    assert value(p, "vigil_http_request_duration_seconds_count", source="a", vhost="") == 0


def test_100k_distinct_vhosts_stay_bounded() -> None:
    p = AccessLogProcessor(max_vhosts=100)
    lines = [
        f"h{i}.example.com 10.{i % 256}.{i // 256 % 256}.1 - - [14/Nov/2023:10:02:11 +0100] "
        f'"GET /{i} HTTP/1.1" '
        f'{200 + i % 4 * 100} {i} "-" "ua" 0.0{i % 10}'
        for i in range(100_000)
    ]
    feed(p, "web", lines)
    got = samples(p)
    vhosts = {dict(labels)["vhost"] for name, labels in got if name == "vigil_http_requests_total"}
    assert len(vhosts) == 101 and "other" in vhosts
    series = [k for k in got if k[0] == "vigil_http_requests_total"]
    assert len(series) <= 101 * 4  # vhost x status class (one method)
    hist = {
        dict(labels)["vhost"] for name, labels in got if name == "vigil_http_request_duration_seconds_count"
    }
    assert len(hist) == 101
    assert value(p, "vigil_access_log_vhost_overflow_total", source="web") == 100_000 - 100
    assert sum(requests(p).values()) == 100_000
    # Client addresses and paths never become labels.
    assert not any("10.1." in v or "/1" in v for _, labels in got for _, v in labels)


def test_snapshot_restore_round_trip() -> None:
    p = AccessLogProcessor(max_vhosts=3)
    for name in (
        "nginx-vhost-kv.log",
        "nginx-timed.log",
        "access.jsonl",
        "nginx_http-logs/nginx_http-logs.log",
    ):
        feed(p, name.split("/")[0], fixture_lines(name))
    state = json.loads(json.dumps(p.snapshot()))  # must survive JSON
    q = AccessLogProcessor(max_vhosts=3)
    q.restore(state)
    assert samples(q) == samples(p)
    # Counting continues from the restored values, with the same vhost admissions.
    feed(p, "x", fixture_lines("nginx-vhost-kv.log"))
    feed(q, "x", fixture_lines("nginx-vhost-kv.log"))
    assert samples(q) == samples(p)


def test_restore_applies_todays_limits_and_rejects_garbage() -> None:
    p = AccessLogProcessor()
    feed(p, "nginx", fixture_lines("nginx-vhost-kv.log"))
    small = AccessLogProcessor(max_vhosts=1)
    small.restore(p.snapshot())
    assert requests(small)[("nginx", "other", "GET", "2xx")] == 1  # api.example.org folded
    assert sum(requests(small).values()) == 8
    changed = AccessLogProcessor(buckets=(0.1, 1.0))
    changed.restore(p.snapshot())
    assert (
        value(changed, "vigil_http_request_duration_seconds_count", source="nginx", vhost="shop.example.org")
        == 0
    )
    assert sum(requests(changed).values()) == 8
    before = samples(p)
    for bad in ({"version": 2}, {"version": 1, "requests": [["a", "b"]]}, {"version": 1, "unparsed": 3}):
        with pytest.raises(ValueError, match="access log snapshot"):
            p.restore(bad)
    assert samples(p) == before


def feed_hostile(n: int) -> float:
    """Child process side of `test_hostile_lines_stay_linear`: `n` rounds of lines at the pipeline's
    64 KiB cap; returns the unparsed-line count."""
    k = 64 * 1024 // 2
    hostile = [
        "a " * k,
        "a " * 3 + "[" * (2 * k - 6),
        '1.2.3.4 - - [x] "' + '\\"' * (k - 10),
        '1.2.3.4 - - [x] "GET ' + "a" * (2 * k - 30) + '" 200',
        "{" * (2 * k),
        "Nov 14 10:02:11 web1 nginx: " + "x " * (k - 15),
    ]
    p = AccessLogProcessor()
    for _ in range(n):
        feed(p, "h", hostile)
    return value(p, "vigil_access_log_unparsed_lines_total", source="h") / len(hostile)


def test_hostile_lines_stay_linear() -> None:
    # Without a clock: on 64 KiB lines a quadratic or backtracking regex takes minutes, the linear
    # parser milliseconds, so a generous deadline (in a child: a runaway `re` holds the GIL) tells them
    # apart on any machine. Speed is measured in bench/.
    out = run_python("from tests.logs.test_access import feed_hostile; print(feed_hostile(5))")
    assert out.split() == ["5.0"]  # every line of every round counted as unparsed


def test_forged_byte_counts_do_not_break_the_metrics() -> None:
    p = AccessLogProcessor()
    huge = "9" * 400
    for text in (
        f'203.0.113.1 - - [22/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 {huge} "-" "x"',
        json.dumps({"status": 200, "request_method": "GET", "bytes": int(huge)}),
        '203.0.113.1 - - [22/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 512 "-" "x"',
    ):
        list(p.process(LogLine("web", text, 0)))
    sent = {
        s.labels["vhost"]: s.value
        for f in p.collect()
        for s in f.samples
        if s.name == "vigil_http_response_bytes_total"
    }
    assert sent == {"": 512.0}
