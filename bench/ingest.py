"""Remote-write ingest benchmark: Vigil against Debian's Prometheus and VictoriaMetrics.

Sends a node_exporter-shaped workload (`bench.workload`: 10,000 series from 100 hosts, one sample
per series per 15 s scrape, 240 scrapes = one simulated hour ending about now) as remote-write
1.0 requests of at most 2,000 samples from 4 concurrent senders (threads, each with one
keep-alive HTTP/1.1 connection and a fixed quarter of the series, so per-series order is kept).
All payloads are encoded (and one is checked by decoding it) before the clock starts.

The senders use the standard library's http.client by default: on this 2-core machine the client
shares the CPU with the server, and httpx costs about 4x the client CPU (~0.6 vs ~0.15 CPU-s per
million samples), enough to cap a fast server; `--client httpx` is there to compare.  stderr
reports the client's CPU and what other processes on the machine used during the run.

Prints one line per target:

    ingest vigil: 312,000 samples/s, p50 5.1 ms, p99 20.3 ms, 5.8 cpu-s/M samples, peak RSS 180 MiB,
    1.31 bytes/sample (2,400,000 samples, 0 errors)

and, when Prometheus and another target ran, ratio lines against Prometheus.  Details (phase
timings, CPU split, on-disk breakdown, error bodies) go to stderr.

What is measured:
- samples/s: samples in accepted (2xx) requests / wall time from the first request to the last
  response.  Non-2xx answers count as errors; 429 and 5xx (and connection errors) are retried
  with exponential backoff a few times, as a real sender would, and the time counts.
- p50/p99: latency of every HTTP request (attempts, including retries).
- cpu-s/M: user+sys CPU of the server process tree (psutil) from just before the first request
  until the forced compaction below has finished, per million samples sent; i.e. everything the
  server spent to turn the samples into the on-disk form measured below.  stderr splits it.
- peak RSS: the server tree's RSS sampled every 100 ms during sending and compaction (and the
  kernel's VmHWM of the root process, whichever is larger).
- bytes/sample: on-disk bytes after forcing compaction / samples sent.  Apparent file sizes,
  each inode once (hard links):
  - vigil: `POST /api/v1/admin/tsdb/compact` (204 once the head is in compacted blocks), then
    the whole data directory.
  - prometheus: `POST /api/v1/admin/tsdb/snapshot` (needs --web.enable-admin-api); this writes the
    head into a fresh block under `<data>/snapshots/<name>` and hard-links the persisted blocks;
    we measure that snapshot directory (so no WAL, no head chunks).
  - victoria-metrics (1.79): `GET /internal/force_flush` (in-memory rows and index entries to
    parts on disk), then `GET /internal/force_merge` (starts a merge of all partitions in the
    background); we then poll `/metrics` until `vm_active_force_merges` and all `vm_active_merges`
    are 0 and the directory size has been stable for 2 s, and measure the whole
    `-storageDataPath` (data + indexdb + metadata).

Usage:
    python -m bench.ingest                      # = --peers: start all three, fresh temp dirs
    python -m bench.ingest --only vigil,prometheus --hosts 10 --scrapes 40
    python -m bench.ingest --url http://127.0.0.1:9090 --kind prometheus --pid 1234 --data-dir /d
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import psutil

from bench.peers import (
    KINDS,
    Peer,
    PeerError,
    ProcessTree,
    RssSampler,
    dir_bytes,
    install_sigterm_handler,
    running,
)
from bench.workload import Batch, encode_streams, generate, verify_payload

HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "User-Agent": "vigil-bench-ingest/1",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
WRITE_PATH = "/api/v1/write"


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


# --- sending ------------------------------------------------------------------------------------


@dataclass
class SendStats:
    accepted_samples: int = 0
    failed_requests: int = 0
    failed_samples: int = 0
    retries: int = 0
    latencies: list[float] = field(default_factory=list)
    error_examples: list[str] = field(default_factory=list)


class _StdlibPoster:
    """One keep-alive HTTP/1.1 connection (http.client, TCP_NODELAY, headers+body in one send)."""

    def __init__(self, write_url: str) -> None:
        u = urlsplit(write_url)
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        self.conn = cls(u.hostname or "127.0.0.1", u.port, timeout=120.0)
        self.path = u.path or WRITE_PATH

    def post(self, payload: bytes) -> tuple[int, str]:
        if self.conn.sock is None:
            self.conn.connect()
            sock = self.conn.sock
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.conn.request("POST", self.path, body=payload, headers=HEADERS)
            r = self.conn.getresponse()
            body = r.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            raise
        if r.will_close:
            self.conn.close()
        return r.status, body[:300].decode(errors="replace")

    def close(self) -> None:
        self.conn.close()


class _HttpxPoster:
    """One keep-alive HTTP/1.1 connection through httpx (about 4x the client CPU of http.client)."""

    def __init__(self, write_url: str) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.client = httpx.Client(http1=True, http2=False, timeout=120.0, limits=limits, headers=HEADERS)
        self.url = write_url

    def post(self, payload: bytes) -> tuple[int, str]:
        r = self.client.post(self.url, content=payload)
        return r.status_code, r.text[:300]

    def close(self) -> None:
        self.client.close()


CLIENTS = {"http.client": _StdlibPoster, "httpx": _HttpxPoster}


def _sender(poster: _StdlibPoster | _HttpxPoster, batches: list[Batch], stats: SendStats,
            lock: threading.Lock, start: threading.Barrier, stop: threading.Event, max_retries: int) -> None:
    lat: list[float] = []
    accepted = failed_req = failed_samples = retries = 0
    examples: list[str] = []
    try:
        start.wait()
        for b in batches:
            if stop.is_set():
                break
            for attempt in range(max_retries + 1):
                t = time.perf_counter()
                try:
                    status, detail = poster.post(b.payload)
                except (OSError, http.client.HTTPException, httpx.TransportError) as e:
                    status, detail = 0, f"{type(e).__name__}: {e}"
                lat.append(time.perf_counter() - t)
                if 200 <= status < 300:
                    accepted += b.samples
                    break
                retryable = status in (0, 429) or status >= 500
                if retryable and attempt < max_retries and not stop.is_set():
                    retries += 1
                    time.sleep(min(0.05 * 2**attempt, 2.0))
                    continue
                failed_req += 1
                failed_samples += b.samples
                if len(examples) < 3:
                    examples.append(f"HTTP {status or 'error'}: {detail.strip()}")
                break
    except threading.BrokenBarrierError:
        pass
    finally:
        poster.close()
        with lock:
            stats.accepted_samples += accepted
            stats.failed_requests += failed_req
            stats.failed_samples += failed_samples
            stats.retries += retries
            stats.latencies += lat
            stats.error_examples += examples[: max(0, 5 - len(stats.error_examples))]


def send_all(write_url: str, streams: list[list[Batch]], max_retries: int = 4,
             client: str = "http.client") -> tuple[SendStats, float]:
    """Send every stream from its own thread and connection; returns the stats and the wall time (s)."""
    stats = SendStats()
    lock = threading.Lock()
    stop = threading.Event()
    start = threading.Barrier(len(streams) + 1)
    threads = [
        threading.Thread(target=_sender, name=f"sender-{i}", daemon=True,
                         args=(CLIENTS[client](write_url), s, stats, lock, start, stop, max_retries))
        for i, s in enumerate(streams)
    ]
    for t in threads:
        t.start()
    try:
        start.wait()
        t0 = time.perf_counter()
        for t in threads:
            while t.is_alive():
                t.join(0.2)
        return stats, time.perf_counter() - t0
    except BaseException:
        stop.set()
        start.abort()
        raise


def _busy_cpu_seconds() -> float:
    """Machine-wide busy CPU seconds (all cores), for spotting other load during a run."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


