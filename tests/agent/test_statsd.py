"""The StatsD receiver: the pure parser, aggregation, and real UDP/TCP sockets on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from tests.waiting import returns
from vigil import receiver
from vigil.agent.statsd import StatsdParseError, StatsdSample, StatsdServer, parse_line, parse_packet


def values(server: StatsdServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample the collector yields, keyed by (sample name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value for fam in server.collect() for s in fam.samples
    }


def wait_for(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def lines_seen(server: StatsdServer) -> int:
    return sum(server.lines().values())


@pytest.fixture
def udp_server() -> Iterator[StatsdServer]:
    server = StatsdServer(udp_listen="127.0.0.1:0", tcp_listen="127.0.0.1:0")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def send_udp(server: StatsdServer, data: bytes, expect_lines: int) -> None:
    """Send one datagram and wait until the receiver has counted `expect_lines` lines in total."""
    assert server.udp_address is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, server.udp_address)
    wait_for(lambda: lines_seen(server) >= expect_lines)


# -- the parser -------------------------------------------------------------------------------


def test_parse_counter_with_rate_and_tags() -> None:
    s = parse_line(b"api.requests-served:3|c|@0.25|#env:prod,route:/a:b,flag,2xx-class:yes")
    assert s == StatsdSample(
        "api_requests_served",
        "counter",
        12.0,
        (("_2xx_class", "yes"), ("env", "prod"), ("route", "/a:b")),
        0.25,
    )


def test_parse_kinds() -> None:
    assert parse_line("t:250|ms").family == "t_seconds"
    assert parse_line("t:250|ms").value == pytest.approx(0.25)
    assert parse_line("db_seconds:250|ms").family == "db_seconds"  # no double suffix
    assert parse_line("size:3|h").family == "size"
    assert parse_line("size:3|d").value == 3.0
    assert parse_line("g:+2|g").relative and parse_line("g:-2|g").relative
    assert not parse_line("g:2|g").relative
    assert parse_line("u:alice|s").member == "alice"
    assert parse_line("x_total:1|c").family == "x"  # exposed as x_total, not x_total_total
    assert parse_line("x:1|c", prefix="app.").family == "app_x"


MALFORMED = [
    (b"nocolon", "no ':' after the name"),
    (b"x:1", "no '|type'"),
    (b"x:1|q", "unknown type"),
    (b"x:abc|c", "invalid value"),
    (b"x:nan|g", "invalid value"),
    (b"x:inf|g", "invalid value"),
    (b"x:1_000|c", "invalid value"),
    (b"x:1e999|g", "invalid value"),
    (b"x:|c", "invalid value"),
    (b"x:-1|c", "negative counter increment"),
    (b"x:1|c|@0", "sample rate not in (0, 1]"),
    (b"x:1|c|@2", "sample rate not in (0, 1]"),
    (b"x:1|c|@abc", "invalid sample rate"),
    (b"x:1|c|zzz", "unknown section"),
    (b"9x:1|c", "invalid metric name"),
    (b"a/b:1|c", "invalid metric name"),
    (b":1|c", "invalid metric name"),
    (b"_total:1|c", "invalid metric name"),
    (b"x:1|c|#__name__:y", "reserved tag name"),
    (b"x:1|ms|#le:1", "reserved tag name"),
    (b"x:1|c|#:v", "empty tag name"),
    (b"u:|s", "empty set member"),
    (b"x:\xff\xfe|c", "not UTF-8"),
    (b"_e{5,4}:title|text", "DogStatsD events and service checks are not supported"),
    (b"_sc|check|0", "DogStatsD events and service checks are not supported"),
]


@pytest.mark.parametrize(("line", "reason"), MALFORMED)
def test_parse_malformed(line: bytes, reason: str) -> None:
    with pytest.raises(StatsdParseError) as info:
        parse_line(line)
    assert info.value.reason == reason


def test_parse_packet_keeps_going_past_bad_lines() -> None:
    out = parse_packet(b"a:1|c\r\n\nbad\n  \nb:2|g\n")
    assert [type(x) for x in out] == [StatsdSample, StatsdParseError, StatsdSample]
    assert isinstance(out[1], StatsdParseError) and out[1].line == "bad"


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_parser(data: bytes) -> None:
    for item in parse_packet(data):
        assert isinstance(item, StatsdSample | StatsdParseError)


_line_parts = st.lists(
    st.sampled_from(
        [b"a", b".", b"-", b":", b"|", b"@", b"#", b",", b"1", b"0.5", b"+", b"e", b"c", b"ms", b"g"]
    ),
    max_size=30,
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_line_parts.map(b"".join), max_size=5))
def test_statsd_like_garbage_never_crashes_aggregation(lines: list[bytes]) -> None:
    # Near-valid input reaches the aggregation and the exposition, not just the parser.
    server = StatsdServer(udp_listen=None)
    server.ingest(b"\n".join(lines))
    registry = CollectorRegistry()
    registry.register(server)
    generate_latest(registry)


# -- aggregation ------------------------------------------------------------------------------


def test_counters_gauges_histograms_in_process() -> None:
    server = StatsdServer(udp_listen=None, histogram_buckets=(0.1, 1))
    server.ingest(b"req:1|c\nreq:1|c|@0.1\ng:10|g\ng:+5|g\ng:-3|g\nd:2|d\nd:0.05|h|@0.5\nnew:-4|g")
    v = values(server)
    assert v[("req_total", ())] == pytest.approx(11.0)
    assert v[("g", ())] == 12.0
    assert v[("new", ())] == -4.0  # relative from nothing starts at 0, as in StatsD
    assert v[("d_bucket", (("le", "0.1"),))] == 2.0  # weighted by 1/rate
    assert v[("d_bucket", (("le", "1.0"),))] == 2.0
    assert v[("d_bucket", (("le", "+Inf"),))] == 3.0
    assert v[("d_count", ())] == 3.0
    assert v[("d_sum", ())] == pytest.approx(2.1)
    assert v[("vigil_agent_statsd_lines_total", (("result", "ok"),))] == 8


def test_sets_count_distinct_values_of_the_last_completed_window() -> None:
    now = [1000.0]
    server = StatsdServer(udp_listen=None, set_interval=10, clock=lambda: now[0])
    server.ingest(b"users:alice|s\nusers:bob|s\nusers:alice|s\nusers:carol|s|#app:shop")
    assert values(server)[("users", ())] == 0  # the window is not over yet
    now[0] = 1010.0
    server.ingest(b"users:dave|s")
    v = values(server)
    assert v[("users", ())] == 2 and v[("users", (("app", "shop"),))] == 1
    assert values(server)[("users", ())] == 2  # reading does not reset: /metrics and the agent both read
    now[0] = 1020.0
    assert values(server)[("users", ())] == 1  # dave
    now[0] = 1045.0
    assert values(server)[("users", ())] == 0  # nothing in the last completed window


def test_type_conflicts_and_name_clashes_are_dropped() -> None:
    server = StatsdServer(udp_listen=None)
    server.ingest(b"x:1|c\nx:1|g\nh:1|h\nh_count:1|g\nvigil_agent_statsd_series:1|g\nx_total:2|c")
    v = values(server)
    assert v[("x_total", ())] == 3.0
    assert v[("h_count", ())] == 1.0  # the histogram's own count, not the dropped gauge
    assert server.lines() == {"ok": 3, "malformed": 0, "dropped": 3}
    assert v[("vigil_agent_statsd_series", ())] == 2


def test_series_cap_drops_new_series_but_updates_old_ones(caplog: pytest.LogCaptureFixture) -> None:
    server = StatsdServer(udp_listen=None, max_series=3)
    with caplog.at_level(logging.WARNING, logger="vigil.agent.statsd"):
        server.ingest(b"\n".join(b"m%d:1|c" % i for i in range(10)))
        server.ingest(b"m0:1|c\nm1:1|c|#k:new")
    v = values(server)
    assert v[("m0_total", ())] == 2.0
    assert ("m5_total", ()) not in v and ("m1_total", (("k", "new"),)) not in v
    assert server.lines() == {"ok": 4, "malformed": 0, "dropped": 8}
    assert v[("vigil_agent_statsd_series", ())] == 3
    assert len([r for r in caplog.records if "max_series" in r.getMessage()]) == 1  # once, not per line


def test_invalid_buckets_rejected() -> None:
    with pytest.raises(ValueError):
        StatsdServer(udp_listen=None, histogram_buckets=())
    with pytest.raises(ValueError):
        StatsdServer(udp_listen=None, histogram_buckets=(1, float("inf")))


def test_registered_in_a_prometheus_registry() -> None:
    server = StatsdServer(udp_listen=None)
    server.ingest(b"shop.checkout:120|ms|#function:checkout,app:shop\nshop.errors:1|c|#app:shop")
    registry = CollectorRegistry()
    registry.register(server)
    text = generate_latest(registry).decode()
    assert 'shop_checkout_seconds_bucket{app="shop",function="checkout",le="0.25"} 1.0' in text
    assert 'shop_errors_total{app="shop"} 1.0' in text


# -- real sockets -----------------------------------------------------------------------------


def test_udp_several_lines_per_datagram(udp_server: StatsdServer) -> None:
    send_udp(
        udp_server,
        b"hits:1|c|@0.5\nhits:1|c\ntemp:20|g\ntemp:-5|g\nlat:20|ms|#function:f,app:a\nlat:2000|ms|#function:f,app:a",
        6,
    )
    v = values(udp_server)
    labels = (("app", "a"), ("function", "f"))
    assert v[("hits_total", ())] == 3.0
    assert v[("temp", ())] == 15.0
    assert v[("lat_seconds_bucket", (*labels, ("le", "0.025")))] == 1.0
    assert v[("lat_seconds_bucket", (*labels, ("le", "2.5")))] == 2.0
    assert v[("lat_seconds_count", labels)] == 2.0
    assert v[("lat_seconds_sum", labels)] == pytest.approx(2.02)


def test_udp_malformed_lines_are_counted_and_the_listener_keeps_working(udp_server: StatsdServer) -> None:
    send_udp(udp_server, b"\n".join(line for line, _ in MALFORMED), len(MALFORMED))
    send_udp(udp_server, b"\xff" * 100, len(MALFORMED) + 1)
    send_udp(udp_server, b"ok:1|c", len(MALFORMED) + 2)
    assert udp_server.lines() == {"ok": 1, "malformed": len(MALFORMED) + 1, "dropped": 0}
    assert values(udp_server)[("ok_total", ())] == 1.0


def test_udp_oversize_datagram_counted() -> None:
    with StatsdServer(udp_listen="127.0.0.1:0", max_packet_bytes=64) as server:
        send_udp(server, b"x:1|c\n" * 20, 1)
        send_udp(server, b"x:1|c", 2)
        assert server.lines() == {"ok": 1, "malformed": 1, "dropped": 0}


def test_tcp_stream_with_split_lines() -> None:
    with StatsdServer(udp_listen=None, tcp_listen="127.0.0.1:0", max_packet_bytes=100) as server:
        assert server.udp_address is None and server.tcp_address is not None
        with socket.create_connection(server.tcp_address) as c:
            c.sendall(b"a:1|c\na:")
            time.sleep(0.05)  # the line is split across two reads
            c.sendall(b"2|c\n" + b"y" * 300 + b"\nb:7|g\nbad line\n")
            c.sendall(b"tail:1|c")  # no final newline: taken at EOF
        wait_for(lambda: lines_seen(server) >= 6)  # all six, the one taken at EOF included
        v = values(server)
        assert v[("a_total", ())] == 3.0 and v[("b", ())] == 7.0 and v[("tail_total", ())] == 1.0
        assert server.lines() == {"ok": 4, "malformed": 2, "dropped": 0}  # the 300-byte line, "bad line"


def test_tcp_many_connections(udp_server: StatsdServer) -> None:
    assert udp_server.tcp_address is not None
    conns = [socket.create_connection(udp_server.tcp_address) for _ in range(5)]
    try:
        for i, c in enumerate(conns):
            c.sendall(b"n:%d|c|#conn:c%d\n" % (i + 1, i))
        wait_for(lambda: lines_seen(udp_server) >= 5)
    finally:
        for c in conns:
            c.close()
    v = values(udp_server)
    assert sum(v[("n_total", (("conn", f"c{i}"),))] for i in range(5)) == 15.0


def test_stop_closes_sockets_and_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    # The selector's fallback wake-up is an hour away, so only stop()'s wake can end the loop in time.
    monkeypatch.setattr(receiver, "_POLL_S", 3600.0)
    server = StatsdServer(udp_listen="127.0.0.1:0", tcp_listen="127.0.0.1:0")
    server.start()
    thread = server._thread
    tcp = server.tcp_address
    assert tcp is not None
    returns(server.stop, what="stop()")  # woken, not polled
    assert thread is not None and not thread.is_alive()
    server.stop()
    with pytest.raises(OSError), socket.create_connection(tcp, timeout=1):
        pass


def test_bind_failure_raises_and_leaks_nothing() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        server = StatsdServer(udp_listen=f"127.0.0.1:{port}")
        with pytest.raises(OSError):
            server.start()
        assert server._thread is None and server._udp is None
    with pytest.raises(ValueError):
        StatsdServer(udp_listen="no-port").start()


def test_tcp_idle_connection_is_closed_and_its_last_line_kept() -> None:
    """StatsD shares the syslog receiver's idle handling (default 300 s): a silent TCP connection is
    closed from the selector loop, and a final line without a newline is taken as at EOF."""
    server = StatsdServer(udp_listen=None, tcp_listen="127.0.0.1:0")
    assert server.idle_timeout_s == 300.0
    server.idle_timeout_s = 0.2  # real time: the loop checks at least once a second
    with server:
        assert server.tcp_address is not None
        with socket.create_connection(server.tcp_address, timeout=5) as c:
            c.sendall(b"idle:1|c\nlast:2|c")
            wait_for(lambda: server.connections() == 0)
            assert c.recv(1) == b""
        v = values(server)
        assert v[("idle_total", ())] == 1.0 and v[("last_total", ())] == 2.0


def test_address_taken_is_a_warning_saying_what_to_do(caplog: pytest.LogCaptureFixture) -> None:
    """Next to `vigil up` (or another agent) the StatsD port is taken: the agent runs on without it and
    says why and how to choose, as a warning rather than an error with no hint."""
    from vigil.cmd.agent import start_statsd
    from vigil.config import config_from_yaml

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        cfg = config_from_yaml(f"agent:\n  statsd:\n    udp_listen: {listen}\n")
        with caplog.at_level(logging.WARNING, logger="vigil.agent"):
            assert start_statsd(cfg) is None
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"StatsD receiver not started on {listen}: Address already in use (another Vigil agent or "
        "`vigil up` on this host receives StatsD there: set agent.statsd.udp_listen/tcp_listen to "
        'another address, or to "" to turn it off)'
    )
