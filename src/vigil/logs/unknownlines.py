"""Unknown log lines: learn the shapes (templates) of a source's normal lines, report lines of a new shape.

This is the "non-whitelisted log lines" signal. Per configured log source:

* **learning** (for `learning_period` from the first line seen, unless a saved baseline says learning
  is over): every line is mined into templates with Drain (drain3); nothing is reported. The templates
  become the source's baseline, status `learned`.
* **detecting**: a line is matched (drain3 `match()`, which never changes the model) against the
  `learned` and `accepted` templates. A line matching none is counted in
  `vigil_log_unknown_lines_total{source}` and kept as a `log_unknown` event carrying the line; its
  shape is mined into a separate tree of `pending` templates, so a flood of one new message is one
  pending template, reported in at most `events_per_template` events per `event_window` (the rest
  counted in `vigil_log_unknown_events_suppressed_total{limit="template"}`, and in the template's
  count). `vigil logs templates accept` turns a pending template into an accepted one; `reject`
  drops it.
* **the per-source limit**: at most `events_per_source` events per source and `event_window`, however
  many templates (a flood of distinct new lines). Past it lines are counted
  (`vigil_log_unknown_events_suppressed_total{limit="source"}`) and the event stream says so, never
  silently: a `log_unknown_suppressed` event when the limit is reached (with the first line held
  back), and another with the number held back at the first line of the source after the window.

Templates are kept per source in a baseline file (`vigil.logs.baseline`), which the agent re-reads
when `vigil logs templates` changed it and writes back with its counts.

Lines are normalised before mining: every run of ASCII digits becomes one `0` (a template never
depends on a number), the syslog header (timestamp, host, pid) is replaced by the program name,
and drain3 masks replace timestamps (every common shape, weekday and month names included:
`TIMESTAMP_SHAPES`), UUIDs, IP/MAC addresses, hex strings, key-like tokens and numbers. Because the
masking runs on the digit-normalised line, the decision for a line is a function of that normalised
text, so a bounded cache from it to the template id lets repeated shapes skip masking and Drain's
tree search: most lines cost one `str.translate` and one dict lookup.

drain3's `Drain` and `LogMasker` are used directly rather than `TemplateMiner`: two trees (known and
pending) share one masking pass, and persistence is the reviewable JSON above instead of drain3's
jsonpickle snapshot. Memory is bounded per source: `max_templates` known templates (learning stops
early when reached), `max_pending` pending templates (least recently seen evicted), `cache_size`
cache entries, and lines truncated to `max_line_chars`. Label values are configured source names only.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import Metric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from vigil.logs.baseline import (
    ACCEPTED,
    KNOWN,
    LEARNED,
    PENDING,
    BaselineError,
    Template,
    TemplateBaseline,
    baseline_lock,
    iso_time,
)
from vigil.logs.processor import LogLine
from vigil.model.event import Event

if TYPE_CHECKING:
    # drain3 (and jsonpickle behind it) is imported by the detector only, so that reading baselines
    # (`vigil logs templates`) and every other command stay light.
    from drain3.drain import Drain
    from drain3.masking import LogMasker

__all__ = [
    "MASKS",
    "TIMESTAMP_SHAPES",
    "DetectorSettings",
    "UnknownLineDetector",
    "mined_text",
    "normalise",
]

log = logging.getLogger(__name__)

_MAX_EVENT_LINE = 4096  # well under Event's 16 KiB field limit

# Every digit becomes 0 and runs of them one 0, before anything else (see the module docstring).
# On bytes: bytes.translate is several times faster than str.translate.
_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_ISO_TS = r"0-0-0[T ]0:0:0(?:[.,]0)?(?:Z|[+-]0(?::0)?)?"
# RFC 3164 / RFC 3339 headers: "<PRI>Mon DD HH:MM:SS host prog[pid]: " -> "prog: ".
_HEADER = re.compile(
    rf"(?:<0>)?(?:{_MONTH} +0 0:0:0(?:\.0)?|{_ISO_TS}) +\S+ +(?P<prog>[^\s\[:]+)(?:\[[^\]\s]*\])?: ?"
)
# RFC 5424: "<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG" -> "APP: MSG".
_HEADER_5424 = re.compile(r"<0>0 \S+ \S+ (?P<prog>\S+) \S+ \S+ (?:-|(?:\[(?:[^\]\\]|\\.)*\])+) ?")

# Timestamp shapes, on the normalised text. Digits are already one 0, so what still differs from one
# day to the next is the names: a weekday or month left in a template makes every line of it look
# new on the next weekday (or month), so every shape that spells them is masked whole.
_WDAY = r"(?:Mon(?:day)?|Tue(?:sday)?|Wed(?:nesday)?|Thu(?:rsday)?|Fri(?:day)?|Sat(?:urday)?|Sun(?:day)?)"
_MONTH_NAME = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_TIME_OF_DAY = r"0:0:0(?:[.,]0)?"
# Zone names from a closed list: an open "[A-Z]{3,4}" would swallow the log level after a stamp.
_ZONE_NAME = r"(?:UTC|GMT|[ECMPA][SD]T|CES?T|EES?T|WES?T|BST|IST|JST|KST|MSK|AES?T|NZS?T|HST)"
_ZONE = rf"(?:Z|[+-]0(?::0)?|{_ZONE_NAME})"
TIMESTAMP_SHAPES: tuple[str, ...] = (
    # ISO 8601 / RFC 3339, also with a space, a zone name, a weekday before it (journalctl short-full)
    rf"(?:\b{_WDAY},? +)?0-0-0[T ]{_TIME_OF_DAY}(?: ?{_ZONE}\b|Z)?",
    r"\b0T0(?:[.,]0)?(?:Z|[+-]0)?\b",  # ISO 8601 basic: 20240501T120000Z
    # RFC 1123/2822 (HTTP Date, mail: Mon, 05 Dec 2022 14:03:11 GMT), RFC 850, Tomcat (05-Dec-2022 ...)
    rf"(?:\b{_WDAY}, +)?\b0[ -]{_MONTH_NAME}[ -]0 +{_TIME_OF_DAY}(?: +{_ZONE}\b)?",
    # RFC 3164 and ctime with or without a weekday, Apache error logs ([Mon Dec 05 14:03:11.1 2022]),
    # date(1) (Mon Dec  5 14:03:11 UTC 2022), java.util.logging (Dec 05, 2022 2:03:11 PM)
    rf"(?:\b{_WDAY},? +)?\b{_MONTH_NAME} +0,? +(?:0 +)?{_TIME_OF_DAY}(?: ?[AP]M\b)?(?: +{_ZONE_NAME}\b)?"
    r"(?: +0\b)?",
    rf"\b0/{_MONTH_NAME}/0:{_TIME_OF_DAY}(?: +[+-]0)?",  # access logs (CLF): [05/Dec/2022:14:03:11 +0000]
    rf"\b0/0/0[ T]{_TIME_OF_DAY}",  # nginx error logs and Go's log package: 2022/12/05 14:03:11
    # Epoch seconds or milliseconds are plain numbers: the NUM mask below takes them.
)

# drain3 masking instructions, applied in order to the normalised text (every digit run is one 0).
MASKS: tuple[tuple[str, str], ...] = (
    *((shape, "TS") for shape in TIMESTAMP_SHAPES),
    (r"(?<![\w:])0:0:0(?:[.,]0)?(?![\w:])", "TIME"),
    (r"(?<=\[)\s*0\.0(?=\])", "NUM"),  # kernel uptime, space-padded: "[    5.123]"
    (r"\b(?=[0-9a-fA-F-]*0)[0-9a-fA-F]+-[0-9a-fA-F]+-[0-9a-fA-F]+-[0-9a-fA-F]+-[0-9a-fA-F]+\b", "UUID"),
    (r"(?<![\w.])0\.0\.0\.0(?!\w|\.\w)", "IP"),
    # IPv6 and MAC addresses (iptables logs MAC+MAC+type): 2+ colons between hex groups, a digit.
    # Ends in a group or "::", so "port 22:11:" (sshd) is not one.
    (r"(?<![\w:])(?=[0-9a-fA-F:]*0)(?:[0-9a-fA-F]{0,4}:){2,}(?:[0-9a-fA-F]{1,4}|(?<=::))(?![\w:])", "IP"),
    (r"\b0x[0-9a-fA-F]+\b", "HEX"),
    (r"\b(?=[0-9a-fA-F]*0)[0-9a-fA-F]{8,}\b", "HEX"),
    # Key fingerprints, tokens, base64: long runs mixing letters and digits (not paths).
    (r"(?<![\w+/])(?=[A-Za-z0-9+/]*0)(?=[A-Za-z0-9+/]*[A-Za-z])[A-Za-z0-9+][A-Za-z0-9+/]{15,}={0,2}", "KEY"),
    # Numbers, also with a short unit ("1.5s", "100ms", "20%").
    (r"(?<![A-Za-z0-9.])[-+]?0(?:\.0)*(?:[A-Za-z]{1,3}|%)?(?![A-Za-z0-9])", "NUM"),
)


def normalise(text: str) -> bytes:
    """The cache key of a line: UTF-8, each run of digits made one 0. Mining is a function of it."""
    key = text.encode("utf-8", "surrogatepass").translate(_DIGITS)
    while b"00" in key:
        key = key.replace(b"00", b"0")
    return key


def mined_text(key: bytes) -> str:
    """The part of a normalised line that is mined: `prog: message` when a syslog header is found."""
    text = key.decode("utf-8", "surrogatepass")
    m = _HEADER.match(text) or _HEADER_5424.match(text)
    if m is None:
        return text
    return f"{m['prog']}: {text[m.end() :]}"


def _duration(ms: int) -> str:
    return f"{ms // 3_600_000}h" if ms % 3_600_000 == 0 else f"{ms / 1000:g}s"


def _signature(st: os.stat_result | None) -> tuple[int, int, int] | None:
    return None if st is None else (st.st_ino, st.st_mtime_ns, st.st_size)


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    """Knobs of `UnknownLineDetector`; the defaults suit a host's syslog/auth.log."""

    learning_period_s: float = 86_400.0
    """How long after a source's first line its templates are learned (no saved baseline)."""
    events_per_template: int = 10
    """Events kept per pending template per `event_window_s`; further lines are only counted."""
    events_per_source: int = 100
    """Events kept per source per `event_window_s`, whatever the template (many distinct new lines);
    past it one `log_unknown_suppressed` event says so, and another how many were held back."""
    event_window_s: float = 3600.0
    max_templates: int = 5000
    """Known templates per source; learning stops early when it is reached."""
    max_pending: int = 1000
    """Pending templates per source; the least recently seen is forgotten beyond it."""
    cache_size: int = 16_384
    """Normalised lines remembered per source (fast path); lines longer than 512 are not cached."""
    max_line_chars: int = 2048
    """Longer lines are mined on their first `max_line_chars` characters."""
    save_interval_s: float = 60.0
    sync_interval_s: float = 5.0
    """How often the baseline file is checked for decisions made with `vigil logs templates`."""
    depth: int = 6
    """Drain tree depth: the program name and the first two words of the message select the leaf."""
    sim_th: float = 0.5
    max_children: int = 100


