"""Tests for the syslog receiver: parsing real-world formats, RFC 6587 framing, the UDP/TCP server,
its metrics, and util-linux `logger` as a real peer."""

from __future__ import annotations

import contextlib
import logging
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from tests.conftest import require_binary
from tests.waiting import returns
from vigil import receiver
from vigil.logs.syslog import SyslogServer
from vigil.logs.syslogparse import (
    FrameDecoder,
    FrameError,
    SyslogMessage,
    SyslogParseError,
    parse_message,
    parse_structured_data,
    to_log_line,
    unframe_datagram,
)
from vigil.security.authlog import parse_line as parse_auth_line

FIXTURES = Path(__file__).parent / "fixtures" / "syslog"
# 2024-11-22T18:26:40Z: the reference receive time for year-less stamps.
RECEIVED = 1732300000000


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def fixture(name: str, line: int) -> bytes:
    return (FIXTURES / name).read_bytes().splitlines()[line - 1]


# --- parser ---------------------------------------------------------------------------------------

# (file, line, expected fields); fields not named are not checked.
CASES: list[tuple[str, int, dict[str, Any]]] = [
    # RFC 5424 §6.5 examples 1-4
    (
        "rfc5424-examples.log",
        1,
        dict(
            format="rfc5424",
            facility=4,
            severity=2,
            timestamp_ms=ms("2003-10-11T22:14:15.003+00:00"),
            hostname="mymachine.example.com",
            app_name="su",
            procid=None,
            msgid="ID47",
            structured_data=None,
            message="'su root' failed for lonvick on /dev/pts/8",  # BOM removed
        ),
    ),
    (
        "rfc5424-examples.log",
        2,
        dict(
            format="rfc5424",
            facility=20,
            severity=5,
            timestamp_ms=ms("2003-08-24T12:14:15.000+00:00"),  # .000003-07:00, microseconds dropped
            hostname="192.0.2.1",
            app_name="myproc",
            procid="8710",
            msgid=None,
            message="%% It's time to make the do-nuts.",
        ),
    ),
    (
        "rfc5424-examples.log",
        3,
        dict(
            format="rfc5424",
            app_name="evntslog",
            msgid="ID47",
            structured_data='[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]',
            message="An application event log entry...",
        ),
    ),
    ("rfc5424-examples.log", 4, dict(format="rfc5424", app_name="evntslog", message="")),
    (
        "rfc5424-examples.log",
        5,
        dict(
            timestamp_ms=ms("2024-11-22T09:00:00.123+00:00"),
            procid="42",
            msgid="req",
            message="nanosecond stamp",
        ),
    ),
    (
        "rfc5424-examples.log",
        6,
        dict(
            format="rfc5424",
            timestamp_ms=None,
            hostname=None,
            app_name=None,
            procid=None,
            msgid=None,
            structured_data=None,
            message="message with every header field NIL",
        ),
    ),
    ("rfc5424-examples.log", 7, dict(hostname="win01", message="escaped structured data")),
    # RFC 3164 §5.4 examples and variants
    (
        "rfc3164-examples.log",
        1,
        dict(
            format="rfc3164",
            facility=4,
            severity=2,
            timestamp_ms=ms("2024-10-11T22:14:15+00:00"),
            hostname="mymachine",
            app_name="su",
            message="'su root' failed for lonvick on /dev/pts/8",
        ),
    ),
    (
        "rfc3164-examples.log",
        2,
        dict(
            hostname="10.0.0.99",
            app_name=None,
            message="Use the BFG!",
            timestamp_ms=ms("2024-02-05T17:32:18+00:00"),
        ),
    ),
    (
        "rfc3164-examples.log",
        3,
        dict(
            timestamp_ms=ms("1987-08-24T05:34:00+00:00"),
            hostname="mymachine",
            app_name="myproc",
            procid="10",
        ),
    ),
    ("rfc3164-examples.log", 4, dict(format="rfc3164", facility=0, severity=0, app_name=None)),
    (
        "rfc3164-examples.log",
        5,
        dict(timestamp_ms=ms("2024-11-02T10:00:00+00:00"), hostname="host1", app_name="app"),
    ),
    ("rfc3164-examples.log", 6, dict(hostname=None, app_name="myapp", procid="77")),
    # pfSense
    (
        "pfsense-filterlog.log",
        1,
        dict(
            format="rfc3164",
            facility=16,
            severity=6,
            timestamp_ms=ms("2024-11-22T10:00:00+00:00"),
            hostname=None,
            app_name="filterlog",
            procid="1234",
        ),
    ),
    (
        "pfsense-filterlog.log",
        2,
        dict(timestamp_ms=ms("2024-11-02T09:05:01+00:00"), hostname=None, app_name="filterlog"),
    ),
    (
        "pfsense-filterlog.log",
        3,
        dict(
            format="rfc5424",
            hostname="pfSense.home.arpa",
            app_name="filterlog",
            procid="1234",
            timestamp_ms=ms("2024-11-22T10:00:00.123+00:00"),
        ),
    ),
    # rsyslog forwarding templates
    (
        "rsyslog-forward.log",
        2,
        dict(
            format="rfc3164",
            timestamp_ms=ms("2024-11-22T09:00:00.123+00:00"),
            hostname="web1",
            app_name="sshd",
            procid="123",
        ),
    ),
    ("rsyslog-forward.log", 3, dict(format="rfc5424", facility=10, app_name="sudo", procid=None)),
    ("rsyslog-forward.log", 4, dict(timestamp_ms=ms("2024-11-22T10:00:00.500+00:00"), procid="1")),
    # Cisco IOS / ASA
    (
        "cisco-ios.log",
        1,
        dict(
            format="rfc3164",
            facility=23,
            severity=5,
            timestamp_ms=None,  # "*": the clock was never set
            hostname=None,
            app_name="%SYS-5-CONFIG_I",
            msgid="123",
            message="Configured from console by console",
        ),
    ),
    (
        "cisco-ios.log",
        2,
        dict(
            timestamp_ms=ms("2024-11-22T10:00:00.456+00:00"),
            hostname="sw-core-1",
            app_name="%LINK-3-UPDOWN",
            msgid="45",
            message="Interface GigabitEthernet0/1, changed state to down",
        ),
    ),
    ("cisco-ios.log", 3, dict(timestamp_ms=ms("2024-11-22T10:00:01+00:00"), app_name="%LINEPROTO-5-UPDOWN")),
    (
        "cisco-ios.log",
        4,
        dict(timestamp_ms=ms("2024-11-22T10:00:00+00:00"), hostname="fw01", app_name="%ASA-6-302013"),
    ),
    ("cisco-ios.log", 5, dict(timestamp_ms=None, hostname=None, app_name="%ASA-6-106100")),
    # no PRI
    (
        "no-pri.log",
        1,
        dict(
            format="unknown",
            facility=None,
            severity=None,
            hostname="ap-3",
            app_name="hostapd",
            message="wlan0: STA 00:11:22:33:44:55 IEEE 802.11: associated",
        ),
    ),
    (
        "no-pri.log",
        2,
        dict(format="unknown", hostname=None, message="plain text from a device that sends no header at all"),
    ),
]


