"""The package floors: a module imports only its own floor or lower ones, and no module cycle exists.

Floors, ground first (the order in which Vigil is built up, as Prometheus' packages are):

    model, prompb  <  config, receiver  <  storage, tsdb, events  <
    ingest, promql, ship, logs, probe, notifier, template  <  security, scrape, rules, dashboards  <
    agent  <  web  <  cmd

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
    {"security", "scrape", "rules", "dashboards"},
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


# Packages a floor would allow but a package must not import: the web layer serves whatever storage
# engine stands behind `vigil.storage`'s protocols (the embedded TSDB today, a remote one later).
FORBIDDEN = {"web": {"tsdb"}}


def forbidden_imports(modules: dict[str, Path]) -> list[str]:
    found = []
    for name, path in sorted(modules.items()):
        banned = FORBIDDEN.get(_package(name), set())
        found += [f"{name} imports {t}" for t in sorted(imports_of(path)) if _package(t) in banned]
    return found


def test_web_does_not_import_the_tsdb() -> None:
    assert forbidden_imports(_modules()) == []


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


def private_uses(code: str, here: str) -> list[str]:
    """Every private name (`_x`, not dunder) of another vigil module that module `here` (source
    `code`) imports or reads: `from vigil.a import _x`, and `vigil.a._x` / `alias._x` through an
    `import vigil.a [as alias]` or a `from vigil import a`."""
    tree = ast.parse(code)
    found: list[str] = []
    modules: set[str] = set()  # names bound to vigil modules

    def private(name: str) -> bool:
        return name.startswith("_") and not name.startswith("__")

    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").split(".")[0] == "vigil"
        ):
            if node.module == here:
                continue
            found += [
                f"line {node.lineno}: from {node.module} import {a.name}"
                for a in node.names
                if private(a.name)
            ]
            for a in node.names:  # `from vigil.x import y` where y is a module: y._z is private too
                if (SRC.parent / Path(*f"{node.module}.{a.name}".split("."))).with_suffix(".py").exists():
                    modules.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "vigil":
                    modules.add(a.asname or "vigil")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            chain: list[str] = []
            value: ast.expr = node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in modules:
                found.append(f"line {node.lineno}: {'.'.join([value.id, *reversed(chain)])}.{node.attr}")
    return found


def test_no_private_name_is_used_across_modules() -> None:
    """A `_name` is its module's business: another module that needs it gets a public name (with a
    docstring) or the thing moves to where both may import it."""
    uses = [
        f"{name} {use}"
        for name, path in sorted(_modules().items())
        for use in private_uses(path.read_text(), name)
    ]
    assert uses == [], "private names used across modules:\n" + "\n".join(uses)


def test_importing_the_receiver_does_not_import_the_config() -> None:
    # The receivers need `host:port` parsing only: that lives in vigil.model.listen, not the schema.
    import subprocess
    import sys

    code = "import sys, vigil.receiver; print(sorted(m for m in sys.modules if m.startswith('vigil.config')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_private_uses_are_found() -> None:
    # The checker itself: each form it must catch, and what it must leave alone.
    code = (
        "import vigil.config.types\n"
        "import vigil.model.labels as L\n"
        "from vigil.config import types\n"
        "from vigil.config.types import _show, show\n"
        "x = vigil.config.types._FROM_TEXT\n"
        "y = L._private\n"
        "z = types._Section\n"
        "w = L.__name__\n"
        "v = object()._fine\n"
        "from vigil.model.probe import _own\n"
    )
    assert private_uses(code, "vigil.model.probe") == [
        "line 4: from vigil.config.types import _show",
        "line 5: vigil.config.types._FROM_TEXT",
        "line 6: L._private",
        "line 7: types._Section",
    ]