_MAX_CACHED_KEY = 512


def _new_drain(s: DetectorSettings) -> Drain:
    # max_clusters stays None (a plain dict): eviction is ours, so the baseline and the tree agree.
    from drain3.drain import Drain

    return Drain(depth=s.depth, sim_th=s.sim_th, max_children=s.max_children, param_str="<*>")


def _insert(drain: Drain, tid: int, template: str) -> None:
    from drain3.drain import LogCluster

    cluster = LogCluster(template.split(), tid)
    drain.id_to_cluster[tid] = cluster
    drain.add_seq_to_prefix_tree(drain.root_node, cluster)


class _Source:
    """Detection state of one source: the baseline, its two Drain trees, cache and counters."""

    def __init__(self, baseline: TemplateBaseline, settings: DetectorSettings, masker: LogMasker) -> None:
        self.name = baseline.source
        self.s = settings
        self.masker = masker
        self.window_ms = int(settings.event_window_s * 1000)
        self.lines = 0
        self.unknown = 0
        self.suppressed = 0  # by either limit
        self.suppressed_by_source = 0  # of those, by the per-source limit
        self.held_back = 0  # by the per-source limit in the current window, not yet reported
        self.lines_at_save = -1
        self.urgent = False  # save at the next tick, not the next save interval
        self.file_sig: tuple[int, int, int] | None = None  # the file as we last wrote or read it
        self.saved_pending: set[int] = set()  # pending ids in that file: gone from it = rejected
        self.windows: dict[int, list[int]] = {}  # pending id -> [window start ms, events kept]
        self.source_window = [0, 0]
        self._load(baseline)

    def _load(self, baseline: TemplateBaseline) -> None:
        self.baseline = baseline
        self.templates = baseline.templates
        self.known = _new_drain(self.s)
        self.pending = _new_drain(self.s)
        self.pending_lru: OrderedDict[int, None] = OrderedDict()
        self.evicted = 0
        for t in sorted(self.templates.values(), key=lambda t: t.last_seen_ms):
            if t.status == PENDING:
                _insert(self.pending, t.id, t.template)
                self.pending_lru[t.id] = None
            else:
                _insert(self.known, t.id, t.template)
        self.saved_pending = {t.id for t in self.templates.values() if t.status == PENDING}
        self.windows.clear()
        self.clear_cache()

    # -- the cache: two generations, so the oldest half is dropped at once (cheap approximate LRU)
    def clear_cache(self) -> None:
        self.cache: dict[bytes, int] = {}
        self.cache_old: dict[bytes, int] = {}

    def _cache_put(self, key: bytes, tid: int) -> None:
        if len(key) > _MAX_CACHED_KEY:
            return
        if len(self.cache) >= self.s.cache_size // 2:
            self.cache_old = self.cache
            self.cache = {}
        self.cache[key] = tid

    @property
    def learning(self) -> bool:
        return not self.baseline.learning_done

    def process(self, line: LogLine) -> tuple[Event, ...]:
        if self.held_back and line.time_ms - self.source_window[0] >= self.window_ms:
            return (self._held_back_report(line), *self.process(line))  # held_back is 0 by then
        self.lines += 1
        t = line.time_ms
        b = self.baseline
        if b.learning_ended_ms is None:
            if b.learning_started_ms is None:
                b.learning_started_ms = t
            elif t - b.learning_started_ms >= self.s.learning_period_s * 1000:
                self.finish_learning(t, "learning period over")
        text = line.text if len(line.text) <= self.s.max_line_chars else line.text[: self.s.max_line_chars]
        key = text.encode("utf-8", "surrogatepass").translate(_DIGITS)
        while b"00" in key:  # normalise(), inlined: this is the per-line cost
            key = key.replace(b"00", b"0")
        tid = self.cache.get(key)
        if tid is None:
            tid = self.cache_old.get(key)
            if tid is not None:
                self.cache[key] = tid  # promote; bounded: the next rotation drops cache_old
        entry = None if tid is None else self.templates.get(tid)
        if entry is None:
            return self._slow(line, key)
        entry.count += 1
        entry.last_seen_ms = t
        if entry.status == PENDING:
            return self._unknown(line, entry)
        return ()

    def finish_learning(self, now_ms: int, why: str) -> None:
        self.baseline.learning_ended_ms = now_ms
        self.urgent = True  # a restart must not learn again
        log.info("log source %s: %s, %d templates learned", self.name, why, len(self.known.id_to_cluster))

    def _slow(self, line: LogLine, key: bytes) -> tuple[Event, ...]:
        t = line.time_ms
        masked = self.masker.mask(mined_text(key))
        b = self.baseline
        if b.learning_ended_ms is None and len(self.known.id_to_cluster) >= self.s.max_templates:
            self.finish_learning(t, f"{self.s.max_templates} templates (max_templates) reached")
        if b.learning_ended_ms is None:
            self.known.clusters_counter = b.next_id - 1  # one id space for both trees and the file
            cluster, change = self.known.add_log_message(masked)
            tid = cluster.cluster_id
            entry = self.templates.get(tid)
            if entry is None:
                entry = self.templates[tid] = Template(tid, cluster.get_template(), LEARNED, 0, t, t)
                b.next_id = max(b.next_id, tid + 1)
            elif change == "cluster_template_changed":
                entry.template = cluster.get_template()
            entry.count += 1
            entry.last_seen_ms = t
            self._cache_put(key, tid)
            return ()
        known = self.known.match(masked, full_search_strategy="fallback")
        if known is not None:
            entry = self.templates.get(known.cluster_id)
            if entry is not None:
                entry.count += 1
                entry.last_seen_ms = t
                self._cache_put(key, entry.id)
                return ()
        self.pending.clusters_counter = b.next_id - 1
        cluster, change = self.pending.add_log_message(masked)
        tid = cluster.cluster_id
        entry = self.templates.get(tid)
        if entry is None:
            entry = self.templates[tid] = Template(tid, cluster.get_template(), PENDING, 0, t, t)
            b.next_id = max(b.next_id, tid + 1)
            self.pending_lru[tid] = None
            self._evict_pending()
        elif change == "cluster_template_changed":
            entry.template = cluster.get_template()
        entry.count += 1
        entry.last_seen_ms = t
        self._cache_put(key, tid)
        return self._unknown(line, entry)

    def _unknown(self, line: LogLine, entry: Template) -> tuple[Event, ...]:
        self.unknown += 1
        t = line.time_ms
        self.pending_lru.move_to_end(entry.id)
        w = self.windows.get(entry.id)
        if w is None or t - w[0] >= self.window_ms:
            w = self.windows[entry.id] = [t, 0]
        sw = self.source_window
        if t - sw[0] >= self.window_ms:
            sw[0], sw[1] = t, 0
        if w[1] >= self.s.events_per_template:
            self.suppressed += 1
            return ()
        if sw[1] >= self.s.events_per_source:
            self.suppressed += 1
            self.suppressed_by_source += 1
            self.held_back += 1
            if self.held_back == 1:
                return (self._limit_reached(line, entry),)
            return ()
        w[1] += 1
        sw[1] += 1
        text = line.text if len(line.text) <= _MAX_EVENT_LINE else line.text[:_MAX_EVENT_LINE]
        return (
            Event(
                time_ms=t,
                kind="log_unknown",
                message=f"{self.name}: log line of an unknown shape (pending template {entry.id})",
                fields={
                    "source": self.name,
                    "line": text,
                    "template": entry.template,
                    "template_id": entry.id,
                },
            ),
        )

    def _limit_reached(self, line: LogLine, entry: Template) -> Event:
        until = self.source_window[0] + self.window_ms
        return Event(
            time_ms=line.time_ms,
            kind="log_unknown_suppressed",
            message=f"{self.name}: {self.s.events_per_source} unknown-line events within "
            f"{_duration(self.window_ms)} (events_per_source): further unknown lines until "
            f"{iso_time(until)} are counted, not kept as events",
            fields={
                "source": self.name,
                "limit": self.s.events_per_source,
                "window_start": iso_time(self.source_window[0]),
                "window_end": iso_time(until),
                "line": line.text[:_MAX_EVENT_LINE],  # the first line held back
                "template": entry.template,
                "template_id": entry.id,
            },
        )

    def _held_back_report(self, line: LogLine) -> Event:
        n, self.held_back = self.held_back, 0
        start, end = iso_time(self.source_window[0]), iso_time(self.source_window[0] + self.window_ms)
        return Event(
            time_ms=line.time_ms,
            kind="log_unknown_suppressed",
            message=f"{self.name}: {n} unknown lines between {start} and {end} were counted but not kept "
            "as events (events_per_source)",
            fields={
                "source": self.name,
                "limit": self.s.events_per_source,
                "window_start": start,
                "window_end": end,
                "suppressed": n,
            },
        )

    def _evict_pending(self) -> None:
        while len(self.pending_lru) > self.s.max_pending:
            tid, _ = self.pending_lru.popitem(last=False)
            self._forget_pending(tid)
            self.evicted += 1
        if self.evicted >= self.s.max_pending:
            # Drain's leaves keep ids of removed clusters until that leaf is added to again: rebuild
            # the tree from the live clusters now and then so it stays proportional to max_pending.
            fresh = _new_drain(self.s)
            for tid, cluster in self.pending.id_to_cluster.items():
                fresh.id_to_cluster[tid] = cluster
                fresh.add_seq_to_prefix_tree(fresh.root_node, cluster)
            self.pending = fresh
            self.evicted = 0

    def _forget_pending(self, tid: int) -> None:
        self.pending.id_to_cluster.pop(tid, None)
        self.pending_lru.pop(tid, None)
        self.templates.pop(tid, None)
        self.windows.pop(tid, None)

    def accept(self, tid: int) -> None:
        entry = self.templates.get(tid)
        if entry is None or entry.status != PENDING:
            return
        self.pending.id_to_cluster.pop(tid, None)
        self.pending_lru.pop(tid, None)
        self.windows.pop(tid, None)
        entry.status = ACCEPTED
        _insert(self.known, tid, entry.template)

    def merge(self, on_disk: TemplateBaseline) -> int:
        """Apply decisions taken in the file (by the CLI): accepted and rejected pending templates."""
        changed = 0
        for tid, entry in list(self.templates.items()):
            if entry.status != PENDING:
                continue
            theirs = on_disk.templates.get(tid)
            if theirs is None:
                if tid in self.saved_pending:  # was in the file, is not any more: rejected
                    self._forget_pending(tid)
                    changed += 1
            elif theirs.status in KNOWN:
                self.accept(tid)
                changed += 1
        for tid, theirs in on_disk.templates.items():
            if theirs.status in KNOWN and tid not in self.templates:
                # Accepted in the file after we forgot the pending template (max_pending): keep it.
                self.templates[tid] = theirs
                _insert(self.known, tid, theirs.template)
                self.baseline.next_id = max(self.baseline.next_id, tid + 1)
                changed += 1
        if changed:
            self.clear_cache()  # a cached line may now match an accepted template
        return changed


