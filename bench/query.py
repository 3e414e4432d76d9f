"""Query latency benchmark: Vigil against Debian's Prometheus on the same hour of data.

Both servers get the ingest benchmark's workload (`bench.workload.generate(histograms=True)`:
10,000 node_exporter-shaped series from 100 hosts plus a 14-series classic histogram per host,
240 scrapes 15 s apart = one hour ending about now), sent in time order by one
`bench.ingest.send_all` sender.  Then a fixed set of typical dashboard and alert queries runs on
both, each as an instant query at the end of the hour and as a range query over the hour with a
15 s step.  Every query is run once
to warm up, then `--reps` times per target, alternating between the targets so that load from
elsewhere hits both alike; one line per query and mode gives the median wall time of the HTTP
request (sent, evaluated, answered, body read; one keep-alive http.client connection per target):

    query cpu-by-host range: vigil 246.1 ms, prometheus 282.5 ms, vigil/prometheus 0.87x (100 series,
    23900 points)

then a summary line with the geometric mean of the ratios.  Evaluation times are 7.5 s past a
scrape slot, so no sample lies on a range boundary and Prometheus 2.42's left-closed ranges
select the same samples as 3.x's left-open ones; each line says if the two answers differ in
shape (series or points).  Errors (e.g. HTTP 404 while Vigil has no query API) are reported per
query; the exit code is 1 if any query failed on any target.

Usage:
    python -m bench.query                          # starts Vigil and Prometheus on free ports
    python -m bench.query --hosts 10 --reps 5      # quicker
    python -m bench.query --url http://127.0.0.1:9400 --prom-url http://127.0.0.1:9090
    python -m bench.query --url ... --prom-url ... --no-load --end-ms 1700000000000

With `--url`/`--prom-url` the workload is still sent to those servers (they must not hold it
already: a second load is rejected as out of order) unless `--no-load` is given; then pass the
`--end-ms` (and `--hosts`/`--scrapes`/`--seed`) of the run that loaded it, printed on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from bench.ingest import WRITE_PATH, send_all
from bench.peers import Peer, PeerError, install_sigterm_handler, running
from bench.workload import encode_streams, generate

TARGETS = ("vigil", "prometheus")
RANGE_S = 3600
STEP_S = 15

# (name, expression): typical dashboard panels and alert rules over the workload.
QUERIES: list[tuple[str, str]] = [
    ("cpu-by-host", 'sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))'),
    ("topk-network", "topk(5, rate(node_network_receive_bytes_total[5m]))"),
    ("one-series", 'node_load1{instance="host-00:9100"}'),
    ("latency-p99", "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))"),
    ("count-by-job", 'count by (job) ({__name__=~".+"})'),
    ("absent-alert", 'absent_over_time(node_load1{job="node"}[5m])'),
    ("memory-used", "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes"),
    ("disk-full-alert", "node_filesystem_avail_bytes / node_filesystem_size_bytes < 0.25"),
]


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


@dataclass
class Outcome:
    """What one target answered to one query in one mode, over all repetitions."""

    latencies: list[float] = field(default_factory=list)  # seconds
    error: str | None = None
    shape: tuple[int, int] | None = None  # (series, points) of the last answer

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies) * 1000.0


class QueryClient:
    """One keep-alive HTTP/1.1 connection to a server's query API."""

    def __init__(self, url: str, timeout: float) -> None:
        u = urlsplit(url)
        self.base = u.path.rstrip("/")
        self.conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=timeout)

    def get(self, path: str, params: dict[str, str]) -> tuple[int, bytes, float]:
        """(status, body, seconds from sending the request to having read the whole answer)."""
        target = f"{self.base}{path}?{urlencode(params)}"
        t = time.perf_counter()
        try:
            self.conn.request("GET", target)
            r = self.conn.getresponse()
            body = r.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            raise
        elapsed = time.perf_counter() - t
        if r.will_close:
            self.conn.close()
        return r.status, body, elapsed

    def close(self) -> None:
        self.conn.close()


def _shape(body: bytes) -> tuple[int, int]:
    data = json.loads(body)["data"]
    if data["resultType"] in ("scalar", "string"):
        return 1, 1
    result = data["result"]
    return len(result), sum(len(s["values"]) if "values" in s else 1 for s in result)


