"""File integrity monitoring for the files an intruder edits to stay in: accounts, sudo, sshd, cron, units.

Each collection expands the watched glob patterns (relative to `root`, hidden files included, so
`/etc/cron.d/.x` is not a blind spot), `lstat`s every match and hashes (SHA-256) a file only when its
stat signature — size, mtime_ns, ctime_ns, inode, mode, uid, gid — differs from the recorded one.
Only regular files and symlinks are watched; a symlink's "content" is its target (hashed as text),
which is how systemd units are masked or linked. Directories, FIFOs and devices are skipped.

Stat-first trade-off: a file whose signature is unchanged is assumed unchanged and not re-read.
ctime is in the signature because it cannot be set from user space: rewriting a file and forcing
size and mtime back with `os.utime` still moves ctime, so that is detected. Only changes that leave
every stat field as it was (e.g. writing the block device underneath) go unseen. A signature change
whose hash, mode and owner are the same (a `touch`, a new hard link) is recorded but not reported.

Unreadable files (/etc/shadow when not root): the hash is recorded as "" and changes are judged from
stat alone — size, mtime or inode moved is "modified", mode/owner moved is "mode_changed"; a
ctime-only move is not reported since it cannot be told apart from a touch. No exception escapes.

The first collection without a recorded state learns silently. With `state_file`, the state
(path → signature + hash, and the watch list it was taken with) is saved as JSON after each
collection that changes it, so a restart compares against what was there before rather than
re-learning (and changes made while the agent was down are reported on its first collection).

A change of the watch list (`paths`) is not a change of the files: a recorded file that the new list
no longer selects has left the watch list and is forgotten, not "deleted"; a file that only the new
list selects has joined it and is learned, not "created". Whether the old list selected a path is
judged from the saved list; a state file written before the list was saved tells only which files
left (those the current list does not select), so any other new file there counts as created.

Families: `vigil_file_integrity_changes_total{path_class}` (counter; path_class is one of
`PATH_CLASSES`, never the raw path), `vigil_file_integrity_files` (gauge, files watched now) and
`vigil_file_integrity_last_change_timestamp_seconds` (gauge, 0 until a change is seen). `changes()`
returns the changes found by the latest collection, for events.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import json
import logging
import os
import stat
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Metric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from vigil.config.security import DEFAULT_PATHS
from vigil.model.event import Event, FieldValue

log = logging.getLogger(__name__)


PATH_CLASSES: tuple[str, ...] = (
    "passwd",
    "shadow",
    "group",
    "sudoers",
    "sshd_config",
    "authorized_keys",
    "crontab",
    "systemd_unit",
    "other",
)

KINDS = ("created", "modified", "deleted", "mode_changed")

# (size, mtime_ns, ctime_ns, inode, mode, uid, gid)
Signature = tuple[int, int, int, int, int, int, int]


def path_class(path: str) -> str:
    """The bounded label value for a watched path (given as seen from the root, e.g. "/etc/shadow")."""
    if path in ("/etc/passwd", "/etc/shadow", "/etc/group"):
        return path[5:]
    if path == "/etc/sudoers" or path.startswith("/etc/sudoers.d/"):
        return "sudoers"
    if path == "/etc/ssh/sshd_config" or path.startswith("/etc/ssh/sshd_config.d/"):
        return "sshd_config"
    if path.endswith("/.ssh/authorized_keys") or path.endswith("/.ssh/authorized_keys2"):
        return "authorized_keys"
    if path == "/etc/crontab" or path.startswith(("/etc/cron.d/", "/var/spool/cron/")):
        return "crontab"
    if path.startswith(("/etc/systemd/system/", "/lib/systemd/system/", "/usr/lib/systemd/system/")):
        return "systemd_unit"
    return "other"


@dataclass(frozen=True)
class Change:
    path: str  # as seen from the root: "/etc/passwd"
    kind: str  # one of KINDS
    path_class: str
    old_hash: str  # "" when absent (created) or unreadable
    new_hash: str  # "" when absent (deleted) or unreadable
    uid: int  # owner after the change (before it, for "deleted")
    gid: int
    mode: int  # full st_mode after the change (before it, for "deleted")
    old_uid: int | None = None  # before the change; None for "created"
    old_gid: int | None = None
    old_mode: int | None = None
    timestamp: float = 0.0  # wall-clock seconds when the collection saw it


@dataclass
class _Entry:
    sig: Signature
    hash: str  # "" when unreadable


def _components(pattern: str) -> tuple[str, ...]:
    """A watch pattern as the path components it is matched against (as the root sees it)."""
    return tuple(os.path.normpath("/" + pattern.lstrip("/")).split("/"))


def selects(patterns: Sequence[str], path: str) -> bool:
    """Whether a watch list selects `path` (as seen from the root), with `glob`'s semantics as the
    collector uses it: `*`, `?` and `[...]` stay within one path component and match hidden names."""
    parts = path.split("/")
    for pattern in patterns:
        comps = _components(pattern)
        if len(comps) == len(parts) and all(map(fnmatch.fnmatchcase, parts, comps)):
            return True
    return False


def _signature(st: os.stat_result) -> Signature:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode, st.st_uid, st.st_gid)


def _hash(real: str, st: os.stat_result) -> str:
    """SHA-256 of the content (of the target text, for a symlink); "" when it cannot be read."""
    try:
        if stat.S_ISLNK(st.st_mode):
            return hashlib.sha256(os.fsencode(os.readlink(real))).hexdigest()
        # O_NOFOLLOW | O_NONBLOCK: never follow a swapped-in symlink or hang on a swapped-in FIFO
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return ""


class FileIntegrityCollector:
    name = "file_integrity"

    def __init__(
        self,
        paths: Sequence[str] = DEFAULT_PATHS,
        state_file: Path | None = None,
        root: Path = Path("/"),
    ) -> None:
        self._paths = tuple(paths)
        self._state_file = state_file
        self._root = str(root).rstrip("/")  # "" for "/", so root + "/etc/passwd" works either way
        self._state: dict[str, _Entry] | None = None
        # The watch list the state was taken with; None when not known (an old state file).
        self._state_paths: tuple[str, ...] | None = None
        self._last_change = 0.0
        self._counts = dict.fromkeys(PATH_CLASSES, 0)
        self._changes: list[Change] = []
        self._unsaved = False
        if state_file is not None:
            self._load_state(state_file)

    # -- state -------------------------------------------------------------------------------------

    def _load_state(self, path: Path) -> None:
        # A missing or corrupt state file must not stop monitoring: re-learn, as on a first run.
        try:
            data = json.loads(path.read_text())
            state: dict[str, _Entry] = {}
            for p, e in data["files"].items():
                s = [int(x) for x in e["sig"]]
                if len(s) != 7:
                    raise ValueError("bad signature")
                state[str(p)] = _Entry(sig=(s[0], s[1], s[2], s[3], s[4], s[5], s[6]), hash=str(e["hash"]))
            paths = data.get("paths")
            if paths is not None and not (isinstance(paths, list) and all(isinstance(x, str) for x in paths)):
                raise ValueError("bad paths")
            self._last_change = float(data.get("last_change", 0.0))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return
        self._state = state
        self._state_paths = None if paths is None else tuple(paths)

    def _save_state(self, path: Path) -> None:
        assert self._state is not None
        data = {
            "version": 2,
            "paths": list(self._paths),
            "last_change": self._last_change,
            "files": {p: {"sig": list(e.sig), "hash": e.hash} for p, e in sorted(self._state.items())},
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, path)  # atomic: a crash mid-write leaves the previous state

    # -- scanning ----------------------------------------------------------------------------------

    def _expand(self) -> dict[str, os.stat_result]:
        """Logical path -> lstat of every watched regular file or symlink that exists now."""
        found: dict[str, os.stat_result] = {}
        prefix = glob.escape(self._root)
        for pattern in self._paths:
            for real in glob.glob(prefix + "/" + pattern.lstrip("/"), include_hidden=True):
                try:
                    st = os.lstat(real)
                except OSError:  # vanished between glob and stat
                    continue
                if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                    found["/" + os.path.relpath(real, self._root or "/")] = st
        return found

    def _real(self, path: str) -> str:
        return self._root + path

    def collect(self) -> Iterable[Metric]:
        now = time.time()
        seen = self._expand()
        old = self._state
        # Only a collection after the watch list changed (a restart with other `paths`, or a state
        # file that does not say its list) can find files that joined or left it.
        before = self._state_paths
        relisted = before != self._paths
        new: dict[str, _Entry] = {}
        changes: list[Change] = []
        joined = left = 0
        dirty = old is None or relisted
        for path, st in seen.items():
            sig = _signature(st)
            prev = old.get(path) if old is not None else None
            if prev is not None and prev.sig == sig:
                new[path] = prev
                continue
            dirty = True
            entry = _Entry(sig, _hash(self._real(path), st))
            new[path] = entry
            if old is None:
                continue  # learning
            if prev is None and before is not None and relisted and not selects(before, path):
                joined += 1  # joined the watch list: learned, it was not created
                continue
            kind = self._kind(prev, entry)
            if kind is not None:
                changes.append(self._change(path, kind, prev, entry, now))
        if old is not None:
            for path, prev in old.items():
                if path not in seen:
                    dirty = True
                    if relisted and not selects(self._paths, path):
                        left += 1  # left the watch list: forgotten, it was not deleted
                        continue
                    changes.append(self._change(path, "deleted", prev, None, now))
        if joined or left:
            log.info(
                "file integrity: the watch list changed: %d files joined it (learned), %d left it "
                "(forgotten); neither is reported as a change",
                joined,
                left,
            )
        self._state = new
        self._state_paths = self._paths
        self._changes = changes
        for ch in changes:
            self._counts[ch.path_class] += 1
        if changes:
            self._last_change = now
        if (dirty or self._unsaved) and self._state_file is not None:
            try:
                self._save_state(self._state_file)
                self._unsaved = False
            except OSError:
                self._unsaved = True  # keep monitoring in memory; the next collection retries the save

        counter = CounterMetricFamily(
            "vigil_file_integrity_changes",
            "Changes (created, modified, deleted, mode/owner changed) to watched files, by class of file.",
            labels=["path_class"],
        )
        for cls in PATH_CLASSES:
            counter.add_metric([cls], float(self._counts[cls]))
        return [
            counter,
            GaugeMetricFamily(
                "vigil_file_integrity_files", "Files watched for integrity changes.", value=float(len(new))
            ),
            GaugeMetricFamily(
                "vigil_file_integrity_last_change_timestamp_seconds",
                "When a change to a watched file was last seen (Unix time; 0 if never).",
                value=self._last_change,
            ),
        ]

    @staticmethod
    def _kind(prev: _Entry | None, cur: _Entry) -> str | None:
        if prev is None:
            return "created"
        p_size, p_mtime, _, p_ino, p_mode, p_uid, p_gid = prev.sig
        c_size, c_mtime, _, c_ino, c_mode, c_uid, c_gid = cur.sig
        if prev.hash and cur.hash:
            content = prev.hash != cur.hash
        else:  # unreadable now or before: judge content from stat alone
            content = (p_size, p_mtime, p_ino) != (c_size, c_mtime, c_ino)
        if content:
            return "modified"
        if (p_mode, p_uid, p_gid) != (c_mode, c_uid, c_gid):
            return "mode_changed"
        return None

    @staticmethod
    def _change(path: str, kind: str, prev: _Entry | None, cur: _Entry | None, now: float) -> Change:
        ref = cur if cur is not None else prev
        assert ref is not None
        return Change(
            path=path,
            kind=kind,
            path_class=path_class(path),
            old_hash=prev.hash if prev is not None else "",
            new_hash=cur.hash if cur is not None else "",
            uid=ref.sig[5],
            gid=ref.sig[6],
            mode=ref.sig[4],
            old_uid=prev.sig[5] if prev is not None else None,
            old_gid=prev.sig[6] if prev is not None else None,
            old_mode=prev.sig[4] if prev is not None else None,
            timestamp=now,
        )

    def changes(self) -> list[Change]:
        """Changes found by the latest collection (empty on the learning one)."""
        return list(self._changes)

    def events(self) -> list[Event]:
        """`file_changed` events for the changes found by the latest collection."""
        out = []
        for c in self._changes:
            fields: dict[str, FieldValue] = {
                "path": c.path,
                "change": c.kind,
                "path_class": c.path_class,
                "old_sha256": c.old_hash,
                "new_sha256": c.new_hash,
                "owner": c.uid,
                "group": c.gid,
                "mode": f"{stat.S_IMODE(c.mode):04o}",
            }
            if c.old_mode is not None:
                fields |= {
                    "old_owner": c.old_uid,
                    "old_group": c.old_gid,
                    "old_mode": f"{stat.S_IMODE(c.old_mode):04o}",
                }
            out.append(
                Event(int(c.timestamp * 1000), "file_changed", f"{c.path} {c.kind.replace('_', ' ')}", fields)
            )
        return out
