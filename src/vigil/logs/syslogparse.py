"""Syslog message parsing and TCP framing (pure functions, no I/O), for the syslog receiver.

Firewalls and network gear (pfSense, Cisco, switches, appliances) can only *send* logs, and what they
send is rarely textbook syslog. `parse_message` therefore aims to deliver every message with as much
header as it can recognise, rather than to validate:

* RFC 5424 (`<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`), NILVALUEs, structured data with escaped
  `\\]` / `\\"` / `\\\\`, a UTF-8 BOM before MSG.
* RFC 3164 and its real-world variants: with or without HOSTNAME (pfSense and glibc send none), BSD
  stamps with one- or two-space single-digit days, with a year, fractions or a `UTC:` suffix, RFC 3339
  stamps (rsyslog's high-precision forwarding format), Cisco IOS/ASA (`<189>123: *Mar  1 ...:
  %SYS-5-CONFIG_I: ...`, `... fw01 : %ASA-6-302013: ...`).
* No or invalid PRI: delivered as format "unknown" (facility/severity None), since many devices send
  exactly that; the header is still recognised when it looks like one.

Only empty messages are rejected (`SyslogParseError("empty")`). Bytes that are not UTF-8 are decoded
with U+FFFD and flagged (`valid_utf8=False`): losing a firewall's log line over one Latin-1 byte would
be worse than a replacement character.

`FrameDecoder` splits a TCP stream per RFC 6587: octet counting (`<len> <msg>`) and non-transparent
framing (LF, or NUL, terminated), auto-detected per message, with bounded memory per connection.

`to_log_line` renders a message the way it would look in a log file, so that log rules, the auth-log
parser and unknown-line detection treat received syslog exactly like tailed files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from vigil.logs.processor import LogLine

__all__ = [
    "FORMATS",
    "FrameDecoder",
    "FrameError",
    "SyslogMessage",
    "SyslogParseError",
    "bsd_stamp_ms",
    "iso_ms",
    "parse_message",
    "parse_structured_data",
    "to_log_line",
    "unframe_datagram",
]

FORMATS = ("rfc5424", "rfc3164", "unknown")

_BOM = "\ufeff"
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, 1)}
_MON = "(?:" + "|".join(MONTHS) + ")"

# PRI is 1-3 digits, 0..191; anything else is "no PRI" (the text is delivered as it is).
_PRI_RE = re.compile(r"<(\d{1,3})>")
# An RFC 3339 stamp; rsyslog's high-precision format, RFC 5424, journalctl -o short-iso.
_ISO = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:[Zz]|[+-]\d\d:?\d\d)?"
# BSD stamp, with the variants devices send: "Nov  2", "Nov 2", "Nov 22 2024", fractions, Cisco's
# leading "*" (clock not synchronised) or "." (synchronisation lost) and its "[ UTC]:" suffix. The
# zone is only taken when a colon (or, as in RFC 3164's example 3, a year) follows it, so a short
# upper-case hostname is not eaten as one.
_TS_RE = re.compile(
    r"(?:(?P<iso>" + _ISO + r")"
    r"|(?P<flag>[*.])?(?P<mon>" + _MON + r") {1,2}(?P<day>\d{1,2})(?: (?P<year>\d{4}))?"
    r" (?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)(?:\.(?P<frac>\d{1,9}))?"
    r"(?:(?: (?P<tz>[A-Za-z]{1,6}))?:| (?P<tz2>[A-Z]{3,4}) (?P<year2>\d{4}))?"
    r")(?: |$)"
)
# Cisco IOS: "<seq>: [host: ]" before the stamp (service sequence-numbers, logging origin-id).
_CISCO_SEQ_RE = re.compile(r"(?P<seq>\d{1,10}): (?:(?P<host>[^\s:]+): (?=[*.]?" + _MON + r" |%))?")
# Cisco/ASA message mnemonic "%FACILITY-SEVERITY-MNEMONIC:" stands where a program tag would.
_MNEMONIC_RE = re.compile(r"(?P<tag>%[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*-\d-[A-Za-z0-9_]+): ?")
# Program tag "prog[pid]:" / "prog:" (dots, dashes and slashes occur: "postfix/smtpd").
# The colon must end a word, so "fe80::1" (a hostname) is not taken for a tag.
_TAG_RE = re.compile(r"(?P<app>[^\s\[\]:]+)(?:\[(?P<pid>[^\]\s]*)\])?:(?: |$)")
_UTC_NAMES = frozenset({"UTC", "GMT", "Z", "UT"})

# How far ahead of the receive time a year-less stamp may be before it is taken as last year's.
_FUTURE_SLACK = timedelta(days=7)


class SyslogParseError(ValueError):
    """A message that cannot be delivered; `reason` is a bounded metric label value ("empty")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class SyslogMessage:
    facility: int | None  # 0..23; None without a valid PRI
    severity: int | None  # 0 (emerg) .. 7 (debug)
    timestamp_ms: int | None  # the sender's stamp; None if absent, NILVALUE, unparseable or unsynced
    hostname: str | None
    app_name: str | None  # RFC 5424 APP-NAME, or the RFC 3164 tag / Cisco "%FAC-SEV-MNEMONIC"
    procid: str | None
    msgid: str | None  # RFC 5424 MSGID; Cisco's sequence number
    structured_data: str | None  # RFC 5424 SD as sent ("[id k=\"v\"]..."); see parse_structured_data
    message: str
    raw: str  # the whole message as decoded, trailing newline/NUL removed
    format: str  # "rfc5424" | "rfc3164" | "unknown"
    received_ms: int
    valid_utf8: bool = True

    def params(self) -> dict[str, dict[str, str]]:
        """The structured data as {SD-ID: {PARAM-NAME: value}}."""
        return parse_structured_data(self.structured_data or "")


