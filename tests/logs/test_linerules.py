"""Log rules: the YAML format and its errors, counters/gauges/histograms, bounds, events, checkpoints."""

# ruff: noqa: E501  (tables of YAML snippets and the exact messages they must produce read best unwrapped)

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import run_python
from vigil.config.types import ConfigError
from vigil.logs.linerules import LineRule, LineRuleProcessor, load_line_rules, parse_line_rules
from vigil.logs.processor import LogLine
from vigil.model.event import Event

RULES_YAML = r"""
rules:
  - name: app_login_failures_total
    help: Failed logins by the app.
    sources: [app]
    match: 'login failed for user (?P<user>\S+) from (?P<ip>\S+)'
    labels: {reason: bad_password}
    label_groups: [ip]
    event: true
  - name: app_queue_depth
    type: gauge
    help: Jobs waiting, as last logged.
    match: 'queue=(?P<queue>\w+) depth=(?P<depth>\d+)'
    label_groups: [queue]
    value: depth
  - name: app_request_duration_seconds
    type: histogram
    help: Request durations logged by the app.
    match: 'handled (?P<method>GET|POST) in (?P<ms>[0-9.]+)ms'
    label_groups: [method]
    value: ms
    scale: 0.001
    buckets: [0.01, 0.1, 1]
  - name: app_sent_bytes_total
    match: 'sent (?P<n>\S+) bytes'
    value: n
  - name: app_errors_total
    id: errors_generic
    match: '\bERROR\b'
    labels: {kind: any}
  - name: app_errors_total
    id: errors_timeout
    match: 'ERROR .*timed out'
    labels: {kind: timeout}
"""

APP_LINES = [
    "2023-11-14T10:00:00Z web1 app[12]: login failed for user bob from 203.0.113.7",
    "2023-11-14T10:00:01Z web1 app[12]: login failed for user eve from 203.0.113.7",
    "2023-11-14T10:00:02Z web1 app[12]: login failed for user eve from 198.51.100.1",
    "2023-11-14T10:00:03Z web1 app[12]: queue=mail depth=17",
    "2023-11-14T10:00:04Z web1 app[12]: queue=mail depth=3",
    "2023-11-14T10:00:05Z web1 app[12]: queue=jobs depth=120",
    "2023-11-14T10:00:06Z web1 app[12]: handled GET in 4.5ms",
    "2023-11-14T10:00:07Z web1 app[12]: handled GET in 250ms",
    "2023-11-14T10:00:08Z web1 app[12]: handled POST in 2500ms",
    "2023-11-14T10:00:09Z web1 app[12]: sent 1200 bytes",
    "2023-11-14T10:00:10Z web1 app[12]: sent lots-of bytes",
    "2023-11-14T10:00:11Z web1 app[12]: ERROR backend timed out",
    "2023-11-14T10:00:12Z web1 app[12]: ERROR disk full",
    "2023-11-14T10:00:13Z web1 app[12]: all good",
]


def lines(source: str, texts: list[str]) -> list[LogLine]:
    return [
        LogLine(source, t, 1_700_000_000_000 + i, f"/var/log/{source}.log@1:2:{i}")
        for i, t in enumerate(texts)
    ]


def run(p: LineRuleProcessor, items: list[LogLine]) -> list[Event]:
    return [e for line in items for e in p.process(line)]


def samples(p: LineRuleProcessor) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value for m in p.collect() for s in m.samples}


def val(p: LineRuleProcessor, name: str, **labels: str) -> float | None:
    return samples(p).get((name, frozenset(labels.items())))


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yml"
    path.write_text(RULES_YAML)
    return path


