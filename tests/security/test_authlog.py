"""Tests for vigil.security.authlog, validated against CrowdSec hub's sshd/PAM fixtures."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.logs.processor import LogLine
from vigil.security.authlog import (
    METHODS,
    RESULTS,
    SERVICES,
    AuthCounter,
    AuthEvent,
    AuthLogProcessor,
    parse_line,
)

FIXTURES = Path(__file__).parent / "fixtures" / "crowdsec"
NOW = datetime(2024, 6, 15, 12, 0, 0, tzinfo=UTC)

# CrowdSec log_type values that denote an authentication attempt; the others in the fixtures
# (ssh_bad_keyexchange, ssh_auth_timeout, ssh_dispatch_fatal, ssh_refused_conn, pam_user_lock)
# are connection-level or lockout notices and must come back as None.
AUTH_TYPES = {"ssh_failed-auth": "failure", "pam_failed_auth": "failure", "auth_success": "success"}

_ASSERT = re.compile(
    r'^results\["s01-parse"\]\["[^"]+"\]\[(\d+)\]\.'
    r'(?:Success == (true|false)|Evt\.Meta\["(\w+)"\] == "(.*)")$'
)


def _expectations(name: str) -> list[tuple[str, dict[str, str] | None]]:
    """(log line, CrowdSec s01-parse Meta or None when CrowdSec's parser did not match) per line."""
    lines = (FIXTURES / name / f"{name}.log").read_text().splitlines()
    meta: dict[int, dict[str, str] | None] = {}
    for row in (FIXTURES / name / "parser.assert").read_text().splitlines():
        m = _ASSERT.match(row)
        if not m:
            continue
        i = int(m[1])
        if m[2] is not None:
            meta[i] = {} if m[2] == "true" else None
        elif meta.get(i) is not None:
            meta[i][m[3]] = m[4]  # type: ignore[index]
    assert sorted(meta) == list(range(len(lines))), f"{name}: assert indices do not cover the log"
    return [(line, meta[i]) for i, line in enumerate(lines)]


PARSER_FIXTURES = ["sshd-logs", "pam-logs", "sshd-invalid-bf", "sshd-success-logs"]


def test_crowdsec_parser_fixtures() -> None:
    recognised = total = negatives = 0
    for name in PARSER_FIXTURES:
        for line, meta in _expectations(name):
            ev = parse_line(line, NOW)
            expected = AUTH_TYPES.get((meta or {}).get("log_type", ""))
            if expected is None:
                assert ev is None, f"{name}: not an auth event per CrowdSec, got {ev}"
                negatives += 1
                continue
            assert meta is not None
            total += 1
            assert ev is not None, f"{name}: unrecognised auth line {line!r}"
            assert ev.result == expected, line
            assert ev.source == meta.get("source_ip", ""), line
            assert ev.user == meta.get("target_user", meta.get("user", ev.user)), line
            recognised += 1
    print(f"{recognised} of {total} CrowdSec auth lines recognised ({negatives} non-auth lines -> None)")
    assert recognised == total == 27


@pytest.mark.parametrize(("name", "ip"), [("ssh-bf", "35.188.49.176"), ("ssh-slow-bf", "103.100.210.198")])
def test_crowdsec_scenario_fixtures(name: str, ip: str) -> None:
    # These have only scenario.assert: every line feeds the ssh-bf bucket of one source IP.
    assert f'GetMeta("source_ip") == "{ip}"' in (FIXTURES / name / "scenario.assert").read_text()
    lines = [line for line in (FIXTURES / name / f"{name}.log").read_text().splitlines() if line]
    events = [parse_line(line, NOW) for line in lines]
    assert all(e is not None and e.source == ip and e.method == "invalid_user" for e in events)
    print(f"{name}: {len(events)} of {len(lines)} lines recognised")


def _ev(line: str) -> tuple[str, str, str, str, str] | None:
    e = parse_line(line, NOW)
    return None if e is None else (e.service, e.result, e.method, e.user, e.source)


H = "Jun 15 11:59:00 web1"

TABLE = [
    # sshd
    (
        f"{H} sshd[1]: Failed password for alice from 10.0.0.1 port 5 ssh2",
        ("sshd", "failure", "password", "alice", "10.0.0.1"),
    ),
    (
        f"{H} sshd[1]: Failed password for invalid user bob from 2001:db8::7 port 5 ssh2",
        ("sshd", "failure", "password", "bob", "2001:db8::7"),
    ),
    (
        f"{H} sshd[1]: Failed password for invalid user  from 10.0.0.1 port 5 ssh2",
        ("sshd", "failure", "password", "", "10.0.0.1"),
    ),
    (
        f"{H} sshd[1]: Failed publickey for carol from ::ffff:10.1.2.3 port 22 ssh2: RSA SHA256:xYz/1+",
        ("sshd", "failure", "publickey", "carol", "::ffff:10.1.2.3"),
    ),
    (
        f"{H} sshd[1]: Failed publickey for x from 1.1.1.1 port 1 ssh2: a b from 10.0.0.17 port 2 ssh2: "
        "RSA SHA256:k",
        ("sshd", "failure", "publickey", "x from 1.1.1.1 port 1 ssh2: a b", "10.0.0.17"),
    ),
    (
        f"{H} sshd[1]: Failed keyboard-interactive/pam for root from 10.0.0.2 port 1 ssh2",
        ("sshd", "failure", "keyboard-interactive", "root", "10.0.0.2"),
    ),
    (
        f"{H} sshd[1]: Failed none for invalid user x from 10.0.0.2 port 1 ssh2",
        ("sshd", "failure", "other", "x", "10.0.0.2"),
    ),
    (
        f"{H} sshd[1]: Invalid user admin from 10.0.0.3",
        ("sshd", "failure", "invalid_user", "admin", "10.0.0.3"),
    ),
    (
        f"{H} sshd[1]: Invalid user a b from fe80::1%eth0 port 9",
        ("sshd", "failure", "invalid_user", "a b", "fe80::1%eth0"),
    ),
    (
        f"{H} sshd[1]: Accepted password for dave from 10.0.0.4 port 2 ssh2",
        ("sshd", "success", "password", "dave", "10.0.0.4"),
    ),
    (
        f"{H} sshd[1]: Accepted publickey for eve from 2001:db8::1 port 2 ssh2: ED25519 SHA256:abc",
        ("sshd", "success", "publickey", "eve", "2001:db8::1"),
    ),
    (
        f"{H} sshd[1]: Accepted keyboard-interactive/pam for fred from 10.0.0.5 port 2 ssh2",
        ("sshd", "success", "keyboard-interactive", "fred", "10.0.0.5"),
    ),
    (
        f"{H} sshd[1]: Connection closed by authenticating user root 10.0.0.6 port 3 [preauth]",
        ("sshd", "failure", "preauth", "root", "10.0.0.6"),
    ),
    (
        f"{H} sshd[1]: PAM 2 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= "
        "rhost=10.0.0.8  user=root",
        ("sshd", "failure", "pam", "root", "10.0.0.8"),
    ),
    (
        f"{H} sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= "
        "rhost=2001:db8::9  user=gina",
        ("sshd", "failure", "pam", "gina", "2001:db8::9"),
    ),
    (
        f"{H} sshd[1]: error: PAM: Authentication failure for illegal user hal from 10.0.0.9",
        ("sshd", "failure", "pam", "hal", "10.0.0.9"),
    ),
    (
        f"{H} sshd-session[1]: Failed password for root from 10.0.0.10 port 5 ssh2",
        ("sshd", "failure", "password", "root", "10.0.0.10"),
    ),
    # A client-chosen username cannot fake the source address: the last " from <addr>" wins.
    (
        f"{H} sshd[1]: Failed password for invalid user x from 1.1.1.1 port 1 ssh2 "
        "from 10.0.0.11 port 5 ssh2",
        ("sshd", "failure", "password", "x from 1.1.1.1 port 1 ssh2", "10.0.0.11"),
    ),
    (
        f"{H} sshd[1]: Invalid user authentication failure; user=zz from 10.0.0.12 port 1",
        ("sshd", "failure", "invalid_user", "authentication failure; user=zz", "10.0.0.12"),
    ),
    # sudo
    (
        f"{H} sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/id",
        ("sudo", "success", "command", "alice", ""),
    ),
    (
        f"{H} sudo: alice : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/home/alice ; USER=root ; "
        "COMMAND=/usr/bin/id",
        ("sudo", "failure", "password", "alice", ""),
    ),
    (
        f"{H} sudo:      bob : user NOT in sudoers ; TTY=pts/1 ; PWD=/tmp ; USER=root ; COMMAND=/bin/sh",
        ("sudo", "failure", "not_in_sudoers", "bob", ""),
    ),
    (
        f"{H} sudo: bob : command not allowed ; TTY=pts/1 ; PWD=/tmp ; USER=root ; COMMAND=/bin/sh",
        ("sudo", "failure", "command", "bob", ""),
    ),
    (
        f"{H} sudo: bob : a password is required ; PWD=/tmp ; USER=root ; COMMAND=/bin/sh",
        ("sudo", "failure", "password", "bob", ""),
    ),
    (
        f"{H} sudo: pam_unix(sudo:auth): authentication failure; logname=bob uid=1000 euid=0 tty=/dev/pts/1 "
        "ruser=bob rhost=  user=bob",
        ("sudo", "failure", "pam", "bob", ""),
    ),
    # su
    (f"{H} su[9]: (to root) alice on pts/0", ("su", "success", "other", "alice", "")),
    (f"{H} su[9]: FAILED SU (to root) alice on pts/0", ("su", "failure", "other", "alice", "")),
    (f"{H} su[9]: FAILED su for root by mallory", ("su", "failure", "other", "mallory", "")),
    (f"{H} su[9]: Successful su for root by alice", ("su", "success", "other", "alice", "")),
    (f"{H} su[9]: - pts/0 mallory:root", ("su", "failure", "other", "mallory", "")),
    (
        f"{H} su[9]: pam_unix(su-l:auth): authentication failure; logname=alice uid=1000 euid=0 tty=pts/0 "
        "ruser=alice rhost=  user=root",
        ("su", "failure", "pam", "root", ""),
    ),
    # other PAM services and login
    (
        f"{H} gdm-password][9]: pam_unix(gdm-password:auth): authentication failure; logname= uid=0 euid=0 "
        "tty=/dev/tty1 ruser= rhost=  user=ivan",
        ("pam", "failure", "pam", "ivan", ""),
    ),
    (
        f"{H} login[9]: FAILED LOGIN (1) on '/dev/tty1' FOR 'judy', Authentication failure",
        ("login", "failure", "other", "judy", ""),
    ),
    # Other header formats
    (
        "2024-06-15T11:59:00.123456+02:00 web1 sshd[1]: Invalid user k from 10.0.0.13 port 1",
        ("sshd", "failure", "invalid_user", "k", "10.0.0.13"),
    ),
    (
        "<38>1 2024-06-15T11:59:00.123Z web1 sshd 77 - - Accepted publickey for l from 10.0.0.14 port 3 ssh2",
        ("sshd", "success", "publickey", "l", "10.0.0.14"),
    ),
    (
        '<38>1 2024-06-15T11:59:00Z web1 sshd 77 - [meta x="1"] Invalid user m from 10.0.0.15',
        ("sshd", "failure", "invalid_user", "m", "10.0.0.15"),
    ),
    (
        "<86>Jun 15 11:59:00 web1 sshd[1]: Invalid user n from 10.0.0.16",
        ("sshd", "failure", "invalid_user", "n", "10.0.0.16"),
    ),
]


@pytest.mark.parametrize(("line", "expected"), TABLE)
def test_table(line: str, expected: tuple[str, str, str, str, str]) -> None:
    assert _ev(line) == expected


NOT_AUTH = [
    "",
    "garbage",
    f"{H} sshd[1]: pam_unix(sshd:session): session opened for user alice(uid=1000) by (uid=0)",
    f"{H} sshd[1]: Received disconnect from 10.0.0.1 port 5:11: disconnected by user",
    f"{H} sshd[1]: Disconnected from user alice 10.0.0.1 port 5",
    f"{H} sshd[1]: Connection closed by 10.0.0.1 port 5",
    f"{H} sshd[1]: Server listening on 0.0.0.0 port 22.",
    f"{H} sudo: pam_unix(sudo:session): session opened for user root(uid=0) by alice(uid=1000)",
    f"{H} sudo: alice : unknown thing without fields",
    f"{H} su[9]: pam_unix(su:session): session closed for user root",
    f"{H} CRON[5]: pam_unix(cron:session): session opened for user root by (uid=0)",
    # A non-auth program echoing auth-looking text is ignored.
    f"{H} myapp[3]: Failed password for root from 10.0.0.1 port 5 ssh2",
    f"{H} kernel: [1.0] Invalid user x from 10.0.0.1",
    "Failed password for root from 10.0.0.1 port 5 ssh2",  # no syslog header
    "x" * 10_000 + f"{H} sshd[1]: Invalid user a from 10.0.0.1",
    # Consequences of attempts already counted, one line each: not attempts themselves.
    f"{H} sshd[1]: error: maximum authentication attempts exceeded for root from 10.0.0.7 port 4 ssh2 "
    "[preauth]",
    f"{H} sshd[1]: error: maximum authentication attempts exceeded for invalid user oracle from 10.0.0.7 "
    "port 4 ssh2 [preauth]",
    # Folded repeats of non-auth lines, and repeat counts rsyslog does not write.
    f"{H} sshd[1]: message repeated 3 times: [ Connection closed by 10.0.0.1 port 5]",
    f"{H} sshd[1]: message repeated 1234567 times: [ Failed password for root from 10.0.0.1 port 5 ssh2]",
    f"{H} sshd[1]: message repeated 0 times: [ Failed password for root from 10.0.0.1 port 5 ssh2]",
    f"{H} sshd[1]: message repeated 5 times: Failed password for root from 10.0.0.1 port 5 ssh2",
    f"{H} myapp[3]: message repeated 5 times: [ Failed password for root from 10.0.0.1 port 5 ssh2]",
]


@pytest.mark.parametrize("line", NOT_AUTH)
def test_not_auth(line: str) -> None:
    assert parse_line(line, NOW) is None


def test_event_fields() -> None:
    line = "Jun 15 11:59:00 web1 sshd[1]: Invalid user a from 10.0.0.1"
    ev = parse_line(line + "\n", NOW)
    assert ev == AuthEvent(
        timestamp_ms=int(datetime(2024, 6, 15, 11, 59, tzinfo=UTC).timestamp() * 1000),
        host="web1",
        service="sshd",
        result="failure",
        method="invalid_user",
        user="a",
        source="10.0.0.1",
        message=line,
    )


def test_rsyslog_folded_repeats_are_each_an_attempt() -> None:
    # rsyslog's repeat filter (on by default on Debian/Ubuntu) folds a brute-force burst into one line.
    line = f"{H} sshd[4711]: message repeated 5 times: [ Failed password for root from 1.2.3.4 port 22 ssh2]"
    ev = parse_line(line, NOW)
    assert ev is not None
    assert (ev.service, ev.result, ev.method, ev.user, ev.source, ev.count) == (
        "sshd",
        "failure",
        "password",
        "root",
        "1.2.3.4",
        5,
    )
    assert ev.message == line
    sudo = parse_line(
        f"{H} sudo: message repeated 2 times: [ bob : user NOT in sudoers ; TTY=pts/1 ; PWD=/tmp ; "
        "USER=root ; COMMAND=/bin/sh]",
        NOW,
    )
    assert sudo is not None and (sudo.method, sudo.user, sudo.count) == ("not_in_sudoers", "bob", 2)
    one = parse_line(f"{H} sshd[1]: Failed password for root from 1.2.3.4 port 22 ssh2", NOW)
    assert one is not None and one.count == 1
    counter = AuthCounter()
    counter.add(ev)
    counter.add(one)
    (fam,) = counter.collect()
    assert [(s.labels["method"], s.value) for s in fam.samples] == [("password", 6.0)]


def test_processor_event_carries_the_repeat_count() -> None:
    proc = AuthLogProcessor()
    text = f"{H} sshd[4711]: message repeated 5 times: [ Failed password for root from 1.2.3.4 port 22 ssh2]"
    [event] = proc.process(LogLine("auth", text, int(NOW.timestamp() * 1000)))
    assert event.fields["count"] == 5 and event.fields["source_address"] == "1.2.3.4"
    assert event.message.endswith("from 1.2.3.4, 5 times")
    [single] = proc.process(LogLine("auth", f"{H} sshd[1]: Invalid user a from 10.0.0.1", 0))
    assert single.fields["count"] == 1


def _ts(line: str, now: datetime) -> datetime:
    ev = parse_line(line + " sshd[1]: Invalid user a from 10.0.0.1", now)
    assert ev is not None and ev.timestamp_ms is not None
    return datetime.fromtimestamp(ev.timestamp_ms / 1000, UTC)


def test_timestamps() -> None:
    # Year rollover both ways, single-digit day with one or two spaces, zone of `now`.
    assert _ts("Dec 31 23:59:59 h", datetime(2025, 1, 1, 0, 0, 5, tzinfo=UTC)) == datetime(
        2024, 12, 31, 23, 59, 59, tzinfo=UTC
    )
    assert _ts("Jan  1 00:00:01 h", datetime(2024, 12, 31, 23, 59, tzinfo=UTC)) == datetime(
        2025, 1, 1, 0, 0, 1, tzinfo=UTC
    )
    assert _ts("Nov 2 15:40:14 h", NOW) == datetime(2023, 11, 2, 15, 40, 14, tzinfo=UTC)
    assert _ts("Feb 29 10:00:00 h", datetime(2025, 3, 1, tzinfo=UTC)) == datetime(2024, 2, 29, 10, tzinfo=UTC)
    cet = timezone(timedelta(hours=1))
    assert _ts("Jan 10 10:00:00 h", datetime(2024, 1, 10, 12, tzinfo=cet)) == datetime(
        2024, 1, 10, 9, tzinfo=UTC
    )
    assert _ts("Jan 10 10:00:00 h", datetime(2024, 1, 10, 12)) == datetime(2024, 1, 10, 10, tzinfo=UTC)
    assert _ts("2023-11-14T00:20:42.738197+01:00 h", NOW) == datetime(
        2023, 11, 13, 23, 20, 42, 738000, tzinfo=UTC
    )
    assert _ts("2023-11-14T00:20:42.123456789Z h", NOW) == datetime(
        2023, 11, 14, 0, 20, 42, 123000, tzinfo=UTC
    )
    assert _ts("2023-11-14 00:20:42 h", NOW) == datetime(2023, 11, 14, 0, 20, 42, tzinfo=UTC)
    # Impossible dates still yield an event, just without a timestamp.
    ev = parse_line("Feb 30 10:00:00 h sshd[1]: Invalid user a from 10.0.0.1", NOW)
    assert ev is not None and ev.timestamp_ms is None


def test_counter() -> None:
    counter = AuthCounter()
    for name in PARSER_FIXTURES:
        for line in (FIXTURES / name / f"{name}.log").read_text().splitlines():
            ev = parse_line(line, NOW)
            if ev is not None:
                counter.add(ev)
    # Out-of-set labels are clamped, so cardinality stays bounded.
    counter.add(AuthEvent(None, "h", "evil\n", "maybe", "x" * 100, "u", "", ""))
    (fam,) = counter.collect()
    assert fam.name == "vigil_auth_attempts" and fam.type == "counter"
    samples = {tuple(s.labels[k] for k in ("service", "result", "method")): s.value for s in fam.samples}
    assert all(s.name == "vigil_auth_attempts_total" for s in fam.samples)
    assert samples[("sshd", "success", "publickey")] == 3
    assert samples[("sshd", "success", "password")] == 1
    assert samples[("sshd", "failure", "invalid_user")] == 4
    assert samples[("sshd", "failure", "preauth")] == 12
    assert samples[("sudo", "failure", "pam")] == 1
    assert samples[("pam", "failure", "other")] == 1
    for service, result, method in samples:
        assert service in SERVICES and result in RESULTS and method in METHODS


def test_counter_empty_family() -> None:
    (fam,) = AuthCounter().collect()
    assert fam.samples == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text: str) -> None:
    ev = parse_line(text, NOW)
    if ev is not None:
        assert ev.service in SERVICES and ev.result in RESULTS and ev.method in METHODS


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([line for line, _ in TABLE]), st.text(max_size=40), st.integers(0, 200))
def test_mutated_lines_never_raise(line: str, junk: str, pos: int) -> None:
    ev = parse_line(line[:pos] + junk + line[pos:], NOW)
    if ev is not None:
        assert ev.service in SERVICES and ev.result in RESULTS and ev.method in METHODS
