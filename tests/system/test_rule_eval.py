"""The rule evaluation benchmark (bench/rule_eval.py): its rule file, its parsing of the servers'
rule-group metrics, its equal-work check, and a tiny end-to-end run against Debian's Prometheus."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from bench.rule_eval import (
    Work,
    main,
    parse_group_metrics,
    rule_file_text,
    rule_pack,
    slots_of,
    with_up,
)
from bench.workload import generate

from tests.conftest import require_binary
from vigil.rules.rulefmt import parse_rule_text

LINE = re.compile(
    r"^rule_eval vigil\(in-process\): (?P<rules>\d+) rules/(?P<groups>\d+) groups over (?P<series>[\d,]+) "
    r"series: median group [\d.]+ ms, total \d+ ms \(cpu \d+ ms\); prometheus: median group [\d.]+ ms, "
    r"total \d+ ms \(cpu \d+ ms\); ratio [\d.]+x \(cpu [\d.]+x\); "
    r"same work: (?P<recorded>[\d,]+) recorded series, (?P<firing>\d+) firing/"
    r"(?P<pending>\d+) pending alerts, 0 failed rules$"
)


def test_rule_pack_is_deterministic_and_shaped_like_a_rule_pack() -> None:
    pack = rule_pack(3, 20)
    assert pack == rule_pack(3, 20)
    assert [name for name, _ in pack] == ["bench-00", "bench-01", "bench-02"]
    rules = [r for _, rs in pack for r in rs]
    assert len(rules) == 60 and len({r.name for r in rules}) == 60
    assert sum(r.kind == "record" for r in rules) == 36
    assert all(rs[0].kind == "record" for _, rs in pack)  # its output dates the group's evaluations
    exprs = " ".join(r.expr for r in rules)
    for shape in (
        "rate(node_cpu_seconds_total",
        "avg_over_time(",
        "histogram_quantile(",
        "predict_linear(",
        "absent(",
        "up == 0",
        "node_filesystem_avail_bytes / node_filesystem_size_bytes <",
    ):
        assert shape in exprs, shape
    assert {r.for_s for r in rules if r.kind == "alert"} == {0, 600, 1800, 3600}


def test_rule_file_validates_in_vigil() -> None:
    spec, errs = parse_rule_text(rule_file_text(rule_pack(10, 100)), "rules.yml")
    assert errs == [] and spec is not None
    assert [len(g.rules) for g in spec.groups] == [100] * 10


@pytest.mark.peer
def test_rule_file_passes_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    path = tmp_path / "rules.yml"
    path.write_text(rule_file_text(rule_pack(4, 25)))
    out = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 100 rules found" in out.stdout


def test_up_series_added_per_host_with_one_host_down() -> None:
    wl = with_up(
        generate(hosts=4, scrapes=30, end_ms=1_700_000_000_000, histograms=True), down_host=3, down_scrapes=5
    )
    ups = [i for i, lb in enumerate(wl.labels) if dict(lb)["__name__"] == "up"]
    assert len(ups) == 4 and wl.n_series == 4 * 115
    assert [int(wl.host_of[i]) for i in ups] == [0, 1, 2, 3]
    assert np.all(wl.values[ups[:3]] == 1.0)
    assert wl.values[ups[3]].tolist() == [1.0] * 25 + [0.0] * 5


def test_group_metrics_of_both_servers_are_parsed() -> None:
    prom = """# TYPE prometheus_rule_group_iterations_total counter
prometheus_rule_group_iterations_total{rule_group="/r.yml;a"} 3
# TYPE prometheus_rule_group_last_duration_seconds gauge
prometheus_rule_group_last_duration_seconds{rule_group="/r.yml;a"} 0.0125
# TYPE prometheus_rule_group_last_evaluation_timestamp_seconds gauge
prometheus_rule_group_last_evaluation_timestamp_seconds{rule_group="/r.yml;a"} 1.7e+09
# TYPE prometheus_rule_group_iterations_missed_total counter
prometheus_rule_group_iterations_missed_total{rule_group="/r.yml;a"} 1
# TYPE prometheus_rule_evaluations_total counter
prometheus_rule_evaluations_total{rule_group="/r.yml;a"} 300
"""
    vigil = """# TYPE vigil_rule_group_last_duration_seconds gauge
vigil_rule_group_last_duration_seconds{rule_group="/r.yml;b"} 0.5
# TYPE vigil_rule_group_last_evaluation_timestamp_seconds gauge
vigil_rule_group_last_evaluation_timestamp_seconds{rule_group="/r.yml;b"} 42.0
"""
    got = parse_group_metrics(prom + vigil)
    a, b = got["/r.yml;a"], got["/r.yml;b"]
    assert (a.iterations, a.last_duration_s, a.last_eval_s, a.missed) == (3, 0.0125, 1.7e9, 1)
    assert (b.iterations, b.last_duration_s, b.last_eval_s) == (0, 0.5, 42.0)


def test_slots_follow_the_starts_across_missed_iterations() -> None:
    # started 0.3 s, 0.1 s and 2.4 s after their slots; the third came after a missed slot
    assert slots_of(1_045_000, [1000.3, 1015.1, 1047.4], 15_000) == [1_000_000, 1_015_000, 1_045_000]
    assert slots_of(60_000, [70.0], 15_000) == [60_000]


def test_unequal_work_is_reported() -> None:
    a = Work({"bench:x": 3}, {("A", "firing"): 2})
    assert a.differences(Work({"bench:x": 3}, {("A", "firing"): 2})) == []
    got = a.differences(Work({"bench:x": 2, "bench:y": 1}, {("A", "pending"): 2}))
    assert got == [
        "recorded bench:x: 3 vs 2",
        "recorded bench:y: 0 vs 1",
        "alerts ('A', 'firing'): 2 vs 0",
        "alerts ('A', 'pending'): 0 vs 2",
    ]


@pytest.mark.slow
@pytest.mark.peer
def test_tiny_run_against_prometheus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_binary("prometheus")
    code = main(
        [
            "--hosts",
            "3",
            "--scrapes",
            "40",
            "--groups",
            "2",
            "--rules",
            "10",
            "--interval",
            "1",
            "--evals",
            "2",
            "--tmp-dir",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0, out
    assert len(out) == 1, out
    m = LINE.match(out[0])
    assert m is not None, out[0]
    assert (m["rules"], m["groups"], m["series"]) == ("20", "2", "345")
    # 2 groups x 6 recording rules over 3 hosts: none may be empty on both sides alike
    assert int(m["recorded"].replace(",", "")) > 12
    assert int(m["firing"]) > 0 and int(m["pending"]) > 0
    assert list(tmp_path.iterdir()) == []  # both servers stopped and their directories removed