def run_query(client: QueryClient, expr: str, mode: str, end_s: float) -> tuple[float, tuple[int, int]]:
    """Run one query once; (seconds, shape); raises RuntimeError on a failed answer."""
    if mode == "instant":
        status, body, elapsed = client.get("/api/v1/query", {"query": expr, "time": f"{end_s:.3f}"})
    else:
        status, body, elapsed = client.get("/api/v1/query_range", {
            "query": expr, "start": f"{end_s - RANGE_S:.3f}", "end": f"{end_s:.3f}", "step": str(STEP_S)})
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {body[:160].decode(errors='replace').strip()}")
    try:
        return elapsed, _shape(body)
    except (ValueError, KeyError, TypeError) as e:
        raise RuntimeError(f"unreadable answer ({type(e).__name__}): {body[:160]!r}") from None


def benchmark(urls: dict[str, str], queries: list[tuple[str, str]], modes: list[str], end_s: float,
              reps: int, warmup: int, timeout: float) -> dict[tuple[str, str, str], Outcome]:
    """Outcomes per (query name, mode, target); targets alternate within each repetition."""
    clients = {kind: QueryClient(url, timeout) for kind, url in urls.items()}
    out: dict[tuple[str, str, str], Outcome] = {}
    try:
        for name, expr in queries:
            for mode in modes:
                for rep in range(warmup + reps):
                    for kind, client in clients.items():
                        o = out.setdefault((name, mode, kind), Outcome())
                        if o.error is not None:
                            continue
                        try:
                            elapsed, o.shape = run_query(client, expr, mode, end_s)
                        except (RuntimeError, OSError, http.client.HTTPException) as e:
                            o.error = str(e) or type(e).__name__
                            continue
                        if rep >= warmup:
                            o.latencies.append(elapsed)
    finally:
        for c in clients.values():
            c.close()
    return out