# --- timestamps -------------------------------------------------------------------------------


def iso_ms(ts: str, tz: tzinfo) -> int | None:
    """An RFC 3339 stamp (also rsyslog's and journalctl's forms) in ms; `tz` for one without offset."""
    ts = ts.replace(" ", "T", 1).replace("z", "Z")
    frac = re.search(r"\.(\d+)", ts)
    if frac and len(frac[1]) > 6:  # fromisoformat takes at most microseconds; RFC 5424 allows more
        ts = ts[: frac.start(1) + 6] + ts[frac.end(1) :]
    try:
        dt = datetime.fromisoformat(ts)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return int(dt.timestamp() * 1000)


def _bsd_ms(m: re.Match[str], received_ms: int, tz: tzinfo) -> int | None:
    if m["flag"] == "*":  # Cisco: the clock was never set; the stamp says 1993 or similar
        return None
    zone, year = m["tz"] or m["tz2"], m["year"] or m["year2"]
    if zone and zone.upper() in _UTC_NAMES:
        tz = UTC
    micro = int((m["frac"] or "0")[:6].ljust(6, "0"))
    fields = (MONTHS[m["mon"]], int(m["day"]), int(m["h"]), int(m["mi"]), int(m["s"]), micro)
    if year:
        try:
            return int(datetime(int(year), *fields, tzinfo=tz).timestamp() * 1000)
        except ValueError:
            return None
    return bsd_stamp_ms(*fields, received_ms=received_ms, tz=tz)


def bsd_stamp_ms(
    month: int, day: int, hour: int, minute: int, second: int, micro: int, *, received_ms: int, tz: tzinfo
) -> int | None:
    """An RFC 3164 stamp has no year: take the latest that does not put it (much) in the future.

    A week of slack lets a sender clock slightly ahead across New Year keep its year ("Jan 1" read on
    Dec 31 is next year) while a "Dec 31" line read on Jan 1 lands in last year. None: no such date.
    """
    ref = datetime.fromtimestamp(received_ms / 1000, tz)
    for y in range(ref.year + 1, ref.year - 5, -1):  # several: Feb 29 needs a leap year
        try:
            cand = datetime(y, month, day, hour, minute, second, micro, tzinfo=tz)
        except ValueError:
            continue
        if cand.timestamp() * 1000 <= received_ms + _FUTURE_SLACK.total_seconds() * 1000:
            return int(cand.timestamp() * 1000)
    return None


