"""Follow the systemd journal like `FileFollower` follows auth.log: the input on journal-only hosts.

Debian 12 without rsyslog, Fedora, Arch and others keep auth messages only in the journal, so there
is no auth.log to tail. `JournalFollower` is a drop-in for `FileFollower` in the log pipeline: it
runs one long-lived ``journalctl --follow --output=json`` (no libsystemd binding needed, and
journalctl already handles journal rotation, vacuuming and file permissions) and returns entries as
``("journal", line, "journal:<__CURSOR>")``.

* The line is rendered exactly like `syslogparse.to_log_line` renders a syslog message, i.e. like
  rsyslog's high-precision file format (``2024-11-22T10:00:00.000+00:00 host sshd[42]: msg``, control
  characters escaped as ``#012``), so the auth parser, log rules and unknown-line detection work on
  journal entries unchanged.
* The cursor names an entry for good: it is the origin (stable event ids for entries read twice)
  and the whole of `state()`. Resuming uses ``--after-cursor`` with the cursor of the last entry
  *returned*, so a checkpoint written after processing resumes exactly after it: nothing skipped,
  nothing repeated. Entries buffered but not yet returned are simply read again.
* Without saved state, ``start_at_end`` anchors at the newest matching entry with a short
  ``journalctl --lines=1`` before following from it (``--lines=0`` would race with entries logged
  while journalctl starts, and would leave no position to checkpoint until the first entry). With
  saved state and no cursor (nothing matched yet) the journal is read from its beginning.

journalctl quirks handled here (checked against systemd 252):

* ``--follow`` implies ``--lines=10`` even with ``--after-cursor``: journalctl then prints 10
  entries after the cursor and holds the rest back until a new entry arrives. ``--lines=all`` is
  always passed.
* A syntactically broken cursor makes journalctl exit with "Failed to seek to cursor". The follower
  then starts again from the beginning of the journal (at-least-once; event ids dedupe) and notes it
  in `errors` until entries flow. A well-formed cursor whose entry was vacuumed is not an error:
  journalctl seeks to the nearest position by itself.
* Without access to the system journal (not in group adm / systemd-journal), journalctl keeps
  running but prints a "Hint: You are currently not seeing messages from other users and the
  system" on stderr: stderr is captured (bounded) and shown in `errors` while the process runs.

Errors never escape `poll_with_origin()`: journalctl missing or exiting, stderr output and non-JSON
output are described in ``errors["journal"]`` (the pipeline logs them and counts
`vigil_agent_collector_errors_total`), and journalctl is restarted on a later poll, at most once
per `restart_interval_s`. A reader thread feeds a bounded queue: when the pipeline falls behind the
reader blocks, journalctl blocks on its pipe and the entries wait in the journal, not in memory.
"""

from __future__ import annotations

import collections
import contextlib
import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import IO, Any

from vigil.logs.syslogparse import escape_line
from vigil.logs.tail import Chunk

__all__ = ["JournalFollower", "render_entry"]

_STATE_VERSION = 1
_PATH = "journal"  # the "path" of every line, and the key in `errors`
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STDERR_LINES = 8  # stderr lines kept for `errors`
_STDERR_LINE_CHARS = 300
_ANCHOR_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 2.0
_HEALTHY_AFTER_S = 10.0  # a restarted journalctl still up after this long clears its exit error

# (path, line, origin), as FileFollower.poll_with_origin returns.
Line = tuple[str, str, str]