def report(out: dict[tuple[str, str, str], Outcome], queries: list[tuple[str, str]],
           modes: list[str], kinds: list[str]) -> bool:
    """Print one line per query and mode and the summary; True if anything failed."""
    ratios: dict[str, list[float]] = {m: [] for m in modes}
    failed = False
    for name, _ in queries:
        for mode in modes:
            parts: list[str] = []
            shapes: set[tuple[int, int]] = set()
            for kind in kinds:
                o = out[(name, mode, kind)]
                if o.error is not None:
                    failed = True
                    parts.append(f"{kind} error: {o.error}")
                else:
                    parts.append(f"{kind} {o.median_ms:.1f} ms")
                    if o.shape is not None:
                        shapes.add(o.shape)
            v, p = out.get((name, mode, "vigil")), out.get((name, mode, "prometheus"))
            if v and p and v.error is None and p.error is None:
                r = v.median_ms / p.median_ms
                ratios[mode].append(r)
                parts.append(f"vigil/prometheus {r:.2f}x")
            note = ""
            if len(shapes) > 1:
                got = {k: sh for k in kinds if (sh := out[(name, mode, k)].shape) is not None}
                note = " (answers differ: " + ", ".join(
                    f"{k} {sh[0]} series/{sh[1]} points" for k, sh in got.items()) + ")"
            elif shapes:
                series, points = shapes.pop()
                note = f" ({series} series" + (f", {points} points)" if mode == "range" else ")")
            print(f"query {name} {mode}: " + ", ".join(parts) + note, flush=True)
    every = [r for m in modes for r in ratios[m]]
    total = len(queries) * len(modes)
    if every:
        gm = math.exp(statistics.fmean(math.log(r) for r in every))
        per_mode = ", ".join(f"{m} {math.exp(statistics.fmean(math.log(r) for r in ratios[m])):.2f}x"
                             for m in modes if ratios[m])
        print(f"summary: vigil/prometheus geometric mean {gm:.2f}x ({per_mode}) over {len(every)} of "
              f"{total} query runs", flush=True)
    else:
        errs = {k: sum(1 for (_, _, kk), o in out.items() if kk == k and o.error) for k in kinds}
        why = "only one target" if len(kinds) < 2 else "failed query runs: " + ", ".join(
            f"{k} {n} of {total}" for k, n in errs.items())
        print(f"summary: no vigil/prometheus ratio ({why})", flush=True)
    return failed


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.query", description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--url", help="Vigil's base URL (default: start one on a free port)")
    ap.add_argument("--prom-url", help="Prometheus' base URL (default: start Debian's on a free port)")
    ap.add_argument("--only", default=",".join(TARGETS), help="targets to query (default vigil,prometheus)")
    ap.add_argument("--hosts", type=int, default=100, help="hosts, 114 series each (default 100)")
    ap.add_argument("--scrapes", type=int, default=240, help="scrapes, 15 s apart (default 240 = 1 h)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--end-ms", type=int, help="end of the workload (default now)")
    ap.add_argument("--no-load", action="store_true", help="the servers already hold the workload")
    ap.add_argument("--reps", type=int, default=10, help="timed runs per query, mode and target (default 10)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    ap.add_argument("--modes", default="instant,range", help="instant, range or both (default)")
    ap.add_argument("--queries", help="comma-separated query names (default all: "
                                      + ", ".join(n for n, _ in QUERIES) + ")")
    ap.add_argument("--timeout", type=float, default=300.0, help="per request, seconds (default 300)")
    ap.add_argument("--tmp-dir", type=Path, help="where started servers' data dirs go (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep started servers' temp dirs (printed)")
    args = ap.parse_args(argv)
    args.only = [k.strip() for k in args.only.split(",") if k.strip()]
    if not args.only or any(k not in TARGETS for k in args.only):
        ap.error(f"--only: choose from {', '.join(TARGETS)}")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.modes or any(m not in ("instant", "range") for m in args.modes):
        ap.error("--modes: instant, range or both")
    names = dict(QUERIES)
    if args.queries:
        wanted = [n.strip() for n in args.queries.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            ap.error(f"unknown queries {unknown}; choose from {', '.join(names)}")
        args.queries = [(n, names[n]) for n in wanted]
    else:
        args.queries = QUERIES
    if args.no_load and args.end_ms is None:
        ap.error("--no-load needs the --end-ms of the run that loaded the data")
    if min(args.hosts, args.scrapes, args.reps) < 1 or args.warmup < 0:
        ap.error("--hosts, --scrapes and --reps must be positive, --warmup not negative")
    return args


@contextlib.contextmanager
def _target(kind: str, url: str | None, args: argparse.Namespace) -> Iterator[Peer]:
    if url:
        yield Peer(kind, url.rstrip("/"), None, None)
    else:
        with running(kind, keep=args.keep, tmp_dir=args.tmp_dir) as peer:
            yield peer


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    install_sigterm_handler()
    end_ms = args.end_ms if args.end_ms is not None else int(time.time() * 1000)
    t = time.perf_counter()
    wl = generate(hosts=args.hosts, scrapes=args.scrapes, seed=args.seed, end_ms=end_ms, histograms=True)
    last_slot_ms = int(wl.timestamps.min(axis=0)[-1]) // 15_000 * 15_000
    end_s = (last_slot_ms + 7_500) / 1000  # 7.5 s after the last scrape slot: on no sample
    log(f"workload: {wl.n_series:,} series x {wl.n_scrapes} scrapes = {wl.n_samples:,} samples "
        f"(--end-ms {end_ms} --hosts {args.hosts} --scrapes {args.scrapes} --seed {args.seed}), "
        f"built in {time.perf_counter() - t:.1f} s; queries at {end_s:.3f}")
    # One sender, so samples arrive in time order: parallel senders over few series drift apart in
    # time by more than Vigil's 10 min out-of-order window.  Load speed is not measured here.
    streams = None if args.no_load else encode_streams(wl, senders=1)
    urls = {"vigil": args.url, "prometheus": args.prom_url}
    with contextlib.ExitStack() as stack:
        peers: dict[str, Peer] = {}
        for kind in args.only:
            try:
                peers[kind] = stack.enter_context(_target(kind, urls[kind], args))
            except PeerError as e:
                print(f"query {kind}: FAILED to start: {str(e).splitlines()[0]}", flush=True)
                return 1
            if streams is not None:
                t = time.perf_counter()
                stats, wall = send_all(peers[kind].url + WRITE_PATH, streams)
                log(f"{kind}: loaded {stats.accepted_samples:,} samples in {wall:.1f} s "
                    f"({time.perf_counter() - t:.1f} s), {stats.failed_requests} failed requests")
                for ex in stats.error_examples:
                    log(f"{kind}: load error example: {ex}")
                if stats.failed_requests:
                    first = stats.error_examples[0] if stats.error_examples else "?"
                    print(f"query {kind}: FAILED to load the workload: {first} (already loaded? then use "
                          f"--no-load --end-ms {end_ms})", flush=True)
                    return 1
        log("targets: " + ", ".join(f"{k} {p.url}" for k, p in peers.items()))
        out = benchmark({k: p.url for k, p in peers.items()}, args.queries, args.modes, end_s,
                        args.reps, args.warmup, args.timeout)
    failed = report(out, args.queries, args.modes, args.only)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
