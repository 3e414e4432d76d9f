"""Immutable block files: every sample of a time range, in compressed groups of series.

Layout of one `*.block` file:
    magic | group blob ... | footer | trailer
The footer holds the block's time range, its series refs (ascending) and, per group, the index of
its first series, its byte range and a CRC32. The trailer is the footer's length and CRC and the
magic again, so a truncated or damaged file is detected at open. Files are written under a temporary
name, fsynced and renamed, so a crash never leaves half a block under a real name.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vigil.tsdb.chunkenc import ChunkDecodeError, decode_group, encode_group
from vigil.tsdb.samples import Samples

MAGIC = b"VIGILBLK"
VERSION = 1
_HEADER = MAGIC + bytes([VERSION])
_TRAILER = struct.Struct("<QI8s")  # footer length, footer crc32, magic
_COUNTS = struct.Struct("<IQQ")  # meta json length, series count, group count
SERIES_PER_GROUP = 256
SUFFIX = ".block"


class BlockCorruptError(Exception):
    """A block file is truncated or damaged; the message names the file."""


@dataclass(frozen=True)
class BlockMeta:
    mint: int
    maxt: int
    num_series: int
    num_samples: int
    seq: int  # creation order: later blocks win on duplicate timestamps
    level: int  # the window size (ms) this block was aligned to by compaction; 0 for a head flush

    def overlaps(self, mint: int, maxt: int) -> bool:
        return self.mint <= maxt and mint <= self.maxt


class BlockWriter:
    """Streams series (ascending refs) into a new block file; `finish` makes it visible."""

    def __init__(self, path: Path, seq: int, level: int, series_per_group: int = SERIES_PER_GROUP) -> None:
        self.path = path
        self._tmp = path.with_name(path.name + ".tmp")
        self._f = open(self._tmp, "wb")  # noqa: SIM115 - closed in finish/abort
        self._f.write(_HEADER)
        self._seq = seq
        self._level = level
        self._per_group = series_per_group
        self._pending: list[Samples] = []
        self._pending_series = 0
        self._refs: list[npt.NDArray[np.int64]] = []
        self._group_first: list[int] = []
        self._group_off: list[int] = []
        self._group_len: list[int] = []
        self._group_crc: list[int] = []
        self._nseries = 0
        self._nsamples = 0
        self._mint = np.iinfo(np.int64).max
        self._maxt = np.iinfo(np.int64).min

    def add(self, s: Samples) -> None:
        """Add samples sorted by (ref, ts), unique; refs must be greater than any added before."""
        if not len(s):
            return
        self._pending.append(s)
        self._pending_series += int(np.count_nonzero(np.diff(s.refs))) + 1
        if self._pending_series >= self._per_group:
            self._flush_groups(final=False)

    def _flush_groups(self, final: bool) -> None:
        s = Samples.concat(self._pending)
        self._pending, self._pending_series = [], 0
        if not len(s):
            return
        starts = np.flatnonzero(np.r_[True, s.refs[1:] != s.refs[:-1]])
        bounds = np.append(starts, len(s))
        nseries = starts.size
        cut = nseries if final else nseries - nseries % self._per_group
        for g in range(0, cut, self._per_group):
            a, b = int(bounds[g]), int(bounds[min(g + self._per_group, cut)])
            self._write_group(s.take(np.arange(a, b)))
        if cut < nseries:
            rest = np.arange(int(bounds[cut]), len(s))
            self._pending = [s.take(rest)]
            self._pending_series = nseries - cut

    def _write_group(self, s: Samples) -> None:
        starts = np.flatnonzero(np.r_[True, s.refs[1:] != s.refs[:-1]])
        refs = s.refs[starts]
        offsets = np.append(starts, len(s)).astype(np.int64)
        blob = encode_group(refs, offsets, s.timestamps, s.values)
        self._group_first.append(self._nseries)
        self._group_off.append(self._f.tell())
        self._group_len.append(len(blob))
        self._group_crc.append(zlib.crc32(blob))
        self._f.write(blob)
        self._refs.append(refs)
        self._nseries += refs.size
        self._nsamples += len(s)
        self._mint = min(self._mint, int(s.timestamps.min()))
        self._maxt = max(self._maxt, int(s.timestamps.max()))

    def finish(self) -> Block | None:
        """Write the footer, fsync, rename into place. Returns None (and removes the file) if empty."""
        self._flush_groups(final=True)
        if self._nseries == 0:
            self.abort()
            return None
        meta = BlockMeta(self._mint, self._maxt, self._nseries, self._nsamples, self._seq, self._level)
        meta_json = json.dumps(meta.__dict__ | {"version": VERSION}).encode()
        ngroups = len(self._group_off)
        footer = b"".join(
            [
                _COUNTS.pack(len(meta_json), self._nseries, ngroups),
                meta_json,
                np.concatenate(self._refs).astype("<i8").tobytes(),
                np.array(self._group_first, "<i8").tobytes(),
                np.array(self._group_off, "<i8").tobytes(),
                np.array(self._group_len, "<i8").tobytes(),
                np.array(self._group_crc, "<u4").tobytes(),
            ]
        )
        self._f.write(footer)
        self._f.write(_TRAILER.pack(len(footer), zlib.crc32(footer), MAGIC))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self._tmp, self.path)
        fsync_dir(self.path.parent)
        return Block.open(self.path)

    def abort(self) -> None:
        self._f.close()
        self._tmp.unlink(missing_ok=True)


class Block:
    """A read-only block file; reads are positional so one Block serves concurrent readers."""

    def __init__(
        self,
        path: Path,
        meta: BlockMeta,
        refs: npt.NDArray[np.int64],
        group_first: npt.NDArray[np.int64],
        group_off: npt.NDArray[np.int64],
        group_len: npt.NDArray[np.int64],
        group_crc: npt.NDArray[np.uint32],
        size: int,
    ) -> None:
        self.path = path
        self.meta = meta
        self.refs = refs
        self._group_first = group_first
        self._group_off = group_off
        self._group_len = group_len
        self._group_crc = group_crc
        self.size_bytes = size
        self._fd = os.open(path, os.O_RDONLY)

    @classmethod
    def open(cls, path: Path) -> Block:
        try:
            with open(path, "rb") as f:
                data_size = os.fstat(f.fileno()).st_size
                if data_size < len(_HEADER) + _TRAILER.size:
                    raise BlockCorruptError(f"{path}: truncated block file ({data_size} bytes)")
                if f.read(len(_HEADER)) != _HEADER:
                    raise BlockCorruptError(f"{path}: not a Vigil block file (bad magic or version)")
                f.seek(data_size - _TRAILER.size)
                flen, fcrc, magic = _TRAILER.unpack(f.read(_TRAILER.size))
                if magic != MAGIC or flen > data_size - len(_HEADER) - _TRAILER.size:
                    raise BlockCorruptError(f"{path}: truncated or damaged block file (bad trailer)")
                f.seek(data_size - _TRAILER.size - flen)
                footer = f.read(flen)
        except OSError as exc:
            raise BlockCorruptError(f"{path}: cannot read block file: {exc.strerror}") from None
        if zlib.crc32(footer) != fcrc:
            raise BlockCorruptError(f"{path}: damaged block index (checksum mismatch)")
        try:
            mlen, nseries, ngroups = _COUNTS.unpack_from(footer, 0)
            pos = _COUNTS.size
            meta_d = json.loads(footer[pos : pos + mlen])
            pos += mlen
            meta = BlockMeta(
                int(meta_d["mint"]),
                int(meta_d["maxt"]),
                int(meta_d["num_series"]),
                int(meta_d["num_samples"]),
                int(meta_d["seq"]),
                int(meta_d["level"]),
            )
            arrays = []
            for count, dtype in (
                (nseries, "<i8"),
                (ngroups, "<i8"),
                (ngroups, "<i8"),
                (ngroups, "<i8"),
                (ngroups, "<u4"),
            ):
                a = np.frombuffer(footer, dtype, count, pos)
                pos += a.nbytes
                arrays.append(a.astype(a.dtype.newbyteorder("=")))
        except (ValueError, KeyError, struct.error) as exc:
            raise BlockCorruptError(f"{path}: damaged block index ({exc})") from None
        refs, group_first, group_off, group_len, group_crc = arrays
        return cls(path, meta, refs, group_first, group_off, group_len, group_crc, size=data_size)

    def select(self, refs: npt.NDArray[np.int64] | None, mint: int, maxt: int) -> Samples:
        """Samples of `refs` (sorted; None = all) in [mint, maxt], sorted by (ref, ts)."""
        if not self.meta.overlaps(mint, maxt):
            return Samples.empty()
        if refs is None:
            groups = np.arange(self._group_off.size)
        else:
            idx = np.searchsorted(self.refs, refs)
            idx = idx[idx < self.refs.size]
            idx = idx[np.isin(self.refs[idx], refs)]
            if idx.size == 0:
                return Samples.empty()
            groups = np.unique(np.searchsorted(self._group_first, idx, side="right") - 1)
        parts = []
        for g in groups.tolist():
            s = self._read_group(g)
            keep = (s.timestamps >= mint) & (s.timestamps <= maxt)
            if refs is not None:
                keep &= np.isin(s.refs, refs)
            parts.append(s.take(keep))
        return Samples.concat(parts)

    def _read_group(self, g: int) -> Samples:
        off, length = int(self._group_off[g]), int(self._group_len[g])
        blob = os.pread(self._fd, length, off)
        if len(blob) != length or zlib.crc32(blob) != int(self._group_crc[g]):
            raise BlockCorruptError(f"{self.path}: damaged data at offset {off} (checksum mismatch)")
        try:
            refs, offsets, ts, vals = decode_group(blob)
        except ChunkDecodeError as exc:
            raise BlockCorruptError(f"{self.path}: damaged data at offset {off}: {exc}") from None
        return Samples(np.repeat(refs, np.diff(offsets)), ts, vals)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        # Blocks replaced by compaction are dropped without close(): a reader may still hold them.
        self.close()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
