"""Authentication events from auth.log / secure / journal lines (pure parsing, no I/O).

`parse_line` turns one syslog line into an `AuthEvent` (or None when the line is not an
authentication attempt); `AuthCounter` aggregates events into `vigil_auth_attempts_total`.

Accepted headers: RFC 3164 (`Mon DD HH:MM:SS host prog[pid]: msg`, year inferred from `now`),
RFC 3339 / rsyslog high-precision (`2023-11-14T00:20:42.738197+01:00 host prog[pid]: msg`,
also journalctl `-o short-iso`) and RFC 5424 (`<PRI>1 TIMESTAMP host app procid msgid SD msg`).
An optional `<PRI>` prefix is ignored. rsyslog's repeat filter (`$RepeatedMsgReduction`, on by default
on Debian/Ubuntu) folds identical consecutive lines into `message repeated N times: [ <message>]`:
that is N attempts, exactly the bursts a brute-force counter exists for, so the folded message is
parsed and the event carries `count` N (counted N times).

Label sets are closed so a hostile log cannot blow up cardinality:

* service: `sshd`, `sudo`, `su`, `login`, `pam` (a PAM failure from any other PAM service).
* result: `success`, `failure`.
* method:
    - `password`, `publickey`, `keyboard-interactive`: sshd "Accepted/Failed <method> for ...";
    - `invalid_user`: sshd "Invalid user X from IP" (the account does not exist);
    - `preauth`: sshd "Connection closed / Disconnected / Connection reset by [authenticating|invalid]
      user X IP port N [preauth]" and "Connection closed by IP port N [preauth]" — the client gave
      up before authenticating. CrowdSec counts these as failed auth, so do we, under their own
      method so that they can be told apart from the password/publickey failures they often follow;
    - `not_in_sudoers`: sudo "user NOT in sudoers";
    - `command`: sudo ran (success) or refused (failure, "command not allowed") a command;
    - `pam`: a PAM module reported the failure ("authentication failure; ... user=X",
      "PAM N more authentication failures", sshd "error: PAM: Authentication failure for X from H");
    - `other`: anything else that is still an auth attempt (sshd AllowUsers/DenyUsers refusals,
      obfuscated-handshake probes, hostbased/gssapi/none methods, su, login(1) "FAILED LOGIN").

One login attempt can legitimately produce several events (e.g. "Invalid user X", then "Failed
password for invalid user X", then a pam_unix failure): every line is counted, and `method` tells
which log line it came from.

Not auth attempts (return None): session open/close, key-exchange negotiation failures,
"Timeout before authentication", refused connections (tcp wrappers), pam_tally/faillock lockout
notices, sshd's "maximum authentication attempts exceeded" — these are connection-level events or
consequences of attempts already counted (each failed try behind the limit has its own line).

`user` is the account named by the line: for sudo/su the invoking user (not the target, usually
root); for PAM lines the `user=` field. `source` is the remote address as logged (IPv4, IPv6 or a
hostname when sshd runs with UseDNS), "" for local events.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from prometheus_client import Metric
from prometheus_client.core import CounterMetricFamily

from vigil.logs.processor import LogLine
from vigil.logs.syslogparse import MONTHS, bsd_stamp_ms, iso_ms
from vigil.model.event import Event

__all__ = ["METHODS", "RESULTS", "SERVICES", "AuthCounter", "AuthEvent", "AuthLogProcessor", "parse_line"]

SERVICES = frozenset({"sshd", "sudo", "su", "login", "pam"})
RESULTS = frozenset({"success", "failure"})
METHODS = frozenset(
    {
        "password",
        "publickey",
        "keyboard-interactive",
        "invalid_user",
        "preauth",
        "not_in_sudoers",
        "command",
        "pam",
        "other",
    }
)

# Lines longer than this are not auth messages worth parsing; bounding also keeps regex cost flat.
_MAX_LINE = 8192


@dataclass(frozen=True)
class AuthEvent:
    timestamp_ms: int | None
    host: str
    service: str
    result: str
    method: str
    user: str
    source: str
    message: str
    count: int = 1  # attempts the line stands for: N for rsyslog's "message repeated N times"


# --- syslog header --------------------------------------------------------------------------------

_PRI = r"(?:<\d{1,3}>)?"
# Program tag "prog[pid]:" or "prog:"; tags may hold dots, dashes, slashes (e.g. "sshd-session").
_TAG = r"(?P<prog>[^\s\[:]+)(?:\[(?P<pid>\d+)\])?:\s?"
_RFC3164 = re.compile(
    _PRI + r"(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(?P<day>\d{1,2}) "
    r"(?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d) (?P<host>\S+) " + _TAG + r"(?P<msg>.*)",
    re.DOTALL,
)
_ISO_TS = r"(?P<ts>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?)"
_ISO = re.compile(_PRI + _ISO_TS + r" (?P<host>\S+) " + _TAG + r"(?P<msg>.*)", re.DOTALL)
# RFC 5424: <PRI>VERSION TS HOST APP PROCID MSGID SD MSG; SD is "-" or one or more [..] blocks.
_RFC5424 = re.compile(
    r"<\d{1,3}>1 (?:-|" + _ISO_TS + r") (?P<host>\S+) (?P<prog>\S+) (?P<pid>\S+) \S+ "
    r"(?:-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?P<msg>.*))?",
    re.DOTALL,
)


def _tz(now: datetime) -> tzinfo:
    # Naive `now` is taken as UTC: the parser must not depend on the machine's local zone.
    return now.tzinfo or UTC


def _rfc3164_ms(m: re.Match[str], now: datetime) -> int | None:
    return _stamp_ms(m["mon"], m["day"], m["h"], m["m"], m["s"], now)


@functools.lru_cache(maxsize=4096)
def _stamp_ms(mon: str, day: str, h: str, mi: str, sec: str, now: datetime) -> int | None:
    # Memoised: building datetimes per line was a fifth of auth parsing, and a log has few distinct
    # seconds per `now` (the time a batch of lines is read). The year is inferred as for syslog.
    tz = _tz(now)
    ref_ms = int((now if now.tzinfo else now.replace(tzinfo=tz)).timestamp() * 1000)
    return bsd_stamp_ms(MONTHS[mon], int(day), int(h), int(mi), int(sec), 0, received_ms=ref_ms, tz=tz)


def _iso_ms(ts: str | None, now: datetime) -> int | None:
    return iso_ms(ts, _tz(now)) if ts else None


def _split_header(line: str, now: datetime) -> tuple[int | None, str, str, str] | None:
    """(timestamp_ms, host, program, message) or None when the header is not syslog."""
    m = _RFC3164.match(line)
    if m:
        return _rfc3164_ms(m, now), m["host"], m["prog"], m["msg"]
    m = _ISO.match(line)
    if m:
        return _iso_ms(m["ts"], now), m["host"], m["prog"], m["msg"]
    m = _RFC5424.match(line)
    if m:
        return _iso_ms(m["ts"], now), m["host"], m["prog"], m["msg"] or ""
    return None


# --- message patterns -----------------------------------------------------------------------------

# Users are matched lazily up to the " from <addr>" that ends the line, because sshd logs the
# client-supplied name verbatim (it may be empty or contain spaces).
_ADDR = r"(?P<src>[0-9A-Za-z:.%_\-]+)"
_PORT = r"(?: port \d+)?"

# Accepted lines may carry a long certificate description; the user there is a real account.
_SSHD_ACCEPTED = re.compile(
    r"Accepted (?P<meth>\S+) for (?P<user>.*?) from " + _ADDR + _PORT + r"(?: ssh\d?)?(?::.*)?$"
)
# The key suffix ("ssh2: RSA SHA256:...") is exactly two tokens, so it cannot swallow a spoofed
# " from <addr> port N" planted in the username: the real, last " from" always wins.
_SSHD_FAILED = re.compile(
    r"Failed (?P<meth>\S+) for (?:invalid user )?(?P<user>.*?) from "
    + _ADDR
    + _PORT
    + r"(?: ssh\d?)?(?:: \S+ \S+)?\s*$"
)
_SSHD_INVALID = re.compile(r"[Ii]nvalid user (?P<user>.*?) from " + _ADDR + _PORT + r"\s*$")
_SSHD_PREAUTH_USER = re.compile(
    r"(?:Connection closed by|Disconnected from|Connection reset by) (?:authenticating|invalid) user "
    r"(?P<user>.*?) " + _ADDR + _PORT + r" \[preauth\]\s*$"
)
_SSHD_PREAUTH_ADDR = re.compile(r"Connection (?:closed|reset) by " + _ADDR + _PORT + r" \[preauth\]\s*$")
_SSHD_NOT_ALLOWED = re.compile(r"User (?P<user>.*?) from " + _ADDR + r" not allowed because ")
# sshd with UsePAM + keyboard-interactive: "error: PAM: Authentication failure for [illegal user] X from H".
_SSHD_PAM_ERROR = re.compile(
    r"(?:error: )?PAM: Authentication failure for (?:illegal user )?(?P<user>.*?) from " + _ADDR + r"\s*$"
)
_SSHD_MAGIC = re.compile(r"Magic value check failed \(\d+\) on obfuscated handshake from " + _ADDR + _PORT)

# PAM: "pam_unix(sshd:auth): authentication failure; logname= uid=0 ... rhost=IP  user=X" and
# sshd's "PAM 2 more authentication failures; logname= ... rhost=IP user=X".
_PAM_FAILURE = re.compile(
    r"(?:(?P<module>pam_\w+)\((?P<pamsvc>[^:)]+):auth\): )?"
    r"(?:authentication failure|PAM \d+ more authentication failures?);(?P<kv>.*)$"
)
_KV = re.compile(r"(\w+)=(\S*)")

# sudo: "alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/ls"
# (sudo >= 1.9.? may prefix a reason: "3 incorrect password attempts ; TTY=...").
_SUDO = re.compile(r"\s*(?P<user>\S+) : (?:(?P<reason>[^;=]*?) ; )?(?:TTY|PWD|USER|HOST)=.*?(?:COMMAND=|$)")

_SU_OK = re.compile(
    r"(?:\(to (?P<target>\S+)\) (?P<user>\S+) on \S+|Successful su for \S+ by (?P<user2>\S+))\s*$"
)
# Old shadow su: "+ pts/0 bob:root" (success) / "- pts/0 bob:root" (failure).
_SU_SHADOW = re.compile(r"(?P<ok>[+-]) \S+ (?P<user>[^:\s]+):\S+\s*$")
# login(1): "FAILED LOGIN (1) on '/dev/tty1' FOR 'bob', Authentication failure".
_LOGIN_FAIL = re.compile(r"FAILED LOGIN \(\d+\) on '[^']*' FOR '(?P<user>[^']*)'")
_SU_FAIL = re.compile(
    r"(?:FAILED SU \(to (?P<target>\S+)\) (?P<user>\S+) on \S+|FAILED su for \S+ by (?P<user2>\S+))\s*$"
)

_SSH_METHODS = {"password": "password", "publickey": "publickey"}

# rsyslog's folded repeats: `message repeated %d times: [%.800s]`, the message keeping the space
# that followed the tag's colon. More than six digits is no repeat count rsyslog writes between
# flushes: such a line is left unparsed rather than counted a million times.
_REPEATED = re.compile(r"message repeated (?P<n>[1-9]\d{0,5}) times: \[ ?(?P<msg>.*)\]\s*$", re.DOTALL)


def _sshd_method(raw: str) -> str:
    if raw in _SSH_METHODS:
        return _SSH_METHODS[raw]
    # "keyboard-interactive/pam" is how PAM-backed password logins appear.
    if raw.startswith("keyboard-interactive"):
        return "keyboard-interactive"
    return "other"


def _service(prog: str) -> str | None:
    """Map a syslog program tag to a service label; None for programs we do not parse."""
    base = prog.rsplit("/", 1)[-1]
    if base in ("sshd", "sshd-session", "sshd-auth"):  # OpenSSH >= 9.8 splits sshd per session
        return "sshd"
    if base == "sudo":
        return "sudo"
    if base in ("su", "su-l"):
        return "su"
    if base == "login":
        return "login"
    return None


def _pam_service(pamsvc: str | None, fallback: str | None) -> str:
    if pamsvc:
        svc = _service(pamsvc)
        if svc is not None:
            return svc
        return "pam"
    return fallback or "pam"


def _parse_pam(msg: str, prog_service: str | None) -> tuple[str, str, str, str, str] | None:
    # Anchored: a client-chosen sshd username must not be able to smuggle in a fake PAM record.
    m = _PAM_FAILURE.match(msg)
    if m is None:
        return None
    kv = dict(_KV.findall(m["kv"]))
    service = _pam_service(m["pamsvc"], prog_service)
    return service, "failure", "pam", kv.get("user", ""), kv.get("rhost", "")


def _parse_sshd(msg: str) -> tuple[str, str, str, str] | None:
    """(result, method, user, source) for an sshd message, or None."""
    m = _SSHD_ACCEPTED.match(msg)
    if m:
        return "success", _sshd_method(m["meth"]), m["user"], m["src"]
    m = _SSHD_FAILED.match(msg)
    if m:
        return "failure", _sshd_method(m["meth"]), m["user"], m["src"]
    m = _SSHD_INVALID.match(msg)
    if m:
        return "failure", "invalid_user", m["user"], m["src"]
    m = _SSHD_PREAUTH_USER.match(msg)
    if m:
        return "failure", "preauth", m["user"], m["src"]
    m = _SSHD_PREAUTH_ADDR.match(msg)
    if m:
        return "failure", "preauth", "", m["src"]
    m = _SSHD_NOT_ALLOWED.match(msg)
    if m:
        return "failure", "other", m["user"], m["src"]
    m = _SSHD_PAM_ERROR.match(msg)
    if m:
        return "failure", "pam", m["user"], m["src"]
    m = _SSHD_MAGIC.match(msg)
    if m:
        return "failure", "other", "", m["src"]
    return None


def _parse_sudo(msg: str) -> tuple[str, str, str] | None:
    """(result, method, user) for a sudo message, or None."""
    m = _SUDO.match(msg)
    if m is None:
        return None
    reason = (m["reason"] or "").strip()
    if not reason:
        # Plain "user : TTY=... ; COMMAND=..." is sudo's record of a command it ran.
        return ("success", "command", m["user"]) if "COMMAND=" in msg else None
    low = reason.lower()
    if "not in sudoers" in low:
        return "failure", "not_in_sudoers", m["user"]
    if "incorrect password" in low or "password is required" in low:
        return "failure", "password", m["user"]
    if "command not allowed" in low:
        return "failure", "command", m["user"]
    return "failure", "other", m["user"]


def _parse_su(msg: str) -> tuple[str, str] | None:
    """(result, user) for an su message, or None."""
    m = _SU_FAIL.match(msg)
    if m:
        return "failure", m["user"] or m["user2"]
    m = _SU_OK.match(msg)
    if m:
        return "success", m["user"] or m["user2"]
    m = _SU_SHADOW.match(msg)
    if m:
        return ("success" if m["ok"] == "+" else "failure"), m["user"]
    return None


def parse_line(line: str, now: datetime) -> AuthEvent | None:
    """Parse one syslog/journal line; None when it is not an authentication attempt.

    `now` is the reference for the missing RFC 3164 year and supplies the zone for stamps
    without an offset (naive `now` means UTC).
    """
    if len(line) > _MAX_LINE:
        return None
    line = line.rstrip("\r\n")
    header = _split_header(line, now)
    if header is None:
        return None
    ts, host, prog, msg = header
    prog_service = _service(prog)
    count = 1
    if msg.startswith("message repeated "):
        folded = _REPEATED.match(msg)
        if folded is None:
            return None
        count, msg = int(folded["n"]), folded["msg"]

    def event(service: str, result: str, method: str, user: str, source: str) -> AuthEvent:
        return AuthEvent(ts, host, service, result, method, user, source, line, count)

    # PAM failures are logged by whichever program hosts the PAM stack, so try them first.
    pam = _parse_pam(msg, prog_service)
    if pam is not None:
        return event(*pam)
    if prog_service == "sshd":
        sshd = _parse_sshd(msg)
        return None if sshd is None else event("sshd", *sshd)
    if prog_service == "sudo":
        sudo = _parse_sudo(msg)
        return None if sudo is None else event("sudo", sudo[0], sudo[1], sudo[2], "")
    if prog_service == "su":
        su = _parse_su(msg)
        return None if su is None else event("su", su[0], "other", su[1], "")
    if prog_service == "login":
        m = _LOGIN_FAIL.match(msg)
        return None if m is None else event("login", "failure", "other", m["user"], "")
    return None


class AuthCounter:
    """Counts events as `vigil_auth_attempts_total{service,result,method}`.

    Labels are clamped to the closed sets above (unknown values become "other"/"pam"), so the
    series count is bounded whatever `add` is fed. Thread-safe: a log follower calls `add` while
    the scrape loop calls `collect`.
    """

    name = "authlog"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}

    def add(self, event: AuthEvent) -> None:
        service = event.service if event.service in SERVICES else "pam"
        result = event.result if event.result in RESULTS else "failure"
        method = event.method if event.method in METHODS else "other"
        key = (service, result, method)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + max(1, event.count)

    def collect(self) -> Iterable[Metric]:
        fam = CounterMetricFamily(
            "vigil_auth_attempts",
            "Authentication attempts seen in auth logs, by service, result and method.",
            labels=["service", "result", "method"],
        )
        with self._lock:
            items = sorted(self._counts.items())
        for labels, count in items:
            fam.add_metric(list(labels), float(count))
        return [fam]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"counts": [[*k, n] for k, n in sorted(self._counts.items())]}

    def restore(self, state: dict[str, Any]) -> None:
        counts = {(str(sv), str(r), str(m)): int(n) for sv, r, m, n in state.get("counts", [])}
        with self._lock:
            self._counts = counts


class AuthLogProcessor:
    """The log pipeline's auth processor: counts every attempt and keeps each as an `auth` event
    with the user and source address (the detail that must not become a label)."""

    name = "authlog"

    def __init__(self) -> None:
        self.counter = AuthCounter()
        self._now_ms = -1
        self._now = datetime.fromtimestamp(0, UTC)

    def process(self, line: LogLine) -> list[Event]:
        if line.time_ms != self._now_ms:  # one `now` per batch of lines: convert it once
            self._now_ms, self._now = line.time_ms, datetime.fromtimestamp(line.time_ms / 1000, UTC)
        parsed = parse_line(line.text, self._now)
        if parsed is None:
            return []
        self.counter.add(parsed)
        who = f" for {parsed.user}" if parsed.user else ""
        where = f" from {parsed.source}" if parsed.source else ""
        times = f", {parsed.count} times" if parsed.count > 1 else ""
        return [
            Event(
                parsed.timestamp_ms if parsed.timestamp_ms is not None else line.time_ms,
                "auth",
                f"{parsed.service} {parsed.result} ({parsed.method}){who}{where}{times}",
                {
                    "service": parsed.service,
                    "result": parsed.result,
                    "method": parsed.method,
                    "user": parsed.user,
                    "source_address": parsed.source,
                    "host": parsed.host,
                    "line": parsed.message,
                    "count": parsed.count,
                },
            )
        ]

    def collect(self) -> Iterable[Metric]:
        return self.counter.collect()

    def snapshot(self) -> dict[str, Any]:
        return self.counter.snapshot()

    def restore(self, state: dict[str, Any]) -> None:
        self.counter.restore(state)