def test_each_metric_type(rules_file: Path) -> None:
    p = LineRuleProcessor(load_line_rules(rules_file))
    events = run(p, lines("app", APP_LINES))

    c = "app_login_failures_total"
    assert val(p, c, reason="bad_password", ip="203.0.113.7") == 2
    assert val(p, c, reason="bad_password", ip="198.51.100.1") == 1
    assert val(p, "app_queue_depth", queue="mail") == 3  # a gauge keeps the last value
    assert val(p, "app_queue_depth", queue="jobs") == 120
    h = "app_request_duration_seconds"
    assert val(p, h + "_bucket", method="GET", le="0.01") == 1
    assert val(p, h + "_bucket", method="GET", le="1.0") == 2
    assert val(p, h + "_count", method="GET") == 2
    assert val(p, h + "_sum", method="GET") == pytest.approx(0.2545)
    assert val(p, h + "_bucket", method="POST", le="1.0") == 0
    assert val(p, h + "_bucket", method="POST", le="+Inf") == 1
    assert val(p, "app_sent_bytes_total") == 1200  # counter: adds the value group
    # Two rules feed one family, told apart by their static labels.
    assert val(p, "app_errors_total", kind="any") == 2
    assert val(p, "app_errors_total", kind="timeout") == 1

    assert val(p, "vigil_log_rule_matches_total", rule="app_login_failures_total") == 3
    assert val(p, "vigil_log_rule_matches_total", rule="errors_timeout") == 1
    assert val(p, "vigil_log_rule_matches_total", rule="app_sent_bytes_total") == 2
    assert val(p, "vigil_log_rule_value_errors_total", rule="app_sent_bytes_total") == 1  # "lots-of"
    assert val(p, "vigil_log_rule_series_overflow_total", rule="app_login_failures_total") == 0

    # Only the rule with `event: true` emits, one event per matching line, with every named group.
    assert [e.kind for e in events] == ["log_match"] * 3
    assert events[0].time_ms == 1_700_000_000_000
    assert events[0].fields == {
        "source": "app",
        "rule": "app_login_failures_total",
        "line": APP_LINES[0],
        "user": "bob",
        "ip": "203.0.113.7",
    }
    assert (
        Event.from_json(events[0].with_identity({"instance": "web1"}, "x").to_json()).fields
        == events[0].fields
    )


def test_exposition_help_and_types(rules_file: Path) -> None:
    p = LineRuleProcessor(load_line_rules(rules_file))
    run(p, lines("app", APP_LINES))
    fams = {m.name: m for m in p.collect()}
    assert fams["app_login_failures"].type == "counter"
    assert fams["app_login_failures"].documentation == "Failed logins by the app."
    assert fams["app_queue_depth"].type == "gauge"
    assert fams["app_request_duration_seconds"].type == "histogram"
    assert fams["app_errors"].documentation == "Log rule errors_generic."  # default HELP
    assert {"vigil_log_rule_matches", "vigil_log_rule_series_overflow", "vigil_log_rule_value_errors"} <= set(
        fams
    )


def test_sources_restrict_rules(rules_file: Path) -> None:
    p = LineRuleProcessor(load_line_rules(rules_file))
    assert run(p, lines("other", APP_LINES[:3])) == []  # login rule is for source "app" only
    assert val(p, "vigil_log_rule_matches_total", rule="app_login_failures_total") == 0
    run(p, lines("other", ["ERROR x"]))
    assert val(p, "app_errors_total", kind="any") == 1  # rules without `sources` apply everywhere


def test_100k_distinct_label_values_stay_bounded() -> None:
    rules = parse_line_rules(
        [
            {
                "name": "ssh_failures_total",
                "match": r"Failed password for (?P<user>\S+) from (?P<ip>\S+) port",
                "label_groups": ["ip"],
                "max_series": 1000,
            }
        ]
    )
    p = LineRuleProcessor(rules)
    texts = [
        f"sshd[1]: Failed password for root from 10.{i >> 16}.{i >> 8 & 255}.{i & 255} port 22"
        for i in range(100_000)
    ]
    run(p, lines("auth", texts))
    series = {labels: v for (name, labels), v in samples(p).items() if name == "ssh_failures_total"}
    assert len(series) == 1001  # the cap, plus "other"
    assert series[frozenset({("ip", "other")})] == 99_000
    assert sum(series.values()) == 100_000
    assert val(p, "vigil_log_rule_series_overflow_total", rule="ssh_failures_total") == 99_000


def test_processor_wide_series_cap() -> None:
    rules = parse_line_rules(
        [
            {"name": "a_total", "match": r"a=(?P<v>\d+)", "label_groups": ["v"]},
            {"name": "b_total", "match": r"b=(?P<v>\d+)", "label_groups": ["v"]},
        ]
    )
    p = LineRuleProcessor(rules, max_total_series=10)
    run(p, lines("x", [f"a={i} b={i}" for i in range(50)]))
    got = samples(p)
    a = [k for k in got if k[0] == "a_total"]
    b = [k for k in got if k[0] == "b_total"]
    assert len(a) + len(b) <= 12  # the cap, plus one "other" per rule
    assert sum(v for k, v in got.items() if k[0] in ("a_total", "b_total")) == 100


