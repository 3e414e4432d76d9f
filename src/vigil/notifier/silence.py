"""Silences: Alertmanager's rules for muting alerts by label matchers for a time, kept on disk.

A silence has an id (a random UUID), matchers (Alertmanager's, regex and negation included),
`starts_at`/`ends_at`, who created it and why, and when it last changed. Its state at `now` is
*pending* before its start, *active* from its start up to its end, *expired* from its end on (times are
whole milliseconds, so the interval is half-open: a silence expired at `now` no longer mutes at `now`).

What Alertmanager (silence/silence.go, 0.25 and later) does, and so does this store:

- a silence needs at least one matcher, valid label names, valid regexes, and must not match every
  label set: when every matcher matches the empty string (`a=""`, `a=~".*"`) it is refused; the
  negative matchers are not counted as matching it (so `a!="x"` alone is accepted, as there);
- *update* keeps the id only when the change does not rewrite history: same matchers and, for an
  active silence, the same start and an end not in the past; for a pending one, a start not in the
  past. Any other change to a pending or active silence expires it and creates a new silence with a
  new id (returned); an expired silence is never changed (its "update" is a new silence). A start in
  the past is moved to `now`;
- *expire* sets the end to `now` (a pending silence's start too); expiring an expired silence changes
  nothing and is not an error (Alertmanager since 0.22, #2817, so `amtool silence expire` may repeat);
- an expired silence is kept for `retention` (120h, Alertmanager's `--data.retention`) past its end,
  then garbage-collected;
- limits (`--silences.max-silences`, `--silences.max-silence-size-bytes`): the number of silences
  kept, expired ones included, and the size of one (here: of its JSON record) are bounded; a change
  beyond them is refused with `SilenceLimitError` and changes nothing.

`mutes(labels, now_ms)` is what the notification pipeline asks: the ids of the active silences
matching the label set, sorted.

Persistence: after every change the whole set is written as one JSON snapshot (temporary file, fsync,
rename, fsync of the directory) *before* the change is applied in memory, so a change that is
acknowledged survives a crash and one that could not be written is refused (`SilenceStoreError`) and
never seen. A snapshot that cannot be read at start (truncated, not JSON, wrong shape) is moved aside
to `<name>.corrupt`, logged as one warning, and the store starts empty.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from vigil.model.labels import is_valid_label_name
from vigil.model.matcher import MatchType
from vigil.notifier.matchers import Matcher, MatcherError, go_quote
from vigil.storage.errors import StorageError

__all__ = [
    "DEFAULT_MAX_SILENCES",
    "DEFAULT_MAX_SILENCE_SIZE_BYTES",
    "DEFAULT_RETENTION_MS",
    "SNAPSHOT_NAME",
    "Silence",
    "SilenceError",
    "SilenceLimitError",
    "SilenceNotFound",
    "SilenceState",
    "SilenceStoreError",
    "Silences",
    "silence_matches_filter",
    "validate_matcher",
]

log = logging.getLogger("vigil.silences")

DEFAULT_RETENTION_MS = 120 * 3600 * 1000
DEFAULT_MAX_SILENCES = 10_000
DEFAULT_MAX_SILENCE_SIZE_BYTES = 64 * 1024
SNAPSHOT_NAME = "silences.json"
_FORMAT = 1


class SilenceError(ValueError):
    """A silence refused for what it is (bad matchers, times); the message is Alertmanager's."""


class SilenceNotFound(SilenceError):
    """No silence with that id (or it was garbage-collected)."""

    def __init__(self, silence_id: str = "") -> None:
        super().__init__("silence not found")
        self.silence_id = silence_id


class SilenceLimitError(SilenceError):
    """The change would exceed `max_silences` or `max_silence_size_bytes`."""


class SilenceStoreError(StorageError):
    """The snapshot could not be written (the change was not made) or read (at start)."""


class SilenceState(Enum):
    PENDING = "pending"
    ACTIVE = "active"
    EXPIRED = "expired"


def state_at(starts_at_ms: int, ends_at_ms: int, now_ms: int) -> SilenceState:
    if now_ms < starts_at_ms:
        return SilenceState.PENDING
    if now_ms >= ends_at_ms:
        return SilenceState.EXPIRED
    return SilenceState.ACTIVE


