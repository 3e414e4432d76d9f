"""The built-in alert pack (`vigil.rules.builtin`): every rule file passes a rule checker, every unit
test passes a rule tester, and every alert has a test that fires it and one that shows it quiet.

Runners are parametrized: promtool (Debian's 2.42) today; Vigil's own `vigil rules test` is meant to
be one more `Runner` entry in `RUNNERS`. Beyond "each alert is named in a firing and a quiet test", the
tests are shown to bite: with every alert made never to fire, each alert's firing test fails; made to
fire always, each alert's quiet test fails.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_binary
from vigil.rules import builtin

PACK = Path(str(builtin.__file__)).parent
ROOT = Path(__file__).parent.parent.parent
SEVERITIES = {"critical", "warning", "info"}
CATEGORIES = {"security", "health"}


@dataclass(frozen=True)
class Result:
    returncode: int
    output: str


@dataclass(frozen=True)
class Runner:
    """A rule checker and tester: `check(rule files)` and `test(unit-test files)`, both run in `cwd`."""

    check: Callable[[list[Path], Path], Result]
    test: Callable[[list[Path], Path], Result]


def _promtool(*args: str | Path, cwd: Path) -> Result:
    p = subprocess.run(
        [require_binary("promtool"), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    return Result(p.returncode, p.stdout + p.stderr)


PROMTOOL = Runner(
    check=lambda files, cwd: _promtool("check", "rules", *files, cwd=cwd),
    test=lambda files, cwd: _promtool("test", "rules", *files, cwd=cwd),
)


def _vigil(*args: str | Path, cwd: Path) -> Result:
    p = subprocess.run(
        [sys.executable, "-m", "vigil", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    return Result(p.returncode, p.stdout + p.stderr)


VIGIL = Runner(
    check=lambda files, cwd: _vigil("rules", "check", *files, cwd=cwd),
    test=lambda files, cwd: _vigil("rules", "test", *files, cwd=cwd),
)
RUNNERS = [
    pytest.param(PROMTOOL, id="promtool", marks=[pytest.mark.peer, pytest.mark.slow]),
    pytest.param(VIGIL, id="vigil", marks=[pytest.mark.slow]),
]


def rule_paths(pack: Path = PACK) -> list[Path]:
    return sorted(p for p in pack.glob("*.yml"))


def unit_test_paths(pack: Path = PACK) -> list[Path]:
    return sorted((pack / "tests").glob("*.test.yml"))


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alerting_rules(pack: Path = PACK) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in rule_paths(pack):
        for group in load(path)["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    yield path, rule


def failing_alertnames(output: str, kind: str = "any") -> set[str]:
    """Alert names of the failed alert_rule_test entries in a tester's report (promtool's: an
    `alertname: X, time: T,` line, then `exp:[]` for a quiet test), of one `kind`: "quiet" (expected
    no alert), "firing" (expected some) or "any"."""
    found = re.findall(r"alertname: (\w+), time: [^,\n]*,\s*exp:\[(\]?)", output)
    return {name for name, empty in found if kind == "any" or (kind == "quiet") == bool(empty)}


def test_the_pack_is_what_the_module_lists() -> None:
    assert [Path(str(f)).name for f in builtin.rule_files()] == [p.name for p in rule_paths()]
    assert [Path(str(f)).name for f in builtin.unit_test_files()] == [p.name for p in unit_test_paths()]
    assert {"security.yml", "heartbeat.yml", "golden.yml"} <= {p.name for p in rule_paths()}


def test_every_pack_file_is_package_data() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["vigil.rules.builtin"]
    for path in [*rule_paths(), *unit_test_paths()]:
        rel = path.relative_to(PACK).as_posix()
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), f"{rel} is not shipped by {patterns}"


def test_every_alert_is_named_labelled_and_annotated() -> None:
    names: list[str] = []
    for path, rule in alerting_rules():
        name = rule["alert"]
        names.append(name)
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), f"{path.name}: {name}"
        assert "for" in rule, f"{path.name}: {name}: no `for`"
        assert set(rule["labels"]) == {"severity", "category"}, f"{path.name}: {name}"
        assert rule["labels"]["severity"] in SEVERITIES, f"{path.name}: {name}"
        assert rule["labels"]["category"] in CATEGORIES, f"{path.name}: {name}"
        assert set(rule["annotations"]) == {"summary", "description"}, f"{path.name}: {name}"
        assert "{{" in rule["annotations"]["description"], f"{path.name}: {name}: a fixed description"
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_every_alert_has_a_firing_and_a_quiet_test() -> None:
    defined = {rule["alert"]: path.resolve() for path, rule in alerting_rules()}
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in unit_test_paths():
        unit = load(path)
        loaded = {(path.parent / f).resolve() for f in unit["rule_files"]}
        for test in unit["tests"]:
            for case in test.get("alert_rule_test", []):
                name = case["alertname"]
                assert name in defined, f"{path.name}: tests an alert the pack does not define: {name}"
                assert defined[name] in loaded, f"{path.name}: {name} is not in its rule_files"
                (firing if case.get("exp_alerts") else quiet).add(name)
                for alert in case.get("exp_alerts") or []:
                    # Exact: every firing expectation states the labels and both annotations.
                    assert {"severity", "category"} <= set(alert["exp_labels"]), f"{path.name}: {name}"
                    assert set(alert["exp_annotations"]) == {"summary", "description"}, f"{path.name}: {name}"
    assert set(defined) - firing == set(), "alerts without a test that fires them"
    assert set(defined) - quiet == set(), "alerts without a test that shows them quiet"


@pytest.mark.parametrize("runner", RUNNERS)
def test_rule_files_pass_the_checker(runner: Runner) -> None:
    r = runner.check(rule_paths(), PACK)
    assert r.returncode == 0, r.output


@pytest.mark.parametrize("runner", RUNNERS)
def test_unit_tests_pass(runner: Runner) -> None:
    r = runner.test(unit_test_paths(), PACK / "tests")
    assert r.returncode == 0, r.output
    assert failing_alertnames(r.output) == set(), r.output


def mutated_pack(tmp_path: Path, expr: str) -> Path:
    """A copy of the pack with every alert's expression replaced by `expr` and `for: 0m` (recording
    rules left as they are)."""
    pack = tmp_path / "pack"
    shutil.copytree(PACK, pack, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    for path in rule_paths(pack):
        doc = load(path)
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    rule["expr"], rule["for"] = expr, "0m"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return pack


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize(
    ("expr", "which"),
    [("vector(1) < 0", "firing"), ("vector(1)", "quiet")],
    ids=["never-firing", "always-firing"],
)
def test_the_tests_catch_a_broken_rule(runner: Runner, tmp_path: Path, expr: str, which: str) -> None:
    """Each alert's own firing test fails when it never fires, its quiet test when it always does."""
    pack = mutated_pack(tmp_path, expr)
    r = runner.test(unit_test_paths(pack), pack / "tests")
    assert r.returncode != 0
    every = {rule["alert"] for _, rule in alerting_rules()}
    missed = every - failing_alertnames(r.output, which)
    assert missed == set(), f"alerts whose {which} test did not notice:\n{r.output}"
