"""Follow log files the way mtail / Promtail do: the input for auth-log parsing and log rules.

`FileFollower` watches a path or a glob and returns every complete new line since the last
`poll()`. Files are identified by ``(st_dev, st_ino)``, not by name, so that:

* rotation by rename (logrotate's default: ``auth.log`` -> ``auth.log.1``, new ``auth.log``) is
  seen as a new inode at the path: the old inode's remaining lines are read through the fd we
  still hold, then the new file is read from offset 0;
* truncation in place / copytruncate (size below our offset, or the byte before our offset no
  longer being a newline) restarts the file at 0;
* a file that leaves the pattern (deleted, or renamed to a non-matching name) is drained and
  forgotten. Its unterminated last line is returned then, since nothing will complete it
  (losing it would be worse than a split line if the writer still appends to the old file);
* a file renamed to another name that still matches the glob keeps its offset.

Lines are decoded as UTF-8 with ``errors="replace"``, without their ``\\n``. A line longer than
``max_line_bytes`` is returned once, cut to that many bytes (the cut may land inside a multi-byte
character, which then decodes to U+FFFD), and the rest up to the next newline is skipped.

Offsets are persisted by `commit()` to a JSON state file (tmp + fsync + rename), which the caller
calls after it has processed the lines of a poll: delivery is at-least-once for lines returned
after the last commit, and nothing is lost. On restart a file whose inode matches the saved one
resumes at the saved offset (or at 0 if it shrank below it). A saved file that was rotated while
we were down is looked for next to its old path (``<path>*``, e.g. ``auth.log.1`` or
``auth.log-20240101``) and its remaining lines are returned first.

``start_at_end=True`` starts files present at the first poll that have no saved state at their
end (at the last complete line). It does not apply to files appearing later (created by a writer
or by rotation: those are new data), nor to a file sitting at a path the state knew under another
inode (rotated while we were down). For auth.log the intended use is ``start_at_end=True`` on a
fresh install (do not alert on historic logins), relying on the state file afterwards.

Errors never escape `poll()`: an unreadable file (EACCES, a directory in place of a literal path,
read errors) is recorded in `errors` (path -> ``"EACCES: Permission denied"``) and retried on
every poll; the entry disappears once the path reads fine or no longer exists. A corrupt state
file is recorded under its own path and ignored. `commit()` raises `OSError` if the state cannot
be written, since the caller must not assume its progress is durable then.

Limits: a poll reads everything available (a huge file on first run is returned in one go); lines
written to a rotated file after we drained it are lost, as with every tailer; if a deleted file's
inode is reused by a new file at once, the new file is taken for the old one (the newline check
above catches most of these).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import itertools
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

__all__ = ["FileFollower"]

_CHUNK = 64 * 1024
_STATE_VERSION = 1

Ident = tuple[int, int]
# (path, line, origin): origin "file:<dev>:<ino>:<offset>" names the line's first byte for good (not
# the path: a file read again after a rotation has another name), so whoever turns lines into events
# can give a line read twice (at-least-once) the same event id.
Line = tuple[str, str, str]


class Chunk(NamedTuple):
    """Consecutive lines of one file: `lines[i]` starts at byte `offsets[i]`; its origin (see `Line`)
    is `where + str(offsets[i])`. Lines come in chunks so the hot path does no per-line formatting."""

    path: str
    where: str  # "file:<dev>:<ino>:" (a journal: "journal:")
    lines: list[str]
    offsets: Sequence[int | str]  # byte offsets (a journal: entry cursors)


def _open(path: str) -> int:
    """Open *path* read-only. A module-level seam so tests can simulate EACCES when run as root."""
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def _describe(e: OSError) -> str:
    name = errno.errorcode.get(e.errno or 0)
    text = e.strerror or str(e)
    return f"{name}: {text}" if name else text


@dataclass
class _File:
    path: str
    ident: Ident
    offset: int = 0  # position just after the last line returned (or skipped)
    skipping: bool = False  # inside an over-long line whose head was already returned
    at_end: bool = False  # start_at_end: position at the last complete line once opened
    fd: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "dev": self.ident[0],
            "ino": self.ident[1],
            "offset": self.offset,
            "skipping": self.skipping,
            "at_end": self.at_end,
        }


class FileFollower:
    """Follow the files matching *pattern*; see the module docstring for the semantics."""

    def __init__(
        self,
        pattern: str | Path,
        state_file: Path | None = None,
        start_at_end: bool = False,
        max_line_bytes: int = 64 * 1024,
        state: dict[str, Any] | None = None,
        max_read_bytes: int | None = None,
    ) -> None:
        """`state` (from `state()`) is used instead of `state_file`'s content when given.
        `max_read_bytes` bounds what one poll reads from a file (memory stays bounded on a large
        backlog); `more` then says that a file has more to read right away."""
        if max_line_bytes <= 0:
            raise ValueError("max_line_bytes must be positive")
        self._pattern = str(pattern)
        self._is_glob = glob.has_magic(self._pattern)
        self._state_file = Path(state_file) if state_file is not None else None
        self._start_at_end = start_at_end
        self._max = max_line_bytes
        self.errors: dict[str, str] = {}
        self.more = False
        self._max_read = max_read_bytes
        self._files: dict[Ident, _File] = {}
        self._first = True
        # Entries from the state file, consumed by the first poll (kept until then so that a
        # commit before any poll does not wipe them).
        self._saved: dict[Ident, _File] = self._load_state(state)

    # -- public API -------------------------------------------------------------------------------

    def poll(self) -> list[tuple[str, str]]:
        """Return ``(path, line)`` for every complete new line, in file order; never raises OSError."""
        return [(path, line) for path, line, _ in self.poll_with_origin()]

    def poll_with_origin(self) -> list[Line]:
        """As `poll`, with each line's origin (see `Line`)."""
        return [
            (c.path, line, c.where + str(offset))
            for c in self.poll_chunks()
            for line, offset in zip(c.lines, c.offsets, strict=True)
        ]

    def poll_chunks(self) -> list[Chunk]:
        """As `poll_with_origin`, in chunks of consecutive lines of one file (the fast form)."""
        out: list[Chunk] = []
        self.more = False
        current = self._scan()
        # Paths the state knew: a new inode there was rotated in while we were down, not history.
        saved_paths = {f.path for f in self._saved.values()}
        if self._first:
            self._recover_rotated(current, out)
        # Files that left the pattern first: an old inode's tail comes before its successor's lines.
        for ident, f in list(self._files.items()):
            if ident not in current:
                if f.fd is not None:
                    try:
                        self._drain(f, out, final=True)
                    except OSError as e:
                        self.errors[f.path] = _describe(e)
                self._close(f)
                del self._files[ident]
        for ident, (path, st) in current.items():
            known = self._files.get(ident)
            if known is not None:
                known.path = path  # renamed but still matching: keep the offset
                self._follow(known, st, out)
        for ident, (path, st) in current.items():
            if ident in self._files:
                continue
            saved = self._saved.pop(ident, None)
            if saved is not None:
                f = saved
                f.path = path
            else:
                at_end = self._first and self._start_at_end and path not in saved_paths
                f = _File(path, ident, at_end=at_end)
            self._files[ident] = f
            self._follow(f, st, out)
        if self._first:
            self._first = False
            self._saved.clear()  # whatever was not found is gone
        return out

    def followed(self) -> list[str]:
        """The files followed now (matching the pattern and opened), in path order."""
        return sorted(f.path for f in self._files.values())

    def state(self) -> dict[str, Any]:
        """The offsets of all lines returned so far, as JSON-able data (what `commit` writes).

        For callers that persist it themselves together with their own progress (`state=` on start)."""
        entries = [f.to_json() for f in (*self._saved.values(), *self._files.values())]
        return {"version": _STATE_VERSION, "files": entries}

    def commit(self) -> None:
        """Persist the offsets of all lines returned so far (atomically); raises OSError on failure."""
        if self._state_file is None:
            return
        data = json.dumps(self.state(), indent=1).encode()
        target = self._state_file
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        # fsync the directory so the rename itself survives a crash.
        try:
            dfd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            os.fsync(dfd)
        except OSError:
            pass
        finally:
            os.close(dfd)

    def close(self) -> None:
        """Close all open file descriptors (the offsets are kept; poll() reopens)."""
        for f in self._files.values():
            self._close(f)

    def __enter__(self) -> FileFollower:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------

    def _load_state(self, given: dict[str, Any] | None) -> dict[Ident, _File]:
        if given is None and self._state_file is None:
            return {}
        try:
            raw = given if given is not None else json.loads(self._state_file.read_bytes())  # type: ignore[union-attr]
            if raw.get("version") != _STATE_VERSION:
                raise ValueError(f"unsupported state version {raw.get('version')!r}")
            saved: dict[Ident, _File] = {}
            for e in raw["files"]:
                ident = (int(e["dev"]), int(e["ino"]))
                saved[ident] = _File(
                    str(e["path"]),
                    ident,
                    offset=max(0, int(e["offset"])),
                    skipping=bool(e.get("skipping", False)),
                    at_end=bool(e.get("at_end", False)),
                )
            return saved
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            # A broken state file must not stop log monitoring: report it and start afresh.
            detail = _describe(e) if isinstance(e, OSError) else f"invalid state file: {e}"
            self.errors[str(self._state_file or "state")] = detail
            return {}

    def _scan(self) -> dict[Ident, tuple[str, os.stat_result]]:
        """Current regular files matching the pattern, in path order, by identity."""
        paths = sorted(glob.glob(self._pattern, recursive=True)) if self._is_glob else [self._pattern]
        current: dict[Ident, tuple[str, os.stat_result]] = {}
        missing: set[str] = set()
        for p in paths:
            try:
                st = os.stat(p)
            except FileNotFoundError:
                missing.add(p)
                continue
            except OSError as e:
                self.errors[p] = _describe(e)
                continue
            if not stat.S_ISREG(st.st_mode):
                # A glob may legitimately match directories; a literal path naming one is a mistake.
                if not self._is_glob:
                    self.errors[p] = "not a regular file"
                continue
            current.setdefault((st.st_dev, st.st_ino), (p, st))  # hard links: first path wins
        # Errors of paths that are gone are stale (the state file's entry stays: it is not a log).
        matched = set(paths) - missing
        state_key = str(self._state_file or "state")
        for p in [p for p in self.errors if p not in matched and p != state_key]:
            del self.errors[p]
        return current

    def _recover_rotated(self, current: dict[Ident, tuple[str, os.stat_result]], out: list[Chunk]) -> None:
        """Read the rest of saved files that were rotated away while we were not running."""
        current_paths = {path for path, _ in current.values()}
        for ident, f in list(self._saved.items()):
            if ident in current:
                continue
            for cand in sorted(glob.glob(glob.escape(f.path) + "*")):
                if cand in current_paths:
                    continue
                try:
                    st = os.stat(cand)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) != ident or not stat.S_ISREG(st.st_mode):
                    continue
                del self._saved[ident]
                old_path = f.path
                f.path = cand
                self._follow(f, st, out)
                if f.fd is not None:
                    try:
                        self._drain(f, out, final=True)
                    except OSError as e:
                        self.errors[cand] = _describe(e)
                self._close(f)
                f.path = old_path
                break

    def _follow(self, f: _File, st: os.stat_result, out: list[Chunk]) -> None:
        """(Re)open *f* if needed, detect truncation, and read its new complete lines."""
        try:
            if f.fd is None:
                fd = _open(f.path)
                fst = os.fstat(fd)
                if (fst.st_dev, fst.st_ino) != f.ident:
                    os.close(fd)  # replaced between stat and open: the next poll sees the new inode
                    return
                f.fd = fd
                if f.at_end:
                    self._seek_end(f, fst.st_size)
            size = os.fstat(f.fd).st_size
            truncated = size < f.offset
            if not truncated and f.offset > 0 and not f.skipping:
                # We only ever stop right after a newline; anything else there means the file was
                # truncated and rewritten past our offset between two polls.
                truncated = os.pread(f.fd, 1, f.offset - 1) != b"\n"
            if truncated:
                f.offset, f.skipping = 0, False
            self._drain(f, out, final=False)
        except OSError as e:
            self.errors[f.path] = _describe(e)
            self._close(f)  # retried (reopened) on the next poll
        else:
            self.errors.pop(f.path, None)

    def _seek_end(self, f: _File, size: int) -> None:
        """Position *f* after the last complete line, so a half-written line is not cut in two."""
        f.at_end = False
        assert f.fd is not None
        n = min(size, self._max)
        tail = os.pread(f.fd, n, size - n)
        nl = tail.rfind(b"\n")
        if nl >= 0:
            f.offset, f.skipping = size - n + nl + 1, False
        else:
            # No newline in the last max_line_bytes: the line in progress is over-long anyway.
            f.offset, f.skipping = size, size > 0

    def _drain(self, f: _File, out: list[Chunk], final: bool) -> None:
        """Append *f*'s complete lines from its offset to EOF; with *final*, also the unterminated rest.

        Without *final*, stops after `max_read_bytes` (at a line end) and sets `more`."""
        assert f.fd is not None
        lines: list[str] = []
        offsets: list[int] = []
        pending = b""  # bytes of an incomplete line starting at f.offset (at most max_line_bytes)
        read = 0
        while True:
            chunk = os.pread(f.fd, _CHUNK, f.offset + len(pending))
            if not chunk:
                break
            read += len(chunk)
            data = pending + chunk
            end = data.rfind(b"\n")
            if end >= 0:
                self._split(f, data[:end], lines, offsets)
                f.offset += end + 1
                pending = data[end + 1 :]
            else:
                pending = data
            if f.skipping:
                f.offset += len(pending)
                pending = b""
            elif len(pending) > self._max:
                # Do not buffer without bound: return the head now, skip the rest of the line.
                lines.append(self._decode(pending))
                offsets.append(f.offset)
                f.skipping = True
                f.offset += len(pending)
                pending = b""
            if not final and self._max_read is not None and read >= self._max_read:
                self.more = True
                break
        if final and pending and not f.skipping:
            lines.append(self._decode(pending))
            offsets.append(f.offset)
            f.offset += len(pending)
        if lines:
            out.append(Chunk(f.path, f"file:{f.ident[0]}:{f.ident[1]}:", lines, offsets))

    def _split(self, f: _File, body: bytes, lines: list[str], offsets: list[int]) -> None:
        """The complete lines of `body` (the bytes from f.offset up to, not including, a newline)."""
        # A newline byte never occurs inside a UTF-8 sequence, so decoding the block at once splits
        # exactly as decoding line by line would.
        decoded = body.decode("utf-8", errors="replace")
        text = decoded.split("\n")
        raw: list[bytes] | None = None
        if len(decoded) == len(body):  # one character per byte: lengths in characters are in bytes
            lengths = list(map(len, text))
        else:
            raw = body.split(b"\n")
            lengths = list(map(len, raw))
        starts = list(itertools.accumulate((n + 1 for n in lengths[:-1]), initial=f.offset))
        first = 0
        if f.skipping:
            f.skipping = False  # end of an over-long line already returned
            first = 1
        if max(lengths[first:], default=0) > self._max:
            raw = raw or body.split(b"\n")
            text = [t if len(r) <= self._max else self._decode(r) for t, r in zip(text, raw, strict=True)]
        lines += text[first:] if first else text
        offsets += starts[first:] if first else starts

    def _decode(self, raw: bytes) -> str:
        return raw[: self._max].decode("utf-8", errors="replace")

    @staticmethod
    def _close(f: _File) -> None:
        if f.fd is not None:
            with contextlib.suppress(OSError):
                os.close(f.fd)
            f.fd = None