# --- compaction and on-disk size per kind -------------------------------------------------------


def _vm_metric_sum(text: str, name: str) -> float:
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M):
        total += float(m.group(1))
    return total


def compact_and_measure(peer: Peer) -> tuple[int | None, str]:
    """Force compaction the kind's way; return (on-disk bytes or None, detail for stderr)."""
    with httpx.Client(timeout=900.0) as client:
        if peer.kind == "vigil":
            r = client.post(peer.url + "/api/v1/admin/tsdb/compact")
            if r.status_code not in (200, 204):
                raise PeerError(f"vigil compact: HTTP {r.status_code}: {r.text[:300]}")
            if peer.data_dir is None:
                return None, "no --data-dir"
            return dir_bytes(peer.data_dir), _breakdown(peer.data_dir)
        if peer.kind == "prometheus":
            r = client.post(peer.url + "/api/v1/admin/tsdb/snapshot")
            if r.status_code != 200:
                raise PeerError(f"prometheus snapshot: HTTP {r.status_code}: {r.text[:300]} "
                                "(is --web.enable-admin-api set?)")
            name = r.json()["data"]["name"]
            if peer.data_dir is None:
                return None, f"snapshot {name}; no --data-dir"
            snap = peer.data_dir / "snapshots" / name
            return dir_bytes(snap), _breakdown(snap)
        if peer.kind == "victoria-metrics":
            for path in ("/internal/force_flush", "/internal/force_merge"):
                r = client.get(peer.url + path)
                if r.status_code != 200:
                    raise PeerError(f"victoria-metrics {path}: HTTP {r.status_code}: {r.text[:300]}")
            deadline = time.monotonic() + 600
            last_size, stable_since = -1, time.monotonic()
            while time.monotonic() < deadline:
                time.sleep(0.25)
                text = client.get(peer.url + "/metrics").text
                busy = _vm_metric_sum(text, "vm_active_force_merges")
                busy += _vm_metric_sum(text, "vm_active_merges")
                size = dir_bytes(peer.data_dir) if peer.data_dir is not None else 0
                if busy or size != last_size:
                    last_size, stable_since = size, time.monotonic()
                elif time.monotonic() - stable_since >= 2.0:
                    break
            else:
                log("victoria-metrics: merges did not settle within 600 s; measuring anyway")
            if peer.data_dir is None:
                return None, "no --data-dir"
            return dir_bytes(peer.data_dir), _breakdown(peer.data_dir)
    raise ValueError(f"unknown kind {peer.kind!r}")


