"""Differential test: Debian's `promtool test rules` (Prometheus 2.42) against
`vigil.template.prometheus.expand` on alert annotations using Prometheus' template functions.

One alerting rule per template text, each with a single annotation `a`; vigil's rendering of each
is written into the test file as `exp_annotations`, so promtool passes exactly when both agree.
Every rule promtool reports as FAILED is a disagreement (its "got" is shown). The input series,
external labels and URL, evaluation time and the `query` results are the same on both sides (the
injected query returns the series the test file feeds promtool, as its PromQL engine sees them at
the evaluation time).

Where 2.42 differs from 3.x by design (KNOWN_2_42), vigil follows 3.x: those rules must *fail* in
promtool 2.42 and their 3.x rendering is pinned in test_prometheus.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from vigil.template.prometheus import expand

PROMTOOL = shutil.which("promtool")
pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(PROMTOOL is None, reason="Debian's promtool (package prometheus) is not installed"),
]

SERIES = {
    'up{job="node", instance="host.example.com:9100"}': 1234567.0,
    'node_load1{job="node", instance="b.example.com:9100"}': 0.25,
    'node_load1{job="node", instance="a.example.com:9100"}': 2.5,
    'disk_bytes{job="node", instance="10.0.0.1:9100", device="sda"}': 2048.0,
}
EXTERNAL_LABELS = {"dc": "eu", "env": "prod"}
EXTERNAL_URL = "http://prom.example.com/prefix"
EVAL_MS = 300_000

CASES = [
    "{{ $value }}",
    "{{ $labels.instance }} {{ $labels.job }} {{ $labels.__name__ }} [{{ $labels.missing }}]",
    "{{ .Labels.instance }} {{ .Value }} {{ .ExternalURL }}",
    "{{ $externalLabels.dc }} {{ $externalLabels.env }} {{ $externalURL }}",
    "{{ humanize $value }} {{ humanize 0.000123 }} {{ humanize 0 }} {{ humanize -1500 }} {{ humanize 1e30 }}",
    "{{ humanize1024 2048 }} {{ humanize1024 1 }} {{ humanize1024 5e9 }} {{ humanize1024 1023.9 }}",
    "{{ humanizeDuration 863640 }} {{ humanizeDuration 0.25 }} "
    "{{ humanizeDuration 59.5 }} {{ humanizeDuration 0 }}",
    "{{ humanizeDuration 3600 }} {{ humanizeDuration -90 }} {{ humanizeDuration 0.000002 }}",
    "{{ 0.2567 | humanizePercentage }} {{ humanizePercentage 1 }} {{ humanizePercentage 0.000001 }}",
    '{{ humanizeTimestamp 1.5 }} {{ humanizeTimestamp 1700000000.123 }} {{ humanize "12345" }}',
    '{{ printf "%.2f" $value }} {{ printf "%d" 3 }} '
    '{{ printf "%s=%q" "k" "v" }} {{ printf "%5.1f%%" 12.345 }}',
    '{{ printf "%v %e %g" $value $value 0.000001 }} {{ printf "%d" $value }}',
    '{{ toUpper "abc" }} {{ toLower "ABC" }} {{ title "hello world" }}',
    '{{ reReplaceAll "(.*):(\\\\d+)" "$1 port $2" $labels.instance }} {{ reReplaceAll "o+" "0" "foo boo" }}',
    '{{ match "^host" $labels.instance }} {{ match "^b" $labels.instance }} '
    '{{ if match "example" $labels.instance }}y{{ end }}',
    '{{ with query "node_load1" }}{{ . | len }}{{ end }}',
    '{{ range query "node_load1" | sortByLabel "instance" }}{{ .Labels.instance }}={{ .Value }};{{ end }}',
    '{{ with query "node_load1{instance=\\"b.example.com:9100\\"}" }}'
    "{{ . | first | value | humanize }}{{ end }}",
    '{{ query "node_load1" | sortByLabel "instance" | first | label "instance" }}',
    '{{ with query "disk_bytes" }}{{ with first . }}{{ .Labels.device }} '
    "{{ value . | humanize1024 }}{{ end }}{{ end }}",
    '{{ range query "nope" }}x{{ else }}empty{{ end }}',
    '{{ $labels.instance | stripPort }} {{ stripPort "[::1]:80" }} '
    '{{ stripPort "noport" }} {{ stripPort "a:b:c" }}',
    '{{ stripDomain $labels.instance }} {{ stripDomain "10.0.0.1:9100" }} '
    '{{ stripDomain "a.b.c" }} {{ stripDomain "[::1]:9" }}',
    '{{ graphLink "rate(up[5m])" }} {{ tableLink "up{job=\\"x\\"}" }}',
    "{{ pathPrefix }}",  # `now` is newer than 2.42: test_prometheus.py
    "{{ externalURL }}",
    '{{ parseDuration "1h5m" }} {{ parseDuration "90s" }} {{ parseDuration "1d" }}',
    "{{ toTime 1700000000 }} {{ (toTime 1700000000).Unix }}",
    '{{ $x := args 1 "two" }}{{ $x.arg0 }} {{ $x.arg1 }} [{{ $x.arg2 }}]',
    '{{ safeHtml "<b>" }} {{ strvalue (args) }}',
    '{{ if gt $value 1000.0 }}big{{ else }}small{{ end }} {{ if eq $labels.job "node" }}node{{ end }}',
    "{{ range $k, $v := $labels }}{{ $k }}={{ $v }},{{ end }}",
    '{{ define "x" }}[{{ . }}]{{ end }}{{ template "x" $labels.job }} '
    '{{ block "y" $value }}<{{ . }}>{{ end }}',
    "line1\n  {{- $labels.job -}}  \nline2",
    "{{ $value | humanize }}{{/* a comment */}}!",
    "{{ .Nope }}",
    '{{ humanize "abc" }}',
    '{{ query "node_load1" | first | label }}',
    '{{ with query "nope" }}{{ first . }}{{ end }}',
    '{{ title "foo.bar wORLD" }}',
]

# Texts where promtool 2.42 renders differently from Prometheus 3.x, which vigil follows.
KNOWN_2_42 = {
    '{{ title "foo.bar wORLD" }}': "2.42: strings.Title (Foo.Bar); 3.x: cases.Title, NoLower (Foo.bar)",
    "{{ .Nope }}": "the data's type in the message: 2.42 `Value float64`, 3.x `Value interface {}`",
    # promtool (not the server) runs templates without an external URL: pathPrefix dereferences nil.
    "{{ pathPrefix }}": "promtool 2.42 passes no external URL to the expander",
    "{{ externalURL }}": "promtool 2.42 passes no external URL to the expander",
}


class _Sample:
    def __init__(self, labels: dict[str, str], value: float) -> None:
        self.labels = labels
        self.value = value


def _parse_series(s: str) -> dict[str, str]:
    name, _, rest = s.partition("{")
    labels = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    return {"__name__": name, **labels}


def _query(expr: str, ts_ms: int) -> list[_Sample]:
    """The instant query promtool's engine answers at EVAL_MS for the expressions CASES use."""
    assert ts_ms == EVAL_MS
    name, _, sel = expr.partition("{")
    want = dict(re.findall(r'(\w+)="([^"]*)"', sel))
    out = []
    for series, value in SERIES.items():
        labels = _parse_series(series)
        if labels["__name__"] == name and all(labels.get(k) == v for k, v in want.items()):
            out.append(_Sample(labels, value))
    return out