class UnknownLineDetector:
    """LineProcessor reporting lines whose shape matches no learned or accepted template.

    `directory` holds one baseline file per source (None: in memory only, nothing saved). `sources`,
    when given, are the only sources handled (others are ignored), and their baselines are loaded at
    once. `clock` (seconds) only paces saving and re-reading the baselines; learning and event windows
    follow the lines' own `time_ms`, so they are deterministic for a given input.
    """

    name = "unknown_lines"

    def __init__(
        self,
        directory: Path | None,
        *,
        sources: Iterable[str] | None = None,
        settings: DetectorSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.settings = settings or DetectorSettings()
        self._clock = clock
        from drain3.masking import LogMasker, MaskingInstruction

        self._masker = LogMasker([MaskingInstruction(p, m) for p, m in MASKS], "<", ">")
        self._allowed = None if sources is None else frozenset(sources)
        self._sources: dict[str, _Source] = {}
        self._ticks = 0
        now = clock()
        self._last_sync = now
        self._last_save = now
        for name in sorted(self._allowed or ()):
            self._state(name)

    # -- LineProcessor

    def process(self, line: LogLine) -> Iterable[Event]:
        st = self._sources.get(line.source) or self._state(line.source)
        if st is None:
            return ()
        self._ticks += 1
        if self._ticks & 255 == 0:
            self.tick()
        return st.process(line)

    def collect(self) -> Iterable[Metric]:
        lines = CounterMetricFamily("vigil_log_lines", "Log lines read, per source.", labels=["source"])
        unknown = CounterMetricFamily(
            "vigil_log_unknown_lines",
            "Log lines matching no learned or accepted template, per source.",
            labels=["source"],
        )
        suppressed = CounterMetricFamily(
            "vigil_log_unknown_events_suppressed",
            "Unknown log lines counted but not kept as events, by the limit that held them back "
            "(events_per_template or events_per_source).",
            labels=["source", "limit"],
        )
        templates = GaugeMetricFamily(
            "vigil_log_templates",
            "Log templates in the baseline, per source and status.",
            labels=["source", "status"],
        )
        learning = GaugeMetricFamily(
            "vigil_log_templates_learning",
            "1 while a source's templates are being learned (nothing is reported), else 0.",
            labels=["source"],
        )
        for name, st in sorted(self._sources.items()):
            lines.add_metric([name], st.lines)
            unknown.add_metric([name], st.unknown)
            suppressed.add_metric([name, "template"], st.suppressed - st.suppressed_by_source)
            suppressed.add_metric([name, "source"], st.suppressed_by_source)
            for status, n in st.baseline.counts().items():
                templates.add_metric([name, status], n)
            learning.add_metric([name], 1 if st.learning else 0)
        return [lines, unknown, suppressed, templates, learning]

    def snapshot(self) -> dict[str, Any]:
        return {
            "sources": {
                name: {
                    "lines": st.lines,
                    "unknown": st.unknown,
                    "suppressed": st.suppressed,
                    "suppressed_by_source": st.suppressed_by_source,
                }
                for name, st in self._sources.items()
            }
        }

    def restore(self, state: dict[str, Any]) -> None:
        for name, counters in (state.get("sources") or {}).items():
            st = self._state(name)
            if st is None or not isinstance(counters, dict):
                continue
            st.lines = int(counters.get("lines", 0))
            st.unknown = int(counters.get("unknown", 0))
            st.suppressed = int(counters.get("suppressed", 0))
            # Checkpoints from before the split have the total only: counted under "template".
            st.suppressed_by_source = min(st.suppressed, int(counters.get("suppressed_by_source", 0)))

    # -- baselines

    def baseline(self, source: str) -> TemplateBaseline | None:
        """The live baseline of a source (for inspection and tests), None if the source is not known."""
        st = self._sources.get(source)
        return None if st is None else st.baseline

    def learning(self, source: str) -> bool:
        st = self._sources.get(source)
        return st is not None and st.learning

    def accept(self, source: str, template_ids: Iterable[int]) -> None:
        """Accept pending templates in memory (the CLI edits the file instead; `sync` picks that up)."""
        st = self._sources.get(source)
        if st is not None:
            for tid in template_ids:
                st.accept(tid)
            st.clear_cache()
            st.urgent = True

    def tick(self) -> None:
        """Called every few hundred lines: re-read changed baselines, save every `save_interval_s`."""
        now = self._clock()
        if now - self._last_save >= self.settings.save_interval_s or any(
            st.urgent for st in self._sources.values()
        ):
            self.save()
        elif now - self._last_sync >= self.settings.sync_interval_s:
            self.sync()

    def sync(self) -> None:
        """Apply accept/reject decisions written to the baseline files since we last read or wrote them."""
        self._last_sync = self._clock()
        if self.directory is None:
            return
        for st in self._sources.values():
            path = TemplateBaseline.path(self.directory, st.name)
            if _signature(_stat(path)) == st.file_sig:
                continue
            with baseline_lock(self.directory):
                self._merge_locked(st, path)

    def save(self) -> None:
        """Write every changed baseline now (also merging decisions taken in the files meanwhile)."""
        self._last_save = self._last_sync = self._clock()
        if self.directory is None:
            return
        for st in self._sources.values():
            path = TemplateBaseline.path(self.directory, st.name)
            if not st.urgent and st.lines == st.lines_at_save and _signature(_stat(path)) == st.file_sig:
                continue
            try:
                with baseline_lock(self.directory):
                    self._merge_locked(st, path)
                    st.file_sig = _signature(st.baseline.save(self.directory))
            except OSError as e:
                log.warning("log templates of %s not saved: %s", st.name, e)
                continue
            st.lines_at_save = st.lines
            st.urgent = False
            st.saved_pending = {t.id for t in st.templates.values() if t.status == PENDING}

    def _merge_locked(self, st: _Source, path: Path) -> None:
        sig = _signature(_stat(path))
        if sig == st.file_sig or sig is None:
            return
        try:
            on_disk = TemplateBaseline.load_file(path)
        except BaselineError as e:
            log.warning("log templates: %s (kept the agent's own copy)", e)
            st.file_sig = sig
            return
        if on_disk is not None and st.merge(on_disk):
            st.lines_at_save = -1
        st.file_sig = sig

    def _state(self, source: str) -> _Source | None:
        st = self._sources.get(source)
        if st is not None:
            return st
        if self._allowed is not None and source not in self._allowed:
            return None
        baseline: TemplateBaseline | None = None
        sig = None
        if self.directory is not None:
            path = TemplateBaseline.path(self.directory, source)
            try:
                baseline = TemplateBaseline.load_file(path)
                sig = _signature(_stat(path))
            except BaselineError as e:
                log.warning("log templates: %s; learning %s again", e, source)
        if baseline is None or baseline.source != source:
            baseline = TemplateBaseline(source)
        st = self._sources[source] = _Source(baseline, self.settings, self._masker)
        st.file_sig = sig
        if sig is not None:
            st.lines_at_save = 0
        return st


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
