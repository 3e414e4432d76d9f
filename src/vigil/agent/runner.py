"""The agent's collection loop: run every collector, account for each, hand the samples to the shipper.

Each collector is wrapped so that its duration and failures become the agent's own metrics
(`vigil_agent_collector_duration_seconds`, `vigil_agent_collector_errors_total`) and a failing
collector is logged once per distinct error rather than on every collection.

prometheus_client's own metric types (the agent's counters, the shippers') add a `<name>_created`
series per counter, histogram and summary child: the time it was created, which no query uses and
which doubles what is shipped of them. `to_batch` leaves those out (per family, not by switching
off prometheus_client's global `disable_created_metrics()`, which would reach every registry in
the process).

A round is to the agent what a scrape of its /metrics is to Prometheus, so it adds what such a scrape
would record: `up` (1: "is my agent alive" is `up{job="vigil-agent"}`, and `absent(...)` when it is
not), `scrape_duration_seconds` and `scrape_samples_scraped`, with the agent's job and identity labels;
and it ships its families' TYPE/HELP/UNIT as remote-write metadata, when they change and every
`METADATA_INTERVAL_S` (the server keeps metadata in memory only, as Prometheus' senders assume).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Metric

from vigil.agent.identity import Identity
from vigil.model.batch import Batch, MetricMetadata, Series, Sink
from vigil.model.collector import Collector, CollectorUnavailable

log = logging.getLogger(__name__)

METADATA_INTERVAL_S = 60.0  # as Prometheus' remote write sends metadata (metadata_config.send_interval)
# The text format (what /metrics serves by default, so what a Prometheus scraping it records) names
# some families differently from prometheus_client's OpenMetrics-style family names.
_TEXT_SUFFIX = {"counter": "_total", "info": "_info"}
_TEXT_TYPE = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram"}


class AgentMetrics:
    """The agent's own metrics. Created unregistered: the agent registers them after its collectors,
    so that one pass over the registry reports the durations of the collections it just ran."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.duration = Gauge(
            "vigil_agent_collector_duration_seconds",
            "Time the last collection of each collector took.",
            ["collector"],
            registry=registry,
        )
        self.errors = Counter(
            "vigil_agent_collector_errors_total",
            "Collections that failed, by collector.",
            ["collector"],
            registry=registry,
        )
        self.collections = Counter(
            "vigil_agent_collections_total", "Collection rounds run.", registry=registry
        )
        self.series = Gauge(
            "vigil_agent_collection_series",
            "Series produced by the last collection round.",
            registry=registry,
        )
        self.round_duration = Gauge(
            "vigil_agent_collection_duration_seconds",
            "Time the last collection round took, all collectors.",
            registry=registry,
        )


class InstrumentedCollector:
    """A collector as prometheus_client's registry sees it, with timing and error accounting."""

    def __init__(self, inner: Collector, metrics: AgentMetrics) -> None:
        self.inner = inner
        self.name = inner.name
        self._metrics = metrics
        self._logged: set[str] = set()
        # The agent's loop and a scrape of its /metrics collect through the same registry: one at a
        # time per collector, so collectors that compare with their previous collection (new
        # listeners, changed files, their events) see each change once.
        self._lock = threading.Lock()
        metrics.errors.labels(inner.name)  # the series exists (at 0) before the first failure

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            return self._collect()

    def _collect(self) -> Iterable[Metric]:
        started = time.perf_counter()
        try:
            return list(self.inner.collect())
        except CollectorUnavailable:
            return []
        except Exception as exc:  # a broken collector must not stop the others
            self._metrics.errors.labels(self.name).inc()
            key = f"{type(exc).__name__}: {exc}"
            if key not in self._logged:
                self._logged.add(key)
                log.warning(
                    "collector %s failed: %s (logged once; counted in vigil_agent_collector_errors_total)",
                    self.name,
                    key,
                )
            return []
        finally:
            self._metrics.duration.labels(self.name).set(time.perf_counter() - started)


# Types whose families carry prometheus_client's `<name>_created` series.
_WITH_CREATED = frozenset({"counter", "histogram", "summary"})


def to_batch(families: Iterable[Metric], extra: dict[str, str], timestamp_ms: int) -> Batch:
    """Samples of metric families as label sets (sorted, `__name__` included) with one point each,
    without the `<name>_created` series of counters, histograms and summaries.

    `extra` labels (identity, job) are added unless the sample already has that label."""
    series: list[Series] = []
    points: list[list[tuple[int, float]]] = []
    for fam in families:
        created = fam.name + "_created" if fam.type in _WITH_CREATED else None
        for s in fam.samples:
            if s.name == created:
                continue
            labels = {**extra, **s.labels, "__name__": s.name}
            series.append(sorted((k, v) for k, v in labels.items() if v != ""))
            ts = int(float(s.timestamp) * 1000) if s.timestamp is not None else timestamp_ms
            points.append([(ts, float(s.value))])
    return series, points