def test_label_values_are_cut() -> None:
    p = LineRuleProcessor(
        parse_line_rules([{"name": "x_total", "match": r"user=(?P<u>\S+)", "label_groups": ["u"]}])
    )
    run(p, lines("x", ["user=" + "a" * 5000]))
    [(labels, _)] = [(k[1], v) for k, v in samples(p).items() if k[0] == "x_total"]
    assert len(dict(labels)["u"]) == 256


def match_pathological() -> float | None:
    """Child process side of `test_pathological_pattern_is_linear_with_re2`."""
    p = LineRuleProcessor(
        parse_line_rules(
            [{"name": "x_total", "match": r"(a+)+$"}, {"name": "y_total", "match": r"(?P<g>(a|aa)+)c"}]
        )
    )
    run(p, lines("x", ["a" * 20_000 + "b"] * 10))
    return val(p, "x_total")


def test_pathological_pattern_is_linear_with_re2() -> None:
    # With Python's backtracking `re`, (a+)+$ against "aaaa...b" takes exponential time: years on
    # 20,000 characters, so a generous deadline proves RE2 ran, without timing anything. In a child
    # process, because a runaway `re` match holds the GIL.
    out = run_python("from tests.logs.test_linerules import match_pathological as f; print(f())")
    assert out.split() == ["0.0"]


def test_non_utf8_and_odd_text() -> None:
    p = LineRuleProcessor(
        parse_line_rules([{"name": "x_total", "match": r"user=(?P<u>\S+)", "label_groups": ["u"]}])
    )
    run(p, lines("x", ["user=caf\udce9", "user=\ufffd\ufffd", "user=café"]))
    got = {dict(k[1])["u"] for k in samples(p) if k[0] == "x_total"}
    assert got == {"caf?", "\ufffd\ufffd", "café"}


def test_snapshot_restore_round_trip(rules_file: Path) -> None:
    rules = load_line_rules(rules_file)
    p = LineRuleProcessor(rules)
    run(p, lines("app", APP_LINES))
    state = json.loads(json.dumps(p.snapshot()))
    q = LineRuleProcessor(rules)
    q.restore(state)
    assert samples(q) == samples(p)
    assert [m.name for m in q.collect()] == [m.name for m in p.collect()]
    run(p, lines("app", APP_LINES))
    run(q, lines("app", APP_LINES))
    assert samples(q) == samples(p)


def test_restore_after_rule_changes(rules_file: Path) -> None:
    rules = load_line_rules(rules_file)
    p = LineRuleProcessor(rules)
    run(p, lines("app", APP_LINES))
    state = p.snapshot()
    changed = parse_line_rules(
        [
            # Same id and shape, fixed regex: the counts carry on.
            {"name": "app_sent_bytes_total", "match": r"sent (?P<n>\d+) bytes", "value": "n"},
            # Same id, other labels: starts from zero.
            {
                "name": "app_login_failures_total",
                "match": r"login failed for user (?P<user>\S+)",
                "label_groups": ["user"],
            },
            # Smaller limit: the surplus folds into "other".
            {
                "name": "app_queue_depth",
                "type": "gauge",
                "match": r"queue=(?P<queue>\w+) depth=(?P<depth>\d+)",
                "label_groups": ["queue"],
                "value": "depth",
                "max_series": 1,
            },
        ]
    )
    q = LineRuleProcessor(changed)
    q.restore(state)
    assert val(q, "app_sent_bytes_total") == 1200
    assert not [k for k in samples(q) if k[0] == "app_login_failures_total"]
    assert val(q, "vigil_log_rule_matches_total", rule="app_login_failures_total") == 0
    assert len([k for k in samples(q) if k[0] == "app_queue_depth"]) == 1  # gauges beyond the cap are dropped

    before = samples(p)
    bad_value = {"signature": LineRuleProcessor.signature(rules[1]), "series": [[["mail"], "x"]]}
    for bad in ({}, {"version": 1, "rules": []}, {"version": 1, "rules": {"app_queue_depth": bad_value}}):
        with pytest.raises(ValueError, match="log rules snapshot"):
            p.restore(bad)
    assert samples(p) == before


# --- configuration errors -------------------------------------------------------------------------


def error_for(tmp_path: Path, text: str) -> str:
    path = tmp_path / "rules.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_line_rules(path)
    return str(info.value).replace(str(path), "rules.yml")