# --- RFC 5424 ---------------------------------------------------------------------------------


def _sd_end(text: str, i: int) -> int:
    """Index just past the SD elements starting at text[i] == "[", or -1 if they are malformed."""
    n = len(text)
    while i < n and text[i] == "[":
        i += 1
        quoted = False
        while True:
            if i >= n:
                return -1
            c = text[i]
            if quoted and c == "\\":
                i += 2
                continue
            if c == '"':
                quoted = not quoted
            elif c == "]" and not quoted:
                break
            i += 1
        i += 1
    return i


_SD_ELEMENT_RE = re.compile(r"\[((?:[^\]\"\\]|\"(?:[^\"\\]|\\.)*\")*)\]", re.DOTALL)
_SD_PARAM_RE = re.compile(r"([^\s=\]\"]+)=\"((?:[^\"\\]|\\.)*)\"", re.DOTALL)
_SD_UNESCAPE_RE = re.compile(r"\\([\"\\\]])")


def parse_structured_data(sd: str) -> dict[str, dict[str, str]]:
    """RFC 5424 STRUCTURED-DATA as {SD-ID: {PARAM-NAME: value}} (escapes resolved; lenient)."""
    out: dict[str, dict[str, str]] = {}
    for element in _SD_ELEMENT_RE.finditer(sd):
        body = element[1]
        sd_id, _, rest = body.partition(" ")
        params = out.setdefault(sd_id, {})
        for p in _SD_PARAM_RE.finditer(rest):
            params[p[1]] = _SD_UNESCAPE_RE.sub(r"\1", p[2])
    return out


def _nil(field: str) -> str | None:
    return None if field == "-" else field


_Opt = str | None
# (timestamp_ms, hostname, app_name, procid, msgid, structured_data, message)
_Fields5424 = tuple[int | None, _Opt, _Opt, _Opt, _Opt, _Opt, str]
# (timestamp_ms, hostname, app_name, procid, msgid, message)
_FieldsBSD = tuple[int | None, _Opt, _Opt, _Opt, _Opt, str]


def _parse_5424(text: str, tz: tzinfo) -> _Fields5424 | None:
    """(ts, host, app, procid, msgid, sd, msg) of the text after "<PRI>1 ", or None if not 5424."""
    parts = text.split(" ", 5)
    if len(parts) < 6 or not all(parts[:5]):
        return None
    ts_s, host, app, procid, msgid, rest = parts
    ts = None if ts_s == "-" else iso_ms(ts_s, tz)
    if ts_s != "-" and ts is None and not re.match(r"\d{4}-", ts_s):
        return None  # not a stamp at all: more likely an RFC 3164 message that starts with "1 "
    if rest.startswith("-"):
        sd, end = None, 1
    elif rest.startswith("["):
        end = _sd_end(rest, 0)
        if end < 0:
            return None
        sd = rest[:end]
    else:
        return None
    if end < len(rest) and rest[end] != " ":
        return None
    msg = rest[end + 1 :]
    return ts, _nil(host), _nil(app), _nil(procid), _nil(msgid), sd, msg.removeprefix(_BOM)


# --- RFC 3164 and variants --------------------------------------------------------------------


def _parse_bsd(text: str, received_ms: int, tz: tzinfo) -> _FieldsBSD:
    """(ts, host, app, procid, msgid, msg) from whatever header the text has; never fails."""
    host: str | None = None
    msgid: str | None = None
    ts: int | None = None
    rest = text
    m = _CISCO_SEQ_RE.match(rest)
    if m:
        msgid, host, rest = m["seq"], m["host"], rest[m.end() :]
    m = _TS_RE.match(rest)
    stamped = m is not None
    if m:
        ts = iso_ms(m["iso"], tz) if m["iso"] else _bsd_ms(m, received_ms, tz)
        rest = rest[m.end() :]
    mn = _MNEMONIC_RE.match(rest)
    if mn:
        return ts, host, mn["tag"], None, msgid, rest[mn.end() :]
    tag = _TAG_RE.match(rest)
    if tag:  # "filterlog[123]: ..." right after the stamp: a sender that omits HOSTNAME
        return ts, host, tag["app"], tag["pid"] or None, msgid, rest[tag.end() :]
    if stamped and host is None:
        token, sep, after = rest.partition(" ")
        if token and sep:
            host, rest = token, after
            if rest.startswith(": "):  # Cisco ASA: "fw01 : %ASA-6-302013: ..."
                rest = rest[2:]
            mn = _MNEMONIC_RE.match(rest)
            if mn:
                return ts, host, mn["tag"], None, msgid, rest[mn.end() :]
            tag = _TAG_RE.match(rest)
            if tag:
                return ts, host, tag["app"], tag["pid"] or None, msgid, rest[tag.end() :]
    return ts, host, None, None, msgid, rest