@pytest.mark.parametrize(("name", "line", "expected"), CASES, ids=[f"{c[0]}:{c[1]}" for c in CASES])
def test_parse_fixture(name: str, line: int, expected: dict[str, Any]) -> None:
    data = fixture(name, line)
    msg = parse_message(data, RECEIVED)
    got = {k: getattr(msg, k) for k in expected}
    assert got == expected
    assert msg.raw == data.decode()
    assert msg.received_ms == RECEIVED
    assert msg.valid_utf8


def test_every_fixture_line_parses() -> None:
    files = sorted(FIXTURES.glob("*.log"))
    assert len(files) >= 6
    for f in files:
        for line in f.read_bytes().splitlines():
            assert parse_message(line, RECEIVED).message or line.endswith(b"]")


def test_structured_data_params_and_escapes() -> None:
    msg = parse_message(fixture("rfc5424-examples.log", 4), RECEIVED)
    assert msg.params() == {
        "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
        "examplePriority@32473": {"class": "high"},
    }
    msg = parse_message(fixture("rfc5424-examples.log", 7), RECEIVED)
    assert msg.structured_data == r'[ex@32473 path="C:\\dir\]" q="say \"hi\""]'
    assert msg.params() == {"ex@32473": {"path": "C:\\dir]", "q": 'say "hi"'}}
    assert parse_structured_data("") == {}


def test_rfc5424_with_bad_structured_data_falls_back_to_rfc3164() -> None:
    msg = parse_message(b'<14>1 2024-11-22T10:00:00Z h app - - [unterminated x="1" hello', RECEIVED)
    assert msg.format == "rfc3164"
    assert msg.facility == 1
    assert "hello" in msg.message


def test_trailing_newline_nul_and_bom() -> None:
    msg = parse_message(b"<13>Nov 22 10:00:00 h app: \xef\xbb\xbfhi\r\n\x00", RECEIVED)
    assert msg.message == "\ufeffhi"  # a BOM is only special before an RFC 5424 MSG
    msg = parse_message(b"<13>1 - h app - - - \xef\xbb\xbfhi\n", RECEIVED)
    assert msg.message == "hi"
    assert msg.raw.endswith("hi")


def test_not_utf8_is_delivered_and_flagged() -> None:
    msg = parse_message(b"<13>Nov 22 10:00:00 h app: caf\xe9", RECEIVED)
    assert not msg.valid_utf8
    assert msg.message == "caf\ufffd"
    assert msg.app_name == "app"


@pytest.mark.parametrize("data", [b"", b"\n", b"  \r\n", b"\x00"])
def test_empty_is_rejected(data: bytes) -> None:
    with pytest.raises(SyslogParseError) as exc:
        parse_message(data, RECEIVED)
    assert exc.value.reason == "empty"