def _breakdown(path: Path) -> str:
    parts = []
    for child in sorted(path.iterdir()):
        size = dir_bytes(child) if child.is_dir() else child.stat().st_size
        parts.append(f"{child.name}={size / 2**20:.2f}MiB")
    return f"{path}: " + ", ".join(parts)


# --- one target ---------------------------------------------------------------------------------


@dataclass
class Result:
    kind: str
    samples_sent: int
    samples_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_per_m: float | None
    peak_rss: int | None
    bytes_per_sample: float | None
    errors: int
    retries: int
    bytes_note: str = "no --data-dir"
    runs: int = 1

    def line(self) -> str:
        cpu = f"{self.cpu_per_m:.2f} cpu-s/M samples" if self.cpu_per_m is not None else "cpu n/a (no --pid)"
        rss = f"peak RSS {self.peak_rss / 2**20:,.0f} MiB" if self.peak_rss is not None else "peak RSS n/a"
        bps = (f"{self.bytes_per_sample:.2f} bytes/sample" if self.bytes_per_sample is not None
               else f"bytes/sample n/a ({self.bytes_note})")
        extra = f", {self.retries} retries" if self.retries else ""
        extra += f", median of {self.runs} runs" if self.runs > 1 else ""
        return (f"ingest {self.kind}: {self.samples_per_s:,.0f} samples/s, p50 {self.p50_ms:.1f} ms, "
                f"p99 {self.p99_ms:.1f} ms, {cpu}, {rss}, {bps} "
                f"({self.samples_sent:,} samples, {self.errors} errors{extra})")


