"""Tests for vigil.logs.tail.FileFollower: rotation, truncation, globs, restarts, limits, errors."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.logs import tail
from vigil.logs.tail import FileFollower


def append(path: Path, data: str | bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data.encode() if isinstance(data, str) else data)


def lines(result: list[tuple[str, str]]) -> list[str]:
    return [line for _, line in result]


def test_append_and_read(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "one\ntwo\n")
    f = FileFollower(log)
    assert f.poll() == [(str(log), "one"), (str(log), "two")]
    assert f.poll() == []
    append(log, "three\n")
    assert lines(f.poll()) == ["three"]
    assert f.errors == {}


def test_missing_file_then_created(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    f = FileFollower(log)
    assert f.poll() == []
    assert f.errors == {}
    append(log, "hello\n")
    assert lines(f.poll()) == ["hello"]


def test_partial_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    f = FileFollower(log)
    append(log, "par")
    assert f.poll() == []
    append(log, "tial")
    assert f.poll() == []
    append(log, " line\nnext")
    assert lines(f.poll()) == ["partial line"]
    append(log, "\n")
    assert lines(f.poll()) == ["next"]


def test_utf8_replace(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "caf\u00e9\n".encode() + b"bad\xff\n")
    assert lines(FileFollower(log).poll()) == ["caf\u00e9", "bad\ufffd"]


def test_rename_rotation_with_late_writes_to_old_file(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    f = FileFollower(log)
    writer = open(log, "ab", buffering=0)  # noqa: SIM115 - the "daemon" keeps its fd across rotation
    try:
        writer.write(b"a1\n")
        assert lines(f.poll()) == ["a1"]
        writer.write(b"a2\n")
        os.rename(log, tmp_path / "auth.log.1")
        writer.write(b"a3\n")  # written to the old inode after the rename
        append(log, "b1\n")
        writer.write(b"a4\n")
        result = f.poll()
        assert lines(result) == ["a2", "a3", "a4", "b1"]
        # The old file's lines are reported under its last known path, the new under auth.log.
        assert result[-1][0] == str(log)
        append(log, "b2\n")
        assert lines(f.poll()) == ["b2"]
    finally:
        writer.close()


def test_rotation_old_partial_line_is_flushed(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "a1\na2-partial")
    f = FileFollower(log)
    assert lines(f.poll()) == ["a1"]
    os.rename(log, tmp_path / "auth.log.1")
    append(log, "b1\n")
    assert lines(f.poll()) == ["a2-partial", "b1"]


def test_copytruncate(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "line1\nline2\nline3\n")
    f = FileFollower(log)
    assert len(f.poll()) == 3
    # logrotate copytruncate: copy the content away, truncate the original in place.
    (tmp_path / "app.log.1").write_bytes(log.read_bytes())
    with open(log, "r+b") as fh:
        fh.truncate(0)
    append(log, "new1\n")
    assert lines(f.poll()) == ["new1"]
    append(log, "new2\n")
    assert lines(f.poll()) == ["new2"]


def test_truncate_in_place_and_rewritten_past_offset(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "aaaa\nbbbb\n")
    f = FileFollower(log)
    assert len(f.poll()) == 2
    log.write_bytes(b"")  # truncate in place
    assert f.poll() == []
    append(log, "c\n")
    assert lines(f.poll()) == ["c"]
    # Truncated and rewritten beyond our offset between two polls: the byte before the offset is
    # no longer a newline, so the file is re-read from 0.
    log.write_bytes(b"xxxxxxxxxxxx\nyy\n")
    assert lines(f.poll()) == ["xxxxxxxxxxxx", "yy"]


def test_glob_picks_up_new_files_and_forgets_deleted(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    append(a, "a1\n")
    (tmp_path / "ignored.txt").write_text("nope\n")
    (tmp_path / "dir.log").mkdir()  # a directory matching a glob is skipped silently
    f = FileFollower(str(tmp_path / "*.log"))
    assert f.poll() == [(str(a), "a1")]
    append(b, "b1\n")
    append(a, "a2\n")
    assert sorted(f.poll()) == [(str(a), "a2"), (str(b), "b1")]
    append(a, "a3\n")
    with open(a, "ab") as fh:  # the deleted file's remaining data is read before it is forgotten
        a.unlink()
        fh.write(b"a4\n")
    assert lines(f.poll()) == ["a3", "a4"]
    assert f.poll() == []
    assert f.errors == {}


def test_glob_rename_within_pattern_keeps_offset(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "a1\n")
    f = FileFollower(str(tmp_path / "auth.log*"))
    assert lines(f.poll()) == ["a1"]
    os.rename(log, tmp_path / "auth.log.1")  # still matches: must not be re-read from 0
    append(tmp_path / "auth.log.1", "a2\n")
    append(log, "b1\n")
    assert sorted(lines(f.poll())) == ["a2", "b1"]


def test_restart_with_state_no_duplicates_nothing_lost(tmp_path: Path) -> None:
    log, state = tmp_path / "app.log", tmp_path / "state" / "tail.json"
    state.parent.mkdir()
    append(log, "1\n2\n")
    f = FileFollower(log, state_file=state)
    assert lines(f.poll()) == ["1", "2"]
    f.commit()
    append(log, "3\n")
    assert lines(f.poll()) == ["3"]  # returned but never committed: must come again after a crash
    f.close()
    append(log, "4\n")
    g = FileFollower(log, state_file=state, start_at_end=True)  # saved state wins over start_at_end
    assert lines(g.poll()) == ["3", "4"]
    g.commit()
    g.close()
    assert [p.name for p in state.parent.iterdir()] == ["tail.json"]  # no tmp file left behind
    h = FileFollower(log, state_file=state)
    assert h.poll() == []
    saved = json.loads(state.read_text())
    assert saved["files"][0]["offset"] == log.stat().st_size


def test_restart_file_shorter_than_saved_offset(tmp_path: Path) -> None:
    log, state = tmp_path / "app.log", tmp_path / "tail.json"
    append(log, "aaaaaaaa\nbbbbbbbb\n")
    f = FileFollower(log, state_file=state)
    f.poll()
    f.commit()
    f.close()
    with open(log, "r+b") as fh:
        fh.truncate(0)
    append(log, "c\n")
    assert lines(FileFollower(log, state_file=state).poll()) == ["c"]


def test_restart_after_rotation(tmp_path: Path) -> None:
    log, state = tmp_path / "auth.log", tmp_path / "tail.json"
    append(log, "a1\n")
    f = FileFollower(log, state_file=state, start_at_end=True)
    assert f.poll() == []  # start_at_end: historic lines are skipped on a fresh start
    append(log, "a2\n")
    assert lines(f.poll()) == ["a2"]
    f.commit()
    f.close()
    # While we are down: more lines, then logrotate renames and a new file gets lines too.
    append(log, "a3\n")
    os.rename(log, tmp_path / "auth.log.1")
    append(log, "b1\n")
    g = FileFollower(log, state_file=state, start_at_end=True)
    assert lines(g.poll()) == ["a3", "b1"]  # the new file is not skipped despite start_at_end
    g.commit()
    g.close()
    append(log, "b2\n")
    assert lines(FileFollower(log, state_file=state).poll()) == ["b2"]


def test_start_at_end_skips_partial_last_line_only_up_to_newline(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "old\nhalf")
    f = FileFollower(log, start_at_end=True)
    assert f.poll() == []
    append(log, "-done\nnew\n")
    assert lines(f.poll()) == ["half-done", "new"]
    # Files appearing after the first poll are new data: read from the start.
    g = FileFollower(str(tmp_path / "*.log"), start_at_end=True)
    assert g.poll() == []
    append(tmp_path / "later.log", "x\n")
    assert lines(g.poll()) == ["x"]


def test_corrupt_state_file_is_reported_not_raised(tmp_path: Path) -> None:
    log, state = tmp_path / "app.log", tmp_path / "tail.json"
    append(log, "a\n")
    state.write_text("{not json")
    f = FileFollower(log, state_file=state)
    assert str(state) in f.errors
    assert lines(f.poll()) == ["a"]
    f.commit()
    assert json.loads(state.read_text())["version"] == 1


def test_long_line_truncation(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    f = FileFollower(log, max_line_bytes=10)
    append(log, "short\n" + "x" * 25 + "\nafter\n")
    assert lines(f.poll()) == ["short", "x" * 10, "after"]
    # An over-long line still being written is returned once, its continuation skipped.
    append(log, "y" * 15)
    assert lines(f.poll()) == ["y" * 10]
    append(log, "y" * 200_000)  # crosses several read chunks
    assert f.poll() == []
    append(log, "yyy\nz\n")
    assert lines(f.poll()) == ["z"]
    # Exactly max_line_bytes is not truncated.
    append(log, "0123456789\n")
    assert lines(f.poll()) == ["0123456789"]


def test_long_line_skip_state_survives_restart(tmp_path: Path) -> None:
    log, state = tmp_path / "app.log", tmp_path / "tail.json"
    f = FileFollower(log, state_file=state, max_line_bytes=4)
    append(log, "abcdefgh")
    assert lines(f.poll()) == ["abcd"]
    f.commit()
    f.close()
    append(log, "ij\nk\n")
    assert lines(FileFollower(log, state_file=state, max_line_bytes=4).poll()) == ["k"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions; see the simulated variants")
def test_permission_denied_chmod(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    append(log, "secret\n")
    log.chmod(0)
    f = FileFollower(log)
    try:
        assert f.poll() == []
        assert f.errors[str(log)].startswith("EACCES")
        assert f.poll() == []  # retried, still no exception
    finally:
        log.chmod(0o600)
    assert lines(f.poll()) == ["secret"]
    assert f.errors == {}


def test_permission_denied_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Works as root too: the module's open seam (tail._open) is patched to raise EACCES."""
    log = tmp_path / "auth.log"
    append(log, "secret\n")
    real_open = tail._open

    def denied(path: str) -> int:
        if path == str(log):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path)

    monkeypatch.setattr(tail, "_open", denied)
    f = FileFollower(log)
    assert f.poll() == []
    assert f.errors == {str(log): "EACCES: Permission denied"}
    assert f.poll() == []
    monkeypatch.setattr(tail, "_open", real_open)
    assert lines(f.poll()) == ["secret"]
    assert f.errors == {}


