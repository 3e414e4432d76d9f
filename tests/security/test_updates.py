"""UpdatesCollector: parsing of apt/dnf/yum output (a real Debian 12 capture and format-faithful
fixtures), the off-path refresh (non-blocking, interval-cached, failures keep the last values and log
once), reboot-required, package-list age, auto-detection, and one real `apt-get --just-print` run."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pytest
from prometheus_client import Metric

from tests.waiting import GENEROUS_S, returns
from vigil.security.updates import (
    MAX_ORIGIN_SERIES,
    AptUpgrade,
    UpdatesCollector,
    group_by_origin,
    parse_apt_simulation,
    parse_check_update,
    parse_updateinfo,
)

FIXTURES = Path(__file__).parent / "fixtures" / "updates"
APT = ("apt-get", "--just-print", "dist-upgrade")
APT_IGNORE_HOLD = ("apt-get", "--just-print", "-o", "APT::Ignore-Hold=true", "dist-upgrade")
DEB_SEC = "Debian-Security:12/oldstable-security"
DEB_BOTH = "Debian:12.15/oldstable,Debian-Security:12/oldstable-security"
UBU_BOTH = "Ubuntu:22.04/jammy-updates,Ubuntu:22.04/jammy-security"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def done(
    argv: Sequence[str], stdout: str = "", rc: int = 0, stderr: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(list(argv), rc, stdout, stderr)


Answer = subprocess.CompletedProcess[str] | BaseException | Callable[[], subprocess.CompletedProcess[str]]


class FakeRun:
    """The `run` seam: answers per argv (a result, an exception to raise, or a callable), records calls."""

    def __init__(self, answers: dict[tuple[str, ...], Answer]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
        key = tuple(argv)
        self.calls.append(key)
        answer = self.answers.get(key)
        if answer is None:
            raise FileNotFoundError(argv[0])
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return answer()
        return answer


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def families(metrics: Iterable[Metric]) -> dict[str, dict[tuple[str, ...], float]]:
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for family in metrics:
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(f"{k}={v}" for k, v in sorted(s.labels.items()))] = s.value
    return out


def make(tmp_path: Path, run: FakeRun, manager: str = "apt", **kw: object) -> UpdatesCollector:
    lists = tmp_path / "lists"
    lists.mkdir(exist_ok=True)
    kw.setdefault("clock", Clock())
    return UpdatesCollector(
        manager=manager,
        run=run,
        reboot_required_file=tmp_path / "reboot-required",
        apt_lists=lists,
        dnf_cache=tmp_path / "dnf",
        yum_cache=tmp_path / "yum",
        which=lambda name: None,
        **kw,  # type: ignore[arg-type]
    )


# -- parsers --


def test_parse_real_debian12_capture() -> None:
    sim = parse_apt_simulation(fixture("apt_debian12_dist_upgrade.txt"))
    assert len(sim.upgrades) == 136  # "136 upgraded" in apt's own summary line
    assert sum(u.security for u in sim.upgrades) == 81
    assert sim.kept_back == [] and sim.autoremove == []
    assert AptUpgrade("bash", "Debian:12.15/oldstable", "amd64") in sim.upgrades
    assert AptUpgrade("liblzma5", DEB_SEC, "amd64") in sim.upgrades
    assert AptUpgrade("libgcrypt20-dev", DEB_BOTH, "amd64") in sim.upgrades  # "[]" marker after ")" ignored
    assert group_by_origin(sim.upgrades) == {
        (DEB_SEC, "all"): 9,
        (DEB_SEC, "amd64"): 52,
        ("Debian:12.15/oldstable", "all"): 7,
        ("Debian:12.15/oldstable", "amd64"): 48,
        (DEB_BOTH, "all"): 3,
        (DEB_BOTH, "amd64"): 17,
    }


def test_parse_ubuntu_sections_new_installs_multiarch() -> None:
    sim = parse_apt_simulation(fixture("apt_ubuntu2204_dist_upgrade.txt"))
    names = [u.name for u in sim.upgrades]
    assert len(names) == 9  # NEW kernel ABI packages (no [oldver]) are not upgrades
    assert "linux-image-5.15.0-91-generic" not in names and "libssl3:i386" in names
    assert sum(u.security for u in sim.upgrades) == 7
    assert sim.kept_back == ["docker-ce", "docker-ce-cli"]
    assert len(sim.autoremove) == 5
    assert group_by_origin(sim.upgrades) == {
        (UBU_BOTH, "amd64"): 5,
        (UBU_BOTH, "i386"): 1,
        (UBU_BOTH, "all"): 1,
        ("Ubuntu:22.04/jammy-updates", "all"): 2,
    }


def test_group_by_origin_caps_series() -> None:
    ups = [AptUpgrade(f"p{i}", f"Repo{i}:1/stable", "amd64") for i in range(150)]
    ups += [AptUpgrade("big", "Repo7:1/stable", "amd64")]
    grouped = group_by_origin(ups)
    assert len(grouped) == MAX_ORIGIN_SERIES
    assert grouped[("Repo7:1/stable", "amd64")] == 2  # the largest are kept
    assert sum(grouped.values()) == 151 and grouped[("other", "amd64")] == 151 - 2 - 98


def test_parse_dnf_check_update_wrapped_and_obsoletes() -> None:
    pkgs = parse_check_update(fixture("dnf_check_update_rhel9.txt"))
    assert len(pkgs) == 13
    assert "python3-dnf-plugin-post-transaction-actions.noarch" in pkgs  # name wrapped onto its own line
    assert "NetworkManager.x86_64" in pkgs
    assert parse_check_update("\n") == set()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dnf_updateinfo_security_rhel9.txt", 9),  # kernel in two advisories counts once
        ("dnf5_updateinfo_security_fedora41.txt", 3),  # dnf5 table, header skipped, epochs
        ("yum_updateinfo_security_rhel7.txt", 5),  # trailing "updateinfo list done" skipped
    ],
)
def test_parse_updateinfo(name: str, expected: int) -> None:
    pkgs = parse_updateinfo(fixture(name))
    assert len(pkgs) == expected
    assert all(arch in ("x86_64", "noarch") for _, arch in pkgs)


def test_parse_updateinfo_epoch() -> None:
    assert ("grub2-tools", "x86_64") in parse_updateinfo(fixture("dnf_updateinfo_security_rhel9.txt"))
    assert ("openssl-libs", "x86_64") in parse_updateinfo(fixture("dnf5_updateinfo_security_fedora41.txt"))


# -- the collector --


def test_apt_refresh_families(tmp_path: Path) -> None:
    run = FakeRun(
        {
            APT: done(APT, fixture("apt_ubuntu2204_dist_upgrade.txt")),
            APT_IGNORE_HOLD: done(APT_IGNORE_HOLD, fixture("apt_ubuntu2204_ignore_hold.txt")),
        }
    )
    c = make(tmp_path, run, interval_s=3600)
    assert c.refresh() is True
    f = families(c.collect())
    assert f["vigil_updates_pending"] == {
        ("kind=all", "manager=apt"): 9.0,
        ("kind=security", "manager=apt"): 7.0,
    }
    assert f["apt_upgrades_pending"][("arch=amd64", f"origin={UBU_BOTH}")] == 5.0
    assert f["apt_upgrades_held"] == {("arch=amd64", "origin=Docker CE:jammy"): 2.0}
    assert f["apt_autoremove_pending"] == {(): 5.0}
    assert f["vigil_updates_check_success"] == {("manager=apt",): 1.0}
    assert f["vigil_updates_last_check_timestamp_seconds"] == {("manager=apt",): 1_700_000_000.0}
    assert f["node_reboot_required"] == {(): 0.0}


def test_apt_nothing_pending_gives_explicit_zero_and_no_second_run(tmp_path: Path) -> None:
    text = (
        "Reading package lists...\nCalculating upgrade...\n"
        "0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n"
    )
    run = FakeRun({APT: done(APT, text)})
    c = make(tmp_path, run)
    c.refresh()
    f = families(c.collect())
    assert f["apt_upgrades_pending"] == {("arch=", "origin="): 0.0}  # the textfile scripts' convention
    assert f["apt_upgrades_held"] == {("arch=", "origin="): 0.0}
    assert run.calls == [APT]  # nothing kept back: the Ignore-Hold simulation is not paid for


def test_collect_never_blocks_and_refreshes_in_background(tmp_path: Path) -> None:
    release = threading.Event()
    started = threading.Event()

    def slow() -> subprocess.CompletedProcess[str]:
        started.set()
        release.wait(120)  # held until released: longer than the hang guards below
        return done(APT, fixture("apt_debian12_dist_upgrade.txt"))

    run = FakeRun({APT: slow})
    c = make(tmp_path, run)
    (tmp_path / "reboot-required").touch()
    first = families(returns(c.collect, what="collect() while apt is stuck"))
    assert started.wait(GENEROUS_S)
    assert first["node_reboot_required"] == {(): 1.0}  # the cheap file check is there at once
    assert "vigil_updates_pending" not in first and "vigil_updates_check_success" not in first
    # While the check runs, collections return at once and start no second check.
    assert "vigil_updates_pending" not in families(returns(c.collect, what="a second collect()"))
    assert run.calls == [APT]
    release.set()
    c.close(wait_s=GENEROUS_S)
    f = families(c.collect())
    assert f["vigil_updates_pending"][("kind=security", "manager=apt")] == 81.0


def _wait_idle(c: UpdatesCollector) -> None:
    c._thread.join(GENEROUS_S)  # type: ignore[union-attr]


def test_interval_caching_with_clock(tmp_path: Path) -> None:
    clock = Clock()
    run = FakeRun({APT: done(APT, fixture("apt_debian12_dist_upgrade.txt"))})
    c = make(tmp_path, run, interval_s=3600, clock=clock)
    c.collect()
    _wait_idle(c)
    clock.now += 3599
    c.collect()
    assert run.calls == [APT]
    clock.now += 1
    c.collect()
    _wait_idle(c)
    assert run.calls == [APT, APT]
    clock.now -= 86400  # the wall clock went back: do not wait a day for the next check
    c.collect()
    _wait_idle(c)
    assert run.calls == [APT, APT, APT]
    c.close()
    clock.now += 7200
    c.collect()
    assert len(run.calls) == 3  # closed: no more checks


def test_failure_keeps_values_and_logs_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    good = done(APT, fixture("apt_debian12_dist_upgrade.txt"))
    bad = done(APT, "", rc=100, stderr="E: Could not open lock file /var/lib/dpkg/lock-frontend\n")
    run = FakeRun({APT: good})
    c = make(tmp_path, run, clock=clock)
    assert c.refresh()
    run.answers[APT] = bad
    caplog.set_level(logging.WARNING, logger="vigil.security.updates")
    for _ in range(3):
        clock.now += 3600
        assert c.refresh() is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert (
        "apt-get --just-print dist-upgrade exited 100: E: Could not open lock file"
        in warnings[0].getMessage()
    )
    f = families(c.collect())
    assert f["vigil_updates_check_success"] == {("manager=apt",): 0.0}
    assert f["vigil_updates_pending"][("kind=all", "manager=apt")] == 136.0  # previous values kept
    assert f["vigil_updates_last_check_timestamp_seconds"] == {("manager=apt",): 1_700_000_000.0}
    # A different error is news; so is the same one again after a recovery.
    run.answers[APT] = subprocess.TimeoutExpired(list(APT), 300)
    c.refresh()
    run.answers[APT] = good
    c.refresh()
    run.answers[APT] = bad
    c.refresh()
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 3 and "timed out after 300s" in messages[1]


def test_missing_command_is_a_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    c = make(tmp_path, FakeRun({}), manager="dnf")
    assert c.refresh() is False
    assert "dnf not found" in caplog.text
    f = families(c.collect())
    assert f["vigil_updates_check_success"] == {("manager=dnf",): 0.0}
    assert "vigil_updates_pending" not in f  # no value was ever known: none is invented


DNF_CHECK = ("dnf", "-q", "-C", "check-update")
DNF_SEC = ("dnf", "-q", "-C", "updateinfo", "list", "--security")


@pytest.mark.parametrize(
    ("rc", "ok", "pending"),
    [(100, True, 13.0), (0, True, 0.0), (1, False, None)],
)
def test_dnf_exit_codes(tmp_path: Path, rc: int, ok: bool, pending: float | None) -> None:
    out = fixture("dnf_check_update_rhel9.txt") if rc == 100 else ""
    err = "Error: Cache-only enabled but no cache for 'baseos'\n" if rc == 1 else ""
    run = FakeRun(
        {
            DNF_CHECK: done(DNF_CHECK, out, rc=rc, stderr=err),
            DNF_SEC: done(DNF_SEC, fixture("dnf_updateinfo_security_rhel9.txt") if rc == 100 else ""),
        }
    )
    c = make(tmp_path, run, manager="dnf")
    assert c.refresh() is ok
    f = families(c.collect())
    assert f["vigil_updates_check_success"] == {("manager=dnf",): float(ok)}
    if pending is None:
        assert "vigil_updates_pending" not in f
    else:
        assert f["vigil_updates_pending"][("kind=all", "manager=dnf")] == pending
        assert f["vigil_updates_pending"][("kind=security", "manager=dnf")] == (9.0 if rc == 100 else 0.0)
    assert "apt_upgrades_pending" not in f


def test_yum_and_needs_restarting(tmp_path: Path) -> None:
    check = ("yum", "-q", "-C", "check-update")
    sec = ("yum", "-q", "-C", "updateinfo", "list", "--security")
    nr = ("needs-restarting", "-r")
    run = FakeRun(
        {
            check: done(check, "\nkernel.x86_64   3.10.0-1160.108.1.el7   updates\n", rc=100),
            sec: done(sec, fixture("yum_updateinfo_security_rhel7.txt")),
            nr: done(nr, "Core libraries or services have been updated since boot-up:\n  * kernel\n", rc=1),
        }
    )
    c = make(tmp_path, run, manager="yum")
    c._which = lambda name: "/usr/bin/needs-restarting" if name == "needs-restarting" else None
    assert c.refresh()
    f = families(c.collect())
    assert f["node_reboot_required"] == {(): 1.0}
    assert f["vigil_updates_pending"][("kind=security", "manager=yum")] == 5.0
    run.answers[nr] = done(nr, "No core libraries or services have been updated since boot-up.\n", rc=0)
    c.refresh()
    assert families(c.collect())["node_reboot_required"] == {(): 0.0}


def test_reboot_required_file(tmp_path: Path) -> None:
    c = make(tmp_path, FakeRun({}), manager="none")
    assert families(c.collect()) == {"node_reboot_required": {(): 0.0}}
    (tmp_path / "reboot-required").write_text("*** System restart required ***\n")
    assert families(c.collect()) == {"node_reboot_required": {(): 1.0}}


def test_apt_list_age(tmp_path: Path) -> None:
    clock = Clock()
    c = make(tmp_path, FakeRun({}), clock=clock, interval_s=1e9)
    lists = tmp_path / "lists"
    for name, age in (
        ("deb.debian.org_debian_dists_bookworm_InRelease", 500),
        ("deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4", 400),
        ("lock", 1),  # not a list
    ):
        (lists / name).touch()
        os.utime(lists / name, (clock.now - age, clock.now - age))
    (lists / "partial").mkdir()
    os.utime(lists / "partial", (clock.now - 2, clock.now - 2))
    f = families(c.collect())
    assert f["vigil_updates_package_lists_age_seconds"] == {("manager=apt",): 400.0}


def test_dnf_cache_age(tmp_path: Path) -> None:
    clock = Clock()
    c = make(tmp_path, FakeRun({}), manager="dnf", clock=clock, interval_s=1e9)
    assert "vigil_updates_package_lists_age_seconds" not in families(c.collect())  # no cache dir
    repomd = tmp_path / "dnf" / "baseos-044cae74d71fe9ea" / "repodata" / "repomd.xml"
    repomd.parent.mkdir(parents=True)
    repomd.touch()
    os.utime(repomd, (clock.now - 7200, clock.now - 7200))
    stamp = tmp_path / "dnf" / "last_makecache"
    stamp.touch()
    os.utime(stamp, (clock.now - 60, clock.now - 60))
    assert families(c.collect())["vigil_updates_package_lists_age_seconds"] == {("manager=dnf",): 60.0}


@pytest.mark.parametrize(
    ("present", "expected"),
    [({"apt-get", "dnf"}, "apt"), ({"dnf", "yum"}, "dnf"), ({"yum"}, "yum"), (set(), "none")],
)
def test_auto_detection(tmp_path: Path, present: set[str], expected: str) -> None:
    def which(name: str) -> str | None:
        return f"/usr/bin/{name}" if name in present else None

    assert UpdatesCollector.detect(which) == expected
    assert UpdatesCollector(which=which, reboot_required_file=tmp_path / "r").manager == expected


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown package manager"):
        UpdatesCollector(manager="pacman")
    with pytest.raises(ValueError):
        UpdatesCollector(manager="apt", interval_s=0)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get (Debian/Ubuntu)")
def test_real_apt_get_on_this_machine() -> None:
    c = UpdatesCollector(manager="auto")
    assert c.manager == "apt"
    assert c.refresh(), "apt-get --just-print dist-upgrade failed on this machine"
    f = families(c.collect())
    pending = f["vigil_updates_pending"]
    assert 0 <= pending[("kind=security", "manager=apt")] <= pending[("kind=all", "manager=apt")] < 100_000
    assert sum(f["apt_upgrades_pending"].values()) == pending[("kind=all", "manager=apt")]
    assert f["vigil_updates_check_success"] == {("manager=apt",): 1.0}
    assert f["node_reboot_required"][()] in (0.0, 1.0)
    assert f["apt_autoremove_pending"][()] >= 0
    age = f.get("vigil_updates_package_lists_age_seconds", {}).get(("manager=apt",))
    assert age is None or age >= 0
