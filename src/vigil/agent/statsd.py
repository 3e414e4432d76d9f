"""A StatsD / DogStatsD receiver that is also a collector: applications push, the agent ships.

Lines are `name:value|type[|@rate][|#tag:value,...]`, several per UDP datagram (newline separated) or
newline-delimited on a TCP stream. They are aggregated in memory, Prometheus style (cumulative, never
reset on read), and `collect()` returns them as metric families:

- `c` counter, scaled by `1/rate`         -> counter `<name>_total`
- `g` gauge, `+N`/`-N` relative updates   -> gauge `<name>`
- `ms` timer, milliseconds                -> histogram `<name>_seconds` (values divided by 1000)
- `h` / `d` histogram / distribution      -> histogram `<name>` (values as sent)
- `s` set                                 -> gauge `<name>`: distinct values in the last completed
                                             `set_interval` window (wall-clock aligned)

Names: `prefix` + name, dots and dashes mapped to underscores, then checked against Prometheus' rules
(invalid -> the line is malformed). Tag names are sanitized (invalid characters -> `_`, a leading digit
gets a `_` prefix); reserved names (`__*`, and `le` on histograms) make the line malformed; tags
without a value are ignored, because an empty label value means "no label" in Prometheus.

The receiver is bounded: at most `max_series` series (name + label set; a histogram is one series)
and at most `_MAX_SET_MEMBERS` members per set window; what does not fit is dropped. Every line is
counted in `vigil_agent_statsd_lines_total{result="ok"|"malformed"|"dropped"}` and each distinct
problem is logged once, never per line. Nothing a client sends can stop the receiving thread.

`parse_line` / `parse_packet` are pure functions, usable (and tested) on their own.
"""

from __future__ import annotations

import errno
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client import Metric
from prometheus_client.utils import floatToGoString

from vigil.model.labels import is_valid_label_name, is_valid_metric_name
from vigil.receiver import ErrorKind, SocketReceiver

log = logging.getLogger(__name__)

# Prometheus' own rendering of `le` bounds; prometheus_client leaves it unannotated.
_go_float: Callable[[float], str] = floatToGoString

DEFAULT_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

_MAX_SET_MEMBERS = 10_000  # per set series and window: a set's memory is otherwise unbounded
_MAX_TCP_CONNECTIONS = 256  # each holds a partial-line buffer; more are accepted and closed at once

# Plain decimal numbers only: float() would also take "nan", "inf" and "1_000".
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_LABEL_INVALID_RE = re.compile(r"[^a-zA-Z0-9_]")

_KINDS = {"c": "counter", "g": "gauge", "ms": "histogram", "h": "histogram", "d": "histogram", "s": "set"}

Tags = tuple[tuple[str, str], ...]

# The receiver's own series: a client must not be able to overwrite them.
_OWN_NAMES = (
    "vigil_agent_statsd_lines",
    "vigil_agent_statsd_lines_total",
    "vigil_agent_statsd_series",
)


