"""Pending package updates (of which security updates) and reboot-required, from apt or dnf/yum.

Unpatched packages are the commonest way in, so "how many security updates are waiting, and since
when" is a first-class security signal. The names follow the node-exporter textfile-collector scripts
(apt.sh / apt_info.py), so existing dashboards and alerts keep working, plus Vigil's own
manager-neutral families:

- `apt_upgrades_pending{origin,arch}` — upgrades `apt-get dist-upgrade` would install, grouped by
  origin (apt's "Label:Version/Archive" list, comma-joined, as apt-get prints it) and architecture; apt only;
- `apt_upgrades_held{origin,arch}` — upgradable packages that are held back (`apt-mark hold`); apt only;
- `apt_autoremove_pending` — packages `apt autoremove` would remove; apt only;
- `node_reboot_required` — 1 when /run/reboot-required exists (Debian/Ubuntu) or, on dnf/yum,
  `needs-restarting -r` exits 1;
- `vigil_updates_pending{kind="all"|"security",manager}` — pending upgrades; an upgrade is a security
  one when one of its apt origins is a "-security" archive, or, on dnf/yum, when a security advisory
  (`updateinfo list --security`) covers the package. Held apt packages are not counted here;
- `vigil_updates_package_lists_age_seconds{manager}` — age of the package lists the check reads:
  the counts are only as fresh as these lists;
- `vigil_updates_last_check_timestamp_seconds{manager}` and `vigil_updates_check_success{manager}`.

Asking the package manager takes seconds (apt resolves the whole dependency graph), so the check
never runs on the collection path: `collect()` returns the cached result of the last check and, when
that is older than `interval_s` (hourly by default) and no check is running, starts one in a daemon
thread. The first collection therefore has only the cheap file-based families; the counts appear
on a later one. A failed check (command missing, timeout, non-zero exit) sets check_success to 0,
keeps the previous counts, and logs one warning per distinct error rather than one an hour.

The check only reads: apt runs `apt-get --just-print dist-upgrade` (a simulation, which apt runs
without taking its lock) and dnf/yum run with `-C` (cache only). It never runs `apt-get update` or
refreshes dnf metadata — that changes the system and belongs to apt-daily.timer / dnf-makecache.timer
(or unattended-upgrades); the list-age family is there to catch lists nobody refreshes.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily

from vigil.model.labels import label_safe

log = logging.getLogger(__name__)

MANAGERS = ("auto", "apt", "dnf", "yum", "none")
MAX_ORIGIN_SERIES = 100  # (origin, arch) pairs per apt family; the rest fold into origin="other"

CommandRunner = Callable[[Sequence[str], float], "subprocess.CompletedProcess[str]"]

# `Inst name [oldver] (newver Label:Version/Archive[, ...] [arch]) [...]`; lines without [oldver]
# are new installs (dependencies pulled in), not upgrades of something installed.
_INST = re.compile(
    r"^Inst (?P<name>\S+) \[(?P<old>[^\]]*)\] \((?P<new>\S+)(?: (?P<origins>.*?))? \[(?P<arch>[^\]]*)\]\)"
)
# Section headers of apt-get's summary (LANG=C): apt <= 2.8 wording, then apt >= 2.9 wording.
_KEPT_BACK_HEADERS = ("The following packages have been kept back:", "Not upgrading:")
_AUTOREMOVE_MARK = "no longer required:"  # "...were automatically installed and are no longer required:"
# name.arch as dnf/yum print it in check-update's first column.
_NAME_ARCH = re.compile(r"^[^\s.][^\s]*\.[A-Za-z0-9_]+$")
# name-[epoch:]version-release.arch as printed by `updateinfo list`.
_NEVRA = re.compile(r"^(?P<name>.+)-(?:\d+:)?[^-:]+-[^-]+\.(?P<arch>[A-Za-z0-9_]+)$")


def run_command(argv: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run argv (no shell) in the C locale, so the output has the English format the parsers expect."""
    env = dict(os.environ, LANG="C", LC_ALL="C")  # LC_ALL too: it overrides LANG if the agent has one
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout_s,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@dataclass(frozen=True)
class AptUpgrade:
    name: str
    origin: str  # apt's origins, comma-joined: "Debian:12.15/oldstable,Debian-Security:12/oldstable-security"
    arch: str

    @property
    def security(self) -> bool:
        return "-security" in self.origin.lower()


@dataclass
class AptSimulation:
    upgrades: list[AptUpgrade] = field(default_factory=list)
    kept_back: list[str] = field(default_factory=list)  # package names of the "kept back" section
    autoremove: list[str] = field(default_factory=list)  # package names apt says are no longer required