def to_metadata(families: Iterable[Metric]) -> list[MetricMetadata]:
    """Each family's name, type, help and unit as the text exposition of it states them (counters as
    `x_total`, info as a gauge `x_info`), one entry per family name, in collection order."""
    out: dict[str, MetricMetadata] = {}
    for fam in families:
        name = fam.name + _TEXT_SUFFIX.get(fam.type, "")
        out.setdefault(name, (name, _TEXT_TYPE.get(fam.type, fam.type), fam.documentation, fam.unit))
    return list(out.values())


class Agent:
    def __init__(
        self,
        collectors: Sequence[Collector],
        identity: Identity,
        job: str,
        registry: CollectorRegistry,
        interval_s: float = 10.0,
        sink: Sink | None = None,
        metadata_interval_s: float = METADATA_INTERVAL_S,
    ) -> None:
        """`registry` gets the collectors and the agent's own metrics; `sink` receives each round."""
        self.metrics = AgentMetrics()
        self.collectors = [InstrumentedCollector(c, self.metrics) for c in collectors]
        for c in self.collectors:
            registry.register(c)
        for m in (
            self.metrics.duration,
            self.metrics.errors,
            self.metrics.collections,
            self.metrics.series,
            self.metrics.round_duration,
        ):
            registry.register(m)
        self.registry = registry
        self.identity = identity
        self.job = job
        self.interval_s = interval_s
        self._sink = sink
        self._metadata_interval = metadata_interval_s
        self._stop = threading.Event()
        self._now = threading.Event()  # collect_now(): a round before the next aligned one
        self._thread: threading.Thread | None = None

    def collect_now(self) -> None:
        """Have the loop run a round at once (thread-safe): a collector saw a change worth shipping
        now. The aligned rounds go on as before."""
        self._now.set()

    def add(self, collector: Collector) -> None:
        """One more collector, from the next round on (a receiver that started after the agent was
        built, e.g. StatsD once its address is bound)."""
        instrumented = InstrumentedCollector(collector, self.metrics)
        self.registry.register(instrumented)
        self.collectors.append(instrumented)

    name = "collector"

    def extra_labels(self) -> dict[str, str]:
        return {**self.identity.labels(), "job": self.job}

    def collect_round(self, now_ms: int | None = None) -> Batch:
        return self.collect(now_ms)[0]

    def collect(self, now_ms: int | None = None) -> tuple[Batch, list[MetricMetadata]]:
        """One round: every collector's samples plus the round's own `up`, `scrape_duration_seconds`
        and `scrape_samples_scraped`, all at `now_ms`; and the collected families' metadata."""
        started = time.perf_counter()
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        families = list(self.registry.collect())
        extra = self.extra_labels()
        series, points = to_batch(families, extra, now_ms)
        scraped = len(series)
        self.metrics.collections.inc()
        self.metrics.series.set(scraped)
        duration = time.perf_counter() - started
        self.metrics.round_duration.set(duration)
        for name, value in (
            ("up", 1.0),
            ("scrape_duration_seconds", duration),
            ("scrape_samples_scraped", float(scraped)),
        ):
            series.append(sorted((k, v) for k, v in {**extra, "__name__": name}.items() if v != ""))
            points.append([(now_ms, value)])
        return (series, points), to_metadata(families)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="vigil-agent-collect", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        sent: list[MetricMetadata] | None = None
        next_metadata = 0.0
        # Rounds are aligned to the interval, so timestamps are regular (and compress well).
        while not self._stop.is_set():
            batch, metadata = self.collect()
            if self._sink is not None:
                try:
                    if metadata != sent or time.monotonic() >= next_metadata:
                        self._sink(batch, metadata=metadata)
                        sent, next_metadata = metadata, time.monotonic() + self._metadata_interval
                    else:
                        self._sink(batch)
                except Exception:
                    log.exception("could not queue a collection round for shipping")
            delay = self.interval_s - (time.time() % self.interval_s)
            self._now.wait(delay)
            self._now.clear()

    def stop(self) -> None:
        self._stop.set()
        self._now.set()
        if self._thread is not None:
            self._thread.join()
