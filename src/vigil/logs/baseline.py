"""The template baseline file of unknown-line detection: one source's known and pending log templates.

`vigil.logs.unknownlines` learns templates and detects lines of a new shape; this module is the file
it keeps them in, which `vigil logs templates` reviews without loading the detector (nor drain3).

A source's baseline is a JSON file `<directory>/<source>.json` meant to be read by people (template
text, status, count, first/last seen, learning start and end). Statuses: `learned` (mined while
learning), `accepted` (accepted with `vigil logs templates accept`), `pending` (seen after learning,
not yet decided). The agent and the CLI share the directory under an `flock` on `<directory>/.lock`:
the agent re-reads a file when it changed on disk and merges those decisions before writing its own
counts back; the CLI does read-modify-write under the same lock. Writes are atomic (temporary file,
fsync, rename, fsync of the directory). A file that cannot be read is a `BaselineError` naming the
file and the key, e.g. `<file>: templates[3].status: expected one of learned, accepted, pending, got
"maybe"`: the file is checked with `vigil.config.validate`, as `vigil.yml` and rule files are.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar
from urllib.parse import quote

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from vigil.config.types import ConfigError, integer
from vigil.config.validate import validate
from vigil.model.show import show

__all__ = [
    "ACCEPTED",
    "KNOWN",
    "LEARNED",
    "PENDING",
    "STATUSES",
    "BaselineError",
    "Template",
    "TemplateBaseline",
    "baseline_lock",
    "iso_time",
    "load_baselines",
]

LEARNED = "learned"
ACCEPTED = "accepted"
PENDING = "pending"
STATUSES = (LEARNED, ACCEPTED, PENDING)
KNOWN = frozenset((LEARNED, ACCEPTED))  # statuses a line may match without being reported
_FORMAT_VERSION = 1
_LOCK_NAME = ".lock"


def iso_time(ms: int) -> str:
    """A time in the baseline's format (and its events'): UTC, milliseconds, `2024-05-01T12:00:00.000Z`."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class BaselineError(ValueError):
    """A baseline file that cannot be read; the text names the file and the problem."""


@dataclass(slots=True)
class Template:
    id: int
    template: str
    status: str
    count: int
    first_seen_ms: int
    last_seen_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "count": self.count,
            "first_seen": iso_time(self.first_seen_ms),
            "last_seen": iso_time(self.last_seen_ms),
            "template": self.template,
        }


def _file_name(source: str) -> str:
    # Source names come from the configuration; quoting keeps any of them a plain file name.
    name = quote(source, safe="")
    return ("_" + name if name.startswith(".") else name) + ".json"


# The file's schema. Unknown keys are ignored rather than refused: the file is written by the agent,
# and one written by a newer version must still load.


def _time(raw: object) -> int:
    if isinstance(raw, str):
        with contextlib.suppress(ValueError):
            return round(datetime.fromisoformat(raw).timestamp() * 1000)
    raise ValueError(f"expected a time like 2024-05-01T12:00:00.000Z, got {show(raw)}")


def _optional_time(raw: object) -> int | None:
    return None if raw is None else _time(raw)


