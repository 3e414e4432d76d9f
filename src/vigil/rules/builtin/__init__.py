"""Vigil's built-in alerting rule pack: Prometheus rule files shipped as package data.

The YAML files beside this module are rule files by theme (security, heartbeat, golden signals), and
`tests/` holds their unit tests in promtool's format, so the pack can be checked wherever it is
installed (`promtool test rules`, and Vigil's own rule tester). Only metric names the agent really
exports are used; each rule says in a comment where its metric comes from. `events/events.yml` holds
the built-in event rules (vigil.yml's `event_rules:` schema): the alerts that must not wait for an
evaluation interval, such as a new listening port or a brute force from one address.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

__all__ = ["event_rule_file", "rule_files", "unit_test_files"]


def _yaml_in(directory: Traversable, suffix: str) -> list[Traversable]:
    return sorted(
        (f for f in directory.iterdir() if f.is_file() and f.name.endswith(suffix)), key=lambda f: f.name
    )


def rule_files() -> list[Traversable]:
    """The pack's rule files, sorted by name (not the tests)."""
    return [f for f in _yaml_in(files(__name__), ".yml") if not f.name.endswith(".test.yml")]


def unit_test_files() -> list[Traversable]:
    """The pack's unit-test files (promtool's `rule_files`/`tests` format), sorted by name."""
    return _yaml_in(files(__name__).joinpath("tests"), ".test.yml")


def event_rule_file() -> Traversable:
    """The built-in event rules (`event_rules:` of vigil.yml's schema)."""
    return files(__name__).joinpath("events", "events.yml")