OK = "  - name: ok_total\n    match: ok\n"


@pytest.mark.parametrize(
    "rule, expected",
    [
        ("  - name: x_total\n    match: '(?P<a>x'\n", "rules[1].match: expected a regular expression in RE2 syntax"),
        ("  - name: x_total\n    match: '(?<=a)b'\n", "rules[1].match: expected a regular expression in RE2 syntax"),
        ("  - name: x_total\n", "rules[1].match: expected a regular expression (RE2 syntax), got null"),
        ("  - name: x\n    match: a\n", 'rules[1].name: expected a counter name ending in _total, got "x"'),
        ("  - name: 9lives_total\n    match: a\n", "rules[1].name: expected a metric name"),
        ("  - name: vigil_x_total\n    match: a\n", "rules[1].name: expected a name without the vigil_ prefix"),
        ("  - name: x_total\n    type: gauge\n    match: (?P<v>1)\n    value: v\n", "rules[1].name: expected a gauge name not ending in _total"),
        ("  - name: x_count\n    type: histogram\n    match: (?P<v>1)\n    value: v\n", "rules[1].name: expected a histogram name not ending"),
        ("  - name: x\n    type: summary\n    match: a\n", 'rules[1].type: expected one of counter, gauge, histogram, got "summary"'),
        ("  - name: x\n    type: gauge\n    match: a\n", "rules[1].value: expected the name of a group in match holding the gauge's number"),
        ("  - name: x_total\n    match: a\n    value: n\n", 'rules[1].value: expected the name of a group in match holding a number, got "n"'),
        ("  - name: x_total\n    match: (?P<ip>a)\n    label_groups: [addr]\n", 'rules[1].label_groups: expected names of groups in match like (?P<addr>...), got "addr"'),
        ("  - name: x_total\n    match: (?P<instance>a)\n    label_groups: [instance]\n", 'rules[1].label_groups: label name "instance" is reserved'),
        ("  - name: x_total\n    match: a\n    labels: {bad-name: 1}\n", "rules[1].labels.bad-name: expected a label name"),
        ("  - name: x_total\n    match: a\n    labels: {k: [1]}\n", "rules[1].labels.k: expected a label value (text), got a list"),
        ("  - name: x_total\n    match: a\n    mach: b\n", 'rules[1].mach: unknown key (expected one of: type, name, id, help'),
        ("  - name: x_total\n    match: a\n    max_series: 0\n", "rules[1].max_series: expected an integer from 1 to 1000000, got 0"),
        ("  - name: x_total\n    match: a\n    event: yes please\n", 'rules[1].event: expected true or false, got "yes please"'),
        ("  - name: x_total\n    match: (?P<line>a)\n    event: true\n", 'rules[1].match: group name "line" is reserved for event fields'),
        ("  - name: x_total\n    match: a\n    sources: [1]\n", "rules[1].sources: expected a list of log source names, got a list"),
        ("  - name: x_total\n    match: a\n    buckets: [1]\n", "rules[1].buckets: only histograms have buckets"),
        ("  - name: x_seconds\n    type: histogram\n    match: (?P<v>1)\n    value: v\n    buckets: [1, 0.5]\n", "rules[1].buckets: expected a list of increasing finite numbers"),
        ("  - name: x_total\n    match: a\n    scale: 0\n", "rules[1].scale: expected a non-zero number, got 0"),
        ("  - name: ok_total\n    match: b\n", 'rules[1].id: duplicate rule id "ok_total" (also rules[0])'),
        ("  - name: ok_total\n    id: two\n    match: (?P<k>b)\n    label_groups: [k]\n", "rules[1].labels: expected the label names [] of the other rules"),
        ("  - {name: ok_seconds, id: two, type: histogram, match: '(?P<v>1)', value: v}\n", None),
        ("  - just a string\n", 'rules[1]: expected a mapping with name and match, got "just a string"'),
    ],
)  # fmt: skip
def test_config_errors_name_file_and_key(tmp_path: Path, rule: str, expected: str | None) -> None:
    text = "rules:\n" + OK + rule
    if expected is None:
        assert len(load_line_rules(_write(tmp_path, text))) == 2
        return
    msg = error_for(tmp_path, text)
    assert msg.startswith(f"rules.yml: {expected}"), msg


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yml"
    path.write_text(text)
    return path


