"""The agent's log pipeline: log files and syslog in, metrics and events out, counted exactly once.

One thread polls every configured file source (`FileFollower`) every 250 ms, on its own cadence and
not the agent's collections, and drains the lines the syslog receiver pushed, hands each line to the
processors of its source (auth parsing, log rules, access-log RED metrics, unknown-line detection),
gives the events they return their identity labels and a stable id, and passes them to `emit` (the
durable event queue, which sends them at once). Then it writes one checkpoint: every file's offset and
every processor's counters, atomically (tmp + fsync + rename); a round that read nothing writes none.

Why one checkpoint for both: counters restored from it always match the offsets restored with it,
so after a crash the lines read since the checkpoint are counted again against the counters as they
were *before* those lines — no line counted twice, none lost. The metrics a scrape or the shipper
sees are never ahead of the checkpoint either: processing and checkpointing happen under a lock that
`collect` also takes, so a value that left the agent is always one that a restart resumes from.
Events from re-read lines get the same ids (derived from the line's file, inode and offset), so
the server stores them once.

Which inputs each source reads is exposed (`vigil_log_source_info{source,kind}`,
`vigil_log_files_followed{source}`, beside `vigil_log_lines_read_total{source}`), and a file source
matching no file is said once in the log (and again when one appears): zero-config auth monitoring on
a host without auth.log must not look like a quiet host.

Syslog lines have no offsets: those received but not yet processed when the agent dies are lost, as
with any syslog relay. The push queue is bounded; overflow is counted, never blocks the receiver.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import Metric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from vigil.logs.journal import JournalFollower
from vigil.logs.processor import LineProcessor, LogLine
from vigil.logs.tail import Chunk, FileFollower
from vigil.model.event import Event, event_id

__all__ = ["FileSource", "JournalSource", "LogPipeline", "SourceHealth"]

log = logging.getLogger(__name__)

_VERSION = 1
_MAX_BATCH = 20_000  # lines processed between checkpoints when syslog floods in
_MAX_READ = 4 * 1024 * 1024  # bytes read from a file per round: bounded memory on a big backlog


@dataclass
class JournalSource:
    """Entries of the systemd journal matching `matches` (journalctl syntax; default: the auth and
    authpriv facilities), rendered as syslog-style lines for `processors`."""

    name: str
    matches: Sequence[str] = ("SYSLOG_FACILITY=4", "SYSLOG_FACILITY=10")
    processors: Sequence[LineProcessor] = field(default_factory=list)
    start_at_end: bool = True
    journalctl: str = "journalctl"


class Follower(Protocol):
    """What the pipeline reads lines from: `FileFollower` or `JournalFollower`."""

    errors: dict[str, str]

    @property
    def more(self) -> bool: ...

    def followed(self) -> list[str]: ...

    def poll_chunks(self) -> list[Chunk]: ...

    def state(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


@dataclass
class FileSource:
    """Files (globs) whose lines go to `processors`; `name` is the bounded `source` label value."""

    name: str
    paths: Sequence[str]
    processors: Sequence[LineProcessor] = field(default_factory=list)
    start_at_end: bool = True  # a fresh install does not replay (and alert on) history
    max_line_bytes: int = 64 * 1024


class SourceHealth:
    """A collector reporting a source's read errors the agent's way: it raises while files of the
    source cannot be read, so the agent logs that once and counts `vigil_agent_collector_errors_total`
    under this collector's name (`log_<source>`). It yields no metrics of its own."""

    def __init__(self, name: str, errors: Callable[[], dict[str, str]]) -> None:
        self.name = f"log_{name}"
        self._errors = errors

    def collect(self) -> Iterable[Metric]:
        errors = self._errors()
        if errors:
            raise PermissionError(
                "; ".join(f"cannot read {path}: {why}" for path, why in sorted(errors.items()))
            )
        return []