@dataclass(frozen=True, slots=True)
class Silence:
    """One silence. Matchers keep the order they were given in (Alertmanager shows them so)."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at_ms: int
    ends_at_ms: int
    created_by: str = ""
    comment: str = ""
    updated_at_ms: int = 0

    def state(self, now_ms: int) -> SilenceState:
        return state_at(self.starts_at_ms, self.ends_at_ms, now_ms)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels.get(m.name, "")) for m in self.matchers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": [{"type": m.type.value, "name": m.name, "value": m.value} for m in self.matchers],
            "starts_at_ms": self.starts_at_ms,
            "ends_at_ms": self.ends_at_ms,
            "updated_at_ms": self.updated_at_ms,
            "created_by": self.created_by,
            "comment": self.comment,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Silence:
        """Raises ValueError / KeyError / TypeError on a record that is not one of ours."""
        ints = [d["starts_at_ms"], d["ends_at_ms"], d["updated_at_ms"]]
        strs = [d["id"], d["created_by"], d["comment"]]
        if not all(type(v) is int for v in ints) or not all(isinstance(v, str) for v in strs):
            raise ValueError("bad field types")
        matchers = tuple(
            Matcher(MatchType(m["type"]), str(m["name"]), str(m["value"])) for m in d["matchers"]
        )
        return cls(strs[0], matchers, ints[0], ints[1], strs[1], strs[2], ints[2])

    def size(self) -> int:
        """Bytes of its JSON record: what `max_silence_size_bytes` bounds."""
        return len(_dumps(self.to_dict()))


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def _valid_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a JSON "\ud800" escape
        return False
    return True


def validate_matcher(m: Matcher) -> None:
    """Alertmanager's ValidateMatcher: a legacy label name, a valid UTF-8 value, a regex that compiles
    (checked when the Matcher was built). Raises SilenceError."""
    if not is_valid_label_name(m.name):
        raise SilenceError(f"invalid label name {go_quote(m.name)}")
    if not _valid_utf8(m.value):
        if m.type in (MatchType.EQ, MatchType.NEQ):
            raise SilenceError(f"invalid label value {go_quote(m.value)}")
        raise SilenceError(
            f"invalid regular expression {go_quote(m.value)}: error parsing regexp: invalid UTF-8"
        )


def _matches_empty(m: Matcher) -> bool:
    # As Alertmanager: only the positive matchers count (a negative one is taken as not matching "").
    if m.type is MatchType.EQ:
        return m.value == ""
    if m.type is MatchType.RE:
        return m.matches("")
    return False


def _validate(s: Silence) -> None:
    if not s.matchers:
        raise SilenceError("silence invalid: at least one matcher required")
    for i, m in enumerate(s.matchers):
        try:
            validate_matcher(m)
        except SilenceError as e:
            raise SilenceError(f"silence invalid: invalid label matcher {i}: {e}") from None
    if all(_matches_empty(m) for m in s.matchers):
        raise SilenceError("silence invalid: at least one matcher must not match the empty string")
    if s.starts_at_ms == 0:
        raise SilenceError("silence invalid: invalid zero start timestamp")
    if s.ends_at_ms == 0:
        raise SilenceError("silence invalid: invalid zero end timestamp")
    if s.ends_at_ms < s.starts_at_ms:
        raise SilenceError("silence invalid: end time must not be before start time")
    for what, text in (("comment", s.comment), ("createdBy", s.created_by)):
        if not _valid_utf8(text):
            raise SilenceError(f"silence invalid: {what} is not valid UTF-8")


def _can_update(prev: Silence, new: Silence, now_ms: int) -> bool:
    """Alertmanager's canUpdate: whether `prev` may become `new` without rewriting what it muted."""
    if prev.matchers != new.matchers:
        return False
    st = prev.state(now_ms)
    if st is SilenceState.ACTIVE:
        # Compared in whole seconds, as Alertmanager does (clients round-trip RFC 3339 times).
        return new.starts_at_ms // 1000 == prev.starts_at_ms // 1000 and new.ends_at_ms >= now_ms
    if st is SilenceState.PENDING:
        return new.starts_at_ms >= now_ms
    return False