def _render(i: int, text: str) -> str:
    series = next(iter(SERIES))
    try:
        return expand(
            text,
            name=f"__alert_T{i}",
            labels=_parse_series(series),
            value=SERIES[series],
            external_labels=EXTERNAL_LABELS,
            external_url=EXTERNAL_URL,
            timestamp_ms=EVAL_MS,
            query=_query,
        )
    except Exception as e:  # as the rule manager shows a failed expansion
        return f"<error expanding template: {e}>"


def _write(tmp: Path, rendered: list[str]) -> Path:
    first = next(iter(SERIES))
    rule_list = [
        {"alert": f"T{i}", "expr": 'up{job="node"}', "annotations": {"a": t}} for i, t in enumerate(CASES)
    ]
    rules = {"groups": [{"name": "g", "rules": rule_list}]}
    exp_labels = {k: v for k, v in _parse_series(first).items() if k != "__name__"}
    test: dict[str, Any] = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "external_labels": EXTERNAL_LABELS,
                "external_url": EXTERNAL_URL,
                "input_series": [{"series": s, "values": f"{v!r}+0x10"} for s, v in SERIES.items()],
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": f"T{i}",
                        "exp_alerts": [{"exp_labels": exp_labels, "exp_annotations": {"a": r}}],
                    }
                    for i, r in enumerate(rendered)
                ],
            }
        ],
    }
    (tmp / "rules.yml").write_text(yaml.safe_dump(rules, allow_unicode=True))
    (tmp / "test.yml").write_text(yaml.safe_dump(test, allow_unicode=True))
    return tmp / "test.yml"


def test_promtool_agrees(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    rendered = [_render(i, t) for i, t in enumerate(CASES)]
    path = _write(tmp_path, rendered)
    p = subprocess.run([PROMTOOL, "test", "rules", path.name], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, check=False)  # fmt: skip
    out = p.stdout + p.stderr
    failed = {int(m) for m in re.findall(r"alertname: T(\d+), time:", out)}
    assert "yaml" not in out.lower() or failed, out  # the files themselves must load
    known = {i for i, t in enumerate(CASES) if t in KNOWN_2_42}
    unexpected = sorted(failed - known)
    detail = "\n".join(f"T{i} {CASES[i]!r}\n   vigil: {rendered[i]!r}" for i in unexpected)
    assert not unexpected, f"{len(unexpected)} of {len(CASES)} differ from promtool:\n{detail}\n{out}"
    assert failed >= known, f"2.42 now agrees on {sorted(known - failed)}: the 3.x difference is gone?"
