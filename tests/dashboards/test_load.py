"""Loading a dashboards directory: bounded (files, bytes, panels), uids unique with both files named,
and the built-in dashboards alongside."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.config.types import ConfigError
from vigil.dashboards.load import Limits, load_all, load_builtin, load_dir


def _dash(uid: str, panels: int = 1) -> str:
    body = "".join(f"  - {{title: p{i}, queries: [{{expr: up}}]}}\n" for i in range(panels))
    return f"title: {uid}\nuid: {uid}\npanels:\n{body}"


def test_directory_in_name_order_other_files_ignored(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(_dash("b"))
    (tmp_path / "a.yml").write_text(_dash("a"))
    (tmp_path / "notes.txt").write_text("not a dashboard")
    (tmp_path / "sub.yml").mkdir()  # a directory named like a file is not read
    loaded = load_dir(tmp_path)
    assert [(x.dashboard.uid, Path(x.source).name) for x in loaded] == [("a", "a.yml"), ("b", "b.yaml")]


def test_too_many_files(tmp_path: Path) -> None:
    for i in range(4):
        (tmp_path / f"d{i}.yml").write_text(_dash(f"d{i}"))
    with pytest.raises(ConfigError, match=f"^{tmp_path}: expected at most 3 dashboard files, found 4$"):
        load_dir(tmp_path, Limits(max_files=3))
    assert len(load_dir(tmp_path, Limits(max_files=4))) == 4


def test_file_too_large_is_not_read_whole(tmp_path: Path) -> None:
    big = tmp_path / "big.yml"
    big.write_text(_dash("big") + "#" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"big\.yml: file is larger than 4096 bytes"):
        load_dir(tmp_path, Limits(max_file_bytes=4096))
    assert load_dir(tmp_path, Limits(max_file_bytes=8192))[0].dashboard.uid == "big"


def test_panels_over_all_files_bounded(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(_dash("a", 6))
    (tmp_path / "b.yml").write_text(_dash("b", 5))
    with pytest.raises(
        ConfigError, match=r"b\.yml: the directory's dashboards have more than 10 panels in all"
    ):
        load_dir(tmp_path, Limits(max_panels=10))
    assert len(load_dir(tmp_path, Limits(max_panels=11))) == 2


def test_duplicate_uid_names_both_files(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(_dash("same"))
    (tmp_path / "b.yml").write_text(_dash("same"))
    with pytest.raises(ConfigError) as e:
        load_dir(tmp_path)
    assert str(e.value) == f"{tmp_path / 'b.yml'}: uid: uid 'same' is already used by {tmp_path / 'a.yml'}"


def test_a_user_dashboard_cannot_take_a_builtin_uid(tmp_path: Path) -> None:
    (tmp_path / "mine.yml").write_text(_dash("vigil-node"))
    with pytest.raises(
        ConfigError, match=r"mine\.yml: uid: uid 'vigil-node' is already used by builtin:node\.yml"
    ):
        load_all(tmp_path)


def test_bad_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(_dash("a"))
    (tmp_path / "b.yml").write_bytes(b"title: \xff\n")
    with pytest.raises(ConfigError, match=r"b\.yml: cannot read: not UTF-8 \(bad byte at offset 7\)"):
        load_dir(tmp_path)
    with pytest.raises(ConfigError, match="cannot read directory"):
        load_dir(tmp_path / "missing")


def test_builtins() -> None:
    loaded = {x.dashboard.uid: x for x in load_builtin()}
    assert set(loaded) == {"vigil-node", "vigil-fleet", "vigil-security"}
    assert [x.source for x in load_all(None)] == [
        "builtin:fleet.yml",
        "builtin:node.yml",
        "builtin:security.yml",
    ]
    node = loaded["vigil-node"].dashboard
    assert [v.name for v in node.variables] == ["instance"]
    # Every host query is for the chosen host.
    for key, p in node.all_panels():
        for q in p.queries:
            assert 'instance="$instance"' in q.expr, key
