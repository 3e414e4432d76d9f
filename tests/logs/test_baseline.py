"""The template baseline file: it round-trips, and a damaged one is one line naming the file and key."""

# ruff: noqa: E501  (the table of damages and the exact messages they must produce reads best unwrapped)

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vigil.logs.baseline import BaselineError, TemplateBaseline

STAMP = "2024-05-01T12:00:00.000Z"
GOOD: dict[str, Any] = {
    "version": 1,
    "source": "auth",
    "learning_started": STAMP,
    "learning_ended": None,
    "next_id": 3,
    "templates": [
        {
            "id": 1,
            "status": "learned",
            "count": 2,
            "first_seen": STAMP,
            "last_seen": STAMP,
            "template": "sshd: x",
        }
    ],
}


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text(json.dumps(GOOD))
    baseline = TemplateBaseline.load_file(path)
    assert baseline is not None and baseline.to_dict() == GOOD
    # Keys a newer agent may add are ignored, not refused: the agent writes these files.
    path.write_text(json.dumps({**GOOD, "later": 1}))
    assert TemplateBaseline.load_file(path) is not None


def _entry(d: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = d["templates"][0]
    return entry


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d.update(version=2), "version: expected a version 1 template baseline, got 2"),
        (lambda d: d.pop("source"), "source: expected a source name, got null"),
        (lambda d: d.update(templates=3), "templates: expected a list of templates, got 3"),
        (lambda d: d.update(next_id="x"), 'next_id: expected an integer, got "x"'),
        (lambda d: _entry(d).update(status="maybe"), 'templates[0].status: expected one of learned, accepted, pending, got "maybe"'),
        (lambda d: _entry(d).pop("id"), "templates[0].id: expected a positive integer, got null"),
        (lambda d: _entry(d).update(count=-1), "templates[0].count: expected an integer >= 0, got -1"),
        (lambda d: _entry(d).update(first_seen="yesterday"), 'templates[0].first_seen: expected a time like 2024-05-01T12:00:00.000Z, got "yesterday"'),
        (lambda d: _entry(d).update(template=" "), 'templates[0].template: expected a non-empty template, got " "'),
        (lambda d: d["templates"].append(dict(_entry(d))), "templates[1].id: expected each id once, got 1 twice"),
    ],
)  # fmt: skip
def test_damaged_file_names_file_and_key(
    tmp_path: Path, damage: Callable[[dict[str, Any]], object], message: str
) -> None:
    data = copy.deepcopy(GOOD)
    damage(data)
    path = tmp_path / "auth.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BaselineError) as exc:
        TemplateBaseline.load_file(path)
    assert str(exc.value) == f"{path}: {message}"


def test_not_json_or_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "auth.json"
    path.write_text("{")
    with pytest.raises(BaselineError, match="not JSON"):
        TemplateBaseline.load_file(path)
    path.write_text("[]")
    with pytest.raises(BaselineError) as exc:
        TemplateBaseline.load_file(path)
    assert str(exc.value).startswith(f"{path}: expected a mapping with keys version, source,")
    assert TemplateBaseline.load_file(tmp_path / "missing.json") is None
