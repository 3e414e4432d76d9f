"""Loading dashboards: the built-in ones shipped with Vigil and a user directory (`ui.dashboards_dir`).

A directory is read within fixed bounds (files, bytes per file, panels over all files) before any of
it is parsed, so a directory someone filled by mistake (a log, a dump) costs a bounded amount of work
and gives one clear error. A uid names one dashboard: a second file with the same uid (or one
reusing a built-in's) is refused with both files named, rather than one silently hiding the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from vigil.config.types import ConfigError
from vigil.config.validate import load_yaml
from vigil.dashboards.model import Dashboard, dashboard_from

__all__ = ["Limits", "Loaded", "configured_dir", "load_all", "load_builtin", "load_dir", "load_file"]

BUILTIN_PACKAGE = "vigil.dashboards.builtin"


@dataclass(frozen=True)
class Limits:
    """Bounds of one directory load."""

    max_files: int = 200
    max_file_bytes: int = 1 << 20
    max_panels: int = 5000  # over all files of the directory


@dataclass(frozen=True)
class Loaded:
    """A dashboard and where it came from (`builtin:node.yml` or the file's path)."""

    dashboard: Dashboard
    source: str


def _parse(raw: bytes, source: str) -> Dashboard:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"cannot read: not UTF-8 (bad byte at offset {e.start})", source=source) from None
    return dashboard_from(load_yaml(text, source), source)


def load_file(path: Path, limits: Limits = Limits()) -> Dashboard:
    """One dashboard file (at most `limits.max_file_bytes`); problems are ConfigError naming the file."""
    source = str(path)
    try:
        with path.open("rb") as f:
            raw = f.read(limits.max_file_bytes + 1)  # never more than the bound, whatever the file is
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", source=source) from None
    if len(raw) > limits.max_file_bytes:
        raise ConfigError(f"file is larger than {limits.max_file_bytes} bytes", source=source)
    return _parse(raw, source)


def load_builtin() -> list[Loaded]:
    """The dashboards shipped in the package, in file-name order."""
    root = resources.files(BUILTIN_PACKAGE)
    names = sorted(p.name for p in root.iterdir() if p.name.endswith(".yml"))
    return [Loaded(_parse(root.joinpath(n).read_bytes(), f"builtin:{n}"), f"builtin:{n}") for n in names]


def load_dir(directory: Path, limits: Limits = Limits()) -> list[Loaded]:
    """Every `*.yml`/`*.yaml` file directly in `directory`, in name order; the first problem raises
    ConfigError naming its file (a dashboard page lists what loaded, so a broken file must be named)."""
    try:
        names = sorted(p for p in directory.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())
    except OSError as e:
        raise ConfigError(f"cannot read directory: {e.strerror or e}", source=str(directory)) from None
    if len(names) > limits.max_files:
        raise ConfigError(
            f"expected at most {limits.max_files} dashboard files, found {len(names)}", source=str(directory)
        )
    out: list[Loaded] = []
    panels = 0
    for path in names:
        d = load_file(path, limits)
        panels += len(d.all_panels())
        if panels > limits.max_panels:
            raise ConfigError(
                f"the directory's dashboards have more than {limits.max_panels} panels in all",
                source=str(path),
            )
        out.append(Loaded(d, str(path)))
    _check_unique(out)
    return out


def _check_unique(found: list[Loaded]) -> None:
    seen: dict[str, str] = {}
    for item in found:
        uid = item.dashboard.uid
        if uid in seen:
            raise ConfigError(f"uid {uid!r} is already used by {seen[uid]}", source=item.source, key="uid")
        seen[uid] = item.source


def configured_dir(dashboards_dir: Path | None, config_dir: Path) -> Path | None:
    """The directory `ui.dashboards_dir` names: relative to vigil.yml's directory, as rule_files are
    (None: not set)."""
    if dashboards_dir is None:
        return None
    return dashboards_dir if dashboards_dir.is_absolute() else config_dir / dashboards_dir


def load_all(directory: Path | None, limits: Limits = Limits()) -> list[Loaded]:
    """The built-in dashboards, then the directory's (None: none); a uid used twice is an error
    naming both sources."""
    found = load_builtin() + (load_dir(directory, limits) if directory is not None else [])
    _check_unique(found)
    return found
