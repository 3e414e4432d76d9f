"""Parity of Vigil's host collectors with the real node_exporter on this machine.

node_exporter (Debian's `prometheus-node-exporter`) runs with its default collectors on a free
loopback port, plus `processes` (off by default in both). Its filters are pinned to node_exporter
1.5's upstream defaults, the ones Vigil uses, because Debian's build patches some of them (it drops
`lo` and /run, /mnt, /media).

Order: scrape node_exporter, collect Vigil (rendered by prometheus_client and parsed back with
Vigil's own text parser), scrape node_exporter again. For every `node_` family Vigil emits:

- node_exporter has the family, with the same type;
- the label names of its series are the same;
- its set of label sets is the same as in one of the two scrapes (except the per-state process
  families, where a state can appear or vanish between reads);
- each value agrees with node_exporter's within the family's tolerance, see `TOLERANCES`: Vigil read
  between the two scrapes, so a value that only grows must lie between the two scrapes' values, and a
  value that moves both ways must lie between them give or take a slack that says how much it can
  move in the ~100 ms between reads on a busy machine. Values that do not move must be equal.

Families node_exporter has and Vigil lacks are printed, not failed.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tests.conftest import free_port, require_binary, wait_http
from vigil.agent.collectors import default_collectors, optional_collectors
from vigil.agent.collectors.diskstats import DEFAULT_DEVICE_EXCLUDE
from vigil.agent.collectors.filesystem import DEFAULT_FS_TYPES_EXCLUDE, DEFAULT_MOUNT_POINTS_EXCLUDE
from vigil.model.labels import METRIC_NAME
from vigil.model.textparse import parse_text

pytestmark = pytest.mark.peer

Key = frozenset[tuple[str, str]]


@dataclass
class Exposition:
    types: dict[str, str]  # family -> type
    series: dict[str, dict[Key, float]]  # family -> labels (without __name__) -> value


def parse(payload: bytes) -> Exposition:
    parsed = parse_text(payload, 0)
    series: dict[str, dict[Key, float]] = {}
    for idx, value in zip(parsed.series_index.tolist(), parsed.values.tolist(), strict=True):
        labels = parsed.series[idx]
        key = frozenset((n, v) for n, v in labels if n != METRIC_NAME)
        series.setdefault(labels.metric_name, {})[key] = value
    return Exposition({name: meta[0] for name, meta in parsed.metadata.items()}, series)


# --- tolerances -----------------------------------------------------------------------------------
# A rule gets (Vigil's value, node_exporter's values before and after, this series' context) and says
# whether they agree. Rules are picked by the first family pattern that matches.

Ctx = dict[str, float]  # figures some slacks scale with: MemTotal, the filesystem's size, ...
Rule = Callable[[float, float, float, Ctx], bool]

REL_ROUNDING = 1e-12  # Vigil divides by 1000 where node_exporter multiplies by 0.001: 1 ulp apart


def exact(v: float, before: float, after: float, ctx: Ctx) -> bool:
    """Does not move between reads: equal to both scrapes (up to float rounding of unit conversions)."""
    return all(math.isclose(v, x, rel_tol=REL_ROUNDING, abs_tol=0.0) for x in (before, after))


def between(slack: Callable[[float, Ctx], float]) -> Rule:
    """Within [min(before, after) - slack, max(before, after) + slack]."""

    def rule(v: float, before: float, after: float, ctx: Ctx) -> bool:
        s = slack(v, ctx) + REL_ROUNDING * max(abs(before), abs(after))
        return min(before, after) - s <= v <= max(before, after) + s

    return rule


def absolute(amount: float) -> Callable[[float, Ctx], float]:
    return lambda v, ctx: amount


# Counters only grow, and Vigil read between the two scrapes: no slack needed beyond float rounding.
MONOTONIC = between(absolute(0.0))

CPUS = os.cpu_count() or 1

TOLERANCES: list[tuple[str, Rule, str]] = [
    # Values that do not move while the host runs.
    (
        r"node_memory_(MemTotal|SwapTotal|VmallocTotal|Hugepagesize|HugePages_Total|CommitLimit)(_bytes)?",
        exact,
        "exact",
    ),
    (
        r"node_boot_time_seconds|node_uname_info|node_filefd_maximum|node_time_zone_offset_seconds",
        exact,
        "exact",
    ),
    (r"node_filesystem_(size_bytes|files|readonly|device_error)", exact, "exact"),
    (
        r"node_disk_info|node_disk_.*_info|node_disk_ata_.*|node_time_clocksource_.*|node_cpu_isolated",
        exact,
        "exact",
    ),
    (r"node_processes_max_(processes|threads)", exact, "exact"),
    # Idle and iowait per CPU can step back a tick on NO_HZ kernels; each exporter holds its own last
    # value, so the two can disagree by that step.
    (r"node_cpu_(guest_)?seconds_total", between(absolute(0.1)), "between scrapes ± 0.1 s"),
    # Every other memory figure moves with what other processes do between the reads.
    (
        r"node_memory_.*",
        between(lambda v, ctx: 0.01 * ctx["MemTotal"]),
        "between scrapes ± 1 % of MemTotal",
    ),
    (r"node_load(1|5|15)", between(absolute(0.05)), "between scrapes ± 0.05"),
    (
        r"node_procs_(running|blocked)",
        between(absolute(CPUS + 4)),
        f"between scrapes ± {CPUS + 4} (CPUs + 4)",
    ),
    (r"node_filefd_allocated", between(lambda v, ctx: 256 + 0.05 * v), "between scrapes ± (256 + 5 %)"),
    (
        r"node_filesystem_(free|avail)_bytes",
        between(lambda v, ctx: 0.01 * ctx["size"]),
        "between scrapes ± 1 % of the filesystem's size",
    ),
    (
        r"node_filesystem_files_free",
        between(lambda v, ctx: 1000 + 0.01 * ctx["files"]),
        "between scrapes ± (1000 + 1 % of its inodes)",
    ),
    (r"node_disk_io_now", between(absolute(64)), "between scrapes ± 64 I/Os"),
    (r"node_time_seconds", between(absolute(0.5)), "between scrapes ± 0.5 s"),
    (
        r"node_processes_(pids|threads|state|threads_state)",
        between(lambda v, ctx: 16 + 0.1 * v),
        "between scrapes ± (16 + 10 %)",
    ),
]

# Families whose label sets legitimately change between reads (a process state appears or vanishes).
UNSTABLE_LABELSETS = re.compile(r"node_processes_(state|threads_state)")


def rule_for(family: str, typ: str) -> tuple[Rule, str]:
    for pattern, rule, text in TOLERANCES:
        if re.fullmatch(pattern, family):
            return rule, text
    if typ == "counter":
        return MONOTONIC, "between scrapes (monotonic)"
    return exact, "exact"


def context(family: str, labels: Key, ref: Exposition) -> Ctx:
    ctx = {"MemTotal": ref.series["node_memory_MemTotal_bytes"][frozenset()]}
    if family.startswith("node_filesystem_"):
        ctx["size"] = ref.series["node_filesystem_size_bytes"].get(labels, 0.0)
        ctx["files"] = ref.series["node_filesystem_files"].get(labels, 0.0)
    return ctx


# --- the peer -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = require_binary("prometheus-node-exporter")
    port = free_port()
    log_path = tmp_path_factory.mktemp("node_exporter") / "node_exporter.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--web.listen-address=127.0.0.1:{port}",
                # Upstream 1.5 defaults, which Vigil follows (Debian's build patches these).
                f"--collector.filesystem.mount-points-exclude={DEFAULT_MOUNT_POINTS_EXCLUDE}",
                f"--collector.filesystem.fs-types-exclude={DEFAULT_FS_TYPES_EXCLUDE}",
                f"--collector.diskstats.device-exclude={DEFAULT_DEVICE_EXCLUDE}",
                "--collector.netdev.device-exclude=",
                "--collector.processes",
                f"--collector.textfile.directory={log_path.parent}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/", proc=proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def scrape(url: str) -> Exposition:
    r = httpx.get(url + "/metrics", timeout=30)
    r.raise_for_status()
    return parse(r.content)


def vigil_exposition() -> Exposition:
    registry = CollectorRegistry()
    for c in default_collectors() + optional_collectors():
        registry.register(c)
    return parse(generate_latest(registry))


def test_vigil_matches_node_exporter(node_exporter: str) -> None:
    before = scrape(node_exporter)
    vigil = vigil_exposition()
    after = scrape(node_exporter)

    problems: list[str] = []
    compared: list[str] = []
    vigil_families = sorted(f for f, series in vigil.series.items() if f.startswith("node_") and series)
    assert vigil_families, "Vigil emitted no node_ family"
    for family in vigil_families:
        if family not in before.types or family not in before.series:
            problems.append(f"{family}: node_exporter has no such family")
            continue
        typ = vigil.types.get(family)
        if typ != before.types[family]:
            problems.append(f"{family}: type {typ}, node_exporter says {before.types[family]}")
        ours, theirs = vigil.series[family], before.series[family]
        names = {frozenset(n for n, _ in k) for k in ours}
        their_names = {frozenset(n for n, _ in k) for k in theirs}
        if names != their_names:
            problems.append(
                f"{family}: label names {sorted(map(sorted, names))} != {sorted(map(sorted, their_names))}"
            )
            continue
        if not UNSTABLE_LABELSETS.fullmatch(family) and set(ours) not in (
            set(theirs),
            set(after.series[family]),
        ):
            only_ours = [dict(k) for k in set(ours) - set(theirs)]
            only_theirs = [dict(k) for k in set(theirs) - set(ours)]
            problems.append(
                f"{family}: series only in Vigil {only_ours}, only in node_exporter {only_theirs}"
            )
            continue
        rule, tolerance = rule_for(family, before.types[family])
        for labels, value in ours.items():
            if labels not in theirs or labels not in after.series.get(family, {}):
                continue  # an unstable family's series that was not there at both scrapes
            b, a = theirs[labels], after.series[family][labels]
            if not rule(value, b, a, context(family, labels, before)):
                problems.append(
                    f"{family}{dict(labels)}: Vigil {value!r}, node_exporter {b!r} then {a!r} ({tolerance})"
                )
        compared.append(f"{family} [{tolerance}]")

    missing = sorted(f for f in before.types if f.startswith("node_") and f not in vigil.series)
    print(f"\ncompared {len(compared)} families with node_exporter:\n  " + "\n  ".join(compared))
    print(f"node_exporter families Vigil does not emit ({len(missing)}):\n  " + "\n  ".join(missing))
    assert not problems, "\n".join(problems)


def test_node_exporter_runs_with_pinned_defaults(node_exporter: str) -> None:
    """Guard for the comparison above: the flags took effect (lo is kept, /run is not dropped)."""
    families = scrape(node_exporter).series
    assert {"device": "lo"} in [dict(k) for k in families["node_network_receive_bytes_total"]]
    if Path("/run").is_mount():
        assert "/run" in {dict(k)["mountpoint"] for k in families["node_filesystem_size_bytes"]}
