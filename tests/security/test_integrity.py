"""FileIntegrityCollector against a temporary root tree: learning, content/mode/owner changes,
creation, deletion, restarts with saved state, globs and unreadable files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from prometheus_client import Metric

import vigil.security.integrity as integrity
from vigil.security.integrity import (
    DEFAULT_PATHS,
    PATH_CLASSES,
    Change,
    FileIntegrityCollector,
    path_class,
)

FILES = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/bash\n",
    "etc/shadow": "root:*:19000:0:99999:7:::\n",
    "etc/group": "root:x:0:\n",
    "etc/sudoers": "root ALL=(ALL:ALL) ALL\n",
    "etc/sudoers.d/README": "# drop-ins\n",
    "etc/ssh/sshd_config": "PermitRootLogin no\n",
    "root/.ssh/authorized_keys": "ssh-ed25519 AAAA root@host\n",
    "home/alice/.ssh/authorized_keys": "ssh-ed25519 BBBB alice@host\n",
    "etc/crontab": "17 * * * * root cd / && run-parts --report /etc/cron.hourly\n",
    "etc/cron.d/e2scrub_all": "30 3 * * 0 root /sbin/e2scrub_all\n",
    "var/spool/cron/crontabs/alice": "* * * * * /bin/true\n",
    "etc/systemd/system/vigil.service": "[Service]\nExecStart=/usr/bin/vigil\n",
    "etc/unwatched": "not in DEFAULT_PATHS\n",
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    for rel, text in FILES.items():
        (r / rel).parent.mkdir(parents=True, exist_ok=True)
        (r / rel).write_text(text)
    (r / "etc/systemd/system/multi-user.target.wants").mkdir()  # directories are not watched
    os.symlink("/dev/null", r / "etc/systemd/system/masked.service")  # symlinks are, by target
    return r


def _families(c: FileIntegrityCollector) -> dict[str, Metric]:
    return {m.name: m for m in c.collect()}


def _counts(fams: dict[str, Metric]) -> dict[str, float]:
    return {
        s.labels["path_class"]: s.value
        for s in fams["vigil_file_integrity_changes"].samples
        if s.name.endswith("_total")
    }


def _kinds(changes: list[Change]) -> dict[str, str]:
    return {ch.path: ch.kind for ch in changes}


def _bump_mtime(p: Path) -> None:
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_first_collection_learns_silently(root: Path) -> None:
    c = FileIntegrityCollector(root=root)
    assert c.name == "file_integrity"
    fams = _families(c)
    assert c.changes() == []
    assert fams["vigil_file_integrity_files"].samples[0].value == len(FILES) - 1 + 1  # -unwatched +symlink
    assert set(_counts(fams)) == set(PATH_CLASSES) and not any(_counts(fams).values())
    assert fams["vigil_file_integrity_last_change_timestamp_seconds"].samples[0].value == 0
    _families(c)
    assert c.changes() == []  # nothing changed: no false positives


def test_content_change_with_new_mtime(root: Path) -> None:
    c = FileIntegrityCollector(root=root)
    c.collect()
    passwd = root / "etc/passwd"
    old_hash = integrity.hashlib.sha256(passwd.read_bytes()).hexdigest()
    with passwd.open("a") as f:
        f.write("evil:x:0:0::/:/bin/sh\n")
    _bump_mtime(passwd)
    fams = _families(c)
    [ch] = c.changes()
    assert (ch.path, ch.kind, ch.path_class) == ("/etc/passwd", "modified", "passwd")
    assert ch.old_hash == old_hash and ch.new_hash and ch.new_hash != old_hash
    assert _counts(fams)["passwd"] == 1
    assert fams["vigil_file_integrity_last_change_timestamp_seconds"].samples[0].value == ch.timestamp > 0
    _families(c)
    assert c.changes() == []  # reported once


def test_same_size_and_mtime_forced_back_still_detected(root: Path) -> None:
    # ctime is in the signature and utime() cannot restore it, so this tampering is still seen.
    c = FileIntegrityCollector(root=root)
    c.collect()
    keys = root / "root/.ssh/authorized_keys"
    st = keys.stat()
    keys.write_text(FILES["root/.ssh/authorized_keys"].replace("AAAA", "EVIL"))  # same size
    os.utime(keys, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert keys.stat().st_size == st.st_size and keys.stat().st_mtime_ns == st.st_mtime_ns
    c.collect()
    assert _kinds(c.changes()) == {"/root/.ssh/authorized_keys": "modified"}


def test_touch_without_content_change_is_not_reported(root: Path) -> None:
    c = FileIntegrityCollector(root=root)
    c.collect()
    _bump_mtime(root / "etc/group")
    c.collect()
    assert c.changes() == []


def test_mode_and_owner_changes(root: Path) -> None:
    c = FileIntegrityCollector(root=root)
    c.collect()
    sudoers = root / "etc/sudoers"
    sudoers.chmod(0o666)
    c.collect()
    [ch] = c.changes()
    assert (ch.path, ch.kind, ch.path_class) == ("/etc/sudoers", "mode_changed", "sudoers")
    assert stat.S_IMODE(ch.mode) == 0o666 and ch.old_mode is not None and stat.S_IMODE(ch.old_mode) != 0o666
    assert ch.old_hash == ch.new_hash != ""

    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    crontab = root / "etc/crontab"
    st = crontab.stat()
    os.chown(crontab, st.st_uid + 1000, st.st_gid + 1000)
    c.collect()
    [ch] = c.changes()
    assert (ch.kind, ch.path_class, ch.uid, ch.gid) == (
        "mode_changed",
        "crontab",
        st.st_uid + 1000,
        st.st_gid + 1000,
    )
    assert (ch.old_uid, ch.old_gid) == (st.st_uid, st.st_gid)


def test_create_delete_and_glob(root: Path) -> None:
    c = FileIntegrityCollector(root=root)
    c.collect()
    (root / "etc/sudoers.d/90-backdoor").write_text("mallory ALL=(ALL) NOPASSWD: ALL\n")
    (root / "etc/cron.d/.hidden").write_text("* * * * * root /tmp/x\n")
    (root / "home/bob/.ssh").mkdir(parents=True)
    (root / "home/bob/.ssh/authorized_keys").write_text("ssh-rsa CCCC\n")
    (root / "etc/cron.d/e2scrub_all").unlink()
    fams = _families(c)
    changes = {ch.path: ch for ch in c.changes()}
    assert {p: ch.kind for p, ch in changes.items()} == {
        "/etc/sudoers.d/90-backdoor": "created",
        "/etc/cron.d/.hidden": "created",
        "/home/bob/.ssh/authorized_keys": "created",
        "/etc/cron.d/e2scrub_all": "deleted",
    }
    created = changes["/etc/sudoers.d/90-backdoor"]
    assert created.old_hash == "" and len(created.new_hash) == 64 and created.old_mode is None
    deleted = changes["/etc/cron.d/e2scrub_all"]
    assert deleted.new_hash == "" and len(deleted.old_hash) == 64
    counts = _counts(fams)
    assert (counts["sudoers"], counts["crontab"], counts["authorized_keys"]) == (1, 2, 1)
    assert fams["vigil_file_integrity_files"].samples[0].value == len(FILES) - 1 + 1 + 3 - 1


def test_symlink_retarget_is_a_modification(root: Path) -> None:
    c = FileIntegrityCollector(root=root)
    c.collect()
    unit = root / "etc/systemd/system/masked.service"
    unit.unlink()
    os.symlink("/tmp/evil.service", unit)
    c.collect()
    [ch] = c.changes()
    assert (ch.path, ch.kind, ch.path_class) == (
        "/etc/systemd/system/masked.service",
        "modified",
        "systemd_unit",
    )


def test_restart_with_state(root: Path, tmp_path: Path) -> None:
    state = tmp_path / "fim.json"
    c = FileIntegrityCollector(root=root, state_file=state)
    c.collect()
    saved = json.loads(state.read_text())
    assert "/etc/passwd" in saved["files"]

    c2 = FileIntegrityCollector(root=root, state_file=state)  # restart: no false changes
    c2.collect()
    assert c2.changes() == []

    (root / "etc/ssh/sshd_config").write_text("PermitRootLogin yes\n")  # while the agent was down
    c3 = FileIntegrityCollector(root=root, state_file=state)
    fams = _families(c3)
    assert _kinds(c3.changes()) == {"/etc/ssh/sshd_config": "modified"}
    ts = fams["vigil_file_integrity_last_change_timestamp_seconds"].samples[0].value
    assert ts > 0
    c4 = FileIntegrityCollector(root=root, state_file=state)  # the last-change time survives too
    assert _families(c4)["vigil_file_integrity_last_change_timestamp_seconds"].samples[0].value == ts
    assert c4.changes() == []


def test_watch_list_change_is_not_a_file_change(root: Path, tmp_path: Path) -> None:
    # The report: `paths: [/tmp/x/watched.txt]` after the defaults gave "deleted /etc/shadow" etc.,
    # and going back gave "created /etc/passwd" etc., for files that never changed.
    state = tmp_path / "fim.json"
    (root / "tmp/x").mkdir(parents=True)
    (root / "tmp/x/watched.txt").write_text("v1\n")
    c = FileIntegrityCollector(root=root, state_file=state)
    c.collect()
    narrow = ("/tmp/x/watched.txt", "/etc/cron.d/*")
    c2 = FileIntegrityCollector(narrow, root=root, state_file=state)
    fams = _families(c2)
    assert c2.changes() == [] and not any(_counts(fams).values())
    assert set(json.loads(state.read_text())["files"]) == {"/tmp/x/watched.txt", "/etc/cron.d/e2scrub_all"}
    (root / "tmp/x/watched.txt").write_text("v2\n")  # what the new list watches is watched
    c2.collect()
    assert _kinds(c2.changes()) == {"/tmp/x/watched.txt": "modified"}

    (root / "etc/cron.d/new-job").write_text("* * * * * root /tmp/x\n")  # while the agent is down
    (root / "tmp/x/watched.txt").unlink()
    c3 = FileIntegrityCollector(DEFAULT_PATHS, root=root, state_file=state)  # back to the defaults
    fams = _families(c3)
    # Joined: passwd, shadow, ... learned silently. Selected by both lists: created and deleted are
    # real. Left the list and deleted meanwhile: not watched any more, so not reported either.
    assert _kinds(c3.changes()) == {"/etc/cron.d/new-job": "created"}
    assert _counts(fams)["passwd"] == _counts(fams)["shadow"] == 0
    (root / "etc/shadow").write_text("root:$6$x:19000:0:99999:7:::\n")
    (root / "etc/cron.d/e2scrub_all").unlink()
    c3.collect()
    assert _kinds(c3.changes()) == {"/etc/shadow": "modified", "/etc/cron.d/e2scrub_all": "deleted"}


def test_state_file_without_watch_list(root: Path, tmp_path: Path) -> None:
    # State files written before the list was saved: a path the current list does not select left
    # it; a new file the current list selects cannot be told from a created one, and is reported.
    state = tmp_path / "fim.json"
    FileIntegrityCollector(root=root, state_file=state).collect()
    data = json.loads(state.read_text())
    del data["paths"]
    data["version"] = 1
    state.write_text(json.dumps(data))
    (root / "etc/sudoers.d/90-new").write_text("x ALL=(ALL) ALL\n")
    c = FileIntegrityCollector(("/etc/passwd", "/etc/sudoers.d/*"), root=root, state_file=state)
    c.collect()
    assert _kinds(c.changes()) == {"/etc/sudoers.d/90-new": "created"}
    assert json.loads(state.read_text())["paths"] == ["/etc/passwd", "/etc/sudoers.d/*"]


def test_selects_has_glob_semantics() -> None:
    pats = ("/etc/cron.d/*", "home/*/.ssh/authorized_keys", "/etc/./passwd")
    assert integrity.selects(pats, "/etc/cron.d/.hidden")  # hidden names included, as globbed
    assert integrity.selects(pats, "/home/alice/.ssh/authorized_keys")
    assert integrity.selects(pats, "/etc/passwd")
    assert not integrity.selects(pats, "/etc/cron.d/sub/job")  # `*` stays within one component
    assert not integrity.selects(pats, "/etc/shadow")


def test_corrupt_state_relearns(root: Path, tmp_path: Path) -> None:
    state = tmp_path / "fim.json"
    state.write_text("{not json")
    c = FileIntegrityCollector(root=root, state_file=state)
    c.collect()
    assert c.changes() == []
    assert "/etc/passwd" in json.loads(state.read_text())["files"]


def test_unreadable_file_stat_only(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate running as non-root (chmod 000 does not stop root): shadow cannot be read.
    real_hash = integrity._hash
    monkeypatch.setattr(
        integrity, "_hash", lambda real, st: "" if real.endswith("/etc/shadow") else real_hash(real, st)
    )
    c = FileIntegrityCollector(root=root)
    c.collect()
    shadow = root / "etc/shadow"
    _bump_mtime(shadow)  # a touch of an unreadable file looks like a change: stat is all we have
    c.collect()
    [ch] = c.changes()
    assert (ch.path, ch.kind, ch.path_class, ch.old_hash, ch.new_hash) == (
        "/etc/shadow",
        "modified",
        "shadow",
        "",
        "",
    )
    shadow.chmod(0o600)
    c.collect()
    assert _kinds(c.changes()) == {"/etc/shadow": "mode_changed"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_really_unreadable_file(root: Path) -> None:
    (root / "etc/shadow").chmod(0)
    c = FileIntegrityCollector(root=root)
    c.collect()
    (root / "etc/shadow").write_text("x")  # we own it, so we may still write
    c.collect()
    assert [(ch.kind, ch.new_hash) for ch in c.changes()] == [("modified", "")]


def test_path_classes() -> None:
    assert {p: path_class(p) for p in DEFAULT_PATHS} == {
        "/etc/passwd": "passwd",
        "/etc/shadow": "shadow",
        "/etc/group": "group",
        "/etc/sudoers": "sudoers",
        "/etc/sudoers.d/*": "sudoers",
        "/etc/ssh/sshd_config": "sshd_config",
        "/root/.ssh/authorized_keys": "authorized_keys",
        "/home/*/.ssh/authorized_keys": "authorized_keys",
        "/etc/crontab": "crontab",
        "/etc/cron.d/*": "crontab",
        "/var/spool/cron/crontabs/*": "crontab",
        "/etc/systemd/system/*": "systemd_unit",
    }
    assert path_class("/etc/hosts") == "other"


def test_real_root_does_not_raise() -> None:
    c = FileIntegrityCollector()  # this machine's /: whatever exists, readable or not
    c.collect()
    c.collect()
    assert c.changes() == [] or all(ch.kind in integrity.KINDS for ch in c.changes())