def test_file_level_errors(tmp_path: Path) -> None:
    assert error_for(tmp_path, "rules:\n  - name: a_total\n    match: [\n").startswith(
        "rules.yml:4:1: invalid YAML"
    )
    assert error_for(tmp_path, "rules: []\nrules: []\n").startswith(
        'rules.yml:2:1: invalid YAML: duplicate key "rules"'
    )
    assert error_for(tmp_path, "rulez: []\n") == "rules.yml: rulez: unknown key (expected one of: rules)"
    assert error_for(tmp_path, "rules: 3\n") == "rules.yml: rules: expected a list of rules, got 3"
    with pytest.raises(ConfigError, match="cannot read"):
        load_line_rules(tmp_path / "missing.yml")
    assert load_line_rules(_write(tmp_path, "")) == []
    assert load_line_rules(_write(tmp_path, "# no rules yet\nrules:\n")) == []


def test_rule_files_validate_like_vigil_yml(tmp_path: Path) -> None:
    # One schema language and one error translation for every file a user writes (vigil.config.validate).
    assert error_for(tmp_path, "rules:\n  - {name: x_total, match: a, 1: b}\n").startswith(
        "rules.yml: rules[0]: unknown key 1 (expected one of: type, name,"
    )
    assert (
        error_for(tmp_path, "rules:\n  - null\n")
        == "rules.yml: rules[0]: expected a mapping with name and match, got null"
    )
    assert error_for(tmp_path, "rules:\n  - {name: x_total, match: a, id: null}\n") == (
        "rules.yml: rules[0].id: expected a rule id (text, at most 128 characters), got null"
    )
    assert error_for(
        tmp_path, "rules:\n  - {name: x_total, match: '(?P<k>a)', labels: {k: 1}, label_groups: [k]}\n"
    ) == ('rules.yml: rules[0].label_groups: label "k" is also a static label')


def test_parse_rules_embedded_key_and_defaults() -> None:
    with pytest.raises(ConfigError) as info:
        parse_line_rules([{"name": "x_total", "match": "("}], "vigil.yml", key="logs.rules")
    assert str(info.value).startswith("vigil.yml: logs.rules[0].match: expected a regular expression")
    [rule] = parse_line_rules(
        [{"name": "x_total", "match": "a", "sources": "auth", "labels": {"n": 5, "b": True}}]
    )
    assert rule == LineRule(
        name="x_total",
        match="a",
        id="x_total",
        sources=frozenset({"auth"}),
        labels=(("b", "true"), ("n", "5")),
    )
    [hist] = parse_line_rules([{"name": "x_seconds", "type": "histogram", "match": "(?P<v>.)", "value": "v"}])
    assert hist.buckets[0] == 0.005 and len(hist.buckets) == 14


def test_single_rule_paths_agree() -> None:
    # One rule needing captures is matched directly; several go through the RE2 set first.
    spec: list[dict[str, Any]] = [{"name": "x_total", "match": r"n=(?P<n>\d+)", "label_groups": ["n"]}]
    texts = [f"n={i % 7} " + "pad " * (i % 5) for i in range(200)] + ["nothing"] * 50
    alone = LineRuleProcessor(parse_line_rules(spec))
    together = LineRuleProcessor(parse_line_rules([*spec, {"name": "never_total", "match": "zzz"}]))
    run(alone, lines("s", texts))
    run(together, lines("s", texts))
    pick = lambda p: {k: v for k, v in samples(p).items() if k[0] == "x_total"}  # noqa: E731
    assert pick(alone) == pick(together) and sum(pick(alone).values()) == 200


def test_sums_that_would_overflow_are_refused_and_the_snapshot_stays_restorable() -> None:
    rules = parse_line_rules(
        [
            {"name": "app_bytes_total", "match": r"sent (?P<n>[0-9.]+)", "value": "n"},
            {"name": "app_size", "type": "histogram", "match": r"size (?P<n>[0-9.]+)", "value": "n"},
        ]
    )
    p = LineRuleProcessor(rules)
    big = "9" * 308  # a finite float; twice that is not
    run(p, lines("app", [f"sent {big}", f"sent {big}", f"size {big}", f"size {big}", "sent 1"]))
    assert val(p, "vigil_log_rule_value_errors_total", rule="app_bytes_total") == 1
    assert val(p, "vigil_log_rule_value_errors_total", rule="app_size") == 1
    again = LineRuleProcessor(rules)
    again.restore(json.loads(json.dumps(p.snapshot())))
    assert samples(again) == samples(p)