@pytest.mark.parametrize("data", [b"<192>hi", b"<abc>hi", b"<1234>hi", b"<>hi", b"<13"])
def test_invalid_pri_is_delivered_as_unknown(data: bytes) -> None:
    msg = parse_message(data, RECEIVED)
    assert (msg.format, msg.facility, msg.severity, msg.message) == ("unknown", None, None, data.decode())


def test_year_inference_around_new_year() -> None:
    jan1 = ms("2025-01-01T00:00:05+00:00")
    assert parse_message(b"<13>Dec 31 23:59:59 h a: x", jan1).timestamp_ms == ms("2024-12-31T23:59:59+00:00")
    dec31 = ms("2024-12-31T23:59:00+00:00")
    assert parse_message(b"<13>Jan  1 00:00:01 h a: x", dec31).timestamp_ms == ms("2025-01-01T00:00:01+00:00")
    # Feb 29 goes back to the last leap year.
    assert parse_message(b"<13>Feb 29 12:00:00 h a: x", ms("2025-03-01T00:00:00+00:00")).timestamp_ms == ms(
        "2024-02-29T12:00:00+00:00"
    )


def test_zone_for_stamps_without_offset() -> None:
    from datetime import timedelta, timezone

    plus2 = timezone(timedelta(hours=2))
    msg = parse_message(b"<13>Nov 22 10:00:00 h a: x", RECEIVED, plus2)
    assert msg.timestamp_ms == ms("2024-11-22T08:00:00+00:00")
    msg = parse_message(b"<13>2024-11-22T10:00:00 h a: x", RECEIVED, plus2)
    assert msg.timestamp_ms == ms("2024-11-22T08:00:00+00:00")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_the_parser(data: bytes) -> None:
    try:
        msg = parse_message(data, RECEIVED)
    except SyslogParseError as exc:
        assert exc.reason == "empty"
        return
    assert msg.format in ("rfc5424", "rfc3164", "unknown")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from('<>0123456789 -[]"\\=:.TZ+*%abcNovJan\ufeff'), max_size=120))
def test_syslog_like_text_never_crashes_the_parser(text: str) -> None:
    with contextlib.suppress(SyslogParseError):
        parse_message(text.encode(), RECEIVED)


# --- rendering for the log pipeline ---------------------------------------------------------------


def test_to_log_line_is_read_by_the_auth_log_parser() -> None:
    now = datetime.fromtimestamp(RECEIVED / 1000, UTC)
    for name, line, method, result in [
        ("rsyslog-forward.log", 1, "password", "failure"),
        ("rsyslog-forward.log", 2, "publickey", "success"),
        ("pfsense-filterlog.log", 4, "password", "failure"),
    ]:
        msg = parse_message(fixture(name, line), RECEIVED)
        ll = to_log_line(msg, "192.0.2.1", 7)
        ev = parse_auth_line(ll.text, now)
        assert ev is not None, ll.text
        assert (ev.service, ev.method, ev.result) == ("sshd", method, result)
        assert ev.timestamp_ms == msg.timestamp_ms
        assert ev.host == msg.hostname
    msg = parse_message(fixture("rsyslog-forward.log", 3), RECEIVED)
    ev = parse_auth_line(to_log_line(msg, "192.0.2.1", 1).text, now)
    assert ev is not None and (ev.service, ev.user) == ("sudo", "alice")


def test_to_log_line_fields() -> None:
    msg = parse_message(fixture("pfsense-filterlog.log", 1), RECEIVED)
    ll = to_log_line(msg, "10.0.0.1", 42, source="firewall")
    assert ll.source == "firewall"
    assert ll.origin == "syslog:10.0.0.1#42"
    assert ll.time_ms == RECEIVED
    # no HOSTNAME in the message: the sender's address stands in
    assert ll.text.startswith("2024-11-22T10:00:00.000+00:00 10.0.0.1 filterlog[1234]: 5,,,1000000103,igb1,")

    msg = parse_message(b"no header\nsecond line\x07", RECEIVED)
    ll = to_log_line(msg, "10.0.0.2", 1)
    assert ll.text == "2024-11-22T18:26:40.000+00:00 10.0.0.2 no header#012second line#007"

    msg = parse_message(fixture("cisco-ios.log", 1), RECEIVED)
    assert to_log_line(msg, "10.0.0.3", 1).text.endswith(
        " 10.0.0.3 %SYS-5-CONFIG_I: Configured from console by console"
    )


# --- framing --------------------------------------------------------------------------------------


def octet(msg: bytes) -> bytes:
    return str(len(msg)).encode() + b" " + msg


def frames(items: list[bytes | FrameError]) -> list[bytes]:
    return [i for i in items if isinstance(i, bytes)]


def feed_all(dec: FrameDecoder, chunks: list[bytes]) -> list[bytes | FrameError]:
    out: list[bytes | FrameError] = []
    for c in chunks:
        out += dec.feed(c)
    return out + dec.finish()