def _positive(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise ValueError(f"expected a positive integer, got {show(raw)}")
    return raw


def _integer(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError(f"expected an integer, got {show(raw)}")
    return raw


def _status(raw: object) -> str:
    if raw not in STATUSES:
        raise ValueError(f"expected one of {', '.join(STATUSES)}, got {show(raw)}")
    return str(raw)


def _text(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"expected a non-empty template, got {show(raw)}")
    return raw


def _list(raw: object) -> object:
    if not isinstance(raw, list):
        raise ValueError(f"expected a list of templates, got {show(raw)}")
    return raw


def _version(raw: object) -> int:
    if raw != _FORMAT_VERSION or isinstance(raw, bool):
        raise ValueError(f"expected a version {_FORMAT_VERSION} template baseline, got {show(raw)}")
    return _FORMAT_VERSION


def _source(raw: object) -> str:
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"expected a source name, got {show(raw)}")
    return raw


class _Entry(BaseModel):
    model_config: ClassVar[ConfigDict] = ConfigDict(extra="ignore", frozen=True)

    id: Annotated[int, BeforeValidator(_positive)] = Field(default=None, validate_default=True)
    status: Annotated[str, BeforeValidator(_status)] = Field(default=None, validate_default=True)
    count: Annotated[int, integer(minimum=0)] = 0
    first_seen: Annotated[int, BeforeValidator(_time)] = Field(default=None, validate_default=True)
    last_seen: Annotated[int, BeforeValidator(_time)] = Field(default=None, validate_default=True)
    template: Annotated[str, BeforeValidator(_text)] = Field(default=None, validate_default=True)


class _BaselineFile(BaseModel):
    model_config: ClassVar[ConfigDict] = ConfigDict(extra="ignore", frozen=True)

    version: Annotated[int, BeforeValidator(_version)] = Field(default=None, validate_default=True)
    source: Annotated[str, BeforeValidator(_source)] = Field(default=None, validate_default=True)
    learning_started: Annotated[int | None, BeforeValidator(_optional_time)] = None
    learning_ended: Annotated[int | None, BeforeValidator(_optional_time)] = None
    next_id: Annotated[int, BeforeValidator(_integer)] = Field(default=None, validate_default=True)
    templates: Annotated[tuple[_Entry, ...], BeforeValidator(_list)] = Field(
        default=None, validate_default=True
    )


class TemplateBaseline:
    """One source's templates and learning state, as stored in `<directory>/<source>.json`."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.templates: dict[int, Template] = {}
        self.next_id = 1
        self.learning_started_ms: int | None = None
        self.learning_ended_ms: int | None = None  # set once learning is over: the baseline exists

    @property
    def learning_done(self) -> bool:
        return self.learning_ended_ms is not None

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for t in self.templates.values():
            out[t.status] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": _FORMAT_VERSION,
            "source": self.source,
            "learning_started": None
            if self.learning_started_ms is None
            else iso_time(self.learning_started_ms),
            "learning_ended": None if self.learning_ended_ms is None else iso_time(self.learning_ended_ms),
            "next_id": self.next_id,
            "templates": [t.to_dict() for t in sorted(self.templates.values(), key=lambda t: t.id)],
        }

    @classmethod
    def from_dict(cls, raw: object, where: str) -> TemplateBaseline:
        """Validate a parsed baseline file (`where` names it in errors) with `vigil.config.validate`,
        the same schema language and error lines as `vigil.yml`; raises BaselineError."""
        try:
            doc = validate(_BaselineFile, raw, where)
        except ConfigError as e:
            raise BaselineError(str(e)) from None
        b = cls(doc.source)
        b.learning_started_ms, b.learning_ended_ms = doc.learning_started, doc.learning_ended
        for i, t in enumerate(doc.templates):
            if t.id in b.templates:
                raise BaselineError(f"{where}: templates[{i}].id: expected each id once, got {t.id} twice")
            b.templates[t.id] = Template(t.id, t.template, t.status, t.count, t.first_seen, t.last_seen)
        b.next_id = max(doc.next_id, max(b.templates, default=0) + 1)
        return b

    @staticmethod
    def path(directory: Path, source: str) -> Path:
        return directory / _file_name(source)

    @classmethod
    def load(cls, directory: Path, source: str) -> TemplateBaseline | None:
        """The saved baseline of `source`, or None if there is none. Raises BaselineError if unreadable."""
        return cls.load_file(cls.path(directory, source))

    @classmethod
    def load_file(cls, path: Path) -> TemplateBaseline | None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as e:
            raise BaselineError(f"{path}: cannot read: {e.strerror or e}") from None
        try:
            raw = json.loads(text)
        except ValueError as e:
            raise BaselineError(f"{path}: not JSON: {e}") from None
        return cls.from_dict(raw, str(path))

    def save(self, directory: Path) -> os.stat_result:
        """Write atomically (temporary file, fsync, rename, fsync of the directory); returns the new stat."""
        directory.mkdir(parents=True, exist_ok=True)
        path = self.path(directory, self.source)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        data = json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return os.stat(path)


def load_baselines(directory: Path) -> list[TemplateBaseline]:
    """Every baseline in `directory`, sorted by source. Raises BaselineError on an unreadable file."""
    out = []
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            b = TemplateBaseline.load_file(path)
            if b is not None:
                out.append(b)
    return sorted(out, key=lambda b: b.source)


@contextlib.contextmanager
def baseline_lock(directory: Path) -> Iterator[None]:
    """Exclusive lock on the baseline directory, shared by the agent and `vigil logs templates`."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