def parse_apt_simulation(text: str) -> AptSimulation:
    """Parse `LANG=C apt-get --just-print dist-upgrade` output."""
    sim = AptSimulation()
    section: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("  ") and section is not None:
            section.extend(line.split())
            continue
        section = None
        if line.startswith("Inst "):
            m = _INST.match(line)
            if m:
                origins = [o.strip() for o in (m["origins"] or "").split(",") if o.strip()]
                sim.upgrades.append(
                    AptUpgrade(m["name"], label_safe(",".join(origins)), label_safe(m["arch"]))
                )
        elif line in _KEPT_BACK_HEADERS:
            section = sim.kept_back
        elif line.endswith(_AUTOREMOVE_MARK):
            section = sim.autoremove
    return sim


def group_by_origin(upgrades: Iterable[AptUpgrade]) -> dict[tuple[str, str], int]:
    """Counts per (origin, arch), capped at MAX_ORIGIN_SERIES pairs; the smallest fold into "other"."""
    counts = Counter((u.origin, u.arch) for u in upgrades)
    if len(counts) <= MAX_ORIGIN_SERIES:
        return dict(counts)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    out: dict[tuple[str, str], int] = dict(ranked[: MAX_ORIGIN_SERIES - 1])
    # One slot is kept for each folded arch; arches are a handful, so this stays near the cap.
    for (_, arch), n in ranked[MAX_ORIGIN_SERIES - 1 :]:
        out[("other", arch)] = out.get(("other", arch), 0) + n
    return out


def parse_check_update(text: str) -> set[str]:
    """The name.arch of each package `dnf/yum -q check-update` lists as upgradable.

    A name too long for its column is printed alone, version and repo going to the next, indented line.
    The "Obsoleting Packages" section that may follow repeats packages, so it is not read."""
    packages: set[str] = set()
    wrapped: str | None = None
    for line in text.splitlines():
        tokens = line.split()
        if not tokens:
            continue
        if line.lower().startswith("obsoleting packages"):
            break
        if wrapped is not None:
            if line[0].isspace() and len(tokens) == 2:
                packages.add(wrapped)
                wrapped = None
                continue
            wrapped = None
        if line[0].isspace() or not _NAME_ARCH.match(tokens[0]):
            continue  # noise such as "Security: kernel-... is an installed security update"
        if len(tokens) == 3:
            packages.add(tokens[0])
        elif len(tokens) == 1:
            wrapped = tokens[0]
    return packages


def parse_updateinfo(text: str) -> set[tuple[str, str]]:
    """Distinct (name, arch) of the packages `updateinfo list --security` names.

    dnf4/yum print `ADVISORY SEVERITY/Sec. NEVRA`, dnf5 a table `Name Type Severity Package Issued`; the
    package is the first column after the advisory id that parses as a NEVRA. One package may be in
    several advisories (successive fixes), so packages, not lines, are counted."""
    out: set[tuple[str, str]] = set()
    for line in text.splitlines():
        for token in line.split()[1:]:
            m = _NEVRA.match(token)
            if m:
                out.add((m["name"], m["arch"]))
                break
    return out


@dataclass(frozen=True)
class _Result:
    pending_all: int
    pending_security: int
    apt_pending: dict[tuple[str, str], int] | None = None
    apt_held: dict[tuple[str, str], int] | None = None
    apt_autoremove: int | None = None
    reboot_required: bool | None = None  # from needs-restarting; None when not known


class _CheckError(Exception):
    """A check that failed; the message is stable across runs so repeats can be recognised."""


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


def _newest_mtime(paths: Iterable[Path]) -> float | None:
    newest: float | None = None
    for path in paths:
        try:
            mtime = path.stat().st_mtime
        except OSError:  # vanished between listing and stat (apt replacing a list)
            continue
        newest = mtime if newest is None else max(newest, mtime)
    return newest