def test_framing_octet_counting_lf_nul_and_mixed() -> None:
    a, b, c = b"<13>1 - h a - - - one", b"<13>Nov 22 10:00:00 h a: two\nstill two", b"<13>three"
    stream = octet(a) + b"<13>lf\n" + octet(b) + b"<13>crlf\r\n" + b"<13>nul\x00" + octet(c) + b"\n\n<13>last"
    assert feed_all(FrameDecoder(), [stream]) == [a, b"<13>lf", b, b"<13>crlf", b"<13>nul", c, b"<13>last"]


def test_framing_digits_without_space_are_not_an_octet_count() -> None:
    stream = b"123: *Mar  1 00:00:00.123: %SYS-5-CONFIG_I: x\n0 zero\n" + b"1" * 20 + b" long\n"
    assert feed_all(FrameDecoder(), [stream]) == [
        b"123: *Mar  1 00:00:00.123: %SYS-5-CONFIG_I: x",
        b"0 zero",
        b"1" * 20 + b" long",
    ]


STREAM_MSGS = [b"<13>1 - h a - - - first", b"<13>second", b"<13>3rd with \n inside", b"<14>fourth", b"x" * 40]
STREAM = (
    octet(STREAM_MSGS[0])
    + STREAM_MSGS[1]
    + b"\n"
    + octet(STREAM_MSGS[2])
    + STREAM_MSGS[3]
    + b"\r\n"
    + octet(STREAM_MSGS[4])
)


def test_framing_split_at_every_byte_boundary() -> None:
    for i in range(len(STREAM) + 1):
        assert feed_all(FrameDecoder(), [STREAM[:i], STREAM[i:]]) == STREAM_MSGS, i
    # and one byte per read
    assert feed_all(FrameDecoder(), [bytes([b]) for b in STREAM]) == STREAM_MSGS


msg_text = st.binary(min_size=1, max_size=60).map(
    lambda b: b"<13>" + b.replace(b"\n", b"").replace(b"\x00", b"")
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(msg_text, st.booleans()), min_size=1, max_size=8),
    st.lists(st.integers(min_value=0, max_value=600), max_size=10),
)
def test_framing_any_split_gives_the_same_messages(msgs: list[tuple[bytes, bool]], cuts: list[int]) -> None:
    stream = b"".join(octet(m) if oc else m + b"\n" for m, oc in msgs)
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    expected = [m if oc else m.rstrip(b"\r") for m, oc in msgs]
    assert feed_all(FrameDecoder(), chunks) == expected


def test_framing_oversized_octet_frame_is_skipped_by_its_length() -> None:
    dec = FrameDecoder(max_message_bytes=10)
    big = b"<13>" + b"x" * 50
    out = feed_all(dec, [octet(big)[:20], octet(big)[20:] + octet(b"<13>ok") + b"<13>lf\n"])
    assert out == [FrameError("oversized"), b"<13>ok", b"<13>lf"]


def test_framing_oversized_lf_frame_is_discarded_to_the_next_lf() -> None:
    dec = FrameDecoder(max_message_bytes=10)
    out = feed_all(
        dec, [b"<13>" + b"y" * 30, b"y" * 30, b"yyy\n<13>ok\n", b"<13>" + b"z" * 20 + b"\n<13>ok2\n"]
    )
    assert out == [FrameError("oversized"), b"<13>ok", FrameError("oversized"), b"<13>ok2"]
    assert dec.buffered == 0


def test_framing_memory_is_bounded() -> None:
    dec = FrameDecoder(max_message_bytes=1000)
    for _ in range(100):
        dec.feed(b"a" * 999)
        assert dec.buffered <= 2000
    dec = FrameDecoder(max_message_bytes=1000)
    dec.feed(b"99999999 ")
    for _ in range(100):
        dec.feed(b"a" * 999)
        assert dec.buffered == 0


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (b"20 <13>trunc", [FrameError("framing")]),
        (b"20", [FrameError("framing")]),
        (b"<13>no newline", [b"<13>no newline"]),
        (b"", []),
        (b"\n\n", []),
    ],
)
def test_framing_at_end_of_stream(tail: bytes, expected: list[bytes | FrameError]) -> None:
    assert feed_all(FrameDecoder(), [octet(b"<13>a"), tail]) == [b"<13>a", *expected]


def test_unframe_datagram() -> None:
    m = b"<13>1 - h a - - - x"
    assert unframe_datagram(octet(m)) == m
    assert unframe_datagram(b"5 <13>hello") == b"5 <13>hello"  # count does not match: the message
    assert unframe_datagram(m) == m


# --- server ---------------------------------------------------------------------------------------


class Sink:
    def __init__(self) -> None:
        self.items: list[tuple[SyslogMessage, str]] = []
        self.lock = threading.Lock()

    def __call__(self, msg: SyslogMessage, peer: str) -> None:
        with self.lock:
            self.items.append((msg, peer))

    def messages(self) -> list[str]:
        with self.lock:
            return [m.message for m, _ in self.items]