def parse_message(data: bytes, received_ms: int, tz: tzinfo = UTC) -> SyslogMessage:
    """Parse one syslog message (a UDP datagram or one TCP frame).

    `received_ms` supplies the year missing from BSD stamps; `tz` is the zone of stamps without an
    offset (the sender's local time, unknowable: UTC unless configured). Raises SyslogParseError
    ("empty") and nothing else.
    """
    try:
        raw = data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        raw = data.decode("utf-8", "replace")
        valid = False
    raw = raw.rstrip("\r\n\x00")
    if not raw.strip():
        raise SyslogParseError("empty")

    m = _PRI_RE.match(raw)
    pri = int(m[1]) if m else -1
    if not 0 <= pri <= 191:
        ts, host, app, procid, msgid, msg = _parse_bsd(raw.removeprefix(_BOM), received_ms, tz)
        return SyslogMessage(
            None, None, ts, host, app, procid, msgid, None, msg, raw, "unknown", received_ms, valid
        )
    assert m is not None
    facility, severity = divmod(pri, 8)
    body = raw[m.end() :]
    if body.startswith("1 "):
        parsed = _parse_5424(body[2:], tz)
        if parsed is not None:
            ts, host, app, procid, msgid, sd, msg = parsed
            return SyslogMessage(
                facility, severity, ts, host, app, procid, msgid, sd, msg, raw, "rfc5424", received_ms, valid
            )
    ts, host, app, procid, msgid, msg = _parse_bsd(body.removeprefix(_BOM), received_ms, tz)
    return SyslogMessage(
        facility, severity, ts, host, app, procid, msgid, None, msg, raw, "rfc3164", received_ms, valid
    )


# --- rendering as a log-file line -------------------------------------------------------------

# rsyslog's escaping of control characters in files ("#012" for a newline); tab is kept.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def escape_line(text: str) -> str:
    return _CONTROL_RE.sub(lambda c: f"#{ord(c[0]):03o}", text)


def to_log_line(msg: SyslogMessage, peer: str, seq: int | str, source: str = "syslog") -> LogLine:
    """The message as a `LogLine`, its text as rsyslog would write it to a file (high-precision form):

    `2024-11-22T10:00:00.000+00:00 host app[procid]: message`

    The stamp is the sender's, else the receive time; the host is the sender's, else `peer` (the
    sending address). The auth-log parser, log rules and unknown-line detection all read this form.
    Control characters are escaped like rsyslog does (`#012`), so one message stays one line.
    """
    ts_ms = msg.timestamp_ms if msg.timestamp_ms is not None else msg.received_ms
    try:
        stamp = datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):  # a sender's stamp outside years 1..9999 in UTC
        stamp = datetime.fromtimestamp(msg.received_ms / 1000, UTC).isoformat(timespec="milliseconds")
    host = msg.hostname or peer or "-"
    if msg.app_name:
        tag = f"{msg.app_name}[{msg.procid}]" if msg.procid else msg.app_name
        text = f"{stamp} {host} {tag}: {msg.message}".rstrip(" ")
    else:
        text = f"{stamp} {host} {msg.message}"
    return LogLine(
        source=source, text=escape_line(text), time_ms=msg.received_ms, origin=f"syslog:{peer}#{seq}"
    )


# --- TCP framing (RFC 6587) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrameError:
    reason: str  # "oversized" | "framing": bounded, a metric label value


_MAX_LEN_DIGITS = 10  # an octet count with more digits is not one: read the frame as LF-terminated


