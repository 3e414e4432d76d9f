"""The ingester: decoded remote-write and text payloads -> series refs -> one columnar append.

Series are resolved through a cache keyed by the raw bytes of each series' labels on the wire, so
a known series costs one dict lookup; only unseen series are parsed and validated. A request is
validated completely before anything is appended, so a rejected request stores nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter

from vigil.ingest.series_limit import SeriesLimiter
from vigil.ingest.validate import InvalidSeries, Limits, validate_labels
from vigil.model.labels import TENANT, Labels
from vigil.model.textparse import ParsedText
from vigil.prompb.codec import DecodedWrite, DecodeError, OverLimit, WireLimits, parse_label_key
from vigil.storage.interface import AppendResult, StaleRefError, Storage, StorageError
from vigil.storage.metadata import MetadataStore

_CACHE_MAX = 4_000_000  # entries; past this the cache starts over rather than grow without bound


def with_tenant(labels: Labels, tenant: str | None) -> Labels:
    """The label set as stored: the writer's own `tenant` label dropped, the server's one set."""
    stripped = labels.without(TENANT) if labels.get(TENANT) else labels
    return Labels.from_pairs([*stripped, (TENANT, tenant)]) if tenant else stripped


class _UnverifiedKey(Exception):
    """A key from the codec's unwalked fast path did not parse as a label section."""


def _walked(decoded: DecodedWrite) -> DecodedWrite:
    """`decoded.verified()`, its errors as InvalidSeries (the request's fault: 4xx)."""
    try:
        return decoded.verified()
    except OverLimit as exc:
        raise InvalidSeries(exc.reason, str(exc)) from None
    except DecodeError as exc:
        raise InvalidSeries("protobuf", f"bad protobuf body: {exc}") from None


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    rejected: dict[str, int]

    @property
    def partial(self) -> bool:
        return bool(self.rejected)


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.samples = Counter(
            "vigil_ingest_samples_total", "Samples stored, by protocol.", ["protocol"], registry=registry
        )
        self.series_created = Counter(
            "vigil_ingest_series_created_total",
            "Series seen for the first time by this server process.",
            registry=registry,
        )
        self.samples_rejected = Counter(
            "vigil_ingest_samples_rejected_total",
            "Samples not stored although their request was valid, by reason.",
            ["reason"],
            registry=registry,
        )
        self.requests_rejected = Counter(
            "vigil_ingest_requests_rejected_total",
            "Write requests refused as a whole, by reason.",
            ["reason"],
            registry=registry,
        )


