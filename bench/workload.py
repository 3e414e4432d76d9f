"""A deterministic node_exporter-shaped workload and its remote-write 1.0 encoding.

`generate()` builds `hosts` x 100 series (`job="node"`, `instance="host-NN:9100"`) shaped like
node_exporter output: CPU seconds counters with 2 decimals, integer network and disk counters,
page-multiple memory and filesystem gauges that wander, load averages with 2 decimals, disk time
counters with 3 decimals, and a few constant series (totals, error counters, read-only flags).
Scrape k of host h is stamped `t0 + k*interval + offset[h] + jitter[h, k]`: a fixed per-host
offset of 0–9 ms, and 1–5 ms of extra jitter on about 2 % of the scrapes (Prometheus snaps scrape
timestamps that are within 2 ms of the schedule, so real series are mostly regular); `t0` is
chosen so that the last scrape lies just before now.

`generate(histograms=True)` appends, after all of the above (which stays bit for bit the same),
a classic histogram per host, `http_request_duration_seconds{handler="/api"}` (12 `_bucket`
series up to `le="+Inf"`, `_sum`, `_count`: 14 series), drawn from its own random stream.  The
query benchmark uses it; the ingest benchmark does not.

`encode_streams()` splits the series into contiguous, fixed shares (one per sender, so the order
of each series is kept), walks each share in scrape order, cuts it into batches of at most
`batch` samples (a batch may span scrapes) and encodes each batch as a snappy-block-compressed
protobuf `prometheus.WriteRequest` with a small hand encoder.  `verify_payload()` decodes one
payload with message classes built at run time from descriptors, independent of the encoder.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import cramjam
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERIES_PER_HOST = 100
HISTOGRAM_LE = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf")
HISTOGRAM_SERIES_PER_HOST = len(HISTOGRAM_LE) + 2  # buckets, _count, _sum


@dataclass
class Workload:
    """Series labels (sorted by name), values (series x scrapes) and timestamps (hosts x scrapes)."""

    labels: list[list[tuple[str, str]]]
    host_of: np.ndarray  # (series,) int: the host of each series
    values: np.ndarray  # (series, scrapes) float64
    timestamps: np.ndarray  # (hosts, scrapes) int64 ms

    @property
    def n_series(self) -> int:
        return len(self.labels)

    @property
    def n_scrapes(self) -> int:
        return int(self.values.shape[1])

    @property
    def n_samples(self) -> int:
        return self.n_series * self.n_scrapes


# --- generation ---------------------------------------------------------------------------------

_CPU_MODES = {  # share of a CPU's time per mode (idle takes the rest)
    "idle": 0.0, "iowait": 0.01, "irq": 0.0, "nice": 0.0002,
    "softirq": 0.004, "steal": 0.0, "system": 0.03, "user": 0.08,
}
_NET_DEVICES = {"eth0": 150_000.0, "lo": 4_000.0}  # mean bytes/s
_MOUNTS = [("/dev/sda1", "ext4", "/"), ("/dev/sda2", "vfat", "/boot"), ("/dev/sdb1", "xfs", "/var")]
_DISKS = ["sda", "sdb"]
_GIB = 1 << 30


def _counter(start: np.ndarray, inc: np.ndarray) -> np.ndarray:
    """A counter: start (..., 1) plus the running sum of increments (..., K)."""
    return start + np.cumsum(inc, axis=-1)


def _walk(rng: np.random.Generator, base: np.ndarray, sigma: np.ndarray | float, k: int, quantum: float,
          lo: np.ndarray | float = 0.0, hi: np.ndarray | float = np.inf) -> np.ndarray:
    """A gauge wandering around `base` (..., 1) by steps of `sigma`, kept in [lo, hi], rounded to quantum."""
    steps = rng.normal(0.0, 1.0, size=(*base.shape[:-1], k)) * sigma
    x = np.clip(base + np.cumsum(steps, axis=-1), lo, hi)
    return np.floor(x / quantum) * quantum


def _histograms(rng: np.random.Generator, h: int, k: int, dt: float) -> np.ndarray:
    """(hosts, HISTOGRAM_SERIES_PER_HOST, scrapes): cumulative bucket counters, then _count, _sum."""
    rps = rng.lognormal(1.0, 0.8, size=(h, 1))  # requests/s per host
    n = rng.poisson(rps * dt, size=(h, k))  # observations per scrape
    median = rng.lognormal(math.log(0.05), 0.5, size=(h, 1))  # latency, log-normal with sigma 1
    bounds = np.log([float(le) for le in HISTOGRAM_LE[:-1]])
    cdf = 0.5 * (1 + np.vectorize(math.erf)((bounds[None, :] - np.log(median)) / math.sqrt(2)))  # (h, B)
    pvals = np.diff(np.concatenate([np.zeros((h, 1)), cdf, np.ones((h, 1))], axis=1), axis=1)
    per_bucket = rng.multinomial(n, pvals[:, None, :])  # (h, k, B+1): observations per bucket
    cumulative = np.cumsum(per_bucket, axis=2).transpose(0, 2, 1).astype(np.float64)  # (h, B+1, k)
    total0 = np.floor(rps * rng.uniform(1, 100, size=(h, 1)) * 86_400)  # requests since start-up
    start = np.floor(total0 * np.concatenate([cdf, np.ones((h, 1))], axis=1))  # (h, B+1), cumulative
    buckets = _counter(start[:, :, None], cumulative)
    sums = _counter(np.round(total0 * median * 1.6, 3),
                    np.round(n * median * 1.6 * rng.lognormal(0, 0.1, size=(h, k)), 3))
    return np.concatenate([buckets, buckets[:, -1:, :], np.round(sums, 3)[:, None, :]], axis=1)


def generate(hosts: int = 100, scrapes: int = 240, seed: int = 1, interval_ms: int = 15_000,
             end_ms: int | None = None, histograms: bool = False) -> Workload:
    """Build the workload: `hosts` x 100 series, `scrapes` samples each, ending just before `end_ms`.

    With `histograms`, `hosts` x 14 histogram series follow the node series (see the module doc).
    """
    rng = np.random.default_rng(seed)
    h, k = hosts, scrapes
    dt = interval_ms / 1000.0
    families: list[np.ndarray] = []  # each (hosts, members, scrapes)
    members: list[tuple[str, dict[str, str]]] = []

    # node_cpu_seconds_total{cpu, mode}: 4 CPUs x 8 modes, 2 decimals (USER_HZ ticks).
    uptime = rng.uniform(1, 100, size=(h, 1, 1)) * 86_400
    busy = rng.uniform(0.2, 3.0, size=(h, 1, 1))
    cpu_inc = []
    for mode, share in _CPU_MODES.items():
        if mode == "idle":
            continue
        noise = np.clip(rng.normal(1.0, 0.4, size=(h, 4, k)), 0, None)
        cpu_inc.append(np.round(share * busy * dt * noise, 2))
    others = np.stack(cpu_inc)  # (modes-1, h, 4, k)
    idle = np.clip(np.round(dt - others.sum(axis=0) + rng.normal(0, 0.01, size=(h, 4, k)), 2), 0, None)
    incs = iter(cpu_inc)
    cpu = np.empty((h, 4, len(_CPU_MODES), k))
    for m, (mode, share) in enumerate(_CPU_MODES.items()):
        inc = idle if mode == "idle" else next(incs)
        start = np.round(uptime * (1 - 0.1 * busy if mode == "idle" else share * busy), 2)
        cpu[:, :, m, :] = np.round(_counter(start, inc), 2)
    families.append(cpu.reshape(h, -1, k))
    members += [("node_cpu_seconds_total", {"cpu": str(c), "mode": mode})
                for c in range(4) for mode in _CPU_MODES]

    # node_network_*_total{device}: bytes, packets (~800 B/packet), errors (flat), drops (rare).
    net = []
    for dev, rate in _NET_DEVICES.items():
        for direction in ("receive", "transmit"):
            host_rate = rate * rng.lognormal(0, 0.7, size=(h, 1))
            b_inc = np.floor(host_rate * dt * rng.lognormal(0, 0.5, size=(h, k)))
            bytes_ = _counter(np.floor(host_rate * uptime[:, 0] * 0.8), b_inc)
            pkts = np.floor(bytes_ / 800.0)
            errs = np.zeros((h, k)) + (rng.integers(0, 3, size=(h, 1)) if dev == "eth0" else 0)
            drops = _counter(rng.integers(0, 50, size=(h, 1)).astype(float),
                             rng.poisson(0.03, size=(h, k)).astype(float))
            for metric, arr in (("bytes", bytes_), ("packets", pkts), ("errs", errs), ("drop", drops)):
                net.append(arr)
                members.append((f"node_network_{direction}_{metric}_total", {"device": dev}))
    families.append(np.stack(net, axis=1))

    # node_memory_*_bytes: kB-granular gauges (multiples of 1024), some constant.
    total = rng.choice([8, 16, 32, 64], size=(h, 1)).astype(float) * _GIB - 180 * 1024 * 1024
    swap = rng.choice([0, 2, 4], size=(h, 1)).astype(float) * _GIB
    q = 1024.0
    free = _walk(rng, total * 0.3, total * 0.002, k, q, total * 0.02, total * 0.9)
    cached = _walk(rng, total * 0.35, total * 0.001, k, q, 0, total * 0.6)
    buffers = _walk(rng, total * 0.02, total * 0.0001, k, q, 0, total * 0.1)
    mem = {
        "MemTotal": np.repeat(total, k, axis=1),
        "MemFree": free,
        "MemAvailable": np.floor((free + cached * 0.8) / q) * q,
        "Buffers": buffers,
        "Cached": cached,
        "SwapTotal": np.repeat(swap, k, axis=1),
        "SwapFree": np.repeat(np.floor(swap * 0.97 / q) * q, k, axis=1),
        "Active": _walk(rng, total * 0.4, total * 0.001, k, q, 0, total),
        "Inactive": _walk(rng, total * 0.2, total * 0.001, k, q, 0, total),
        "Dirty": np.floor(rng.exponential(2e6, size=(h, k)) / q) * q,
        "Slab": _walk(rng, total * 0.03, total * 0.00005, k, q, 0, total),
        "Shmem": _walk(rng, total * 0.005, total * 0.00001, k, q, 0, total),
    }
    families.append(np.stack(list(mem.values()), axis=1))
    members += [(f"node_memory_{name}_bytes", {}) for name in mem]

    # node_filesystem_*{device, fstype, mountpoint}: 3 mounts, 7 metrics each.
    fs = []
    for i, (device, fstype, mountpoint) in enumerate(_MOUNTS):
        size = np.floor(rng.uniform(0.5, 2.0, size=(h, 1)) * (1 if i == 1 else 200) * _GIB / 4096) * 4096
        churn = 0.0 if mountpoint == "/boot" else 1.0  # /boot does not change
        used = rng.uniform(0.2, 0.8, size=(h, 1))
        free_fs = _walk(rng, size * used, size * 1e-5 * churn, k, 4096.0, 0, size)
        files = np.floor(size / 16384)
        files_free = _walk(rng, files * 0.9, (files * 1e-6 + 1) * churn, k, 1.0, 0, files)
        for metric, arr in (
            ("size_bytes", np.repeat(size, k, axis=1)),
            ("free_bytes", free_fs),
            ("avail_bytes", np.clip(free_fs - np.floor(size * 0.05 / 4096) * 4096, 0, None)),
            ("files", np.repeat(files, k, axis=1)),
            ("files_free", files_free),
            ("readonly", np.zeros((h, k))),
            ("device_error", np.zeros((h, k))),
        ):
            fs.append(arr)
            members.append((f"node_filesystem_{metric}",
                            {"device": device, "fstype": fstype, "mountpoint": mountpoint}))
    families.append(np.stack(fs, axis=1))

    # node_load1/5/15: 2 decimals; load1 wanders, 5 and 15 are moving averages of it.
    l1 = np.abs(_walk(rng, busy[:, :, 0] * 1.5, 0.3, k, 1e-9, -50, 50))
    l5, l15 = np.empty_like(l1), np.empty_like(l1)
    a5, a15 = np.exp(-dt / 300), np.exp(-dt / 900)
    l5[:, 0], l15[:, 0] = l1[:, 0], l1[:, 0]
    for j in range(1, k):
        l5[:, j] = a5 * l5[:, j - 1] + (1 - a5) * l1[:, j]
        l15[:, j] = a15 * l15[:, j - 1] + (1 - a15) * l1[:, j]
    families.append(np.round(np.stack([l1, l5, l15], axis=1), 2))
    members += [("node_load1", {}), ("node_load5", {}), ("node_load15", {})]

    # node_disk_*{device}: op counters, 512-byte sectors, seconds with 3 decimals, io_now gauge.
    disk = []
    for dev in _DISKS:
        iops = rng.lognormal(1.5, 1.0, size=(h, 1))
        reads = rng.poisson(iops * dt * 0.3, size=(h, k)).astype(float)
        writes = rng.poisson(iops * dt * 0.7, size=(h, k)).astype(float)
        sectors_r = reads * rng.integers(8, 64, size=(h, k))
        sectors_w = writes * rng.integers(8, 32, size=(h, k))
        start = rng.uniform(1e5, 1e7, size=(h, 1)).round()
        r_time = np.round(reads * rng.uniform(0.0002, 0.002, size=(h, k)), 3)
        w_time = np.round(writes * rng.uniform(0.0005, 0.004, size=(h, k)), 3)
        for metric, arr in (
            ("reads_completed_total", _counter(start, reads)),
            ("writes_completed_total", _counter(start * 2, writes)),
            ("read_bytes_total", _counter(start * 4096, sectors_r * 512)),
            ("written_bytes_total", _counter(start * 8192, sectors_w * 512)),
            ("io_time_seconds_total", np.round(_counter(np.round(start / 500, 3), np.minimum(
                r_time + w_time, dt)), 3)),
            ("read_time_seconds_total", np.round(_counter(np.round(start / 900, 3), r_time), 3)),
            ("write_time_seconds_total", np.round(_counter(np.round(start / 400, 3), w_time), 3)),
            ("io_now", rng.poisson(0.05, size=(h, k)).astype(float)),
        ):
            disk.append(arr)
            members.append((f"node_disk_{metric}", {"device": dev}))
    families.append(np.stack(disk, axis=1))

    per_host = np.concatenate(families, axis=1)
    assert per_host.shape[1] == len(members) == SERIES_PER_HOST, (per_host.shape, len(members))
    values = np.ascontiguousarray(per_host.reshape(h * SERIES_PER_HOST, k), dtype=np.float64)

    labels: list[list[tuple[str, str]]] = []
    for host in range(h):
        instance = f"host-{host:02d}:9100"
        for name, extra in members:
            labels.append(sorted({"__name__": name, "instance": instance, "job": "node", **extra}.items()))

    if end_ms is None:
        end_ms = int(time.time() * 1000)
    t0 = (end_ms - k * interval_ms) // interval_ms * interval_ms
    offset = rng.integers(0, 10, size=(h, 1))
    jitter = rng.integers(1, 6, size=(h, k)) * (rng.random(size=(h, k)) < 0.02)
    timestamps = (t0 + np.arange(k, dtype=np.int64) * interval_ms + offset + jitter).astype(np.int64)
    host_of = np.repeat(np.arange(h), SERIES_PER_HOST)
    if histograms:  # after everything else, from its own random stream: the node series stay the same
        hist = _histograms(np.random.default_rng([seed, 1]), h, k, dt)
        values = np.ascontiguousarray(np.concatenate([values, hist.reshape(-1, k)]), dtype=np.float64)
        host_of = np.concatenate([host_of, np.repeat(np.arange(h), HISTOGRAM_SERIES_PER_HOST)])
        name = "http_request_duration_seconds"
        for host in range(h):
            base = {"instance": f"host-{host:02d}:9100", "job": "node", "handler": "/api"}
            labels += [sorted({**base, "__name__": f"{name}_bucket", "le": le}.items())
                       for le in HISTOGRAM_LE]
            labels += [sorted({"__name__": f"{name}_{x}", **base}.items()) for x in ("count", "sum")]
    return Workload(labels, host_of, values, timestamps)


# --- encoding -----------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field_bytes(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _label_blob(labels: list[tuple[str, str]]) -> bytes:
    """TimeSeries field 1 (repeated Label), already wrapped."""
    return b"".join(
        _field_bytes(1, _field_bytes(1, n.encode()) + _field_bytes(2, v.encode())) for n, v in labels
    )


@dataclass
class Batch:
    payload: bytes  # snappy block of an encoded WriteRequest
    samples: int


def encode_streams(wl: Workload, senders: int = 4, batch: int = 2000) -> list[list[Batch]]:
    """Encode the whole workload: one list of payloads per sender, in send order."""
    if batch <= 0 or senders <= 0:
        raise ValueError("batch and senders must be positive")
    lab = [_label_blob(ls) for ls in wl.labels]
    k = wl.n_scrapes
    # Per scrape: the 8-byte little-endian values of all series, and per (host, scrape) the
    # Sample.timestamp field (tag 0x10 + varint).
    vrows = [wl.values[:, j].astype("<f8").tobytes() for j in range(k)]
    tsf = [[b"\x10" + _varint(int(t)) for t in row] for row in wl.timestamps.tolist()]
    host_of = wl.host_of.tolist()
    compress = cramjam.snappy.compress_raw
    fixed_head: list[bytes] | None = None
    ts_sizes = {len(t) for row in tsf for t in row}
    if len(ts_sizes) == 1:
        smp_len = 9 + ts_sizes.pop()  # 0x09 + double, then the timestamp field
        fixed_head = [
            b"\x0a" + _varint(len(lb) + 2 + smp_len) + lb + b"\x12" + bytes((smp_len,)) + b"\x09"
            for lb in lab
        ]
    streams: list[list[Batch]] = []
    for ids in np.array_split(np.arange(wl.n_series), senders):
        ids_l = ids.tolist()
        n = len(ids_l)
        out: list[Batch] = []
        for j0 in range(0, n * k, batch):
            j1 = min(j0 + batch, n * k)
            if fixed_head is not None and j1 - j0 <= n:
                # Fast path: every series occurs at most once in the batch, and every Sample has
                # the same size, so each TimeSeries is a precomputed head + 8 value bytes + timestamp.
                parts = []
                for j in range(j0, j1):
                    scrape, r = divmod(j, n)
                    s = ids_l[r]
                    o = 8 * s
                    parts.append(fixed_head[s] + vrows[scrape][o:o + 8] + tsf[host_of[s]][scrape])
                out.append(Batch(bytes(compress(b"".join(parts))), j1 - j0))
                continue
            # series -> its encoded Sample messages (field 2 of TimeSeries), in scrape order.
            groups: dict[int, list[bytes]] = {}
            for j in range(j0, j1):
                scrape, r = divmod(j, n)
                s = ids_l[r]
                o = 8 * s
                smp = b"\x09" + vrows[scrape][o:o + 8] + tsf[host_of[s]][scrape]
                entry = b"\x12" + bytes((len(smp),)) + smp
                g = groups.get(s)
                if g is None:
                    groups[s] = [entry]
                else:
                    g.append(entry)
            parts = []
            for s, entries in groups.items():
                body = lab[s] + b"".join(entries)
                parts.append(b"\x0a" + _varint(len(body)) + body)
            out.append(Batch(bytes(compress(b"".join(parts))), j1 - j0))
        streams.append(out)
    return streams


# --- verification with descriptor-built classes -------------------------------------------------


def _write_request_class() -> Any:
    f = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="bench_prompb.proto", package="benchprompb", syntax="proto3"
    )
    schema: dict[str, list[tuple[str, int, int, int, str | None]]] = {
        "Label": [("name", 1, f.TYPE_STRING, f.LABEL_OPTIONAL, None),
                  ("value", 2, f.TYPE_STRING, f.LABEL_OPTIONAL, None)],
        "Sample": [("value", 1, f.TYPE_DOUBLE, f.LABEL_OPTIONAL, None),
                   ("timestamp", 2, f.TYPE_INT64, f.LABEL_OPTIONAL, None)],
        "TimeSeries": [("labels", 1, f.TYPE_MESSAGE, f.LABEL_REPEATED, "Label"),
                       ("samples", 2, f.TYPE_MESSAGE, f.LABEL_REPEATED, "Sample")],
        "WriteRequest": [("timeseries", 1, f.TYPE_MESSAGE, f.LABEL_REPEATED, "TimeSeries")],
    }
    for msg, fields in schema.items():
        m = fdp.message_type.add(name=msg)
        for name, number, typ, label, type_name in fields:
            fd = m.field.add(name=name, number=number, type=typ, label=label)
            if type_name:
                fd.type_name = f".benchprompb.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("benchprompb.WriteRequest"))


def verify_payload(wl: Workload, streams: list[list[Batch]], sender: int = 0, index: int = 0) -> None:
    """Decode one payload independently and check it against the workload; raises on mismatch."""
    cls = _write_request_class()
    b = streams[sender][index]
    req = cls.FromString(bytes(cramjam.snappy.decompress_raw(b.payload)))
    ids = np.array_split(np.arange(wl.n_series), len(streams))[sender]
    n = len(ids)
    expected: dict[int, list[tuple[float, int]]] = {}
    j0 = sum(x.samples for x in streams[sender][:index])
    for j in range(j0, j0 + b.samples):
        scrape, r = divmod(j, n)
        s = int(ids[r])
        expected.setdefault(s, []).append(
            (float(wl.values[s, scrape]), int(wl.timestamps[wl.host_of[s], scrape])))
    got = 0
    by_labels = {tuple(wl.labels[s]): s for s in expected}
    assert len(req.timeseries) == len(expected), (len(req.timeseries), len(expected))
    for ts in req.timeseries:
        labels = [(lb.name, lb.value) for lb in ts.labels]
        assert labels == sorted(labels), labels
        s = by_labels[tuple(labels)]
        pairs = [(x.value, x.timestamp) for x in ts.samples]
        assert pairs == expected[s], (labels, pairs[:3], expected[s][:3])
        got += len(pairs)
    assert got == b.samples, (got, b.samples)