class LogPipeline:
    def __init__(
        self,
        sources: Sequence[FileSource | JournalSource],
        state_file: Path,
        emit: Callable[[list[Event]], None] | None = None,
        labels: dict[str, str] | None = None,
        syslog_processors: Sequence[LineProcessor] = (),
        poll_interval_s: float = 0.25,
        max_pending_syslog: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`labels` are the identity labels events get (instance, cluster, ...); `emit` must return
        only once the events are durable (the event shipper's `send`), or raise. `poll_interval_s`:
        the pause between rounds when nothing is waiting, so a line's events leave within it; an
        idle round (a stat and an fstat per file, no checkpoint) costs ~20 µs of CPU, 0.01% at 4/s."""
        self._sources = list(sources)
        self._state_file = state_file
        self._emit = emit
        self._labels = dict(labels or {})
        self._instance = self._labels.get("instance", "")
        self._syslog_processors = list(syslog_processors)
        self._interval = poll_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: collections.deque[LogLine] = collections.deque()
        self._max_pending = max_pending_syslog
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lines_read: dict[str, int] = {}
        self.syslog_dropped = 0
        self.rounds_retried = 0
        self.checkpoint_errors = 0
        self._logged: set[str] = set()
        self._missing: set[str] = set()  # file sources said to match no file (until one appears)
        self._checkpointed = False
        self._more = False  # a file had more to read than one round takes: go again at once

        self._followers: dict[str, list[tuple[str, Follower]]] = {}
        self._last_state: dict[str, Any] = {}
        self._open(self._load())
        self._last_state = self._state()  # what a failed round rolls back to, until a checkpoint

    def _open(self, state: dict[str, Any]) -> None:
        """Followers and processor counters as a checkpoint left them (on start, and to roll back)."""
        for pairs in self._followers.values():
            for _, f in pairs:
                f.close()
        saved_followers = state.get("followers", {})
        # One follower per (source, path or glob); the checkpoint keys them "<source> <pattern>"
        # ("<source> journal" for the journal).
        self._followers = {}
        for s in self._sources:
            if isinstance(s, JournalSource):
                key = f"{s.name} journal"
                journal = JournalFollower(
                    s.matches,
                    state=saved_followers.get(key),
                    start_at_end=s.start_at_end,
                    journalctl=s.journalctl,
                )
                self._followers[s.name] = [(key, journal)]
                continue
            self._followers[s.name] = [
                (
                    f"{s.name} {pattern}",
                    FileFollower(
                        pattern,
                        start_at_end=s.start_at_end,
                        max_line_bytes=s.max_line_bytes,
                        state=saved_followers.get(f"{s.name} {pattern}"),
                        max_read_bytes=_MAX_READ,
                    ),
                )
                for pattern in s.paths
            ]
        self.lines_read = {s.name: 0 for s in self._sources}
        self.lines_read.update(
            {k: int(v) for k, v in state.get("lines_read", {}).items() if k in self.lines_read}
        )
        saved = state.get("processors", {})
        for p in self.processors():
            if p.name in saved:
                try:
                    p.restore(saved[p.name])
                except Exception as exc:  # a bad checkpoint entry must not stop log monitoring
                    log.warning(
                        "log processor %s: counters not restored from the checkpoint (%s)", p.name, exc
                    )

    # -- wiring ------------------------------------------------------------------------------------

    def processors(self) -> list[LineProcessor]:
        """Every distinct processor (one may serve several sources), in a stable order."""
        seen: dict[int, LineProcessor] = {}
        for s in self._sources:
            for p in s.processors:
                seen.setdefault(id(p), p)
        for p in self._syslog_processors:
            seen.setdefault(id(p), p)
        return list(seen.values())

    def collectors(self) -> list[Any]:
        """What the agent registers: each processor's metrics (read under the checkpoint lock), the
        pipeline's own, and one health collector per file source."""
        out: list[Any] = [_Locked(p, self._lock) for p in self.processors()]
        out.append(_PipelineMetrics(self))
        out += [SourceHealth(s.name, functools.partial(self.errors, s.name)) for s in self._sources]
        return out

    def errors(self, source: str) -> dict[str, str]:
        """Files of `source` that cannot be read now: path -> reason."""
        out: dict[str, str] = {}
        for _, follower in self._followers[source]:
            out.update(follower.errors)
        return out

    def followed(self, source: str) -> list[str]:
        """What `source` reads now: its files, or "journal"."""
        return [path for _, follower in self._followers[source] for path in follower.followed()]

    def _say_missing(self) -> None:
        """Say once that a file source matches no file (and when it does again): without it, a
        host without the expected log looks the same as a quiet one."""
        for s in self._sources:
            if isinstance(s, JournalSource):
                continue  # journalctl failures are reported as the source's errors
            found = self.followed(s.name)
            if not found and not self.errors(s.name) and s.name not in self._missing:
                self._missing.add(s.name)
                log.warning(
                    "log source %s: no file matches %s, so nothing is read from it until one appears "
                    "(vigil_log_files_followed{source=%r} is 0)",
                    s.name,
                    ", ".join(s.paths),
                    s.name,
                )
            elif found and s.name in self._missing:
                self._missing.discard(s.name)
                log.info("log source %s: reading %s", s.name, ", ".join(found))

    def push(self, line: LogLine) -> None:
        """Queue a line from the syslog receiver (any thread); dropped and counted when full."""
        if len(self._pending) >= self._max_pending:
            self.syslog_dropped += 1
            return
        self._pending.append(line)

    # -- running -----------------------------------------------------------------------------------

    def poll_once(self) -> int:
        """Read, process, emit and checkpoint once; returns the number of lines processed."""
        with self._lock:
            now_ms = int(self._clock() * 1000)
            events: list[Event] = []
            total = 0
            self._more = False
            for source in self._sources:
                name, processors = source.name, source.processors
                for _, follower in self._followers[source.name]:
                    for chunk in follower.poll_chunks():
                        self.lines_read[name] += len(chunk.lines)
                        total += len(chunk.lines)
                        for text, offset in zip(chunk.lines, chunk.offsets, strict=True):
                            self._process(
                                LogLine(name, text, now_ms), processors, events, chunk.where, offset
                            )
                    self._more = self._more or follower.more
            taken: list[LogLine] = []
            for _ in range(min(len(self._pending), _MAX_BATCH)):
                line = self._pending.popleft()
                taken.append(line)
                total += 1
                self._process(line, self._syslog_processors, events, line.origin)
            ok = self._send(events) if events else True
            # The first round is saved even without lines: it is where files found at start were
            # positioned, and a restart must resume there rather than skip to the end again.
            if ok and (total or not self._checkpointed):
                ok = self._checkpoint()
            if not ok:
                # Events not queued or progress not saved: forget the round (counters and positions
                # back to the last checkpoint, syslog lines back in the queue) and read it again.
                self.rounds_retried += 1
                self._open(self._last_state)
                self._pending.extendleft(reversed(taken))
                self._more = False
                return 0
            self._say_missing()
            for p in self.processors():
                tick = getattr(p, "tick", None)  # periodic housekeeping (saving learned templates)
                if tick is not None:
                    try:
                        tick()
                    except Exception as exc:
                        self._log_once(f"log processor {p.name} housekeeping failed: {exc}")
            return total

    def _process(
        self,
        line: LogLine,
        processors: Sequence[LineProcessor],
        out: list[Event],
        where: str,
        position: int | str = "",
    ) -> None:
        """Run a line through its processors; its origin (`where` + `position`, for event ids) is only
        formatted when a processor returned events: most lines have none."""
        for p in processors:
            try:
                produced = p.process(line)
            except Exception as exc:  # one bad processor must not stop the others
                self._log_once(f"log processor {p.name} failed: {type(exc).__name__}: {exc}")
                continue
            if produced:
                self._identify(produced, f"{where}{position}", p.name, line.source, out)

    def _identify(
        self, produced: Iterable[Event], origin: str, processor: str, source: str, out: list[Event]
    ) -> None:
        """Give a line's events their identity labels and ids derived from where the line was."""
        for i, e in enumerate(produced):
            ident = event_id(self._instance, origin, processor, e.kind, i)
            out.append(e.with_identity({**self._labels, "source": source}, ident))

    def _send(self, events: list[Event]) -> bool:
        if self._emit is None:
            return True
        try:
            self._emit(events)
        except Exception as exc:
            self._log_once(f"could not queue events (the lines are read again): {type(exc).__name__}: {exc}")
            return False
        return True

    def _state(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "followers": {key: f.state() for pairs in self._followers.values() for key, f in pairs},
            "processors": {p.name: p.snapshot() for p in self.processors()},
            "lines_read": dict(self.lines_read),
        }

    def _checkpoint(self) -> bool:
        state = self._state()
        tmp = self._state_file.with_name(f".{self._state_file.name}.{os.getpid()}.tmp")
        try:
            self._state_file.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as fh:
                json.dump(state, fh, separators=(",", ":"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._state_file)
        except (OSError, ValueError) as exc:  # ValueError: a value JSON cannot hold
            self.checkpoint_errors += 1
            self._log_once(
                f"could not write the log checkpoint {self._state_file} (the lines are read again): {exc}"
            )
            return False
        self._checkpointed = True
        self._last_state = state
        return True

    def _load(self) -> dict[str, Any]:
        try:
            state = json.loads(self._state_file.read_bytes())
            if not isinstance(state, dict) or state.get("version") != _VERSION:
                raise ValueError("unknown format")
            return state
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring the log checkpoint %s (%s); starting afresh", self._state_file, exc)
            return {}

    def _log_once(self, message: str) -> None:
        if message not in self._logged and len(self._logged) < 256:
            self._logged.add(message)
            log.warning("%s (logged once)", message)

    def start(self) -> None:
        # The first round runs here: files present now are positioned (at their end, by default)
        # before start() returns, so a line written after it is never taken for history.
        try:
            self.poll_once()
        except Exception:
            log.exception("log pipeline round failed")
        self._thread = threading.Thread(target=self._loop, name="vigil-logs", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("log pipeline round failed")
            if not self._pending and not self._more:
                self._stop.wait(self._interval)

    def stop(self) -> None:
        """Stop the thread after a last round (syslog lines already received are not left behind;
        stop the receiver first), then close the followers."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            try:
                self.poll_once()
            except Exception:
                log.exception("log pipeline round failed")
        for pairs in self._followers.values():
            for _, f in pairs:
                f.close()


class _Locked:
    """A processor as the registry sees it: collected under the pipeline's checkpoint lock."""

    def __init__(self, inner: LineProcessor, lock: threading.Lock) -> None:
        self.name = inner.name
        self._inner = inner
        self._lock = lock

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            return list(self._inner.collect())


class _PipelineMetrics:
    name = "log_pipeline"

    def __init__(self, pipeline: LogPipeline) -> None:
        self._p = pipeline

    def collect(self) -> Iterable[Metric]:
        p = self._p
        read = CounterMetricFamily(
            "vigil_log_lines_read", "Lines read from log files, by source.", labels=["source"]
        )
        for name, n in sorted(p.lines_read.items()):
            read.add_metric([name], n)
        failing = GaugeMetricFamily(
            "vigil_log_files_unreadable", "Files of a log source that cannot be read now.", labels=["source"]
        )
        followed = GaugeMetricFamily(
            "vigil_log_files_followed",
            "Files a log source reads now (for the journal: 1 while journalctl runs); 0: nothing is read.",
            labels=["source"],
        )
        info = GaugeMetricFamily(
            "vigil_log_source_info",
            "The log sources followed, by what they read (file or journal); always 1.",
            labels=["source", "kind"],
        )
        for name in sorted(p._followers):
            failing.add_metric([name], len(p.errors(name)))
            followed.add_metric([name], len(p.followed(name)))
        for s in sorted(p._sources, key=lambda s: s.name):
            info.add_metric([s.name, "journal" if isinstance(s, JournalSource) else "file"], 1)
        return [
            read,
            failing,
            followed,
            info,
            CounterMetricFamily(
                "vigil_log_syslog_lines_dropped",
                "Syslog lines dropped because the pipeline's queue was full.",
                value=p.syslog_dropped,
            ),
            CounterMetricFamily(
                "vigil_log_rounds_retried",
                "Rounds of lines read again because their events could not be queued or the checkpoint "
                "not written.",
                value=p.rounds_retried,
            ),
            CounterMetricFamily(
                "vigil_log_checkpoint_errors",
                "Checkpoints that could not be written.",
                value=p.checkpoint_errors,
            ),
        ]