def _text(value: Any) -> str:
    """A journal JSON field value as text: a string, a byte list (binary data), an array of values
    (field given several times: the first), or null (over 4096 bytes without --all)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        if all(isinstance(b, int) for b in value):
            return bytes(b & 0xFF for b in value).decode("utf-8", errors="replace")
        return _text(value[0])
    return ""


def render_entry(entry: dict[str, Any]) -> str:
    """One journal entry (journalctl -o json) as rsyslog would write it to a file (see the module doc)."""
    try:
        us = int(entry.get("__REALTIME_TIMESTAMP", ""))
        stamp = (_EPOCH + timedelta(microseconds=us)).isoformat(timespec="milliseconds")
    except (TypeError, ValueError, OverflowError):
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    host = _text(entry.get("_HOSTNAME")) or "-"
    app = _text(entry.get("SYSLOG_IDENTIFIER")) or _text(entry.get("_COMM"))
    # rsyslog's imjournal prefers the pid the program logged, then the trusted one.
    pid = _text(entry.get("SYSLOG_PID")) or _text(entry.get("_PID"))
    message = _text(entry.get("MESSAGE"))
    if app:
        tag = f"{app}[{pid}]" if pid else app
        text = f"{stamp} {host} {tag}: {message}".rstrip(" ")
    else:
        text = f"{stamp} {host} {message}"
    return escape_line(text)


class _Proc:
    """One journalctl process with its stdout reader and stderr collector threads."""

    def __init__(
        self,
        argv: list[str],
        out: queue.Queue[tuple[str, str]],
        render: Callable[[dict[str, Any]], str],
        max_json_bytes: int,
    ) -> None:
        self.argv = argv
        self.with_cursor = any(a.startswith("--after-cursor=") for a in argv)
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True
        )
        self._out = out
        self._render = render
        self._max_json = max_json_bytes
        self.stop = threading.Event()
        self.delivered = False  # the reader queued at least one entry
        self.notes: collections.deque[str] = collections.deque(maxlen=4)  # bad output seen by the reader
        self.stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self.reader = threading.Thread(
            target=self._read, args=(self.popen.stdout,), name="vigil-journal", daemon=True
        )
        self.err_reader = threading.Thread(
            target=self._read_stderr, args=(self.popen.stderr,), name="vigil-journal-err", daemon=True
        )
        self.reader.start()
        self.err_reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):  # ValueError: stream closed by stop()
            while not self.stop.is_set():
                raw = stream.readline(self._max_json + 1)
                if not raw:
                    return
                if len(raw) > self._max_json and not raw.endswith(b"\n"):
                    while (rest := stream.readline(self._max_json)) and not rest.endswith(b"\n"):
                        pass  # skip the rest of an entry too big to parse
                    self.notes.append(f"skipped a journal entry over {self._max_json} bytes")
                    continue
                item = self._parse(raw)
                if item is None:
                    continue
                while not self.stop.is_set():
                    try:
                        # Blocks while the pipeline is behind: journalctl then blocks on the pipe.
                        self._out.put(item, timeout=0.2)
                        self.delivered = True
                        break
                    except queue.Full:
                        continue

    def _parse(self, raw: bytes) -> tuple[str, str] | None:
        text = raw.strip()
        if not text or text.startswith(b"-- "):  # journalctl's own markers ("-- No entries --")
            return None
        try:
            entry = json.loads(text)
            cursor = entry["__CURSOR"]
            if not isinstance(cursor, str) or not cursor:
                raise TypeError("no cursor")
            return cursor, self._render(entry)
        except (ValueError, KeyError, TypeError) as e:
            shown = text[:80].decode("utf-8", errors="replace")
            self.notes.append(f"unexpected journalctl output ({type(e).__name__}): {shown!r}")
            return None

    def _read_stderr(self, stream: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            for raw in stream:  # drained to EOF so journalctl never blocks on a full stderr pipe
                line = raw.decode("utf-8", errors="replace").strip()
                if line:
                    self.stderr.append(line[:_STDERR_LINE_CHARS])

    def stderr_text(self) -> str:
        return " ".join(list(self.stderr))

    def finished(self) -> bool:
        return not self.reader.is_alive()

    def reap(self) -> int:
        """Exit status of a process whose stdout reached EOF (killed if it lingers)."""
        try:
            rc = self.popen.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            rc = self.popen.wait()
        self.err_reader.join(timeout=_STOP_TIMEOUT_S)
        self._close_pipes()
        return rc

    def terminate(self) -> None:
        self.stop.set()
        if self.popen.poll() is None:
            with contextlib.suppress(OSError):
                self.popen.terminate()
            try:
                self.popen.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        # EOF on both pipes once the process is gone; the reader also polls `stop` while blocked.
        self.reader.join(timeout=_STOP_TIMEOUT_S)
        self.err_reader.join(timeout=_STOP_TIMEOUT_S)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class JournalFollower:
    """Follow journal entries matching `matches`; see the module docstring for the semantics."""

    def __init__(
        self,
        matches: Sequence[str] = ("SYSLOG_FACILITY=4", "SYSLOG_FACILITY=10"),
        state: dict[str, Any] | None = None,
        start_at_end: bool = True,
        journalctl: str = "journalctl",
        max_line_bytes: int = 64 * 1024,
        max_batch: int = 10000,
        restart_interval_s: float = 30.0,
    ) -> None:
        """`matches` are journalctl matches (FIELD=VALUE; the same field given twice means OR): the
        default is the auth and authpriv syslog facilities. `state` comes from `state()`."""
        if max_line_bytes <= 0 or max_batch <= 0:
            raise ValueError("max_line_bytes and max_batch must be positive")
        self._matches = [str(m) for m in matches]
        self._journalctl = journalctl
        self._start_at_end = start_at_end
        self._max = max_line_bytes
        self._max_batch = max_batch
        self._restart_interval = restart_interval_s
        self.errors: dict[str, str] = {}
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue(maxsize=max_batch)
        self._proc: _Proc | None = None
        self._last_start: float | None = None
        self._failure = ""  # why the last journalctl could not start or stopped
        self._notes: dict[str, str] = {}  # transient problems, cleared once entries flow again
        self._cursor: str | None = None
        self._positioned = False  # False: fresh start, `start_at_end` decides where to begin
        if state is not None:
            try:
                if state.get("version") != _STATE_VERSION:
                    raise ValueError(f"unsupported state version {state.get('version')!r}")
                cursor = state.get("cursor")
                if cursor is not None and not isinstance(cursor, str):
                    raise ValueError("cursor is not a string")
                self._cursor = cursor or None
                self._positioned = bool(state.get("positioned", True)) or self._cursor is not None
            except (ValueError, AttributeError) as e:
                self._notes["state"] = f"invalid saved journal position ({e}); starting afresh"
            self._publish()

    # -- public API -------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The running journalctl's pid (diagnostics)."""
        return self._proc.popen.pid if self._proc is not None else None

    def poll(self) -> list[tuple[str, str]]:
        """Return ``("journal", line)`` for new entries, oldest first; never raises."""
        return [(path, line) for path, line, _ in self.poll_with_origin()]

    def poll_with_origin(self) -> list[Line]:
        """Up to `max_batch` new entries as ``("journal", line, "journal:<cursor>")``; never raises."""
        out: list[Line] = []
        try:
            self._supervise()
            while len(out) < self._max_batch:
                try:
                    cursor, line = self._queue.get_nowait()
                except queue.Empty:
                    break
                out.append((_PATH, self._truncate(line), f"journal:{cursor}"))
                self._cursor = cursor
            proc = self._proc
            fresh = list(proc.notes) if proc is not None else []
            if proc is not None:
                proc.notes.clear()
            if out and not fresh:
                self._notes.clear()  # entries flow again: earlier hiccups are over
            for note in fresh:
                self._notes["output"] = note
            if proc is not None and (proc.delivered or time.monotonic() - proc.started >= _HEALTHY_AFTER_S):
                self._failure = ""
        except Exception as e:  # defensive: the pipeline must keep running whatever happens here
            self._failure = f"journal follower failed: {type(e).__name__}: {e}"
        self._publish()
        return out

    def poll_chunks(self) -> list[Chunk]:
        """As `poll_with_origin`, in the log pipeline's form (one chunk; positions are cursors)."""
        entries = self.poll_with_origin()
        if not entries:
            return []
        prefix = len("journal:")
        return [
            Chunk(_PATH, "journal:", [line for _, line, _ in entries], [o[prefix:] for _, _, o in entries])
        ]

    def followed(self) -> list[str]:
        """`["journal"]` while a journalctl runs without a reported failure, else nothing."""
        return [_PATH] if self._proc is not None and not self._failure else []

    @property
    def more(self) -> bool:
        """Entries are waiting beyond what one poll returns."""
        return not self._queue.empty()

    def state(self) -> dict[str, Any]:
        """The position after the last entry returned, as JSON-able data (resume with ``state=``).

        ``positioned`` false: journalctl never ran yet, so `start_at_end` still decides on resume."""
        return {"version": _STATE_VERSION, "cursor": self._cursor, "positioned": self._positioned}

    def close(self) -> None:
        """Stop journalctl (TERM, then KILL after a bounded wait) and its threads. A later poll
        starts it again from the last returned entry."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.terminate()
        self._last_start = None  # a poll after close() restarts at once
        # What was buffered but not returned is read again by the next journalctl (after the cursor).
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

    def __enter__(self) -> JournalFollower:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------

    def _supervise(self) -> None:
        """Notice a stopped journalctl (once its output is consumed) and (re)start one when due."""
        proc = self._proc
        if proc is not None:
            if not (proc.finished() and self._queue.empty()):
                return
            rc = proc.reap()
            self._proc = None
            err = proc.stderr_text()
            if proc.with_cursor and "cursor" in err.lower():
                # The saved cursor is unusable: re-read what the journal still has (event ids dedupe).
                self._cursor = None
                self._notes["cursor"] = (
                    f"saved journal position rejected ({err}); reading the journal from its beginning"
                )
                self._start()
                return
            self._failure = f"journalctl exited with status {rc}" + (f": {err}" if err else "")
        if self._last_start is not None and time.monotonic() - self._last_start < self._restart_interval:
            return
        self._start()

    def _start(self) -> None:
        self._last_start = time.monotonic()
        base = [self._journalctl, "--output=json", "--no-pager", "--all"]
        try:
            if not self._positioned:
                if self._start_at_end:
                    self._cursor = self._anchor(base)
                self._positioned = True  # from here on, no cursor means "from the beginning"
            # --lines=all also with a cursor: --follow would otherwise imply --lines=10 (see above).
            position = [f"--after-cursor={self._cursor}"] if self._cursor else []
            argv = [*base, "--follow", "--lines=all", *position, *self._matches]
            self._proc = _Proc(argv, self._queue, render_entry, self._max_json())
        except subprocess.TimeoutExpired:
            self._failure = f"journalctl took over {_ANCHOR_TIMEOUT_S:.0f}s to find the journal's end"
        except OSError as e:
            self._failure = f"cannot run {self._journalctl}: {e.strerror or e}"
        except _AnchorError as e:
            self._failure = str(e)

    def _anchor(self, base: list[str]) -> str | None:
        """Cursor of the newest matching entry (None: no entry yet, so everything is new)."""
        done = subprocess.run(
            [*base, "--lines=1", *self._matches],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_ANCHOR_TIMEOUT_S,
            close_fds=True,
        )
        err = " ".join(done.stderr.decode("utf-8", errors="replace").split())[:1000]
        if done.returncode != 0:
            raise _AnchorError(
                f"journalctl exited with status {done.returncode}" + (f": {err}" if err else "")
            )
        cursor: str | None = None
        for raw in done.stdout.splitlines():
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                value = json.loads(raw).get("__CURSOR")
                if isinstance(value, str) and value:
                    cursor = value
        return cursor

    def _max_json(self) -> int:
        # A message escaped in JSON (or as a byte list) takes up to ~6 bytes per byte, plus the fields.
        return max(4 * 1024 * 1024, 8 * self._max)

    def _truncate(self, line: str) -> str:
        raw = line.encode("utf-8")
        if len(raw) <= self._max:
            return line
        return raw[: self._max].decode("utf-8", errors="ignore")

    def _publish(self) -> None:
        """Rebuild ``errors["journal"]`` from the current problems."""
        parts = [self._failure] if self._failure else []
        if self._proc is not None and (err := self._proc.stderr_text()):
            parts.append(f"journalctl: {err}")
        parts += self._notes.values()
        if parts:
            self.errors[_PATH] = "; ".join(parts)
        else:
            self.errors.pop(_PATH, None)


class _AnchorError(Exception):
    """journalctl failed while looking for the end of the journal."""
