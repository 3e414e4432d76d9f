"""The package floors: a module imports only its own floor or lower ones, and no module cycle exists.

Floors, ground first (the order in which Vigil is built up, as Prometheus' packages are):

    model, prompb  <  config, receiver  <  storage, tsdb, events  <
    ingest, promql, ship, logs, probe, notifier  <  security, scrape, rules  <  agent  <  web  <  cmd

Imports are read from the source (every `import` / `from ... import`, also those inside functions:
a lazy import still ties the packages together); `if TYPE_CHECKING:` blocks count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "vigil"
FLOORS: list[set[str]] = [
    {"model", "prompb"},
    {"config", "receiver"},
    {"storage", "tsdb", "events"},
    {"ingest", "promql", "ship", "logs", "probe", "notifier", "template"},
    {"security", "scrape", "rules"},
    {"agent"},
    {"web"},
    {"cmd"},
]
TOP = {"__init__", "__main__"}  # the package root: version and `python -m vigil`


def floor_of(package: str) -> int:
    for i, names in enumerate(FLOORS):
        if package in names:
            return i
    raise AssertionError(f"package vigil.{package} has no floor: add it to FLOORS in {__file__}")


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every vigil module `path` imports (absolute names)."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path).split(".")
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "vigil")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here if is_pkg else here[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "vigil":
                continue
            found.add(mod)
            # `from vigil.x import y` may import the module vigil.x.y
            for a in node.names:
                cand = f"{mod}.{a.name}"
                if (SRC.parent / Path(*cand.split("."))).with_suffix(".py").exists() or (
                    SRC.parent / Path(*cand.split(".")) / "__init__.py"
                ).exists():
                    found.add(cand)
    return found


def _modules() -> dict[str, Path]:
    return {module_name(p): p for p in SRC.rglob("*.py")}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_runs_up_a_floor() -> None:
    upward = []
    for name, path in sorted(_modules().items()):
        pkg = _package(name)
        if pkg in TOP or name == "vigil":
            continue
        mine = floor_of(pkg.removesuffix(".py"))
        for target in sorted(imports_of(path)):
            other = _package(target)
            if other in TOP or target == "vigil":
                continue
            if floor_of(other) > mine:
                upward.append(
                    f"{name} ({pkg}, floor {mine}) imports {target} ({other}, floor {floor_of(other)})"
                )
    assert upward == [], "imports running up a floor:\n" + "\n".join(upward)


def test_no_import_cycle_between_modules() -> None:
    modules = _modules()
    graph = {name: {t for t in imports_of(p) if t in modules and t != name} for name, p in modules.items()}
    # A package's __init__ importing its own submodules (re-exports) is not a cycle of concern.
    for name in graph:
        graph[name] = {
            t for t in graph[name] if not (modules[name].name == "__init__.py" and t.startswith(name + "."))
        }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycles.append([*stack[stack.index(m) :], m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", ["vigil.config"])
def test_importing_config_does_not_import_the_agent(module: str) -> None:
    import subprocess
    import sys

    code = (
        f"import sys, {module}; "
        "print(sorted(m for m in sys.modules if m.startswith(('vigil.agent', 'vigil.security'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
