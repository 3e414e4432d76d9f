"""One scrape target: fetch its exposition over HTTP(S), parse, label, relabel and account for it.

`Target.scrape(now_ms)` never raises: a failure (refused, timeout, TLS, bad status, garbage, over the
sample limit, body too big) yields only the synthetic series with `up` 0 and an error reason from the
bounded set `REASONS`. As in Prometheus, a failed scrape contributes no samples at all, and series
that disappear (or all series, when the scrape fails or the target is stopped) get a staleness marker.
"""

from __future__ import annotations

import math
import ssl
import struct
import time
import urllib.parse
import zlib
from dataclasses import dataclass, field

import httpx

import vigil
from vigil.config.scrape import ScrapeConfig
from vigil.model.batch import Batch, Series
from vigil.model.labels import METRIC_NAME
from vigil.model.textparse import parse_text
from vigil.scrape.relabel import relabel

__all__ = ["REASONS", "STALE_NAN", "ScrapeError", "ScrapeResult", "Target", "is_stale_nan"]

# Prometheus' staleness marker: a NaN with a specific payload, distinct from a scraped NaN.
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
_STALE_BITS = 0x7FF0000000000002

# Prefer OpenMetrics, fall back to text 0.0.4, then anything (Prometheus asks the same way).
ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
MAX_BODY_BYTES = 64 << 20  # a runaway exporter must not exhaust the agent's memory

# The error reasons used as a label value: a fixed set, so the label's cardinality stays bounded.
REASONS = ("connect", "timeout", "tls", "http_status", "parse", "sample_limit", "body_size", "other")


def is_stale_nan(value: float) -> bool:
    return math.isnan(value) and struct.unpack("<Q", struct.pack("<d", value))[0] == _STALE_BITS


class ScrapeError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class ScrapeResult:
    batch: Batch
    up: bool
    reason: str = ""  # one of REASONS when not up
    error: str = ""  # human-readable, for the log
    samples_scraped: int = 0
    samples_post_relabel: int = 0
    duration_s: float = 0.0


def _ssl_context(cfg: ScrapeConfig) -> ssl.SSLContext:
    tls = cfg.tls_config
    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert_file is not None and tls.key_file is not None:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return ctx


