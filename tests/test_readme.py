"""The README's configuration examples are valid: every `vigil.yml` snippet passes `config check`, and
the log-rules example loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from vigil.cmd.main import main
from vigil.config import config_from_yaml
from vigil.config.validate import load_yaml
from vigil.dashboards.model import dashboard_from
from vigil.logs.linerules import parse_line_rules

README = (Path(__file__).parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```yaml\n(.*?)```", README, re.S)


def test_there_are_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_example_is_valid(block: str) -> None:
    if block.startswith("# prometheus.yml"):
        pytest.skip("Prometheus' own configuration")
    if block.startswith("rules:"):
        assert parse_line_rules(yaml.safe_load(block), "README.md")
        return
    if block.startswith("# dashboards/"):
        assert dashboard_from(load_yaml(block, "README.md"), "README.md").all_panels()
        return
    config_from_yaml(block, "README.md")


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_example_passes_config_check(
    block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As a user would try it: `vigil config check` on the snippet as written (rule files it names that
    do not exist yet are a warning, not a failure)."""
    if block.startswith(("# prometheus.yml", "rules:", "# dashboards/")):
        pytest.skip("not a vigil.yml")
    (tmp_path / "vigil.yml").write_text(block)
    monkeypatch.chdir(tmp_path)
    assert main(["config", "check"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out == "vigil.yml: OK\n"
