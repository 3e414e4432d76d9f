"""`vigil server` with `rule_files` as a real process, and its `/api/v1/rules` and `/api/v1/alerts`
next to Debian's Prometheus (2.42) evaluating the same rule file.

Compared: key sets and their order, value types and formats (RFC 3339 times, `value` as Go's 'e'
format), and every value that does not depend on time (names, queries as Prometheus prints them,
durations, labels, annotations, states, health, alert labels and values). Times themselves are
not compared. Where 2.42 and 3.x differ, 3.x is followed: 2.42 ignores `rule_name[]` and friends,
so those filters are not compared here (tests/web/test_rules_api.py covers them), and with `type=`
2.42 keeps groups left without rules, which 3.x drops.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import VigilProcess, free_port, require_binary, wait_http
from tests.waiting import wait_until

pytestmark = [pytest.mark.peer, pytest.mark.slow]

RULES = """groups:
- name: recording
  interval: 1s
  rules:
  - record: job:one:sum
    expr: sum by(job)(vector(1))
  - record: labelled
    expr: vector(3)
    labels: {x: y}
- name: alerting
  interval: 1s
  limit: 10
  rules:
  - alert: Always
    expr: vector(1234.5)>0
    labels: {severity: page}
    annotations: {summary: always firing}
  - alert: Slow
    expr: vector(2)
    for: 1h
    keep_firing_for: 5m
  - alert: Never
    expr: vector(1) < 0
