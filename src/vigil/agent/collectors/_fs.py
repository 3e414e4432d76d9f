"""Small helpers the host collectors share: reading pseudo-files cheaply and filtering devices.

/proc and /sys files report a size of 0 and are generated on each read, so each is read whole in
one call and parsed from memory; a missing file means the source is absent on this host.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from vigil.model.collector import CollectorUnavailable


def read_text(path: Path) -> str:
    """The whole file as text. Non-UTF-8 bytes survive as surrogates, so paths stay usable."""
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "surrogateescape")


def read_source(path: Path) -> str:
    """Like `read_text`, but a missing file is `CollectorUnavailable`: the host has no such source."""
    try:
        return read_text(path)
    except FileNotFoundError as exc:
        raise CollectorUnavailable(f"{path} does not exist") from exc


def read_optional(path: Path) -> str | None:
    """The file's text stripped, or None when it does not exist or cannot be read."""
    try:
        return read_text(path).strip()
    except OSError:
        return None


def device_filter(exclude: str | None, include: str | None) -> Callable[[str], bool]:
    """node_exporter's device filter: an exclude or an include regex (not both), searched, not anchored.

    Returns a predicate that is true for the device names to DROP."""
    if exclude and include:
        raise ValueError("give a device exclude or an include pattern, not both")
    if exclude:
        drop = re.compile(exclude, re.ASCII)
        return lambda name: drop.search(name) is not None
    if include:
        keep = re.compile(include, re.ASCII)
        return lambda name: keep.search(name) is None
    return lambda name: False