def _is_tls_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):  # the ssl error sits a few levels down httpx/httpcore's exception chain
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@dataclass
class Target:
    """A `host:port` of a scrape config, with its target labels (job, instance, static labels)."""

    config: ScrapeConfig
    address: str
    static_labels: dict[str, str]
    interval_ms: int
    timeout_ms: int
    labels: dict[str, str] = field(init=False)
    url: str = field(init=False)
    _client: httpx.Client | None = field(init=False, default=None, repr=False)
    _last_series: dict[tuple[tuple[str, str], ...], None] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        cfg = self.config
        # Static labels may override job but not instance, as in Prometheus where `instance`
        # defaults to __address__ only when not set by then.
        self.labels = {"job": cfg.job_name, "instance": self.address, **self.static_labels}
        self.labels = {k: v for k, v in self.labels.items() if v != ""}
        query = urllib.parse.urlencode([(k, v) for k, vs in cfg.params.items() for v in vs])
        self.url = f"{cfg.scheme}://{self.address}{cfg.metrics_path}" + (f"?{query}" if query else "")

    @property
    def key(self) -> str:
        return f"{self.config.job_name}|{self.url}"

    def offset_s(self) -> float:
        """A stable start offset within the interval, so targets do not all scrape at once."""
        return (zlib.crc32(self.key.encode()) % 10_000) / 10_000 * self.interval_ms / 1000

    def _http(self) -> httpx.Client:
        if self._client is None:
            cfg = self.config
            headers = {
                "Accept": ACCEPT,
                "User-Agent": f"Vigil/{getattr(vigil, '__version__', '0')}",
                "X-Prometheus-Scrape-Timeout-Seconds": f"{self.timeout_ms / 1000:g}",
            }
            if cfg.bearer_token:
                headers["Authorization"] = f"Bearer {cfg.bearer_token}"
            auth = (cfg.basic_auth.username, cfg.basic_auth.password) if cfg.basic_auth else None
            self._client = httpx.Client(
                headers=headers,
                auth=auth,
                timeout=self.timeout_ms / 1000,
                verify=_ssl_context(cfg) if cfg.scheme == "https" else True,
                follow_redirects=True,
                trust_env=False,  # no proxies from the environment for scrapes, as Prometheus
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _fetch(self, deadline: float) -> bytes:
        extensions = {}
        if self.config.tls_config.server_name:
            extensions["sni_hostname"] = self.config.tls_config.server_name
        try:
            with self._http().stream("GET", self.url, extensions=extensions) as resp:
                if resp.status_code != 200:
                    raise ScrapeError("http_status", f"server returned HTTP status {resp.status_code}")
                chunks: list[bytes] = []
                size = 0
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        raise ScrapeError("body_size", f"body larger than {MAX_BODY_BYTES} bytes")
                    # httpx's timeout is per read; this bounds a target that trickles bytes slowly.
                    if time.monotonic() > deadline:
                        raise ScrapeError("timeout", "scrape timed out reading the body")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.TimeoutException as e:
            raise ScrapeError("timeout", f"scrape timed out: {type(e).__name__}") from None
        except httpx.TransportError as e:
            if _is_tls_error(e):
                raise ScrapeError("tls", f"TLS error: {e}") from None
            if isinstance(e, httpx.ConnectError):
                raise ScrapeError("connect", f"connection failed: {e}") from None
            raise ScrapeError("other", f"{type(e).__name__}: {e}") from None

    def scrape(self, now_ms: int | None = None) -> ScrapeResult:
        """Scrape once; the batch holds the target's samples plus its synthetic series."""
        started = time.monotonic()
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        result = ScrapeResult(batch=([], []), up=True)
        try:
            body = self._fetch(started + self.timeout_ms / 1000)
            self._samples(body, now_ms, result)
        except ScrapeError as e:
            result.up, result.reason, result.error = False, e.reason, str(e)
        except Exception as e:  # never let one target's surprise stop its loop
            result.up, result.reason, result.error = False, "other", f"{type(e).__name__}: {e}"
        if not result.up:
            result.batch = ([], [])
            result.samples_post_relabel = 0
        result.duration_s = time.monotonic() - started
        self._add_stale(result.batch, now_ms)
        self._add_report(result, now_ms)
        return result

    def _samples(self, body: bytes, now_ms: int, result: ScrapeResult) -> None:
        try:
            parsed = parse_text(body, now_ms)
        except (ValueError, UnicodeDecodeError) as e:  # TextParseError is a ValueError
            raise ScrapeError("parse", f"invalid exposition: {e}") from None
        cfg = self.config
        result.samples_scraped = len(parsed.values)
        if cfg.sample_limit and result.samples_scraped > cfg.sample_limit:
            # Checked before relabelling too: cheaper, and enough to protect the pipeline.
            raise ScrapeError(
                "sample_limit", f"{result.samples_scraped} samples exceed sample_limit {cfg.sample_limit}"
            )
        # Label each distinct series once, then attach its samples.
        labelled: list[Series | None] = []
        for lbls in parsed.series:
            scraped = self._target_labels(dict(lbls))
            out = relabel(scraped, cfg.metric_relabel_configs) if cfg.metric_relabel_configs else scraped
            if out is None or not out.get(METRIC_NAME):
                labelled.append(None)
            else:
                labelled.append(sorted(out.items()))
        by_series: dict[int, list[tuple[int, float]]] = {}
        for sid, ts, value in zip(
            parsed.series_index.tolist(), parsed.timestamps.tolist(), parsed.values.tolist(), strict=True
        ):
            if labelled[sid] is not None:
                by_series.setdefault(sid, []).append((ts, value))
        result.samples_post_relabel = sum(len(p) for p in by_series.values())
        if cfg.sample_limit and result.samples_post_relabel > cfg.sample_limit:
            raise ScrapeError(
                "sample_limit",
                f"{result.samples_post_relabel} samples exceed sample_limit {cfg.sample_limit}",
            )
        # Relabelling can merge distinct scraped series into one label set; keep their points together.
        merged: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
        for sid, pts in by_series.items():
            merged.setdefault(tuple(labelled[sid] or ()), []).extend(pts)
        series, points = result.batch
        for key, pts in merged.items():
            series.append(list(key))
            points.append(pts)

    def _target_labels(self, scraped: dict[str, str]) -> dict[str, str]:
        """Attach the target labels; with honor_labels the scraped values win, otherwise the scraped
        ones are kept as `exported_<name>` (repeatedly prefixed if that too is taken)."""
        if self.config.honor_labels:
            for k, v in self.labels.items():
                scraped.setdefault(k, v)
            return scraped
        for k, v in self.labels.items():
            old = scraped.get(k, "")
            if old:
                name = "exported_" + k
                while scraped.get(name, ""):
                    name = "exported_" + name
                scraped[name] = old
            scraped[k] = v
        return scraped

    def _add_stale(self, batch: Batch, now_ms: int) -> None:
        # Series scraped last time but not now get a staleness marker, so queries stop seeing them
        # at once rather than after the lookback window.
        current = dict.fromkeys(tuple(s) for s in batch[0])
        for gone in self._last_series.keys() - current.keys():
            batch[0].append(list(gone))
            batch[1].append([(now_ms, STALE_NAN)])
        self._last_series = current

    def stale_batch(self, now_ms: int | None = None) -> Batch:
        """Staleness markers for everything this target last reported (for when it goes away)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        batch: Batch = ([], [])
        self._add_stale(batch, now_ms)
        for name in _REPORT_NAMES:
            batch[0].append(sorted({**self.labels, METRIC_NAME: name}.items()))
            batch[1].append([(now_ms, STALE_NAN)])
        return batch

    def _add_report(self, result: ScrapeResult, now_ms: int) -> None:
        values = (
            1.0 if result.up else 0.0,
            result.duration_s,
            float(result.samples_scraped),
            float(result.samples_post_relabel),
        )
        for name, value in zip(_REPORT_NAMES, values, strict=True):
            result.batch[0].append(sorted({**self.labels, METRIC_NAME: name}.items()))
            result.batch[1].append([(now_ms, value)])


_REPORT_NAMES = (
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
)