class Ingester:
    def __init__(
        self,
        storage: Storage,
        limits: Limits,
        metrics: IngestMetrics,
        metadata: MetadataStore | None = None,
        series_limiter: SeriesLimiter | None = None,
    ) -> None:
        self._storage = storage
        # Sees every batch of new series before they are created; raises to refuse the request.
        self._admit = series_limiter.admit if series_limiter is not None else None
        self._metadata = metadata
        self._limits = limits
        self._metrics = metrics
        self._caches: dict[str | None, dict[bytes, int]] = {}
        self._cached = 0
        self._generation = storage.series_generation
        self._create_lock = threading.Lock()

    def write_remote(self, decoded: DecodedWrite, tenant: str | None = None) -> IngestResult:
        """Store a decoded remote-write request. Raises InvalidSeries (nothing stored) or StorageError.

        `tenant` (from the writer's token) becomes the `tenant` label of every series; a `tenant`
        label in the payload itself is never kept."""
        for _attempt in range(2):
            try:
                refs = self._resolve_keys(
                    decoded.label_keys, strict=decoded.unverified_body is None, tenant=tenant
                )
            except _UnverifiedKey:
                decoded = _walked(decoded)  # a key cut without walking was not a label section
                if decoded.timestamps.size > self._limits.max_samples_per_request:
                    raise InvalidSeries(
                        "too_many_samples",
                        f"{decoded.timestamps.size} samples exceed the "
                        f"limit of {self._limits.max_samples_per_request} per request",
                    ) from None
                refs = self._resolve_keys(decoded.label_keys, strict=True, tenant=tenant)
            try:
                result = self._append(refs[decoded.sample_series], decoded.timestamps, decoded.values)
                break
            except StaleRefError:
                self._caches.clear()  # a series was deleted under us: resolve again
        else:
            raise StorageError("series were deleted while the request was stored; retry")
        if self._metadata is not None and decoded.metadata:
            self._metadata.update_many(decoded.metadata, tenant)
        rejected = dict(result.rejected)
        if decoded.histograms:
            rejected["native_histogram"] = decoded.histograms
        self._count("remote_write", result.accepted, rejected)
        return IngestResult(result.accepted, rejected)

    @property
    def wire_limits(self) -> WireLimits:
        """The limits a remote-write body is decoded under, so it is refused before it costs more."""
        return WireLimits(self._limits.max_samples_per_request, self._limits.max_label_names_per_series)

    def write_text(self, parsed: ParsedText, tenant: str | None = None) -> IngestResult:
        """Store samples parsed from the text exposition format (`tenant` as for write_remote)."""
        labels = [with_tenant(validate_labels(list(lb), self._limits), tenant) for lb in parsed.series]
        refs = np.array(self._storage.series_refs(labels, self._admit), np.int64)
        result = self._append(refs[parsed.series_index], parsed.timestamps, parsed.values)
        if self._metadata is not None and parsed.metadata:
            self._metadata.update_many(((f, t, h, u) for f, (t, h, u) in parsed.metadata.items()), tenant)
        self._count("import", result.accepted, result.rejected)
        return IngestResult(result.accepted, dict(result.rejected))

    def _append(
        self, refs: npt.NDArray[np.int64], ts: npt.NDArray[np.int64], vals: npt.NDArray[np.float64]
    ) -> AppendResult:
        if refs.size == 0:
            return AppendResult(0, {})
        return self._storage.append(refs, ts, vals)

    def _resolve_keys(self, keys: list[bytes], strict: bool, tenant: str | None) -> npt.NDArray[np.int64]:
        if self._storage.series_generation != self._generation or self._cached > _CACHE_MAX:
            self._caches = {}
            self._cached = 0
            self._generation = self._storage.series_generation
        # The same label bytes are a different series for each tenant: one cache per tenant.
        cache = self._caches.setdefault(tenant, {})
        found = list(map(cache.get, keys))
        if None in found:
            self._create_missing(keys, found, strict, cache, tenant)
        return np.array(found, np.int64)

    def _create_missing(
        self,
        keys: list[bytes],
        found: list[int | None],
        strict: bool,
        cache: dict[bytes, int],
        tenant: str | None,
    ) -> None:
        # Validate every new series before creating any, so a bad request leaves no trace.
        missing = [i for i, ref in enumerate(found) if ref is None]
        labels: list[Labels] = []
        for i in missing:
            if not strict and len(keys[i]) > self._limits.max_label_section_bytes:
                raise _UnverifiedKey  # too long to be labels: walk it rather than parse it whole
            try:
                pairs = parse_label_key(keys[i])
            except DecodeError as exc:
                if not strict:
                    raise _UnverifiedKey from None
                raise InvalidSeries("protobuf", str(exc)) from None
            labels.append(with_tenant(validate_labels(pairs, self._limits), tenant))
        with self._create_lock:
            refs = self._storage.series_refs(labels, self._admit)
            for i, ref in zip(missing, refs, strict=True):
                cache[keys[i]] = ref
                found[i] = ref
            self._cached += len(missing)
        self._metrics.series_created.inc(len(set(labels)))

    def _count(self, protocol: str, accepted: int, rejected: dict[str, int]) -> None:
        self._metrics.samples.labels(protocol).inc(accepted)
        for reason, n in rejected.items():
            self._metrics.samples_rejected.labels(reason).inc(n)

    def reject(self, reason: str) -> None:
        self._metrics.requests_rejected.labels(reason).inc()