def run_target(peer: Peer, streams: list[list[Batch]], samples: int, max_retries: int,
               client: str) -> Result:
    tree = ProcessTree(peer.pid) if peer.pid is not None else None
    with RssSampler(tree) if tree is not None else contextlib.nullcontext() as sampler:
        cpu0 = tree.cpu_seconds() if tree else 0.0
        me0, busy0 = time.process_time(), _busy_cpu_seconds()
        stats, wall = send_all(peer.url + WRITE_PATH, streams, max_retries, client)
        cpu1 = tree.cpu_seconds() if tree else 0.0
        me1, busy1 = time.process_time(), _busy_cpu_seconds()
        t = time.perf_counter()
        try:
            size, detail = compact_and_measure(peer)
            note = detail
        except (PeerError, httpx.HTTPError, OSError, KeyError, ValueError) as e:
            size, note = None, f"compaction failed: {e}"
        compact_s = time.perf_counter() - t
        cpu2 = tree.cpu_seconds() if tree else 0.0
    peak = max(sampler.peak, tree.hwm_bytes()) if tree is not None and sampler is not None else None
    lat = np.array(stats.latencies) * 1000.0 if stats.latencies else np.zeros(1)
    log(f"{peer.kind}: sent in {wall:.2f} s, {len(stats.latencies)} requests; server cpu "
        f"{cpu1 - cpu0:.2f} s ingest + {cpu2 - cpu1:.2f} s compaction ({compact_s:.1f} s wall); "
        f"benchmark client cpu {me1 - me0:.2f} s")
    other = max(0.0, (busy1 - busy0) - (cpu1 - cpu0 if tree else 0.0) - (me1 - me0))
    if tree is not None and wall > 0:
        cores = other / wall
        warn = "  <-- WARNING: the machine is busy, numbers are unreliable" if cores > 0.25 else ""
        log(f"{peer.kind}: other processes used {other:.1f} cpu-s ({cores:.2f} of "
            f"{psutil.cpu_count()} cores) while sending{warn}")
    log(f"{peer.kind}: on disk {note}")
    for ex in stats.error_examples:
        log(f"{peer.kind}: error example: {ex}")
    return Result(
        kind=peer.kind,
        samples_sent=samples,
        samples_per_s=stats.accepted_samples / wall if wall > 0 else 0.0,
        p50_ms=float(np.percentile(lat, 50)),
        p99_ms=float(np.percentile(lat, 99)),
        cpu_per_m=(cpu2 - cpu0) / (samples / 1e6) if tree is not None else None,
        peak_rss=peak,
        bytes_per_sample=size / samples if size is not None else None,
        errors=stats.failed_requests,
        retries=stats.retries,
        bytes_note=note.splitlines()[0] if size is None else "",
    )


def combine(runs: list[Result]) -> Result:
    """The median of each measurement over repeated runs (errors and retries are summed)."""
    if len(runs) == 1:
        return runs[0]

    def med(values: list[float | int | None]) -> float | None:
        xs = [v for v in values if v is not None]
        return float(np.median(xs)) if xs else None

    first = runs[0]
    peak = med([r.peak_rss for r in runs])
    return Result(
        kind=first.kind,
        samples_sent=first.samples_sent,
        samples_per_s=med([r.samples_per_s for r in runs]) or 0.0,
        p50_ms=med([r.p50_ms for r in runs]) or 0.0,
        p99_ms=med([r.p99_ms for r in runs]) or 0.0,
        cpu_per_m=med([r.cpu_per_m for r in runs]),
        peak_rss=int(peak) if peak is not None else None,
        bytes_per_sample=med([r.bytes_per_sample for r in runs]),
        errors=sum(r.errors for r in runs),
        retries=sum(r.retries for r in runs),
        bytes_note=first.bytes_note,
        runs=len(runs),
    )


def ratio_line(r: Result, base: Result) -> str:
    def q(a: float | int | None, b: float | int | None) -> str:
        return f"{a / b:.2f}x" if a is not None and b else "n/a"

    return (f"ratio {r.kind}/{base.kind}: samples/s {q(r.samples_per_s, base.samples_per_s)}, "
            f"p50 {q(r.p50_ms, base.p50_ms)}, p99 {q(r.p99_ms, base.p99_ms)}, "
            f"cpu-s/M {q(r.cpu_per_m, base.cpu_per_m)}, peak RSS {q(r.peak_rss, base.peak_rss)}, "
            f"bytes/sample {q(r.bytes_per_sample, base.bytes_per_sample)}")


