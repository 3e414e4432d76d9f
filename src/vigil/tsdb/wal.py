"""Write-ahead log: durable, ordered storage of opaque records for crash recovery.

The store hands `WAL.write()` one group of records per group commit and acknowledges clients only
after it returns, so the contract is: once `write()` returns, every record of that group survives
a crash (`kill -9`, power loss on a filesystem that honours fdatasync). The WAL knows nothing about
what the records mean.

On disk the log is a directory of segment files named with zero-padded 8-digit increasing numbers
(``00000001``, ``00000002``, ...). A segment is a plain concatenation of frames::

    u32 payload length | u32 CRC32 of payload | u32 CRC32 of the previous 8 bytes | payload

all little-endian. The header has its own checksum so that a damaged length field is reported as
damage instead of being mistaken for a record that runs past the end of the file (a torn write).

Recovery rules when opening: an incomplete frame at the very end of the last segment -- or a run of
zero bytes from a frame boundary to the end of it, which is what a crash can leave after the file
size was persisted but not the data -- is the unacknowledged tail of a torn write and is truncated
away with a warning. Every other kind of damage raises `WALCorruptionError`, because it means an
acknowledged record is gone and silently continuing would hide data loss.

The directory is locked with flock() while a `WAL` has it open, so a second writer (another process,
or a second `WAL` object in this one) fails instead of interleaving frames.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import logging
import os
import re
import struct
import threading
import zlib
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path

__all__ = ["WAL", "WALCorruptionError", "WALLockedError"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<III")
_HEADER_SIZE = _HEADER.size
_LEN_CRC = struct.Struct("<II")
_HCRC = struct.Struct("<I")
_MAX_RECORD = 0xFFFFFFFF

# Replay and recovery read segments in pieces of this size: big enough that syscalls are not the
# cost, small enough that a multi-GB WAL is never held in memory (a larger record is read whole).
_READ_CHUNK = 1 << 20

_SEGMENT_NAME_RE = re.compile(r"[0-9]{8,}")
_FILE_MODE = 0o644


class WALCorruptionError(Exception):
    """The WAL on disk is damaged in a way that may have lost acknowledged records."""

    def __init__(self, path: Path, offset: int | None, problem: str, hint: str | None = None) -> None:
        self.path = path
        self.offset = offset
        self.problem = problem
        self.hint = hint if hint is not None else "move the file aside to start without it"
        where = f"{path}" if offset is None else f"{path} at byte offset {offset}"
        super().__init__(f"WAL corrupted: {where}: {problem}; {self.hint}")


class WALLockedError(RuntimeError):
    """Another `WAL` (in this or another process) has the directory open."""


def _segment_name(number: int) -> str:
    return f"{number:08d}"


def _encode(records: Sequence[bytes]) -> bytes:
    parts: list[bytes] = []
    for record in records:
        length = len(record)
        if length > _MAX_RECORD:
            raise ValueError(f"WAL record of {length} bytes exceeds the format's limit of {_MAX_RECORD}")
        head = _LEN_CRC.pack(length, zlib.crc32(record))
        parts += (head, _HCRC.pack(zlib.crc32(head)), record)
    return b"".join(parts)


class _Torn(Exception):
    """Internal: a segment ends with an incomplete frame (or zeros) starting at `offset`."""

    def __init__(self, offset: int, problem: str) -> None:
        super().__init__(problem)
        self.offset = offset
        self.problem = problem


def _scan(path: Path, limit: int | None, hint: str) -> Generator[bytes, None, int]:
    """Yield the payloads of `path`'s frames, verifying both checksums, and return the end offset.

    Reads at most `limit` bytes (None: to end of file). Raises `_Torn` if the data ends inside a frame
    or with zero padding (the caller decides whether that is recoverable), `WALCorruptionError` for
    any other damage (with `hint` in its message).
    """
    with open(path, "rb", buffering=0) as f:
        buf = b""
        pos = 0  # index into buf of the next unparsed byte
        base = 0  # file offset of buf[0]
        exhausted = False

        def need(n: int) -> bool:
            # Make sure buf[pos:] holds at least n bytes; False if the file (or limit) ends first.
            nonlocal buf, pos, base, exhausted
            have = len(buf) - pos
            if have >= n:
                return True
            if exhausted:
                return False
            parts = [buf[pos:]]
            base += pos
            pos = 0
            while have < n:
                want = max(n - have, _READ_CHUNK)
                if limit is not None:
                    want = min(want, limit - base - have)
                chunk = f.read(want) if want > 0 else b""
                if not chunk:
                    exhausted = True
                    break
                parts.append(chunk)
                have += len(chunk)
            buf = b"".join(parts)
            return have >= n

        def zeros_to_end() -> bool:
            # Whether everything from pos to the end (or limit) is zero bytes.
            nonlocal buf, pos
            while True:
                rest = buf[pos:]
                if rest.count(0) != len(rest):
                    return False
                if exhausted:
                    return True
                pos = len(buf)
                need(1)

        crc32 = zlib.crc32
        unpack_from = _HEADER.unpack_from
        while True:
            start = base + pos
            # The len() checks skip need() in the common case: this loop runs once per record.
            if len(buf) - pos < _HEADER_SIZE and not need(_HEADER_SIZE):
                have = len(buf) - pos
                if have == 0:
                    return start
                raise _Torn(start, f"incomplete record header ({have} of {_HEADER_SIZE} bytes)")
            length, crc, header_crc = unpack_from(buf, pos)
            if crc32(buf[pos : pos + 8]) != header_crc:
                if zeros_to_end():
                    raise _Torn(start, "zero bytes up to the end of the file instead of a record")
                raise WALCorruptionError(path, start, "bad record header (header checksum mismatch)", hint)
            end = pos + _HEADER_SIZE + length
            if len(buf) < end and not need(_HEADER_SIZE + length):
                have = len(buf) - pos - _HEADER_SIZE
                raise _Torn(
                    start, f"incomplete record (header announces {length} payload bytes, {have} present)"
                )
            end = pos + _HEADER_SIZE + length  # need() may have moved the data to the start of buf
            payload = buf[pos + _HEADER_SIZE : end]
            if crc32(payload) != crc:
                raise WALCorruptionError(
                    path, start, f"payload checksum mismatch in a complete record of {length} bytes", hint
                )
            pos = end
            yield payload


class WAL:
    """An append-only log of opaque records in numbered segment files; see the module docstring."""

    def __init__(self, directory: Path, segment_size: int = 64 * 1024 * 1024, fsync: bool = True) -> None:
        if segment_size <= 0:
            raise ValueError(f"segment_size must be positive, got {segment_size}")
        self._dir = Path(directory)
        self._segment_size = segment_size
        # fsync=False skips every fsync (records, new files, the directory): only for tests and
        # benchmarks, where durability across power loss does not matter.
        self._fsync = fsync
        self._lock = threading.Lock()
        self._closed = False
        # Set when a failed write could not be undone; further writes would land after garbage.
        self._broken: BaseException | None = None
        self._fd = -1
        self._dir_fd = -1
        self._sizes: dict[int, int] = {}  # segment number -> committed length, ascending
        self._current = 0

        created = not self._dir.exists()
        self._dir.mkdir(parents=True, exist_ok=True)
        self._dir_fd = os.open(self._dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            try:
                fcntl.flock(self._dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WALLockedError(f"WAL directory {self._dir} is already open by another writer") from None
            if created:
                self._sync_dir(self._dir.parent)
            self._recover()
        except BaseException:
            self._close_fds()
            raise

    # -- opening -------------------------------------------------------------------------------

    def _list_segments(self) -> list[int]:
        numbers: list[int] = []
        for entry in os.scandir(self._dir):
            path = Path(entry.path)
            name = entry.name
            if not _SEGMENT_NAME_RE.fullmatch(name) or int(name) == 0 or _segment_name(int(name)) != name:
                raise WALCorruptionError(
                    path, None, "unexpected file in the WAL directory (segments are named 00000001, ...)"
                )
            if not entry.is_file():
                raise WALCorruptionError(path, None, "segment is not a regular file")
            numbers.append(int(name))
        numbers.sort()
        for prev, cur in itertools.pairwise(numbers):
            if cur != prev + 1:
                raise WALCorruptionError(
                    self._path(prev + 1),
                    None,
                    f"segment missing between {_segment_name(prev)} and {_segment_name(cur)}",
                    "restore it, or move aside every segment before or every segment after the gap "
                    "to start without them",
                )
        return numbers

    def _recover(self) -> None:
        numbers = self._list_segments()
        for i, number in enumerate(numbers):
            path = self._path(number)
            hint = self._hint(number, numbers)
            try:
                end = self._drain(_scan(path, None, hint))
            except _Torn as torn:
                if i != len(numbers) - 1:
                    raise WALCorruptionError(
                        path, torn.offset, f"{torn.problem} in a segment that is not the last one", hint
                    ) from None
                size = path.stat().st_size
                log.warning(
                    "WAL segment %s: %s at byte offset %d, left by a crash during a write; "
                    "truncating the %d bytes from there (they were never acknowledged)",
                    path,
                    torn.problem,
                    torn.offset,
                    size - torn.offset,
                )
                end = torn.offset
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.ftruncate(fd, end)
                    if self._fsync:
                        os.fdatasync(fd)
                finally:
                    os.close(fd)
            self._sizes[number] = end

        if numbers:
            self._current = numbers[-1]
            self._fd = os.open(self._path(self._current), os.O_WRONLY | os.O_APPEND)
        else:
            self._open_new_segment(1)

    @staticmethod
    def _drain(frames: Generator[bytes, None, int]) -> int:
        # Run a scan for its verification only, keeping its return value (the end offset).
        try:
            while True:
                next(frames)
        except StopIteration as stop:
            return int(stop.value)

    @staticmethod
    def _hint(number: int, numbers: list[int]) -> str:
        if number in (numbers[0], numbers[-1]):
            return "move the file aside to start without it"
        return (
            "move the file aside to start without it; segment numbers must be contiguous, so also move "
            "aside every earlier or every later segment"
        )

    # -- helpers -------------------------------------------------------------------------------

    def _path(self, number: int) -> Path:
        return self._dir / _segment_name(number)

    def _sync_dir(self, directory: Path | None = None) -> None:
        if not self._fsync:
            return
        if directory is None:
            os.fsync(self._dir_fd)
            return
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _open_new_segment(self, number: int) -> None:
        """Create segment `number` durably and make it current; on failure the old one stays current."""
        path = self._path(number)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        try:
            if self._fsync:
                os.fsync(fd)
            # Without this a crash could lose the directory entry, and with it records already
            # acknowledged from this segment.
            self._sync_dir()
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._current = number
        self._sizes[number] = 0

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("WAL is closed")

    def _rotate_locked(self) -> int:
        if self._fsync:
            os.fdatasync(self._fd)  # normally a no-op: write() already synced everything
        self._open_new_segment(self._current + 1)
        return self._current

    def _close_fds(self) -> None:
        for fd in (self._fd, self._dir_fd):
            if fd >= 0:
                os.close(fd)  # closing the directory fd also releases the flock
        self._fd = self._dir_fd = -1

    # -- public API ----------------------------------------------------------------------------

    def write(self, records: Sequence[bytes]) -> None:
        """Append `records` durably: when this returns they survive a crash. Thread-safe."""
        if not records:
            return
        data = _encode(records)  # outside the lock: pure CPU work
        with self._lock:
            self._check_open()
            if self._broken is not None:
                raise RuntimeError(
                    f"WAL segment {self._path(self._current)} is in an unknown state after a failed write "
                    "that could not be undone; reopen the WAL"
                ) from self._broken
            size = self._sizes[self._current]
            if size > 0 and size + len(data) > self._segment_size:
                self._rotate_locked()
            start = self._sizes[self._current]
            try:
                view = memoryview(data)
                written = 0
                # One write() in practice; the loop only matters for short writes (e.g. a full disk),
                # where the next call reports the error.
                while written < len(data):
                    n = os.write(self._fd, view[written:])
                    if n <= 0:
                        raise OSError(
                            errno.ENOSPC, "write() made no progress", str(self._path(self._current))
                        )
                    written += n
                if self._fsync:
                    os.fdatasync(self._fd)
            except OSError:
                self._undo(start)
                raise
            self._sizes[self._current] = start + len(data)

    def _undo(self, start: int) -> None:
        # Remove whatever part of the failed group reached the file: a partial frame left in place
        # would sit in the middle of the log once later writes succeed, and look like corruption.
        try:
            os.ftruncate(self._fd, start)
        except OSError as err:
            self._broken = err
            return
        if self._fsync:
            # Best effort: if this fails too, the next successful fdatasync persists the length anyway.
            with contextlib.suppress(OSError):
                os.fdatasync(self._fd)

    def rotate(self) -> int:
        """Close the current segment (synced) and start a new one; return the new segment's number."""
        with self._lock:
            self._check_open()
            return self._rotate_locked()

    def truncate_before(self, segment: int) -> None:
        """Delete the segments numbered below `segment` (their content must be persisted elsewhere)."""
        with self._lock:
            self._check_open()
            if segment > self._current:
                raise ValueError(
                    f"cannot truncate before segment {segment}: the current segment is {self._current}"
                )
            doomed = [n for n in self._sizes if n < segment]
            # Oldest first, so that a crash half-way leaves a contiguous run of segments.
            for number in doomed:
                os.unlink(self._path(number))
                del self._sizes[number]
            if doomed:
                self._sync_dir()

    def replay(self, from_segment: int = 0) -> Iterator[bytes]:
        """Yield every record in order from segments numbered >= `from_segment`.

        Sees the records whose write() had returned when replay() was called. Segments must not be
        deleted with truncate_before() while the iterator is in use.
        """
        with self._lock:
            snapshot = [(n, size) for n, size in self._sizes.items() if n >= from_segment]
        return self._replay(snapshot)

    def _replay(self, snapshot: list[tuple[int, int]]) -> Iterator[bytes]:
        numbers = [n for n, _ in snapshot]
        for number, size in snapshot:
            path = self._path(number)
            try:
                yield from _scan(path, size, self._hint(number, numbers))
            except _Torn as torn:
                # The file was checked when opening, so it has been damaged since.
                raise WALCorruptionError(
                    path,
                    torn.offset,
                    f"{torn.problem} (the file shrank while open)",
                    self._hint(number, numbers),
                ) from None

    def segments(self) -> list[int]:
        """The numbers of the segments on disk, ascending; the last one is being written."""
        with self._lock:
            return list(self._sizes)

    def size_bytes(self) -> int:
        """Total committed size of all segments."""
        with self._lock:
            return sum(self._sizes.values())

    def close(self) -> None:
        """Close the current segment and release the directory. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._fsync and self._broken is None:
                    os.fdatasync(self._fd)
            finally:
                self._close_fds()

    def __enter__(self) -> WAL:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
