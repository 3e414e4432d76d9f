"""The agent's collection loop: collectors are isolated from each other and accounted for."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

import pytest
from prometheus_client import CollectorRegistry, Histogram, Metric, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from vigil.agent.identity import Identity
from vigil.agent.runner import Agent, to_batch, to_metadata
from vigil.model.collector import CollectorUnavailable


class Good:
    name = "good"

    def collect(self) -> Iterable[Metric]:
        g = GaugeMetricFamily("node_load1", "1m load average.")
        g.add_metric([], 0.5)
        c = CounterMetricFamily("node_forks", "Forks since boot.")
        c.add_metric([], 42)
        return [g, c]


class Broken:
    name = "broken"

    def collect(self) -> Iterable[Metric]:
        raise PermissionError("[Errno 13] Permission denied: '/var/log/auth.log'")


class Absent:
    name = "absent"

    def collect(self) -> Iterable[Metric]:
        raise CollectorUnavailable("no PSI on this kernel")


def test_a_failing_collector_is_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    agent = Agent([Good(), Broken(), Absent()], Identity("h1", "kvm", cluster="c1"), "vigil-agent", registry)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            series, points = agent.collect_round(now_ms=1000)
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert "broken" in caplog.records[0].getMessage() and len(caplog.records) == 1
    text = generate_latest(registry).decode()  # rendering /metrics is itself a (fourth) collection
    assert 'vigil_agent_collector_errors_total{collector="broken"} 4.0' in text
    assert 'vigil_agent_collector_errors_total{collector="absent"} 0.0' in text
    names = {dict(s)["__name__"] for s in series}
    assert {"node_load1", "node_forks_total", "vigil_agent_collections_total"} <= names
    load = next(s for s in series if dict(s)["__name__"] == "node_load1")
    assert dict(load) == {
        "__name__": "node_load1",
        "instance": "h1",
        "platform": "kvm",
        "cluster": "c1",
        "job": "vigil-agent",
    }
    assert points[series.index(load)] == [(1000, 0.5)]


def test_to_batch_keeps_sample_labels_over_identity() -> None:
    g = GaugeMetricFamily("up", "Target up.", labels=["instance"])
    g.add_metric(["10.0.0.1:9100"], 1)
    series, points = to_batch([g], {"instance": "h1", "job": "x", "app": ""}, 5)
    assert series == [[("__name__", "up"), ("instance", "10.0.0.1:9100"), ("job", "x")]]
    assert points == [[(5, 1.0)]]


def test_created_series_are_not_shipped() -> None:
    # The report: the agent shipped prometheus_client's `*_created` series (one per child of every
    # counter: 19 of vigil_agent_collector_errors_created), which nobody queries.
    registry = CollectorRegistry()
    agent = Agent([Good(), Broken(), Absent()], Identity("h1", "kvm"), "vigil-agent", registry)
    series, _ = agent.collect_round(now_ms=1000)
    names = [dict(s)["__name__"] for s in series]
    assert not [n for n in names if n.endswith("_created")]
    assert names.count("vigil_agent_collector_errors_total") == 3  # the counters themselves stay
    # A gauge that happens to end in _created is not prometheus_client's series: it stays.
    g = GaugeMetricFamily("app_users_created", "Users created.")
    g.add_metric([], 7)
    h = Histogram("app_seconds", "Latency.", registry=None)
    h.observe(0.2)
    batch, _ = to_batch([g, *h.collect()], {}, 5)
    got = {dict(s)["__name__"] for s in batch}
    assert "app_users_created" in got and "app_seconds_count" in got and "app_seconds_created" not in got


def test_a_round_records_up_and_its_scrape_series_like_a_scrape_would() -> None:
    registry = CollectorRegistry()
    agent = Agent([Good()], Identity("h1", "kvm"), "vigil-agent", registry)
    series, points = agent.collect_round(now_ms=7000)
    by_name = {dict(s)["__name__"]: (dict(s), p) for s, p in zip(series, points, strict=True)}
    labels, up = by_name["up"]
    assert labels == {"__name__": "up", "instance": "h1", "platform": "kvm", "job": "vigil-agent"}
    assert up == [(7000, 1.0)]
    scraped = len(series) - 3  # everything but up, scrape_duration_seconds, scrape_samples_scraped
    assert by_name["scrape_samples_scraped"][1] == [(7000, float(scraped))]
    assert by_name["scrape_duration_seconds"][1][0][1] >= 0
    # They describe the scrape, not the target: the agent's own /metrics does not expose them.
    assert "\nup " not in generate_latest(registry).decode()


def test_the_loop_ships_metadata_first_then_only_when_it_changes_or_is_due() -> None:
    calls: list[tuple[int, list]] = []
    got = threading.Event()

    def sink(batch: tuple, metadata: list | tuple = ()) -> None:
        calls.append((len(batch[0]), list(metadata)))
        if len(calls) >= 3:
            got.set()

    registry = CollectorRegistry()
    agent = Agent([Good()], Identity("h1", "kvm"), "j", registry, interval_s=0.02, sink=sink)
    agent.start()
    try:
        assert got.wait(30)
    finally:
        agent.stop()
    first = dict((m[0], m) for m in calls[0][1])
    assert first["node_load1"] == ("node_load1", "gauge", "1m load average.", "")
    assert first["node_forks_total"] == ("node_forks_total", "counter", "Forks since boot.", "")
    assert "vigil_agent_collector_errors_total" in first
    assert [m for _, m in calls[1:3]] == [[], []]  # unchanged and not due again for a minute


def test_to_metadata_names_families_as_the_text_format_does() -> None:
    from prometheus_client.core import InfoMetricFamily

    c = CounterMetricFamily("jobs", "Jobs done.", unit="")
    c.add_metric([], 1)
    i = InfoMetricFamily("build", "Build information.")
    i.add_metric([], {"version": "1"})
    assert to_metadata([c, i, c]) == [
        ("jobs_total", "counter", "Jobs done.", ""),
        ("build_info", "gauge", "Build information.", ""),
    ]