# --- CLI ----------------------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.ingest", description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--url", help="base URL of an already running server (default: --peers)")
    ap.add_argument("--kind", choices=KINDS, default="vigil", help="kind of the --url server (default vigil)")
    ap.add_argument("--pid", type=int, help="server pid, for CPU and RSS (with --url)")
    ap.add_argument("--data-dir", type=Path, help="server data dir, for bytes/sample (with --url)")
    ap.add_argument("--peers", action="store_true", help="start each target on a free port (default)")
    ap.add_argument("--only", default=",".join(KINDS), help="comma-separated targets for --peers")
    ap.add_argument("--hosts", type=int, default=100, help="hosts, 100 series each (default 100)")
    ap.add_argument("--scrapes", type=int, default=240, help="scrapes, 15 s apart (default 240)")
    ap.add_argument("--batch", type=int, default=2000, help="max samples per request (default 2000)")
    ap.add_argument("--senders", type=int, default=4, help="concurrent senders (default 4)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--retries", type=int, default=4, help="retries of a 429/5xx/failed request")
    ap.add_argument("--client", choices=sorted(CLIENTS), default="http.client",
                    help="HTTP client of the senders (default http.client: least client CPU)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run each target N times (round robin) and report medians")
    ap.add_argument("--tmp-dir", type=Path,
                    help="where the peers' data dirs go (default: the system temp dir; /dev/shm takes the "
                         "disk's fsync latency out)")
    ap.add_argument("--keep", action="store_true", help="keep the peers' temp dirs (printed)")
    args = ap.parse_args(argv)
    if args.url and args.peers:
        ap.error("--url and --peers exclude each other")
    only = [k.strip() for k in args.only.split(",") if k.strip()]
    bad = [k for k in only if k not in KINDS]
    if bad or not only:
        ap.error(f"unknown target(s) {bad}; choose from {', '.join(KINDS)}")
    if min(args.hosts, args.scrapes, args.batch, args.senders, args.repeat) < 1:
        ap.error("--hosts, --scrapes, --batch, --senders and --repeat must be positive")
    args.only = only
    return args


@contextlib.contextmanager
def _target(args: argparse.Namespace, kind: str) -> Iterator[Peer]:
    if args.url:
        url = args.url.rstrip("/")
        if url.endswith(WRITE_PATH):
            url = url[: -len(WRITE_PATH)]
        yield Peer(kind, url, args.pid, args.data_dir)
    else:
        with running(kind, keep=args.keep, tmp_dir=args.tmp_dir) as peer:
            yield peer


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    install_sigterm_handler()
    t = time.perf_counter()
    wl = generate(hosts=args.hosts, scrapes=args.scrapes, seed=args.seed)
    streams = encode_streams(wl, senders=args.senders, batch=args.batch)
    verify_payload(wl, streams, sender=len(streams) - 1, index=len(streams[-1]) - 1)
    n_req = sum(len(s) for s in streams)
    size = sum(len(b.payload) for s in streams for b in s)
    log(f"workload: {wl.n_series:,} series x {wl.n_scrapes} scrapes = {wl.n_samples:,} samples in "
        f"{n_req:,} requests ({size / 2**20:.1f} MiB snappy), built in {time.perf_counter() - t:.1f} s")

    kinds = [args.kind] if args.url else args.only
    runs: dict[str, list[Result]] = {k: [] for k in kinds}
    failures: dict[str, str] = {}
    for rep in range(args.repeat):
        for kind in kinds:
            if kind in failures:
                continue
            try:
                with _target(args, kind) as peer:
                    log(f"{kind}: run {rep + 1}/{args.repeat} {peer.url} pid {peer.pid} data {peer.data_dir}")
                    runs[kind].append(run_target(peer, streams, wl.n_samples, args.retries, args.client))
            except (PeerError, httpx.HTTPError, OSError) as e:
                msg = str(e) or type(e).__name__
                failures[kind] = msg.splitlines()[0]
                if "\n" in msg:
                    log(msg)
    results: dict[str, Result] = {}
    failed = False
    for kind in kinds:
        if kind in failures:
            failed = True
            print(f"ingest {kind}: FAILED: {failures[kind]}", flush=True)
            continue
        res = results[kind] = combine(runs[kind])
        failed |= res.errors > 0 or res.bytes_note.startswith("compaction failed")
        print(res.line(), flush=True)
    base = results.get("prometheus")
    if base is not None:
        for kind, res in results.items():
            if kind != "prometheus":
                print(ratio_line(res, base), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