class StatsdParseError(ValueError):
    """A line that is not valid StatsD; `reason` is short and stable (it is the log-once key)."""

    def __init__(self, reason: str, line: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


@dataclass(frozen=True, slots=True)
class StatsdSample:
    """One parsed line. `family` is the Prometheus family name (`_seconds` added for timers)."""

    family: str
    kind: str  # "counter" | "gauge" | "histogram" | "set"
    value: float  # counters: already scaled by 1/rate; timers: already in seconds; sets: 0
    tags: Tags = ()
    rate: float = 1.0
    relative: bool = False  # gauge "+N" / "-N"
    member: str = ""  # sets: the raw value


def _metric_name(raw: str, prefix: str) -> str:
    name = (prefix + raw).replace(".", "_").replace("-", "_")
    if not is_valid_metric_name(name):
        raise StatsdParseError("invalid metric name")
    return name


def _sanitize_label_name(raw: str) -> str:
    name = _LABEL_INVALID_RE.sub("_", raw)
    if name[:1].isdigit():
        name = "_" + name
    return name


def _parse_tags(section: str, kind: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for tag in section.split(","):
        key, _, value = tag.partition(":")  # values may contain ':' (URLs): split at the first one
        if not key:
            if value:
                raise StatsdParseError("empty tag name")
            continue  # "#a:1,,b:2": a stray comma, harmless
        if not value:
            continue  # a valueless DogStatsD tag: Prometheus has no such thing
        name = _sanitize_label_name(key)
        if name.startswith("__") or (kind == "histogram" and name == "le"):
            raise StatsdParseError("reserved tag name")
        assert is_valid_label_name(name)
        tags[name] = value
    return tags


def parse_line(line: bytes | str, prefix: str = "") -> StatsdSample:
    """Parse one StatsD line (no newline). Raises `StatsdParseError`, and only that, on bad input."""
    if isinstance(line, bytes):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise StatsdParseError("not UTF-8") from None
    else:
        text = line
    text = text.strip()
    if text.startswith(("_e{", "_sc|")):
        raise StatsdParseError("DogStatsD events and service checks are not supported")
    raw_name, colon, rest = text.partition(":")
    if not colon:
        raise StatsdParseError("no ':' after the name")
    sections = rest.split("|")
    if len(sections) < 2:
        raise StatsdParseError("no '|type'")
    raw_value, type_code = sections[0], sections[1]
    kind = _KINDS.get(type_code)
    if kind is None:
        raise StatsdParseError("unknown type")
    name = _metric_name(raw_name, prefix)

    rate = 1.0
    tags: dict[str, str] = {}
    for section in sections[2:]:
        if section.startswith("@"):
            if not _NUMBER_RE.fullmatch(section[1:]):
                raise StatsdParseError("invalid sample rate")
            rate = float(section[1:])
            if not 0.0 < rate <= 1.0:
                raise StatsdParseError("sample rate not in (0, 1]")
        elif section.startswith("#"):
            tags.update(_parse_tags(section[1:], kind))
        else:
            raise StatsdParseError("unknown section")
    tag_tuple = tuple(sorted(tags.items()))

    if kind == "set":
        if not raw_value:
            raise StatsdParseError("empty set member")
        return StatsdSample(name, kind, 0.0, tag_tuple, rate, member=raw_value)
    if not _NUMBER_RE.fullmatch(raw_value):
        raise StatsdParseError("invalid value")
    value = float(raw_value)
    if not math.isfinite(value):  # "1e999"
        raise StatsdParseError("invalid value")
    if kind == "counter":
        if value < 0:
            raise StatsdParseError("negative counter increment")
        base = name[: -len("_total")] if name.endswith("_total") else name
        if not base:
            raise StatsdParseError("invalid metric name")
        return StatsdSample(base, kind, value / rate, tag_tuple, rate)
    if kind == "gauge":
        return StatsdSample(name, kind, value, tag_tuple, rate, relative=raw_value[0] in "+-")
    if type_code == "ms":  # Prometheus' base unit is the second
        value /= 1000.0
        if not name.endswith("_seconds"):
            name += "_seconds"
    return StatsdSample(name, kind, value, tag_tuple, rate)


def split_lines(data: bytes) -> list[bytes]:
    """The non-empty lines of a datagram or stream chunk (`\\n` separated, a trailing `\\r` dropped)."""
    return [ln for ln in (raw.rstrip(b"\r") for raw in data.split(b"\n")) if ln.strip()]


def parse_packet(data: bytes, prefix: str = "") -> list[StatsdSample | StatsdParseError]:
    """Parse every line of a datagram; errors are returned in place, never raised."""
    out: list[StatsdSample | StatsdParseError] = []
    for line in split_lines(data):
        try:
            out.append(parse_line(line, prefix))
        except StatsdParseError as exc:
            exc.line = line[:120].decode("utf-8", "replace")
            out.append(exc)
    return out


def _exposed_names(family: str, kind: str) -> tuple[str, ...]:
    """Sample names a family puts in the exposition, so that two families never share one."""
    if kind == "counter":
        return (family, family + "_total")
    if kind == "histogram":
        return (family, family + "_bucket", family + "_sum", family + "_count")
    return (family,)


@dataclass
class _Histogram:
    counts: list[float]  # per bucket, not cumulative; the last one is +Inf
    sum: float = 0.0
    count: float = 0.0


@dataclass
class _SetWindow:
    window: int
    members: set[str] = field(default_factory=set)
    last: int = 0  # distinct members in the last completed window


@dataclass
class _Conn:
    buf: bytearray = field(default_factory=bytearray)
    discarding: bool = False  # inside an over-long line: skip to the next newline


class StatsdServer(SocketReceiver[_Conn]):
    """Receives StatsD over UDP and/or TCP in one background thread; a Collector named `statsd`."""

    name = "statsd"

    def __init__(
        self,
        udp_listen: str | None = "127.0.0.1:8125",
        tcp_listen: str | None = None,
        histogram_buckets: Sequence[float] = DEFAULT_BUCKETS,
        max_series: int = 10000,
        prefix: str = "",
        *,
        set_interval: float = 10.0,
        max_packet_bytes: int = 65535,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`set_interval` (seconds) should match the agent's interval; `max_packet_bytes` bounds a UDP
        datagram and a TCP line; `clock` is for tests."""
        buckets = sorted(set(float(b) for b in histogram_buckets))
        if not buckets or not all(math.isfinite(b) for b in buckets):
            raise ValueError("histogram_buckets must be a non-empty list of finite numbers")
        if max_series < 0 or set_interval <= 0 or max_packet_bytes <= 0:
            raise ValueError("max_series, set_interval and max_packet_bytes must be positive")
        super().__init__(
            udp_listen,
            tcp_listen,
            max_datagram_bytes=max_packet_bytes,
            max_connections=_MAX_TCP_CONNECTIONS,
        )
        self.buckets: tuple[float, ...] = tuple(buckets)
        self.max_series = max_series
        self.prefix = prefix
        self.set_interval = set_interval
        self.max_packet_bytes = max_packet_bytes
        self._clock = clock

        # Everything below is guarded by _lock: the receiving thread writes, collect() reads.
        self._lock = threading.Lock()
        self._kinds: dict[str, str] = {}  # family -> kind
        self._claims: dict[str, str] = {n: "" for n in _OWN_NAMES}  # exposed sample name -> family
        self._counters: dict[tuple[str, Tags], float] = {}
        self._gauges: dict[tuple[str, Tags], float] = {}
        self._hists: dict[tuple[str, Tags], _Histogram] = {}
        self._sets: dict[tuple[str, Tags], _SetWindow] = {}
        self._lines = {"ok": 0, "malformed": 0, "dropped": 0}
        self._logged: set[str] = set()

    # -- receiving (SocketReceiver hooks) ----------------------------------------------------

    def _new_connection(self, peer: str) -> _Conn:
        return _Conn()

    def _on_datagram(self, data: bytes, peer: str) -> None:
        self.ingest(data)

    def _on_oversize_datagram(self) -> None:
        self._count_error("malformed", "oversize datagram", "")

    def _on_rejected(self) -> None:
        self._log_once("too many TCP connections", "")

    def _on_error(self, kind: ErrorKind, exc: Exception) -> None:
        if kind == "udp" and isinstance(exc, OSError):
            self._log_once(f"udp receive error: {errno.errorcode.get(exc.errno or 0, exc)}", "")
        else:
            self._log_once(f"internal: {type(exc).__name__}: {exc}", "")

    def _on_stream(self, state: _Conn, data: bytes) -> None:
        state.buf += data
        end = state.buf.rfind(b"\n")
        if end >= 0:
            complete = bytes(state.buf[: end + 1])
            del state.buf[: end + 1]
            if state.discarding:  # the first line is the tail of an over-long one
                complete = complete.split(b"\n", 1)[1]
                state.discarding = False
            too_long = [ln for ln in complete.split(b"\n") if len(ln) > self.max_packet_bytes]
            for _ in too_long:
                self._count_error("malformed", "oversize line", "")
            if too_long:
                complete = b"\n".join(ln for ln in complete.split(b"\n") if len(ln) <= self.max_packet_bytes)
            self.ingest(complete)
        if len(state.buf) > self.max_packet_bytes:
            if not state.discarding:
                self._count_error("malformed", "oversize line", "")
            state.discarding = True
            state.buf.clear()

    def _on_stream_end(self, state: _Conn) -> None:
        if state.buf and not state.discarding:  # a last line without a newline still counts
            self.ingest(bytes(state.buf))

    # -- aggregation -------------------------------------------------------------------------

    def ingest(self, data: bytes) -> None:
        """Parse and aggregate a datagram (or complete stream lines). Safe from any thread."""
        parsed = parse_packet(data, self.prefix)
        now = self._clock()
        problems: list[tuple[str, str, str]] = []
        with self._lock:
            for item in parsed:
                if isinstance(item, StatsdParseError):
                    self._lines["malformed"] += 1
                    problems.append(("malformed", item.reason, item.line))
                    continue
                reason = self._apply(item, now)
                if reason is None:
                    self._lines["ok"] += 1
                else:
                    self._lines["dropped"] += 1
                    problems.append(("dropped", reason, ""))
        for result, reason, line in problems:
            self._log_once(f"{result}: {reason}", line)

    def _series_count(self) -> int:
        return len(self._counters) + len(self._gauges) + len(self._hists) + len(self._sets)

    def _apply(self, s: StatsdSample, now: float) -> str | None:
        """Aggregate one sample (lock held). Returns why it was dropped, or None."""
        kind = self._kinds.get(s.family)
        if kind is None:
            if any(n in self._claims for n in _exposed_names(s.family, s.kind)):
                return "name clashes with another metric's series"
        elif kind != s.kind:
            return "metric type changed"
        stores: dict[str, Container[tuple[str, Tags]]] = {
            "counter": self._counters,
            "gauge": self._gauges,
            "histogram": self._hists,
            "set": self._sets,
        }
        store = stores[s.kind]
        key = (s.family, s.tags)
        if key not in store:
            if self._series_count() >= self.max_series:
                return "max_series reached"
            if kind is None:
                self._kinds[s.family] = s.kind
                for n in _exposed_names(s.family, s.kind):
                    self._claims[n] = s.family
        if s.kind == "counter":
            self._counters[key] = self._counters.get(key, 0.0) + s.value
        elif s.kind == "gauge":
            self._gauges[key] = self._gauges.get(key, 0.0) + s.value if s.relative else s.value
        elif s.kind == "histogram":
            h = self._hists.get(key)
            if h is None:
                h = self._hists[key] = _Histogram([0.0] * (len(self.buckets) + 1))
            weight = 1.0 / s.rate  # a sampled observation stands for 1/rate of them
            i = next((i for i, b in enumerate(self.buckets) if s.value <= b), len(self.buckets))
            h.counts[i] += weight
            h.sum += s.value * weight
            h.count += weight
        else:
            w = self._sets.get(key)
            if w is None:
                w = self._sets[key] = _SetWindow(self._window(now))
            self._roll(w, now)
            if s.member not in w.members:
                if len(w.members) >= _MAX_SET_MEMBERS:
                    return "set too large"
                w.members.add(s.member)
        return None

    def _window(self, now: float) -> int:
        return int(now // self.set_interval)

    def _roll(self, w: _SetWindow, now: float) -> None:
        current = self._window(now)
        if current != w.window:
            # Only the window right before the current one is "the last completed" one.
            w.last = len(w.members) if current == w.window + 1 else 0
            w.members.clear()
            w.window = current

    def _count_error(self, result: str, reason: str, line: str) -> None:
        with self._lock:
            self._lines[result] += 1
        self._log_once(f"{result}: {reason}", line)

    def _log_once(self, key: str, line: str) -> None:
        with self._lock:
            if key in self._logged:
                return
            self._logged.add(key)
        log.warning(
            "statsd: %s%s (logged once; counted in vigil_agent_statsd_lines_total)",
            key,
            f", e.g. {line!r}" if line else "",
        )

    # -- collector ---------------------------------------------------------------------------

    def lines(self) -> dict[str, int]:
        """Lines received so far by result: ok, malformed, dropped."""
        with self._lock:
            return dict(self._lines)

    def collect(self) -> Iterable[Metric]:
        now = self._clock()
        with self._lock:  # copy under the lock, build the families outside it
            kinds = dict(self._kinds)
            counters = dict(self._counters)
            gauges = dict(self._gauges)
            hists = {k: (list(h.counts), h.sum, h.count) for k, h in self._hists.items()}
            for w in self._sets.values():
                self._roll(w, now)
            sets = {k: w.last for k, w in self._sets.items()}
            lines = dict(self._lines)
            n_series = self._series_count()

        families: dict[str, Metric] = {}

        def family(name: str) -> Metric:
            if name not in families:
                kind = kinds[name]
                typ = "gauge" if kind == "set" else kind
                families[name] = Metric(name, f"StatsD {kind} {name}, received by the Vigil agent.", typ)
            return families[name]

        for (name, tags), value in counters.items():
            family(name).add_sample(name + "_total", dict(tags), value)
        for (name, tags), value in gauges.items():
            family(name).add_sample(name, dict(tags), value)
        for (name, tags), count in sets.items():
            family(name).add_sample(name, dict(tags), float(count))
        for (name, tags), (counts, total, observations) in hists.items():
            fam = family(name)
            cumulative = 0.0
            for bound, c in zip((*self.buckets, math.inf), counts, strict=True):
                cumulative += c
                fam.add_sample(name + "_bucket", {**dict(tags), "le": _go_float(bound)}, cumulative)
            fam.add_sample(name + "_count", dict(tags), observations)
            fam.add_sample(name + "_sum", dict(tags), total)

        own_lines = Metric("vigil_agent_statsd_lines", "StatsD lines received, by result.", "counter")
        for result, n in lines.items():
            own_lines.add_sample("vigil_agent_statsd_lines_total", {"result": result}, float(n))
        own_series = Metric("vigil_agent_statsd_series", "StatsD series held in memory.", "gauge")
        own_series.add_sample("vigil_agent_statsd_series", {}, float(n_series))
        return [*families.values(), own_lines, own_series]
