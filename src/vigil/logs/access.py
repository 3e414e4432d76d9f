"""Web access logs to RED metrics: request rate, errors (4xx/5xx) and duration, per vhost.

`AccessLogProcessor` is a `LineProcessor` for nginx / Apache / JSON access logs. It recognises, with
one regex per line:

* Apache/nginx common and combined (`%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"`),
  with an optional leading vhost (`vhost_combined`'s `%v:%p`, or nginx's `$host` / `$server_name`),
  and the missing-`%l` variant some nginx formats produce (`1.2.3.4 - [time] ...`);
* a duration after the combined fields: `rt=0.123` / `request_time=0.123` (nginx key=value
  formats), a bare `0.123` (nginx `$request_time`, seconds with a dot), `12ms` (Traefik's CLF);
  a bare integer is ambiguous (Apache `%D` is microseconds, `%T` seconds), so it is used only when
  `integer_duration` says which unit it is;
* JSON objects (nginx `escape=json`, Caddy, Traefik, app loggers), by the usual key names: status
  (`status`, `DownstreamStatus`), method (`method`, `request_method`, `RequestMethod`, or the first
  word of `request`), vhost (`vhost`, `host`, `server_name`, `RequestHost`), bytes (`bytes`,
  `body_bytes_sent`, `bytes_sent`, `size`, `DownstreamContentSize`) and duration (`request_time`,
  `duration`, `latency` in seconds; `duration_ms`, `request_time_ms`; Traefik's `Duration` in ns;
  Go-style strings like `"1.5ms"`). Caddy's nested `request` object is read too;
* either of the above behind a syslog header (nginx `access_log syslog:`), tried only when the line
  does not parse as it is, so plain files pay nothing for it.

Families (every label bounded; client addresses and paths never become labels):

* `vigil_http_requests_total{source,vhost,method,status_class}`: method is one of the standard
  methods or "OTHER"; status_class is "1xx".."5xx" (or "other" for codes outside 100-599), so 4xx
  and 5xx counts are `status_class=~"4xx|5xx"`;
* `vigil_http_response_bytes_total{source,vhost}`: the byte count the log records (`%b`/`%O`,
  `$body_bytes_sent`, ...);
* `vigil_http_request_duration_seconds{source,vhost}` histogram, for lines that carry a duration;
* `vigil_access_log_unparsed_lines_total{source}`: lines that are not access-log entries (error-log
  lines mixed in, other formats);
* `vigil_access_log_vhost_overflow_total{source}`: lines whose vhost was counted as "other" because
  `max_vhosts` distinct vhosts had been seen (a Host header is client-controlled).

Lines without a vhost get `vhost=""` (no label, in PromQL terms). Processing emits no events: a log
rule with `event: true` is the way to keep per-request detail.
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import Metric
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from vigil.logs.processor import LogLine
from vigil.model.event import Event

__all__ = ["DEFAULT_BUCKETS", "METHODS", "AccessLogProcessor"]

DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
OTHER_METHOD = "OTHER"
OTHER_VHOST = "other"

# One regex up to the byte count; what follows (referer, user agent, a duration) is looked at with
# string methods, which is several times faster in CPython than matching the quoted strings.
# A token that is not the start of the [time] field; the request may hold \"-escaped quotes (Apache).
_TOK = r"[^\s\[]\S*"
_CLF = re.compile(
    rf"(?P<a>{_TOK}) {_TOK} (?:{_TOK} )?(?:(?P<d>{_TOK}) )?"
    r"\[[^\]]*\] "
    r'"(?:(?P<method>[A-Za-z]{1,20}) )?[^"]*(?:\\"[^"]*)*" '
    r"(?P<status>\d{3}) (?P<bytes>\d+|-)"
)
# Syslog headers in front of the entry (RFC 3164, RFC 3339 stamps, RFC 5424): "... nginx: <entry>".
_SYSLOG = re.compile(
    r"(?:<\d{1,3}>)?(?:"
    r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ [^\s:\[]+(?:\[\d+\])?: ?"
    r"|\d{4}-\d\d-\d\dT\S+ \S+ [^\s:\[]+(?:\[\d+\])?: ?"
    r"|1 \S+ \S+ \S+ \S+ \S+ (?:-|(?:\[(?:[^\]\\]|\\.)*\])+) "
    r")"
)
_TAIL_KEYS = (" rt=", " request_time=")
_GO_DURATION = re.compile(r"([0-9.]+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_INTEGER_UNITS = {"microseconds": 1e-6, "milliseconds": 1e-3, "seconds": 1.0}
_MAX_DURATION = 1e7  # seconds; beyond this (or NaN) a "duration" is garbage, not a slow request
_MAX_VHOST = 253  # longest DNS name; longer "vhosts" are garbage and count as "other"

# Lookup tables so the hot path does dict.get instead of string work.
_STATUS_CLASS = {str(s): f"{s // 100}xx" for s in range(100, 600)}
_METHOD = {m: m for m in METHODS} | {m.lower(): m for m in METHODS}

# JSON key names, in order of preference.
_J_STATUS = ("status", "DownstreamStatus", "status_code", "statusCode", "response_status")
_J_METHOD = ("method", "request_method", "RequestMethod", "http_method")
_J_VHOST = ("vhost", "host", "server_name", "RequestHost", "http_host", "hostname")
_J_BYTES = ("bytes", "body_bytes_sent", "bytes_sent", "size", "DownstreamContentSize", "response_size")
_J_DURATION = (  # (key, seconds per unit; None for Go duration strings or seconds as numbers)
    ("request_time", 1.0),
    ("duration", 1.0),
    ("latency", 1.0),
    ("duration_ms", 1e-3),
    ("request_time_ms", 1e-3),
    ("Duration", 1e-9),
    ("duration_ns", 1e-9),
    ("duration_us", 1e-6),
)


_MAX_BYTES_DIGITS = 15  # a response of 10**15 bytes (a petabyte) is not real; totals stay float-exact


class AccessLogProcessor:
    """Counts access-log lines into RED metrics; see the module docstring."""

    def __init__(
        self,
        *,
        name: str = "access_log",
        max_vhosts: int = 100,
        buckets: tuple[float, ...] = DEFAULT_BUCKETS,
        integer_duration: str | None = None,
    ) -> None:
        """`integer_duration`: the unit of a bare integer after the combined fields ("microseconds"
        for Apache `%D`, "milliseconds", "seconds" for `%T`); None ignores such integers."""
        if integer_duration is not None and integer_duration not in _INTEGER_UNITS:
            raise ValueError(
                f"integer_duration: expected one of {sorted(_INTEGER_UNITS)}, got {integer_duration!r}"
            )
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError("buckets: expected increasing numbers")
        self.name = name
        self._max_vhosts = max_vhosts
        self._buckets = tuple(float(b) for b in buckets)
        self._int_unit = _INTEGER_UNITS.get(integer_duration or "")
        self._admitted: dict[str, None] = {}  # vhost labels with their own series, in admission order
        self._vhost_cache: dict[str, str] = {"": "", "-": ""}  # raw vhost as logged -> admitted label
        # (source, vhost, method, status_class) -> [requests, bytes]; one lookup per line.
        self._requests: dict[tuple[str, str, str, str], list[int]] = {}
        # (source, vhost) -> per-bucket counts (last one: +Inf), then the sum.
        self._durations: dict[tuple[str, str], list[float]] = {}
        self._unparsed: dict[str, int] = {}
        self._vhost_overflow: dict[str, int] = {}

    # --- the hot path ------------------------------------------------------------------------------

    def process(self, line: LogLine) -> Iterable[Event]:
        text = line.text
        m = _CLF.match(text)
        if m is not None:
            self._clf(line.source, m)
        elif not self._json(line.source, text) and not self._behind_syslog(line.source, text):
            self._unparsed[line.source] = self._unparsed.get(line.source, 0) + 1
        return ()

    def _clf(self, source: str, m: re.Match[str]) -> None:
        a, d, method, status, nbytes = m.groups()
        # Four tokens before [time] means a leading vhost (`%v:%p %h %l %u`); three or two: none.
        vhost = self._vhost(source, a) if d is not None else ""
        key = (source, vhost, _METHOD.get(method, OTHER_METHOD), _STATUS_CLASS.get(status, "other"))
        entry = self._requests.get(key)
        if entry is None:
            entry = self._requests[key] = [0, 0]
        entry[0] += 1
        if nbytes != "-" and len(nbytes) <= _MAX_BYTES_DIGITS:  # a forged 400-digit size must not
            entry[1] += int(nbytes)  # make the total unrepresentable as a float
        text = m.string
        if len(text) > m.end():
            seconds = self._tail_duration(text, m.end())
            if seconds is not None:
                self._observe(source, vhost, seconds)

    def _vhost(self, source: str, raw: str) -> str:
        label = self._vhost_cache.get(raw)
        if label is not None:
            return label
        # `%v:%p` and nginx `$host:$server_port`: the port is not part of the vhost; nor is case.
        host = raw.rsplit(":", 1)[0] if raw.count(":") == 1 else raw
        host = host.lower().rstrip(".")
        if host == "-":
            host = ""
        if host and host not in self._admitted:
            if len(self._admitted) >= self._max_vhosts or len(host) > _MAX_VHOST:
                self._vhost_overflow[source] = self._vhost_overflow.get(source, 0) + 1
                return OTHER_VHOST
            self._admitted[host] = None
        if len(self._vhost_cache) < 4 * self._max_vhosts + 16:  # a few spellings per admitted vhost
            self._vhost_cache[raw] = host
        return host

    def _observe(self, source: str, vhost: str, seconds: float) -> None:
        if not 0.0 <= seconds < _MAX_DURATION:  # also false for NaN
            return
        key = (source, vhost)
        hist = self._durations.get(key)
        if hist is None:
            hist = self._durations[key] = [0.0] * (len(self._buckets) + 2)
        hist[bisect_left(self._buckets, seconds)] += 1  # bucket i counts values <= buckets[i]
        hist[-1] += seconds

    def _tail_duration(self, text: str, start: int) -> float | None:
        """The request duration after the combined fields (from `start`), in seconds, if any.

        The referer and user agent are skipped first, so neither they nor the request path can
        plant an "rt=" or a trailing number of their own.
        """
        if text.startswith(' "', start):
            j = text.find('" "', start + 2)
            if j >= 0:
                k = text.find('"', j + 3)
                while k > 0 and text[k - 1] == "\\":  # Apache writes a quote in a header as \"
                    k = text.find('"', k + 1)
                if k < 0:
                    return None
                start = k + 1
        if start >= len(text):  # plain combined: nothing after the user agent
            return None
        for key in _TAIL_KEYS:
            i = text.find(key, start)
            if i >= 0:
                i += len(key)
                j = text.find(" ", i)
                return _float(text[i : j if j >= 0 else len(text)].strip('"'))
        last = text[text.rfind(" ", start) + 1 :]
        if "." in last:
            return _float(last)
        if last.endswith("ms") and last[:-2].isdigit():  # Traefik's common log format
            return int(last[:-2]) / 1000
        if self._int_unit is not None and last.isdigit():
            return int(last) * self._int_unit
        return None

    # --- JSON and syslog-wrapped lines (off the combined-format fast path) ---------------------------

    def _json(self, source: str, text: str) -> bool:
        if not text.lstrip().startswith("{"):
            return False
        try:
            obj = json.loads(text)
        except ValueError:
            return False
        if not isinstance(obj, dict):
            return False
        req = obj.get("request")
        nested = req if isinstance(req, dict) else {}  # Caddy: request.{method,host}
        status = _first(obj, _J_STATUS)
        if isinstance(status, str) and status.isdigit():
            status = int(status)
        if isinstance(status, bool) or not isinstance(status, int):
            return False
        method = _first(obj, _J_METHOD) or _first(nested, _J_METHOD)
        if method is None and isinstance(req, str):
            method = req.split(" ", 1)[0]
        raw_vhost = _first(obj, _J_VHOST) or _first(nested, _J_VHOST)
        vhost = self._vhost(source, raw_vhost) if isinstance(raw_vhost, str) and raw_vhost else ""
        key = (
            source,
            vhost,
            _METHOD.get(method, OTHER_METHOD) if isinstance(method, str) else OTHER_METHOD,
            _STATUS_CLASS.get(str(status), "other"),
        )
        entry = self._requests.get(key)
        if entry is None:
            entry = self._requests[key] = [0, 0]
        entry[0] += 1
        nbytes = _first(obj, _J_BYTES)
        if isinstance(nbytes, str) and nbytes.isdigit():
            nbytes = int(nbytes)
        if isinstance(nbytes, int) and not isinstance(nbytes, bool) and 0 < nbytes < 10**_MAX_BYTES_DIGITS:
            entry[1] += nbytes
        seconds = _json_duration(obj)
        if seconds is not None:
            self._observe(source, vhost, seconds)
        return True

    def _behind_syslog(self, source: str, text: str) -> bool:
        h = _SYSLOG.match(text)
        if h is None:
            return False
        rest = text[h.end() :]
        m = _CLF.match(rest)
        if m is not None:
            self._clf(source, m)
            return True
        return self._json(source, rest)

    # --- exposition and checkpoints ----------------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "vigil_http_requests",
            "HTTP requests in access logs, by log source, vhost, method and status class.",
            labels=["source", "vhost", "method", "status_class"],
        )
        sent = CounterMetricFamily(
            "vigil_http_response_bytes",
            "Response bytes recorded in access logs (as the log format counts them), by source and vhost.",
            labels=["source", "vhost"],
        )
        per_vhost: dict[tuple[str, str], int] = {}
        for (source, vhost, method, cls), (count, nbytes) in sorted(self._requests.items()):
            requests.add_metric([source, vhost, method, cls], float(count))
            per_vhost[(source, vhost)] = per_vhost.get((source, vhost), 0) + nbytes
        for labels, nbytes in sorted(per_vhost.items()):
            sent.add_metric(list(labels), float(nbytes))
        durations = HistogramMetricFamily(
            "vigil_http_request_duration_seconds",
            "Request durations recorded in access logs, by source and vhost (lines with a duration only).",
            labels=["source", "vhost"],
        )
        for labels, hist in sorted(self._durations.items()):
            cumulative, acc = [], 0.0
            for bound, n in zip((*self._buckets, math.inf), hist[:-1], strict=True):
                acc += n
                cumulative.append(("+Inf" if bound == math.inf else repr(bound), acc))
            durations.add_metric(list(labels), cumulative, hist[-1])
        unparsed = CounterMetricFamily(
            "vigil_access_log_unparsed_lines",
            "Lines of access-log sources that are not access-log entries (error-log lines, other formats).",
            labels=["source"],
        )
        for source, n in sorted(self._unparsed.items()):
            unparsed.add_metric([source], float(n))
        overflow = CounterMetricFamily(
            "vigil_access_log_vhost_overflow",
            'Access-log lines counted under vhost="other" because max_vhosts distinct vhosts were seen.',
            labels=["source"],
        )
        for source, n in sorted(self._vhost_overflow.items()):
            overflow.add_metric([source], float(n))
        return [requests, sent, durations, unparsed, overflow]

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": 1,
            "buckets": list(self._buckets),
            # Admission order matters: it decides which vhosts keep their own series after a restart.
            "vhosts": list(self._admitted),
            "requests": [[*k, c, b] for k, (c, b) in self._requests.items()],
            "durations": [[s, v, h] for (s, v), h in self._durations.items()],
            "unparsed": dict(self._unparsed),
            "vhost_overflow": dict(self._vhost_overflow),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a snapshot; vhosts beyond today's `max_vhosts` are folded into "other",
        durations are dropped if the buckets changed. Raises ValueError (state unchanged) if malformed."""
        if not isinstance(state, Mapping) or state.get("version") != 1:
            raise ValueError("access log snapshot: expected {version: 1, ...}")
        try:
            vhosts: dict[str, str] = {"": ""}  # saved label -> label now
            for v in state.get("vhosts", []):
                if len(vhosts) <= self._max_vhosts and isinstance(v, str) and v:
                    vhosts[v] = v
            requests: dict[tuple[str, str, str, str], list[int]] = {}
            for source, vhost, method, cls, count, nbytes in state.get("requests", []):
                key = (str(source), vhosts.get(vhost, OTHER_VHOST), str(method), str(cls))
                entry = requests.setdefault(key, [0, 0])
                entry[0] += int(count)
                entry[1] += int(nbytes)
            durations: dict[tuple[str, str], list[float]] = {}
            if list(state.get("buckets", [])) == list(self._buckets):
                for source, vhost, hist in state.get("durations", []):
                    if len(hist) != len(self._buckets) + 2:
                        raise ValueError("histogram length")
                    key2 = (str(source), vhosts.get(vhost, OTHER_VHOST))
                    prev = durations.get(key2)
                    values = [float(x) for x in hist]
                    durations[key2] = (
                        values if prev is None else [p + x for p, x in zip(prev, values, strict=True)]
                    )
            unparsed = {str(k): int(v) for k, v in dict(state.get("unparsed", {})).items()}
            overflow = {str(k): int(v) for k, v in dict(state.get("vhost_overflow", {})).items()}
        except (TypeError, ValueError) as e:
            raise ValueError(f"access log snapshot: malformed ({e})") from None
        self._admitted = {v: None for v in vhosts if v}
        self._vhost_cache = {"": "", "-": ""}
        self._requests, self._durations = requests, durations
        self._unparsed, self._vhost_overflow = unparsed, overflow


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _first(obj: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        v = obj.get(k)
        if v is not None and v != "" and v != "-":
            return v
    return None


def _json_duration(obj: Mapping[str, Any]) -> float | None:
    for key, unit in _J_DURATION:
        v = obj.get(key)
        if v is None or isinstance(v, bool):
            continue
        if isinstance(v, int | float):
            return float(v) * unit
        if isinstance(v, str):
            m = _GO_DURATION.fullmatch(v.strip())
            if m is not None:  # "1.5ms": the string carries its unit
                try:
                    return float(m[1]) * _GO_UNITS[m[2]]
                except ValueError:
                    return None
            try:
                return float(v) * unit
            except ValueError:
                return None
    return None