"""

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")
TIME_KEYS = {"lastEvaluation", "activeAt"}
DURATION_KEYS = {"evaluationTime"}


def get(url: str, path: str) -> dict[str, Any]:
    r = httpx.get(url + path, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success"
    return body["data"]  # type: ignore[no-any-return]


def evaluated(url: str) -> bool:
    groups = get(url, "/api/v1/rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    return (
        len(rules) == 5
        and all(r["health"] == "ok" for r in rules)
        and all(r["state"] != "inactive" for r in rules if r["name"] in ("Always", "Slow"))
    )


def same_shape(ours: Any, theirs: Any, where: str) -> None:
    """Same keys in the same order, same types, same values except times."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        assert list(ours) == list(theirs), f"{where}: keys {list(ours)} != {list(theirs)}"
        for k in theirs:
            if k in TIME_KEYS:
                assert RFC3339.fullmatch(ours[k]) and RFC3339.fullmatch(theirs[k]), (where, k, ours[k])
            elif k in DURATION_KEYS:
                assert isinstance(ours[k], float | int) and isinstance(theirs[k], float | int)
            else:
                same_shape(ours[k], theirs[k], f"{where}.{k}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), f"{where}: {ours} != {theirs}"
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            same_shape(a, b, f"{where}[{i}]")
    else:
        assert ours == theirs and type(ours) is type(theirs), f"{where}: {ours!r} != {theirs!r}"


def test_rules_and_alerts_match_prometheus(tmp_path: Path) -> None:
    prom_bin = require_binary("prometheus")
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    (tmp_path / "prometheus.yml").write_text(f"rule_files: [{rules}]\n")
    (tmp_path / "vigil.yml").write_text(f"rule_files: [{rules}]\nrules:\n  builtin: {{enabled: false}}\n")
    port = free_port()
    prom = subprocess.Popen(
        [
            prom_bin,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'prom'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prom.log").open("wb"),
    )
    vigil = VigilProcess(tmp_path / "vigil", extra_args=["--config", str(tmp_path / "vigil.yml")])
    prom_url = f"http://127.0.0.1:{port}"
    try:
        vigil.start()
        wait_http(prom_url + "/-/ready", proc=prom)
        wait_until(lambda: evaluated(prom_url), what="Prometheus evaluated the rules")
        wait_until(lambda: evaluated(vigil.url), what="Vigil evaluated the rules")
        same_shape(get(vigil.url, "/api/v1/rules"), get(prom_url, "/api/v1/rules"), "rules")
        same_shape(get(vigil.url, "/api/v1/alerts"), get(prom_url, "/api/v1/alerts"), "alerts")
        for q in ("type=alert", "type=record"):
            theirs = get(prom_url, "/api/v1/rules?" + q)
            # 3.x leaves out a group whose rules are all filtered out; 2.42 lists it with `rules: []`
            theirs["groups"] = [g for g in theirs["groups"] if g["rules"]]
            same_shape(get(vigil.url, "/api/v1/rules?" + q), theirs, q)
        bad = [httpx.get(u + "/api/v1/rules?type=x", timeout=10) for u in (vigil.url, prom_url)]
        assert [r.status_code for r in bad] == [400, 400] and bad[0].json() == bad[1].json()
    finally:
        prom.terminate()
        prom.wait(timeout=30)
        code = vigil.stop()
    assert code == 0, vigil.log()


def names(url: str) -> list[str]:
    return [r["name"] for g in get(url, "/api/v1/rules")["groups"] if g["name"] == "g" for r in g["rules"]]


def test_server_with_rule_files_serves_rules_and_stops_cleanly(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yml").write_text(
        "groups:\n- name: g\n  interval: 1s\n  rules:\n  - record: vigil:two\n    expr: vector(2)\n"
        "  - alert: Two\n    expr: vigil:two > 1\n"
    )
    # relative to vigil.yml's directory, not the working directory
    (tmp_path / "vigil.yml").write_text("rule_files: [rules/*.yml]\n")
    vigil = VigilProcess(tmp_path / "data", extra_args=["--config", str(tmp_path / "vigil.yml")]).start()
    try:

        def recorded() -> bool:
            res = get(vigil.url, "/api/v1/query?query=vigil:two")["result"]
            return bool(res) and res[0]["value"][1] == "2"

        wait_until(recorded, what="the recording rule's series")
        wait_until(
            lambda: [a["labels"]["alertname"] for a in get(vigil.url, "/api/v1/alerts")["alerts"]] == ["Two"],
            what="the alert",
        )
        (g,) = [g for g in get(vigil.url, "/api/v1/rules")["groups"] if g["name"] == "g"]
        assert g["file"] == str(tmp_path / "rules" / "r.yml") and g["interval"] == 1
        # SIGHUP reloads, as Prometheus: a broken file keeps the old rules (and the process) ...
        (tmp_path / "rules" / "r.yml").write_text("groups:\n- name: g\n  rules:\n  - record: x\n")
        assert vigil.proc is not None
        vigil.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reloading rules failed" in vigil.log(), what="the reload error logged")
        assert names(vigil.url) == ["vigil:two", "Two"]
        # ... and a good one replaces them
        (tmp_path / "rules" / "r.yml").write_text(
            "groups:\n- name: g\n  interval: 1s\n  rules:\n  - record: vigil:three\n    expr: vector(3)\n"
        )
        vigil.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: names(vigil.url) == ["vigil:three"], what="the reloaded rules")
    finally:
        code = vigil.stop()
    log = vigil.log()
    assert code == 0, log
    assert "stopped rules" in log and "Traceback" not in log and "threads left" not in log


def test_event_rule_alerts_as_the_event_is_stored(tmp_path: Path) -> None:
    (tmp_path / "vigil.yml").write_text(
        "event_rules:\n- alert: NewListeningPort\n  kind: listener_new\n  by: [instance, port]\n"
        "rules: {builtin: {enabled: false}}\n"
    )
    vigil = VigilProcess(tmp_path / "data", extra_args=["--config", str(tmp_path / "vigil.yml")]).start()
    try:
        event = json.dumps(
            {
                "time_ms": int(time.time() * 1000),
                "kind": "listener_new",
                "labels": {"instance": "h1"},
                "fields": {"port": 4444},
            }
        )
        r = httpx.post(vigil.url + "/api/v1/events", content=event, timeout=10)
        assert r.status_code < 300, r.text
        # the alert exists once the write is acknowledged: no evaluation interval to wait for
        (a,) = get(vigil.url, "/api/v1/alerts")["alerts"]
        assert a["labels"] == {"alertname": "NewListeningPort", "instance": "h1", "port": "4444"}
        assert a["state"] == "firing" and a["value"] == "1e+00"
        # ... and the notifier holds it (Alertmanager's API, as amtool reads it)
        r = httpx.get(vigil.url + "/api/v2/alerts", timeout=10)
        (held,) = r.json()
        assert held["labels"] == a["labels"] and held["status"]["state"] == "active"
    finally:
        code = vigil.stop()
    assert code == 0, vigil.log()


def test_prometheus_sends_its_alerts_to_vigil_as_to_an_alertmanager(tmp_path: Path) -> None:
    """Debian's Prometheus with Vigil as its Alertmanager (`alerting.alertmanagers`): its firing alert
    is in Vigil's notifier, with Prometheus' labels, annotations and generatorURL, as amtool shows."""
    prometheus = require_binary("prometheus")
    vigil = VigilProcess(tmp_path / "vigil").start()
    port = free_port()
    (tmp_path / "rules.yml").write_text(RULES)
    (tmp_path / "prometheus.yml").write_text(
        "global: {evaluation_interval: 1s}\n"
        f"rule_files: [{tmp_path / 'rules.yml'}]\n"
        f"alerting: {{alertmanagers: [{{static_configs: [{{targets: ['127.0.0.1:{vigil.port}']}}]}}]}}\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'prom'}",
            f"--web.listen-address=127.0.0.1:{port}",
            # its first send can come before the Alertmanager is discovered (dropped); re-send soon
            "--rules.alert.resend-delay=1s",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", proc=proc)

        def held() -> list[dict[str, Any]]:
            r = httpx.get(vigil.url + "/api/v2/alerts", params={"filter": "alertname=Always"}, timeout=10)
            assert r.status_code == 200, r.text
            return list(r.json())

        wait_until(held, what="Prometheus' alert in Vigil's notifier")
        (a,) = held()
        assert a["labels"] == {"alertname": "Always", "severity": "page"}
        assert a["annotations"] == {"summary": "always firing"}
        assert a["generatorURL"].startswith("http://") and "g0.expr=vector" in a["generatorURL"]
        assert a["status"]["state"] == "active" and a["receivers"] == [{"name": "none"}]
        # Prometheus counts what Vigil accepted: nothing dropped or failed
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert re.search(r"^prometheus_notifications_errors_total\{[^}]*\} 0$", metrics, re.M), metrics
        assert f'alertmanager="http://127.0.0.1:{vigil.port}/api/v2/alerts"' in metrics
        assert re.search(r"^prometheus_notifications_sent_total\{[^}]*\} [1-9]", metrics, re.M)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
        assert vigil.stop() == 0, vigil.log()