class UpdatesCollector:
    name = "updates"

    def __init__(
        self,
        manager: str = "auto",
        interval_s: float = 3600.0,
        timeout_s: float = 300.0,
        run: CommandRunner = run_command,
        clock: Callable[[], float] = time.time,
        which: Callable[[str], str | None] = shutil.which,
        reboot_required_file: Path = Path("/var/run/reboot-required"),
        apt_lists: Path = Path("/var/lib/apt/lists"),
        dnf_cache: Path = Path("/var/cache/dnf"),
        yum_cache: Path = Path("/var/cache/yum"),
    ) -> None:
        if manager not in MANAGERS:
            raise ValueError(f"unknown package manager {manager!r}: want one of {', '.join(MANAGERS)}")
        if interval_s <= 0 or timeout_s <= 0:
            raise ValueError("updates interval_s and timeout_s must be positive")
        self.manager = self.detect(which) if manager == "auto" else manager
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._run = run
        self._clock = clock
        self._which = which
        self._reboot_file = reboot_required_file
        self._apt_lists = apt_lists
        self._cache_dir = yum_cache if self.manager == "yum" else dnf_cache

        self._lock = threading.Lock()
        self._result: _Result | None = None  # last successful check
        self._last_success: float | None = None
        self._success: bool | None = None  # outcome of the last finished check
        self._last_attempt: float | None = None
        self._refreshing = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._logged_errors: set[str] = set()

    @staticmethod
    def detect(which: Callable[[str], str | None] = shutil.which) -> str:
        """The host's package manager: apt first (a Debian host may carry a stray dnf), then dnf, yum."""
        for manager, binary in (("apt", "apt-get"), ("dnf", "dnf"), ("yum", "yum")):
            if which(binary):
                return manager
        return "none"

    # -- collection (never blocks on a subprocess) --

    def collect(self) -> Iterable[Metric]:
        self._maybe_start_refresh()
        with self._lock:
            result, success, last_success = self._result, self._success, self._last_success
        mgr = self.manager
        families: list[Metric] = []

        reboot = self._reboot_file.exists() or bool(result and result.reboot_required)
        families.append(
            GaugeMetricFamily(
                "node_reboot_required",
                "Node reboot is required for software updates.",
                value=float(reboot),
            )
        )
        if mgr == "none":
            return families

        age = self._list_age()
        if age is not None:
            lists = GaugeMetricFamily(
                "vigil_updates_package_lists_age_seconds",
                "Seconds since the package lists the update check reads were last refreshed.",
                labels=["manager"],
            )
            lists.add_metric([mgr], age)
            families.append(lists)
        if success is not None:
            ok = GaugeMetricFamily(
                "vigil_updates_check_success",
                "Whether the last pending-updates check succeeded (1) or failed (0).",
                labels=["manager"],
            )
            ok.add_metric([mgr], float(success))
            families.append(ok)
        if result is None or last_success is None:
            return families

        last = GaugeMetricFamily(
            "vigil_updates_last_check_timestamp_seconds",
            "Unix time of the last successful pending-updates check.",
            labels=["manager"],
        )
        last.add_metric([mgr], last_success)
        pending = GaugeMetricFamily(
            "vigil_updates_pending",
            "Pending package upgrades, all and security ones.",
            labels=["kind", "manager"],
        )
        pending.add_metric(["all", mgr], float(result.pending_all))
        pending.add_metric(["security", mgr], float(result.pending_security))
        families += [last, pending]
        if result.apt_pending is not None:
            families.append(
                _origin_family(
                    "apt_upgrades_pending", "Apt packages pending updates by origin.", result.apt_pending
                )
            )
        if result.apt_held is not None:
            families.append(
                _origin_family(
                    "apt_upgrades_held", "Apt packages pending updates but held back.", result.apt_held
                )
            )
        if result.apt_autoremove is not None:
            families.append(
                GaugeMetricFamily(
                    "apt_autoremove_pending",
                    "Apt packages pending autoremoval.",
                    value=float(result.apt_autoremove),
                )
            )
        return families

    def _list_age(self) -> float | None:
        """Age of the newest package list (a few stats, cheap enough for every collection)."""
        try:
            if self.manager == "apt":
                newest = _newest_mtime(
                    p
                    for p in self._apt_lists.iterdir()
                    if p.name.endswith(("_InRelease", "_Release")) or "_Packages" in p.name
                )
            else:
                # dnf4 stamps last_makecache; each repo's repomd.xml is rewritten when its metadata is
                # refreshed (dnf: <repo>-<hash>/repodata/, yum: <arch>/<releasever>/<repo>/).
                cache = self._cache_dir
                newest = _newest_mtime(
                    [
                        cache / "last_makecache",
                        *cache.glob("*/repodata/repomd.xml"),
                        *cache.glob("*/*/*/repomd.xml"),
                    ]
                )
                if newest is None:
                    newest = cache.stat().st_mtime
        except OSError:  # no lists directory: nothing to say
            return None
        if newest is None:
            return None
        return max(0.0, self._clock() - newest)

    # -- the check, off the collection path --

    def _maybe_start_refresh(self) -> None:
        with self._lock:
            if self._closed or self._refreshing or self.manager == "none":
                return
            if self._last_attempt is not None:
                elapsed = self._clock() - self._last_attempt
                if 0 <= elapsed < self._interval_s:  # negative: the wall clock went back; check again
                    return
            self._refreshing = True
            self._thread = threading.Thread(target=self._background, name="vigil-updates-check", daemon=True)
            self._thread.start()

    def _background(self) -> None:
        try:
            self.refresh()
        except Exception:  # a parser bug must not kill the thread silently and stop all future checks
            log.exception("pending-updates check (%s) crashed", self.manager)
        finally:
            with self._lock:
                self._refreshing = False

    def refresh(self) -> bool:
        """Run the check now, in the calling thread, and update the cached values; True on success."""
        if self.manager == "none":
            return False
        with self._lock:
            self._last_attempt = self._clock()
        try:
            result = self._check_apt() if self.manager == "apt" else self._check_rpm(self.manager)
        except _CheckError as exc:
            message = str(exc)
            with self._lock:
                self._success = False
                first = message not in self._logged_errors
                self._logged_errors.add(message)
            if first:
                log.warning(
                    "pending-updates check (%s) failed, keeping the previous values: %s",
                    self.manager,
                    message,
                )
            return False
        with self._lock:
            if self._logged_errors:
                log.info("pending-updates check (%s) works again", self.manager)
            self._logged_errors.clear()  # a later failure is news again
            self._result = result
            self._success = True
            self._last_success = self._clock()
        return True

    def close(self, wait_s: float = 0.0) -> None:
        """Start no more checks; wait up to wait_s for a running one (it is a daemon thread either way)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None and wait_s > 0:
            thread.join(wait_s)

    def _exec(self, argv: Sequence[str], ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        cmd = " ".join(argv)
        try:
            proc = self._run(argv, self._timeout_s)
        except FileNotFoundError as exc:
            raise _CheckError(f"{argv[0]} not found") from exc
        except subprocess.TimeoutExpired as exc:
            raise _CheckError(f"{cmd} timed out after {self._timeout_s:g}s") from exc
        except OSError as exc:
            raise _CheckError(f"{argv[0]}: {exc.strerror or exc}") from exc
        if proc.returncode not in ok:
            detail = _first_line(proc.stderr or "") or _first_line(proc.stdout or "")
            raise _CheckError(f"{cmd} exited {proc.returncode}: {detail}".rstrip(": "))
        return proc

    def _check_apt(self) -> _Result:
        sim = parse_apt_simulation(self._exec(["apt-get", "--just-print", "dist-upgrade"]).stdout)
        held: list[AptUpgrade] = []
        if sim.kept_back:
            # Kept-back packages carry no origin; a second simulation that ignores holds prints their
            # Inst lines. Only paid for when something is kept back.
            kept = {n.partition(":")[0] for n in sim.kept_back}
            ignoring = self._exec(["apt-get", "--just-print", "-o", "APT::Ignore-Hold=true", "dist-upgrade"])
            held = [
                u for u in parse_apt_simulation(ignoring.stdout).upgrades if u.name.partition(":")[0] in kept
            ]
        return _Result(
            pending_all=len(sim.upgrades),
            pending_security=sum(u.security for u in sim.upgrades),
            apt_pending=group_by_origin(sim.upgrades),
            apt_held=group_by_origin(held),
            apt_autoremove=len(sim.autoremove),
        )

    def _check_rpm(self, manager: str) -> _Result:
        # -q: no progress or "Last metadata expiration" chatter; -C: cached metadata only, never fetch.
        updates = self._exec([manager, "-q", "-C", "check-update"], ok=(0, 100))
        packages = parse_check_update(updates.stdout) if updates.returncode == 100 else set()
        security = parse_updateinfo(
            self._exec([manager, "-q", "-C", "updateinfo", "list", "--security"]).stdout
        )
        return _Result(
            pending_all=len(packages),
            pending_security=len(security),
            reboot_required=self._needs_restarting(),
        )

    def _needs_restarting(self) -> bool | None:
        """`needs-restarting -r` (dnf-utils/yum-utils): exit 1 means reboot needed; None if unknown."""
        if not self._which("needs-restarting"):
            return None
        try:
            proc = self._run(["needs-restarting", "-r"], self._timeout_s)
        except (OSError, subprocess.TimeoutExpired):
            return None  # best effort: the counts are the point of the check
        return {0: False, 1: True}.get(proc.returncode)


def _origin_family(name: str, help_text: str, counts: dict[tuple[str, str], int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=["origin", "arch"])
    if not counts:  # the textfile scripts' convention: an explicit zero rather than an empty family
        family.add_metric(["", ""], 0.0)
    for (origin, arch), n in sorted(counts.items()):
        family.add_metric([origin, arch], float(n))
    return family
