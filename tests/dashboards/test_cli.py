"""`vigil dashboards list|check|export|import` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tests.dashboards.test_grafana import FIXTURE, SCHEMA
from vigil.cmd.main import main
from vigil.dashboards.load import load_file

GOOD = "title: Web\nuid: web\npanels:\n  - {title: Up, kind: stat, queries: [{expr: up, instant: true}]}\n"


def test_list_builtin_and_configured_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dashboards", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in out] == ["vigil-fleet", "vigil-node", "vigil-security"]
    # ui.dashboards_dir is relative to vigil.yml's directory, not to where vigil runs.
    (tmp_path / "conf" / "dash").mkdir(parents=True)
    (tmp_path / "conf" / "dash" / "web.yml").write_text(GOOD)
    (tmp_path / "conf" / "vigil.yml").write_text("ui: {dashboards_dir: dash}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["dashboards", "list", "-c", "conf/vigil.yml"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == "web\tWeb\t1 panels\tconf/dash/web.yml"
    assert main(["dashboards", "list", "--dir", "conf/dash"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("web\tWeb\t")


def test_check_reports_each_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad, worse = tmp_path / "good.yml", tmp_path / "bad.yml", tmp_path / "missing.yml"
    good.write_text(GOOD)
    bad.write_text(GOOD.replace("kind: stat", "kind: pie"))
    assert main(["dashboards", "check", str(good)]) == 0
    assert capsys.readouterr().out == f"{good}: OK (1 panels)\n"
    assert main(["dashboards", "check", str(good), str(bad), str(worse)]) == 1
    captured = capsys.readouterr()
    assert captured.out == f"{good}: OK (1 panels)\n"
    assert captured.err.splitlines() == [
        f"{bad}: panels[0].kind: expected one of timeseries, stat, gauge, bargauge, table, heatmap, text, "
        'got "pie"',
        f"{worse}: cannot read: No such file or directory",
    ]


def test_export_writes_valid_grafana_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "dash").mkdir()
    (tmp_path / "dash" / "web.yml").write_text(GOOD)
    out = tmp_path / "grafana"
    assert main(["dashboards", "export", "--grafana", str(out), "--dir", str(tmp_path / "dash")]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["vigil-fleet.json", "vigil-node.json", "vigil-security.json", "web.json"]
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for name in written:
        assert list(validator.iter_errors(json.loads((out / name).read_text()))) == [], name
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_export_refuses_a_broken_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "web.yml").write_text(GOOD.replace("expr: up", "expr: 'up{'"))
    assert main(["dashboards", "export", "--grafana", str(tmp_path / "out"), "--dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith(
        f"{tmp_path / 'web.yml'}: panels[0].queries[0].expr: expected PromQL"
    )
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_import_prints_skipped_and_writes_a_loadable_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "nef.yml"
    assert main(["dashboards", "import", str(FIXTURE), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{out}: 17 panels, 5 skipped\n"
    err = captured.err.splitlines()
    assert f"{FIXTURE}: skipped piechart 'Processes by state': this panel type is not drawn by Vigil" in err
    assert len([line for line in err if ": skipped " in line]) == 5
    assert len(load_file(out).all_panels()) == 17
    # Without -o the YAML goes to stdout.
    assert main(["dashboards", "import", str(FIXTURE)]) == 0
    assert capsys.readouterr().out == out.read_text()
    (tmp_path / "bad.json").write_text("{")
    assert main(["dashboards", "import", str(tmp_path / "bad.json")]) == 1
    assert capsys.readouterr().err.startswith(f"{tmp_path / 'bad.json'}:1:2: invalid JSON")


def test_config_check_loads_the_dashboards_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "vigil.yml").write_text("ui: {dashboards_dir: dash}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["config", "check"]) == 0  # not there yet: a warning, as for rule files
    captured = capsys.readouterr()
    assert captured.out == "vigil.yml: OK\n"
    assert captured.err == "vigil.yml: ui.dashboards_dir: dash is not a directory (yet)\n"
    (tmp_path / "dash").mkdir()
    (tmp_path / "dash" / "web.yml").write_text(GOOD.replace("expr: up", "expr: 'up{'"))
    assert main(["config", "check"]) == 2
    assert capsys.readouterr().err.startswith("dash/web.yml: panels[0].queries[0].expr: expected PromQL")
    (tmp_path / "dash" / "web.yml").write_text(GOOD)
    assert main(["config", "check"]) == 0
    assert capsys.readouterr().out == "vigil.yml: OK\n"