def test_directory_in_place_of_file(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.mkdir()
    f = FileFollower(log)
    assert f.poll() == []
    assert f.errors == {str(log): "not a regular file"}
    log.rmdir()
    append(log, "ok\n")
    assert lines(f.poll()) == ["ok"]
    assert f.errors == {}


# -- property: random writes, rotations and restarts lose and duplicate nothing ---------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.text(alphabet="ab\u00e9\n", min_size=1, max_size=40)),
        st.tuples(st.just("write_old"), st.text(alphabet="cd\n", min_size=1, max_size=20)),
        st.tuples(st.just("rotate"), st.none()),
        st.tuples(st.just("poll"), st.none()),
        st.tuples(st.just("restart"), st.none()),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(ops=_ops)
def test_property_concatenation_matches_writes(ops: list[tuple[str, str | None]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        log, state = tmp / "app.log", tmp / "tail.json"
        log.touch()
        generations: list[str] = [""]  # what was written to each inode, oldest first
        old: Path | None = None  # the previous generation, still writable until the next poll
        rotations = 0
        got: list[str] = []
        f = FileFollower(log, state_file=state)
        assert f.poll() == []  # the follower is running (knows the first inode) before any rotation

        def poll() -> None:
            nonlocal old
            got.extend(lines(f.poll()))
            old = None  # after a poll the old inode is drained; later writes to it would be lost

        for op, text in ops:
            if op == "write" and text:
                append(log, text)
                generations[-1] += text
            elif op == "write_old" and text and old is not None:
                append(old, text)
                generations[-2] += text
            elif op == "rotate":
                if old is not None:
                    poll()  # a tailer only sees rotations slower than its poll interval
                rotations += 1
                old = tmp / f"app.log.{rotations}"
                os.rename(log, old)
                log.touch()
                generations.append("")
            elif op == "poll":
                poll()
            elif op == "restart":
                # Commit what the last poll returned, then restart without polling: a rotation just
                # before must be recovered from the state (app.log.N found next to app.log).
                f.commit()
                f.close()
                f = FileFollower(log, state_file=state)
        poll()
        f.close()

        expected: list[str] = []
        for i, content in enumerate(generations):
            parts = content.split("\n")
            last = parts.pop()
            expected.extend(parts)
            if last and i < len(generations) - 1:
                expected.append(last)
        assert got == expected