class FrameDecoder:
    """Splits one TCP stream into syslog messages; memory stays under max_message_bytes + one read.

    Per message: a leading non-zero digit followed by digits and a space is an octet count (RFC 6587
    3.4.1), anything else runs to the next LF or NUL (3.4.2; a CR before the LF is dropped). LF, CR and
    NUL between messages are skipped. Oversized messages are reported and skipped: an octet-counted one
    by its declared length, an LF-terminated one up to its terminator.
    """

    def __init__(self, max_message_bytes: int = 65536) -> None:
        self.max = max_message_bytes
        self._buf = bytearray()
        self._need: int | None = None  # octet counting: length of the frame being read
        self._skip = 0  # octet counting: bytes of an oversized frame still to drop
        self._discard = False  # LF framing: inside an oversized frame, drop to the terminator

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | FrameError]:
        """Complete messages (and problems) in `data` together with what was buffered before."""
        out: list[bytes | FrameError] = []
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        while pos < n:
            if self._skip:
                step = min(self._skip, n - pos)
                pos += step
                self._skip -= step
                continue
            if self._discard:
                end = _terminator(buf, pos)
                if end < 0:
                    pos = n
                    break
                pos, self._discard = end + 1, False
                continue
            if self._need is not None:
                if n - pos < self._need:
                    break
                out.append(bytes(buf[pos : pos + self._need]))
                pos += self._need
                self._need = None
                continue
            c = buf[pos]
            if c in b"\n\r\x00":
                pos += 1
                continue
            if 0x31 <= c <= 0x39:  # 1-9: maybe an octet count
                j = pos + 1
                while j < n and j - pos <= _MAX_LEN_DIGITS and 0x30 <= buf[j] <= 0x39:
                    j += 1
                if j == n and j - pos <= _MAX_LEN_DIGITS:
                    break  # the length may continue in the next read
                if j - pos <= _MAX_LEN_DIGITS and buf[j] == 0x20:
                    length = int(buf[pos:j])
                    pos = j + 1
                    if length > self.max:
                        out.append(FrameError("oversized"))
                        self._skip = length
                    else:
                        self._need = length
                    continue
            end = _terminator(buf, pos)
            if end < 0:
                if n - pos > self.max:
                    out.append(FrameError("oversized"))
                    self._discard = True
                    pos = n
                break
            frame = buf[pos:end]
            pos = end + 1
            if len(frame) > self.max:
                out.append(FrameError("oversized"))
            else:
                out.append(bytes(frame.rstrip(b"\r")))
        del buf[:pos]
        return out

    def finish(self) -> list[bytes | FrameError]:
        """At end of stream: the last message without a terminator, or a truncated octet frame."""
        buf, self._buf = bytes(self._buf), bytearray()
        need, self._need = self._need, None
        skip, self._skip = self._skip, 0
        discard, self._discard = self._discard, False
        if need is not None:
            return [FrameError("framing")]  # the peer closed inside an octet-counted message
        if skip or discard or not buf.strip(b"\r\n\x00"):
            return []  # an oversized message already counted, or nothing
        if buf[:1].isdigit() and buf[1:].isdigit():
            return [FrameError("framing")]  # only the start of an octet count
        return [buf.rstrip(b"\r\n\x00")] if len(buf) <= self.max else [FrameError("oversized")]


_DATAGRAM_COUNT_RE = re.compile(rb"([1-9][0-9]{0,9}) ")


def unframe_datagram(data: bytes) -> bytes:
    """A UDP datagram without an RFC 6587 octet count, if it has one that matches its length.

    Octet counting is TCP framing, but some senders (util-linux `logger --octet-count -d`) add it to
    datagrams too; a count that does not match is left alone, as part of the message.
    """
    m = _DATAGRAM_COUNT_RE.match(data)
    if m and int(m[1]) == len(data) - m.end():
        return data[m.end() :]
    return data


def _terminator(buf: bytearray, start: int) -> int:
    lf = buf.find(b"\n", start)
    nul = buf.find(b"\x00", start, lf if lf >= 0 else len(buf))
    return nul if nul >= 0 else lf
