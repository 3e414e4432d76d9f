"""The `probes` collector: runs the configured probes and certificate-file checks in the background.

Each probe runs on its own interval in a small thread pool, off the collection path: `collect()`
only renders the latest result of each, so a slow or hanging target never delays `/metrics`.
Until a probe has run once it contributes nothing.

Labels. blackbox_exporter's series carry no target labels; Prometheus adds `instance` (the target,
by the usual relabelling) and `job` at scrape time. Here every probe is in the agent's own
exposition, whose `instance`/`job` name the agent, so each probe series gets two labels instead:
`probe` (the configured probe name, unique) and `target` (the configured target). A blackbox rule
such as `probe_success{instance="x"} == 0` becomes `probe_success{target="x"} == 0`. Certificate
file families carry `path` (see `vigil.probe.certfile`) and no `probe`/`target`.

A failing probe logs its reason once when it starts failing (or the reason changes) and once when
it recovers, not on every run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily

from vigil.config.probes import CertificatesConfig, ProbeConfig
from vigil.probe import ProbeResult
from vigil.probe.certfile import inspect_files
from vigil.probe.dns import probe_dns
from vigil.probe.http import probe_http
from vigil.probe.icmp import probe_icmp
from vigil.probe.tcp import probe_tcp

__all__ = ["PROBERS", "ProbesCollector", "run_probe"]

log = logging.getLogger(__name__)

PROBERS: dict[str, Callable[[ProbeConfig], ProbeResult]] = {
    "http": probe_http,
    "tcp": probe_tcp,
    "tls": probe_tcp,
    "dns": probe_dns,
    "icmp": probe_icmp,
}

_CERTS = "\x00certificates"  # job key of the certificate files; cannot clash with a probe name


def run_probe(config: ProbeConfig) -> ProbeResult:
    """Run one probe now, in this thread; never raises."""
    return PROBERS[config.module](config)


@dataclass
class _Job:
    key: str
    interval: float  # seconds
    run: Callable[[], tuple[ProbeResult, str]]  # (result, one-line error or "")
    labels: tuple[tuple[str, str], ...]
    due: float = 0.0
    running: bool = False


class ProbesCollector:
    """Collector `probes`: blackbox-style probes plus certificate files.

    `ProbesCollector(probes, certificates, max_workers=4)`; `start()` begins the schedule (every job
    runs at once, then every `interval`), `stop()` ends it; `run_once()` runs everything now and
    waits (tests, one-shot use). Also a context manager (start/stop).
    """

    name = "probes"

    def __init__(
        self,
        probes: Sequence[ProbeConfig] = (),
        certificates: CertificatesConfig | None = None,
        *,
        max_workers: int = 4,
        logger: logging.Logger | None = None,
    ) -> None:
        self._log = logger or log
        self._jobs: list[_Job] = [
            _Job(p.name, p.interval / 1000, self._probe_runner(p), (("probe", p.name), ("target", p.target)))
            for p in probes
        ]
        if certificates is not None and certificates.files:
            certs = certificates

            def run_certs() -> tuple[ProbeResult, str]:
                result, errors = inspect_files(certs.files, certs.max_files)
                return result, "; ".join(errors)

            self._jobs.append(_Job(_CERTS, certs.interval / 1000, run_certs, ()))
        self._max_workers = max(1, max_workers)
        self._results: dict[str, ProbeResult] = {}
        self._errors: dict[str, str] = {}
        # Called (from a probe thread) when a probe's success flips, so that the agent can collect
        # and ship at once instead of at its next round: a target going down is news.
        self.on_change: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None

    @staticmethod
    def _probe_runner(config: ProbeConfig) -> Callable[[], tuple[ProbeResult, str]]:
        def run() -> tuple[ProbeResult, str]:
            result = run_probe(config)
            return result, result.error if not result.success else ""

        return run

    # --- running ----------------------------------------------------------------------------------

    def _record(self, job: _Job, outcome: tuple[ProbeResult, str]) -> None:
        result, error = outcome
        with self._lock:
            previous = self._results.get(job.key)
            self._results[job.key] = result
            before = self._errors.get(job.key, "")
            self._errors[job.key] = error
        if previous is not None and previous.success != result.success and self.on_change is not None:
            self.on_change()
        what = "certificate files" if job.key == _CERTS else f"probe {job.key!r}"
        if error and error != before:
            self._log.warning("%s failed: %s", what, error)
        elif before and not error:
            self._log.info("%s recovered", what)

    def _execute(self, job: _Job) -> None:
        try:
            outcome = job.run()
        except Exception as e:  # probers catch their own errors; this is a last guard for the pool
            outcome = (ProbeResult(), f"{type(e).__name__}: {e}")
        self._record(job, outcome)
        with self._lock:
            job.running = False
        self._wake.set()

    def run_once(self) -> None:
        """Run every job now and wait for all of them."""
        with ThreadPoolExecutor(self._max_workers, thread_name_prefix="vigil-probe") as pool:
            for job in self._jobs:
                pool.submit(self._execute, job)

    def start(self) -> None:
        if self._thread is not None or not self._jobs:
            return
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="vigil-probe")
        self._thread = threading.Thread(target=self._loop, name="vigil-probes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop scheduling; running probes finish within their timeouts (not waited for)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> ProbesCollector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        assert self._pool is not None
        while not self._stopping.is_set():
            now = time.monotonic()
            next_due = now + 60.0
            for job in self._jobs:
                with self._lock:
                    # A run that overruns its interval is not stacked up: the next starts when it ends
                    # (its end wakes this loop).
                    if job.running:
                        continue
                    if job.due <= now:
                        job.running = True
                        job.due = now + job.interval
                        self._pool.submit(self._execute, job)
                    next_due = min(next_due, job.due)
            self._wake.wait(max(next_due - time.monotonic(), 0.0))
            self._wake.clear()

    # --- collecting -------------------------------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            results = [(job, self._results.get(job.key)) for job in self._jobs]
        families: dict[str, GaugeMetricFamily] = {}
        labelnames: dict[str, tuple[str, ...]] = {}
        for job, result in results:
            if result is None:
                continue
            extra_names = tuple(n for n, _ in job.labels)
            extra_values = tuple(v for _, v in job.labels)
            for fam in result.families.values():
                names = extra_names + fam.labelnames
                out = families.get(fam.name)
                if out is None:
                    out = families[fam.name] = GaugeMetricFamily(fam.name, fam.help, labels=names)
                    labelnames[fam.name] = names
                elif labelnames[fam.name] != names:
                    continue  # cannot happen with the built-in probers; never emit a mixed family
                for values, value in fam.samples.items():
                    out.add_metric(list(extra_values + values), value)
        return list(families.values())