def silence_matches_filter(s: Silence, filters: Iterable[Matcher]) -> bool:
    """Alertmanager's filter on silences (`GET /api/v2/silences?filter=`): each filter matcher must be
    one of the silence's matchers, same name, type and value (not: the silence would mute it)."""
    return all(f in s.matchers for f in filters)


class Silences:
    """The silences, thread-safe: the API changes them, the pipeline's `mutes` reads them.

    `directory` is where the snapshot lives (created if missing); `clock` gives Unix milliseconds;
    `new_id` makes ids (random UUIDs; injectable so tests can name them)."""

    def __init__(
        self,
        directory: Path,
        *,
        clock: Callable[[], int],
        retention_ms: int = DEFAULT_RETENTION_MS,
        max_silences: int = DEFAULT_MAX_SILENCES,
        max_silence_size_bytes: int = DEFAULT_MAX_SILENCE_SIZE_BYTES,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        fsync: bool = True,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._dir = Path(directory)
        self._path = self._dir / SNAPSHOT_NAME
        self._clock = clock
        self._retention = retention_ms
        self._max = max_silences
        self._max_size = max_silence_size_bytes
        self._new_id = new_id
        self._fsync = fsync
        self._lock = threading.Lock()
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SilenceStoreError(f"{self._dir}: cannot create: {e.strerror or e}") from None
        self._st: dict[str, Silence] = self._load()
        if registry is not None:
            registry.register(_SilencesCollector(self))

    # -- reading ------------------------------------------------------------------------------------

    def get(self, silence_id: str) -> Silence:
        """Raises SilenceNotFound."""
        now = self._clock()
        with self._lock:
            s = self._st.get(silence_id)
        if s is None or self._gone(s, now):
            raise SilenceNotFound(silence_id)
        return s

    def query(
        self,
        *,
        ids: Sequence[str] | None = None,
        matchers: Sequence[Matcher] = (),
        states: Iterable[SilenceState] | None = None,
        now_ms: int | None = None,
    ) -> list[Silence]:
        """Silences with one of `ids` (all when None), whose matchers include every one of `matchers`
        (`silence_matches_filter`), in one of `states` at `now_ms` (any when None). Unordered."""
        now = self._clock() if now_ms is None else now_ms
        wanted = None if states is None else frozenset(states)
        with self._lock:
            pool = list(self._st.values()) if ids is None else [self._st[i] for i in ids if i in self._st]
        return [
            s
            for s in pool
            if not self._gone(s, now)
            and (wanted is None or s.state(now) in wanted)
            and silence_matches_filter(s, matchers)
        ]

    def mutes(self, labels: Mapping[str, str], now_ms: int) -> list[str]:
        """Ids of the silences active at `now_ms` that match `labels`, sorted."""
        with self._lock:
            pool = list(self._st.values())
        return sorted(s.id for s in pool if s.state(now_ms) is SilenceState.ACTIVE and s.matches(labels))

    def __len__(self) -> int:
        with self._lock:
            return len(self._st)

    def counts(self, now_ms: int) -> dict[str, int]:
        """Silences by state at `now_ms` (what `alertmanager_silences{state}` reports)."""
        out = {st.value: 0 for st in SilenceState}
        for s in self.query(now_ms=now_ms):
            out[s.state(now_ms).value] += 1
        return out

    # -- changing -----------------------------------------------------------------------------------

    def create(
        self,
        matchers: Sequence[Matcher],
        starts_at_ms: int,
        ends_at_ms: int,
        created_by: str = "",
        comment: str = "",
    ) -> str:
        """A new silence; its id. Raises SilenceError (invalid, limits) or SilenceStoreError."""
        return self.set(None, matchers, starts_at_ms, ends_at_ms, created_by, comment)

    def set(
        self,
        silence_id: str | None,
        matchers: Sequence[Matcher],
        starts_at_ms: int,
        ends_at_ms: int,
        created_by: str = "",
        comment: str = "",
    ) -> str:
        """Create (`silence_id` None or "") or update a silence, with Alertmanager's update rules (see
        the module docstring); the id of the silence that now holds the change, which is a new one
        when the update could not be made in place. Raises SilenceNotFound for an unknown id."""
        now = self._clock()
        new = Silence(silence_id or "", tuple(matchers), starts_at_ms, ends_at_ms, created_by, comment, now)
        with self._lock:
            st = self._collected(now)
            prev = st.get(silence_id) if silence_id else None
            if silence_id and prev is None:
                raise SilenceNotFound(silence_id)
            if prev is not None and _can_update(prev, new, now):
                _validate(new)
                self._check_size(new)
                st[new.id] = new
                self._commit(st)
                return new.id
            new = replace(new, id=self._new_id(), starts_at_ms=max(new.starts_at_ms, now))
            _validate(new)
            self._check_size(new)
            if self._max > 0 and len(st) + 1 > self._max:
                raise SilenceLimitError(
                    f"exceeded maximum number of silences: {len(st)} (limit: {self._max})"
                )
            if prev is not None and prev.state(now) is not SilenceState.EXPIRED:
                st[prev.id] = _expired(prev, now)  # keep the history of what it muted until now
            st[new.id] = new
            self._commit(st)
            return new.id

    def expire(self, silence_id: str) -> bool:
        """End a silence now (a pending one never starts). False when it had already expired (nothing
        changes, as in Alertmanager); raises SilenceNotFound or SilenceStoreError."""
        now = self._clock()
        with self._lock:
            st = self._collected(now)
            prev = st.get(silence_id)
            if prev is None:
                raise SilenceNotFound(silence_id)
            if prev.state(now) is SilenceState.EXPIRED:
                return False
            st[silence_id] = _expired(prev, now)
            self._commit(st)
            return True

    def gc(self) -> int:
        """Drop silences whose end is `retention` or more in the past; how many were dropped."""
        now = self._clock()
        with self._lock:
            st = self._collected(now)
            dropped = len(self._st) - len(st)
            if dropped:
                self._commit(st)
            return dropped

    # -- internals ----------------------------------------------------------------------------------

    def _gone(self, s: Silence, now: int) -> bool:
        return s.ends_at_ms + self._retention <= now

    def _collected(self, now: int) -> dict[str, Silence]:
        """A copy of the state without what retention has dropped (the caller holds the lock)."""
        return {k: s for k, s in self._st.items() if not self._gone(s, now)}

    def _check_size(self, s: Silence) -> None:
        n = s.size()
        if self._max_size > 0 and n > self._max_size:
            raise SilenceLimitError(
                f"silence exceeded maximum size: {n} bytes (limit: {self._max_size} bytes)"
            )

    def _commit(self, st: dict[str, Silence]) -> None:
        """Write `st`, then make it the state (the caller holds the lock)."""
        data = _dumps({"format": _FORMAT, "silences": [s.to_dict() for s in st.values()]})
        tmp = self._path.with_name(f".{self._path.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                if self._fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, self._path)
            if self._fsync:
                fd = os.open(self._dir, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as e:
            raise SilenceStoreError(f"{self._path}: cannot write silences: {e.strerror or e}") from None
        self._st = st

    def _load(self) -> dict[str, Silence]:
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as e:  # unreadable (permissions, a directory): not "corrupt", do not start
            raise SilenceStoreError(f"{self._path}: cannot read silences: {e.strerror or e}") from None
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
                raise ValueError(f"not a format {_FORMAT} silences snapshot")
            out: dict[str, Silence] = {}
            for rec in doc["silences"]:
                s = Silence.from_dict(rec)
                out[s.id] = s
        except (ValueError, KeyError, TypeError, MatcherError) as e:
            aside = self._path.with_name(self._path.name + ".corrupt")
            try:
                os.replace(self._path, aside)
            except OSError:
                aside = self._path
            log.warning(
                "%s: cannot load silences (%s); starting with none, the file is kept as %s",
                self._path,
                e,
                aside,
            )
            return {}
        return out


class _SilencesCollector(Collector):
    """`alertmanager_silences{state}`, Alertmanager's gauge, counted at scrape time."""

    def __init__(self, silences: Silences) -> None:
        self._s = silences

    def collect(self) -> Any:
        g = GaugeMetricFamily("alertmanager_silences", "How many silences by state.", labels=["state"])
        for state, n in self._s.counts(self._s._clock()).items():
            g.add_metric([state], n)
        yield g


def _expired(s: Silence, now: int) -> Silence:
    if s.state(now) is SilenceState.PENDING:
        return replace(s, starts_at_ms=now, ends_at_ms=now, updated_at_ms=now)
    return replace(s, ends_at_ms=now, updated_at_ms=now)