def wait_for(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def server(sink: Sink) -> Iterator[SyslogServer]:
    srv = SyslogServer("127.0.0.1:0", "127.0.0.1:0", sink, max_message_bytes=1024, max_connections=64)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def malformed(srv: SyslogServer, transport: str, reason: str) -> int:
    return srv.counts()["malformed"][(transport, reason)]


def delivered(srv: SyslogServer, transport: str) -> int:
    return sum(n for (t, _), n in srv.counts()["messages"].items() if t == transport)


def send_udp(srv: SyslogServer, *datagrams: bytes) -> None:
    assert srv.udp_address is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in datagrams:
            s.sendto(d, srv.udp_address)


def tcp_client(srv: SyslogServer) -> socket.socket:
    assert srv.tcp_address is not None
    return socket.create_connection(srv.tcp_address, timeout=5)


def test_udp_good_bad_and_oversized(server: SyslogServer, sink: Sink) -> None:
    send_udp(
        server,
        b"<13>Nov 22 10:00:00 h app: one\n",
        b"",
        b"<13>" + b"x" * 2000,
        b"<13>1 - h app - - - two",
        b"<13>caf\xe9",
        octet(b"<13>1 - h app - - - three"),
    )
    wait_for(lambda: delivered(server, "udp") == 4 and malformed(server, "udp", "empty") == 1)
    assert sink.messages() == ["one", "two", "caf\ufffd", "three"]
    assert malformed(server, "udp", "oversized") == 1
    assert malformed(server, "udp", "decode") == 1
    assert {peer for _, peer in sink.items} == {"127.0.0.1"}
    counts = server.counts()["messages"]
    assert counts[("udp", "rfc3164")] == 2 and counts[("udp", "rfc5424")] == 2


def test_tcp_mixed_framing_and_oversized_keep_flowing(server: SyslogServer, sink: Sink) -> None:
    with tcp_client(server) as c:
        c.sendall(octet(b"<13>1 - h app - - - one") + b"<13>two\n")
        c.sendall(b"3000 " + b"y" * 3000)  # oversized, octet counted: skipped by its length
        c.sendall(b"<13>" + b"z" * 3000 + b"\n")  # oversized, LF framed: skipped to the LF
        c.sendall(b"<13>three\n\n" + octet(b"<13>four"))
    wait_for(lambda: len(sink.items) == 4)
    assert sink.messages() == ["one", "two", "three", "four"]
    assert malformed(server, "tcp", "oversized") == 2
    wait_for(lambda: server.connections() == 0)


def test_tcp_disconnect_mid_frame_does_not_affect_others(server: SyslogServer, sink: Sink) -> None:
    with tcp_client(server) as good:
        good.sendall(b"<13>good-1\n")
        wait_for(lambda: sink.messages() == ["good-1"])
        with tcp_client(server) as bad:
            bad.sendall(b"100 <13>only part of it")
            wait_for(lambda: server.connections() == 2)
        wait_for(lambda: malformed(server, "tcp", "framing") == 1)
        # a half-sent LF frame on the good connection, completed after the bad one left
        good.sendall(b"<13>good")
        time.sleep(0.05)
        good.sendall(b"-2\n")
        wait_for(lambda: len(sink.items) == 2)
    assert sink.messages() == ["good-1", "good-2"]


def test_tcp_many_concurrent_clients(server: SyslogServer, sink: Sink) -> None:
    clients, per_client = 40, 25

    def client(i: int) -> None:
        with tcp_client(server) as c:
            for j in range(per_client):
                msg = f"<13>1 - h app - - - c{i} m{j}".encode()
                c.sendall(octet(msg) if j % 2 else msg + b"\n")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(lambda: len(sink.items) == clients * per_client)
    got = sink.messages()
    for i in range(clients):  # in order within each connection
        assert [m for m in got if m.startswith(f"c{i} ")] == [f"c{i} m{j}" for j in range(per_client)]
    wait_for(lambda: server.connections() == 0)


def test_tcp_max_connections(sink: Sink) -> None:
    with SyslogServer(None, "127.0.0.1:0", sink, max_connections=2) as srv:
        a, b = tcp_client(srv), tcp_client(srv)
        wait_for(lambda: srv.connections() == 2)
        c = tcp_client(srv)
        assert c.recv(1) == b""  # closed at once
        a.sendall(b"<13>still served\n")
        wait_for(lambda: sink.messages() == ["still served"])
        for s in (a, b, c):
            s.close()
        text = generate_latest(registry(srv)).decode()
        assert "vigil_syslog_connections_rejected_total 1.0" in text


class FakeClock:
    """A clock the test moves by hand (the receiver's `monotonic` or `clock` seam); counts its reads,
    so a test can wait for the receiver's idle sweeps to have looked at it."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    def wait_reads(self, n: int) -> None:
        """Until `n` more reads: with nothing sent meanwhile, each is one idle sweep, so the first of
        them has finished (closed what it closes) when the second starts."""
        target = self.reads + n
        wait_for(lambda: self.reads >= target)


def idle_closed(srv: SyslogServer) -> dict[str, float]:
    return {
        s.labels["reason"]: s.value
        for fam in srv.collect()
        for s in fam.samples
        if s.name == "vigil_syslog_connections_idle_closed_total"
    }


def test_tcp_idle_connections_are_closed_after_the_timeout(
    sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Silent connections cannot hold the `max_connections` slots: after `idle_timeout_s` the selector
    loop (which wakes at least once a second; here every 20 ms) closes them, flushing a partial LF
    frame like EOF."""
    monkeypatch.setattr(receiver, "_POLL_S", 0.02)
    mono = FakeClock()
    with SyslogServer(
        None, "127.0.0.1:0", sink, max_connections=2, idle_timeout_s=300, monotonic=mono
    ) as srv:
        a, b = tcp_client(srv), tcp_client(srv)
        wait_for(lambda: srv.connections() == 2)
        a.sendall(b"<13>unterminated")
        mono.now = 299.0
        mono.wait_reads(2)  # at least one whole sweep: not idle long enough yet
        assert srv.connections() == 2 and idle_closed(srv) == {"timeout": 0, "evicted": 0}
        mono.now = 600.0  # both silent for 300 s or more
        wait_for(lambda: srv.connections() == 0)
        assert a.recv(1) == b"" and b.recv(1) == b""
        assert sink.messages() == ["unterminated"]
        assert idle_closed(srv) == {"timeout": 2, "evicted": 0}
        with tcp_client(srv) as c:  # the slots are free again
            c.sendall(b"<13>after\n")
            wait_for(lambda: sink.messages() == ["unterminated", "after"])
        a.close()
        b.close()
        text = generate_latest(registry(srv)).decode()
    assert 'vigil_syslog_connections_idle_closed_total{reason="timeout"} 2.0' in text
    assert "vigil_syslog_connections_rejected_total 0.0" in text


def test_tcp_new_connection_replaces_the_longest_idle_one_at_the_cap(sink: Sink) -> None:
    """At `max_connections`, a newcomer takes the slot of the connection idle the longest if that has
    been idle a few seconds (5 s), instead of being rejected; otherwise it is rejected as before."""
    mono = FakeClock()
    with SyslogServer(None, "127.0.0.1:0", sink, max_connections=2, monotonic=mono) as srv:
        a, b = tcp_client(srv), tcp_client(srv)
        wait_for(lambda: srv.connections() == 2)
        early = tcp_client(srv)
        assert early.recv(1) == b""  # everyone idle < 5 s: rejected
        mono.now = 10.0
        b.sendall(b"<13>b1\n")  # b is active, a has been silent for 10 s
        wait_for(lambda: sink.messages() == ["b1"])
        newcomer = tcp_client(srv)
        assert a.recv(1) == b""  # a gave up its slot
        newcomer.sendall(b"<13>new\n")
        b.sendall(b"<13>b2\n")
        wait_for(lambda: sorted(sink.messages()) == ["b1", "b2", "new"])
        assert srv.connections() == 2
        assert idle_closed(srv) == {"timeout": 0, "evicted": 1}
        for s in (a, b, early, newcomer):
            s.close()
        assert "vigil_syslog_connections_rejected_total 1.0" in generate_latest(registry(srv)).decode()


def test_tcp_cap_full_of_silent_connections_does_not_lock_senders_out(sink: Sink) -> None:
    """The review's scenario: every slot held by a connection that never sends."""
    mono = FakeClock()
    with SyslogServer(None, "127.0.0.1:0", sink, max_connections=8, monotonic=mono) as srv:
        silent = [tcp_client(srv) for _ in range(8)]
        wait_for(lambda: srv.connections() == 8)
        mono.now = 6.0
        with tcp_client(srv) as c:
            c.sendall(b"<13>legit\n")
            wait_for(lambda: sink.messages() == ["legit"])
            assert srv.connections() == 8  # exactly one silent connection made room: the oldest
        assert silent[0].recv(1) == b""
        assert idle_closed(srv)["evicted"] == 1
        for s in silent:
            s.close()


def test_tcp_active_connection_is_never_closed_for_idleness(
    sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(receiver, "_POLL_S", 0.02)
    mono = FakeClock()
    with SyslogServer(None, "127.0.0.1:0", sink, idle_timeout_s=300, monotonic=mono) as srv:
        active, silent = tcp_client(srv), tcp_client(srv)
        wait_for(lambda: srv.connections() == 2)
        for i in range(6):  # 1200 s in all, never more than 200 s between two messages
            mono.now += 200.0
            active.sendall(f"<13>m{i}\n".encode())
            wait_for(lambda i=i: len(sink.items) == i + 1)  # type: ignore[misc]
            if i == 1:  # silent for 400 s now
                wait_for(lambda: srv.connections() == 1)
        mono.wait_reads(3)  # a sweep or two more
        assert srv.connections() == 1 and silent.recv(1) == b""
        active.sendall(b"<13>still open\n")
        wait_for(lambda: len(sink.items) == 7)
        assert sink.messages()[-1] == "still open"
        assert idle_closed(srv) == {"timeout": 1, "evicted": 0}
        active.close()
        silent.close()


def test_tcp_idle_timeout_can_be_turned_off(sink: Sink) -> None:
    mono = FakeClock()
    with SyslogServer(
        None, "127.0.0.1:0", sink, max_connections=1, idle_timeout_s=None, monotonic=mono
    ) as srv:
        a = tcp_client(srv)
        wait_for(lambda: srv.connections() == 1)
        mono.now = 1e9
        b = tcp_client(srv)
        assert b.recv(1) == b""  # rejected: nothing is idle-closed
        a.sendall(b"<13>kept\n")
        wait_for(lambda: sink.messages() == ["kept"])
        a.close()
        b.close()
    with pytest.raises(ValueError):
        SyslogServer(None, "127.0.0.1:0", sink, idle_timeout_s=0)


def test_callback_errors_are_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    def handler(msg: SyslogMessage, peer: str) -> None:
        seen.append(msg.message)
        if msg.message.startswith("boom"):
            raise RuntimeError("handler bug")

    with (
        caplog.at_level(logging.WARNING, logger="vigil.logs.syslog"),
        SyslogServer("127.0.0.1:0", None, handler) as srv,
    ):
        send_udp(srv, b"<13>boom 1", b"<13>boom 2", b"<13>fine")
        wait_for(lambda: len(seen) == 3)
        assert "vigil_syslog_callback_errors_total 2.0" in generate_latest(registry(srv)).decode()
    assert sum("on_message failed" in r.getMessage() for r in caplog.records) == 1


def registry(srv: SyslogServer) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(srv)
    return reg


def test_metrics_exposition(server: SyslogServer, sink: Sink) -> None:
    send_udp(server, b"<13>1 - h app - - - x", b"")
    wait_for(lambda: len(sink.items) == 1 and malformed(server, "udp", "empty") == 1)
    text = generate_latest(registry(server)).decode()
    assert 'vigil_syslog_messages_total{format="rfc5424",transport="udp"} 1.0' in text
    assert 'vigil_syslog_malformed_total{reason="empty",transport="udp"} 1.0' in text
    assert 'vigil_syslog_malformed_total{reason="framing",transport="tcp"} 0.0' in text
    assert "vigil_syslog_connections 0.0" in text
    assert 'vigil_syslog_last_message_timestamp_seconds{transport="udp"}' in text
    # Peer addresses appear only as the capped `sender` label (see test_per_sender_series_are_capped).
    assert [ln for ln in text.splitlines() if "127.0.0.1" in ln and 'sender="127.0.0.1"' not in ln] == []
    assert 'vigil_syslog_sender_messages_total{sender="127.0.0.1"} 1.0' in text


def test_ipv6_listen(sink: Sink) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        srv = SyslogServer("[::1]:0", "[::1]:0", sink)
        srv.start()
    except OSError:
        pytest.skip("::1 not available")
    try:
        assert srv.udp_address is not None and srv.tcp_address is not None
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.sendto(b"<13>v6 udp", srv.udp_address)
        with socket.create_connection(srv.tcp_address, timeout=5) as c:
            c.sendall(b"<13>v6 tcp\n")
        wait_for(lambda: len(sink.items) == 2)
        assert {p for _, p in sink.items} == {"::1"}
    finally:
        srv.stop()


@pytest.mark.parametrize("listen", ["nonsense", "127.0.0.1:99999", "::1:514"])
def test_bad_listen_address(sink: Sink, listen: str) -> None:
    with pytest.raises(ValueError):
        SyslogServer(listen, None, sink).start()


def test_stop_is_prompt_and_idempotent(sink: Sink, monkeypatch: pytest.MonkeyPatch) -> None:
    # The selector's fallback wake-up is an hour away, so only stop()'s wake can end the loop in time.
    monkeypatch.setattr(receiver, "_POLL_S", 3600.0)
    srv = SyslogServer("127.0.0.1:0", "127.0.0.1:0", sink)
    srv.start()
    c = tcp_client(srv)
    c.sendall(b"<13>partial")
    returns(srv.stop, what="stop()")
    returns(srv.stop, what="a second stop()")
    c.close()


# --- a real peer: util-linux logger ---------------------------------------------------------------


@pytest.mark.peer
@pytest.mark.parametrize(
    ("args", "transport", "fmt"),
    [
        (["-d"], "udp", "rfc5424"),
        (["-d", "--rfc3164"], "udp", "rfc3164"),
        (["-d", "--rfc5424", "--octet-count"], "udp", "rfc5424"),
        (["-T"], "tcp", "rfc5424"),
        (["-T", "--rfc3164"], "tcp", "rfc3164"),
        (["-T", "--rfc5424", "--octet-count"], "tcp", "rfc5424"),
        (["-T", "--rfc3164", "--octet-count"], "tcp", "rfc3164"),
    ],
)
def test_logger_peer(server: SyslogServer, sink: Sink, args: list[str], transport: str, fmt: str) -> None:
    logger = require_binary("logger")
    address = server.udp_address if transport == "udp" else server.tcp_address
    assert address is not None
    texts = ["Failed password for root from 198.51.100.7 port 4242 ssh2", "second message"]
    for text in texts:
        subprocess.run(
            [logger, "-n", address[0], "-P", str(address[1]), *args, "-t", "sshd", "-p", "auth.info", text],
            check=True,
            timeout=5,
        )
    wait_for(lambda: len(sink.items) == 2)
    for (msg, peer), text in zip(sink.items, texts, strict=True):
        assert (msg.format, msg.app_name, msg.message, peer) == (fmt, "sshd", text, "127.0.0.1")
        assert (msg.facility, msg.severity) == (4, 6)
        assert msg.hostname
        assert msg.timestamp_ms is not None and abs(msg.timestamp_ms - msg.received_ms) < 60_000
    assert delivered(server, transport) == 2
    assert sum(server.counts()["malformed"].values()) == 0
    # and the auth-log parser sees the sshd failure in the rendered line
    ev = parse_auth_line(to_log_line(sink.items[0][0], "127.0.0.1", 1).text, datetime.now(UTC))
    assert ev is not None and (ev.service, ev.result, ev.user, ev.source) == (
        "sshd",
        "failure",
        "root",
        "198.51.100.7",
    )


def test_per_sender_series_are_capped(sink: Sink) -> None:
    """`vigil_syslog_sender_*` per sending address (for "no syslog from X" alerts), at most
    `max_senders` of them; further senders share sender="other". 127.0.0.0/8 gives us several."""
    with SyslogServer("127.0.0.1:0", None, sink, max_senders=2) as srv:
        assert srv.udp_address is not None
        for i, src in enumerate(["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.2"]):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((src, 0))
                s.sendto(f"<13>Nov 22 10:00:00 fw app: m{i}".encode(), srv.udp_address)
        wait_for(lambda: delivered(srv, "udp") == 5)
        samples = {
            s.labels["sender"]: s.value
            for fam in srv.collect()
            for s in fam.samples
            if s.name == "vigil_syslog_sender_messages_total"
        }
    assert samples == {"127.0.0.1": 1, "127.0.0.2": 2, "other": 2}


def test_sender_slots_expire(sink: Sink) -> None:
    """When the sender table is full, a new address takes the slot of the sender not heard from for
    the longest time if that is `sender_expiry_s` or more; senders heard from recently keep theirs."""
    clock = FakeClock(1_700_000_000.0)
    with SyslogServer("127.0.0.1:0", None, sink, max_senders=2, sender_expiry_s=100, clock=clock) as srv:
        assert srv.udp_address is not None
        sent = 0

        def send_from(src: str, at: float) -> None:
            nonlocal sent
            clock.now = 1_700_000_000.0 + at
            assert srv.udp_address is not None
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((src, 0))
                s.sendto(b"<13>Nov 22 10:00:00 fw app: m", srv.udp_address)
            sent += 1
            wait_for(lambda: delivered(srv, "udp") == sent)

        def senders(name: str = "vigil_syslog_sender_messages_total") -> dict[str, float]:
            return {
                s.labels["sender"]: s.value for fam in srv.collect() for s in fam.samples if s.name == name
            }

        send_from("127.0.0.1", 0)  # e.g. a spoofed burst at startup fills the table
        send_from("127.0.0.2", 0)
        send_from("127.0.0.3", 50)  # full, nobody expired: "other"
        assert senders() == {"127.0.0.1": 1, "127.0.0.2": 1, "other": 1}
        send_from("127.0.0.2", 80)  # .2 is heard from again
        send_from("127.0.0.4", 120)  # .1 silent for 120 s >= 100: evicted, .4 gets its slot
        assert senders() == {"127.0.0.2": 2, "127.0.0.4": 1, "other": 1}
        send_from("127.0.0.5", 150)  # oldest is .2, silent 70 s only: keeps its slot
        send_from("127.0.0.1", 150)  # the evicted one is no longer special
        assert senders() == {"127.0.0.2": 2, "127.0.0.4": 1, "other": 3}
        last = senders("vigil_syslog_sender_last_message_timestamp_seconds")
        assert last == {"127.0.0.2": 1_700_000_080.0, "127.0.0.4": 1_700_000_120.0, "other": 1_700_000_150.0}
        send_from("127.0.0.1", 185)  # now .2 (silent 105 s) is evicted; .1 starts over at 1
        assert senders() == {"127.0.0.4": 1, "127.0.0.1": 1, "other": 3}
    with pytest.raises(ValueError):
        SyslogServer("127.0.0.1:0", None, sink, sender_expiry_s=0)


def test_stamps_outside_the_calendar_fall_back_to_the_receive_time() -> None:
    for raw in (
        b"<13>1 0001-01-01T00:00:00+14:00 h app - - - early",
        b"<13>1 9999-12-31T23:59:59-14:00 h app - - - late",
    ):
        line = to_log_line(parse_message(raw, 1_795_000_000_000), "192.0.2.1", 1)
        assert line.text.startswith("2026-") and line.text.endswith(("early", "late"))
