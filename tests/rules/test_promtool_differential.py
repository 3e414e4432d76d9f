"""Debian's `promtool test rules` (2.42) and `vigil rules test` on the same unit-test files.

Every `*.test.yml` in promtool/ must get the same verdict and exit code from both, and when it fails,
the same failing checks (`alertname: X, time: T` / `expr: "E", time: T`). A name ending in
`.fail.test.yml` says the file is meant to fail, so each file also checks itself: a file that
passes by accident (or fails by accident) is caught here, whatever both tools say.

Where Prometheus 2.42 and 3.x differ by design Vigil follows 3.x; those files say so in their first
line and are listed in DIFFERS_BY_DESIGN, where promtool 2.42 must give the 2.42 verdict (so the
entry cannot outlive the difference) and Vigil the 3.x one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vigil.cmd.main import main

HERE = Path(__file__).with_name("promtool")
FILES = sorted(HERE.glob("*.test.yml"))
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool (Debian package prometheus) is not installed"
)

# Until the rules engine (vigil.rules.group, branch rulescore) and the template engine (vigil.template,
# branch gotmpl) are merged, files that evaluate rules must fail in Vigil ("cannot evaluate rules");
# strict, so this mark cannot outlive the merge.


# These name rule files but fail (or pass) before any rule is loaded.
def params() -> list[object]:
    return [pytest.param(p, id=p.name) for p in FILES]


# file -> why 2.42 fails where 3.x (and Vigil) passes
DIFFERS_BY_DESIGN = {
    "25_left_open_window.test.yml": "3.x range windows are left-open (t-r, t]; 2.42's are closed",
    "26_fuzzy_compare.test.yml": "fuzzy_compare is a 3.x key; 2.42 rejects it as unknown",
    "31_utf8_names.test.yml": "3.x accepts quoted UTF-8 metric names; 2.42 does not parse them",
}

_ALERT_SITE = re.compile(r"^\s+alertname: (.+?), time: (\S+?), $", re.M)
_EXPR_SITE = re.compile(r'^\s+expr: ("(?:[^"\\]|\\.)*"), time: (\S+?)[,:]', re.M)


def failing_checks(stderr: str) -> set[str]:
    return {f"alert {a} at {t}" for a, t in _ALERT_SITE.findall(stderr)} | {
        f"expr {e} at {t}" for e, t in _EXPR_SITE.findall(stderr)
    }


def run_promtool(path: Path) -> tuple[int, str, str]:
    assert PROMTOOL is not None
    p = subprocess.run(
        [PROMTOOL, "test", "rules", path.name], cwd=path.parent, capture_output=True, text=True, timeout=120
    )
    return p.returncode, p.stdout, p.stderr


def run_vigil(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    monkeypatch.chdir(path.parent)
    capsys.readouterr()
    rc = main(["rules", "test", path.name])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_the_table_names_real_files() -> None:
    names = {p.name for p in FILES}
    assert set(DIFFERS_BY_DESIGN) <= names
    assert len(FILES) >= 25


@needs_promtool
@pytest.mark.parametrize("path", params())
def test_same_verdict_as_promtool(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    meant_to_fail = path.name.endswith(".fail.test.yml")
    p_rc, p_out, p_err = run_promtool(path)
    v_rc, v_out, v_err = run_vigil(path, capsys, monkeypatch)
    print(f"--- promtool rc={p_rc}\n{p_out}{p_err}--- vigil rc={v_rc}\n{v_out}{v_err}")
    assert v_out.startswith(f"Unit Testing:  {path.name}\n")
    assert v_rc == (1 if meant_to_fail else 0), "vigil's verdict is not the one the file is written for"
    if path.name in DIFFERS_BY_DESIGN:
        assert p_rc == 1, f"promtool 2.42 no longer differs: {DIFFERS_BY_DESIGN[path.name]}"
        return
    assert v_rc == p_rc
    assert ("  SUCCESS" in v_out) == ("  SUCCESS" in p_out)
    assert ("  FAILED:" in v_err) == ("  FAILED:" in p_err)
    assert failing_checks(v_err) == failing_checks(p_err)
    assert ("WARNING: no file match pattern" in v_err) == ("WARNING: no file match pattern" in p_err)


@needs_promtool
def test_several_files_exit_1_if_any_fails(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ["01_expanding_ramp.test.yml", "05_wrong_value.fail.test.yml", "02_blanks_x3.test.yml"]
    assert PROMTOOL is not None
    p = subprocess.run(
        [PROMTOOL, "test", "rules", *names], cwd=HERE, capture_output=True, text=True, timeout=120
    )
    monkeypatch.chdir(HERE)
    capsys.readouterr()
    rc = main(["rules", "test", *names])
    out = capsys.readouterr()
    assert rc == p.returncode == 1
    assert [ln for ln in out.out.splitlines() if ln.strip()] == [
        ln for ln in p.stdout.splitlines() if ln.strip()
    ]


@needs_promtool
def test_missing_test_file_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert PROMTOOL is not None
    p = subprocess.run([PROMTOOL, "test", "rules", "nope.yml"], cwd=tmp_path, capture_output=True, text=True)
    rc = main(["rules", "test", str(tmp_path / "nope.yml")])
    err = capsys.readouterr().err
    assert rc == p.returncode == 1
    assert "nope.yml" in err and "does not exist" in err
