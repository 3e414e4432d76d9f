"""`ScrapeManager`: one thread per target, scraping on the job's interval and feeding the sink.

Each target starts at a stable offset within its interval (a hash of job and URL), so targets
spread out instead of all firing together, then scrapes on a fixed schedule. Failures are counted in
`vigil_scrape_errors_total{job,reason}` and logged once per distinct error per target. On `stop()`
every target's series get staleness markers, sent to the sink before the threads end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter

from vigil.config.scrape import ScrapeConfig
from vigil.model.batch import Batch, Sink
from vigil.scrape.target import REASONS, ScrapeResult, Target

__all__ = ["ScrapeManager"]

log = logging.getLogger(__name__)

_MAX_LOGGED = 100  # distinct errors remembered per target, so odd messages cannot grow memory


class ScrapeManager:
    def __init__(
        self,
        configs: Sequence[ScrapeConfig],
        default_interval_s: float,
        sink: Sink,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """Build the targets; raises ValueError when a job's explicit scrape_timeout exceeds the
        agent's interval it falls back to. `registry` gets `vigil_scrape_errors_total`."""
        self._sink = sink
        self.errors = Counter(
            "vigil_scrape_errors_total",
            "Failed scrapes, by job and reason.",
            ["job", "reason"],
            registry=registry,
        )
        self.targets: list[Target] = []
        default_ms = max(1, round(default_interval_s * 1000))
        for cfg in configs:
            interval, timeout = cfg.timing(default_ms)
            for reason in REASONS:  # the series exist at 0, so rate() works from the first failure
                self.errors.labels(cfg.job_name, reason)
            for sc in cfg.static_configs:
                for address in sc.targets:
                    self.targets.append(Target(cfg, address, dict(sc.labels), interval, timeout))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sink_lock = threading.Lock()  # sinks need not be thread-safe
        self._logged: dict[str, set[str]] = {}

    name = "scrapes"  # a service of vigil.cmd.run

    def start(self) -> None:
        self._stop.clear()
        for t in self.targets:
            name = f"vigil-scrape-{t.config.job_name}"
            th = threading.Thread(target=self._loop, args=(t,), name=name, daemon=True)
            th.start()
            self._threads.append(th)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop scraping, wait for in-flight scrapes (bounded by their timeouts), send stale markers."""
        self._stop.set()
        for th in self._threads:
            th.join(timeout_s)
        self._threads.clear()
        for t in self.targets:
            self._emit(t.stale_batch())
            t.close()

    def scrape_target(self, target: Target, now_ms: int | None = None) -> ScrapeResult:
        """One scrape with accounting and delivery; the loop's body, public for tests and one-shots."""
        result = target.scrape(now_ms)
        if not result.up:
            self.errors.labels(target.config.job_name, result.reason).inc()
            seen = self._logged.setdefault(target.key, set())
            key = f"{result.reason}: {result.error}"
            if key not in seen and len(seen) < _MAX_LOGGED:
                seen.add(key)
                log.warning(
                    "scrape of %s (job %s) failed: %s (logged once; counted in vigil_scrape_errors_total)",
                    target.url,
                    target.config.job_name,
                    key,
                )
        self._emit(result.batch)
        return result

    def _emit(self, batch: Batch) -> None:
        if not batch[0]:
            return
        try:
            with self._sink_lock:
                self._sink(batch)
        except Exception:
            log.exception("could not hand scraped samples to the sink")

    def _loop(self, target: Target) -> None:
        interval = target.interval_ms / 1000
        next_at = time.monotonic() + target.offset_s()
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            try:
                self.scrape_target(target)
            except Exception:  # belt and braces: the loop must outlive any bug in one scrape
                log.exception("scrape loop for %s", target.url)
            next_at += interval
            now = time.monotonic()
            if next_at < now:  # fell behind (slow scrape, suspended host): skip missed slots
                next_at += ((now - next_at) // interval + 1) * interval
