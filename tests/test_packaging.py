"""What a first `make run` does: the install shows progress and builds without deprecation banners, and
`make run` passes flags to `vigil up`."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def test_licence_is_an_spdx_expression_with_a_backend_that_reads_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # A table (`{text = ...}`) makes setuptools print its deprecation banner on every build step.
    assert project["project"]["license"] == "Apache-2.0"
    [setuptools] = [r for r in project["build-system"]["requires"] if r.startswith("setuptools")]
    floor = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", setuptools)
    assert floor and int(floor.group(1)) >= 77, setuptools  # the first to accept an SPDX string


def test_install_is_not_silent() -> None:
    installs = [line for line in (ROOT / "Makefile").read_text().splitlines() if "pip install" in line]
    assert installs and not any("--quiet" in line or " -q" in line for line in installs)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_passes_args_to_vigil_up() -> None:
    # -n: print, do not run; -o: take the install as done.
    r = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "run", "ARGS=--listen 127.0.0.1:9555"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [".venv/bin/vigil up --listen 127.0.0.1:9555"]
