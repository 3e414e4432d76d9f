"""Agent overhead benchmark: `vigil agent` against Debian's `prometheus-node-exporter`.

Runs the Vigil agent with its default collectors at a 10 s interval, shipping every round through
its durable queue to a real `vigil server` (started on a free port; the server's CPU is not
counted), and Debian's node_exporter with its default collectors, scraped by this benchmark every
10 s.  Both run concurrently over the same window (the machine has 2 cores and both are light;
node_exporter is scraped half an interval after each agent collection so the two do not
overlap); `--sequential` runs them one after the other instead.  Prints one line per target:

    agent vigil: 4.2 ms cpu/collection, 0.05 % cpu, peak RSS 58 MiB, 210 series/collection
    (30 collections, shipper on)

and a ratio line vigil/node_exporter with the issue's targets (agent CPU per collection <= node
exporter's per scrape, peak RSS <= 60 MiB with the shipper on).  Details go to stderr, prefixed `#`.

What is measured:
- The window: the agent aligns its rounds to multiples of the interval (wall clock).  After both
  targets are up and the agent's startup round is done, the window starts `margin` s before the
  next interval boundary and lasts N intervals, so it holds exactly N agent collections (and N
  node_exporter scrapes, each at boundary + interval/2); the last one has interval - margin s to
  finish (and ship) before the window closes.  Startup (imports, the first round) is outside it.
- cpu/collection: user+sys CPU of the target's process tree (psutil) over the window / N.  This
  is everything the process spent, idle wake-ups and (for Vigil) queueing and shipping included.
- % cpu: the same CPU / window wall time, in percent of one core.
- peak RSS: the target process's RSS sampled every 0.5 s from start to end, or the kernel's
  lifetime peak (VmHWM) if larger. Vigil's children (journalctl when auth comes from the journal,
  the hourly apt-get/dnf check) are reported apart ("children peak +N MiB"), as node_exporter's
  apt textfile script would be; the window opens after the start-up package check finished.
- series: Vigil's `vigil_agent_collection_series` gauge read from the agent's /metrics after the
  window (the gauge counts everything in the agent's registry, its own and the shipper's metrics
  included); node_exporter's non-comment lines per scrape (mean; stderr has min/max).

Usage:
    python -m bench.agent                          # 300 s, 10 s interval, concurrently
    python -m bench.agent --duration 60 --interval 5
    python -m bench.agent --only vigil --sequential
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from bench.peers import (
    REPO,
    PeerError,
    ProcessTree,
    RssSampler,
    _die_with_parent,
    free_port,
    install_sigterm_handler,
    running,
    stop_process,
)

TARGETS = ("vigil", "node_exporter")
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
MIB = 1024 * 1024
RSS_TARGET_MIB = 60.0


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


def _busy_cpu_seconds() -> float:
    """Machine-wide busy CPU seconds (all cores), for spotting other load during a run."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def _metric(text: str, name: str) -> float | None:
    """The value of an unlabelled sample `name` in Prometheus text, None if absent."""
    m = re.search(rf"^{re.escape(name)}(?:\{{\}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def _series_lines(text: str) -> int:
    return sum(1 for ln in text.splitlines() if ln and not ln.startswith("#"))


# --- starting the targets -----------------------------------------------------------------------


@dataclass
class Target:
    """A started agent-like process: where it answers and how to measure it."""

    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    tree: ProcessTree = field(init=False)
    sampler: RssSampler = field(init=False)

    def __post_init__(self) -> None:
        self.tree = ProcessTree(self.proc.pid)
        self.sampler = RssSampler(self.tree, interval=0.5)

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _wait_ready(target: Target, port: int, timeout: float = 60.0) -> None:
    """Wait until the target accepts TCP connections on `port`.

    A connect, not an HTTP request: the agent's /metrics server answers every path with a collection,
    and collections must only happen on the agent's own schedule."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if target.proc.poll() is not None:
            raise PeerError(f"{target.name} exited with code {target.proc.returncode} before it was "
                            f"ready\nlog tail:\n{target.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2.0):
                return
        except OSError as e:
            last = type(e).__name__
        time.sleep(0.1)
    raise PeerError(f"{target.name} at {target.url} not ready after {timeout:.0f} s ({last})\n"
                    f"log tail:\n{target.log_tail()}")


@contextlib.contextmanager
def _started(name: str, argv: list[str], work_dir: Path, port: int) -> Iterator[Target]:
    """Start argv in its own session (logs to work_dir), sample its RSS, stop it on exit."""
    log_path = work_dir / f"{name}.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                cwd=work_dir, start_new_session=True, preexec_fn=_die_with_parent)
    try:
        target = Target(name, f"http://127.0.0.1:{port}", proc, log_path)
        with target.sampler:
            _wait_ready(target, port)
            yield target
    finally:
        stop_process(proc)


@contextlib.contextmanager
def vigil_agent(
    work_dir: Path, interval_s: float, write_url: str, host_only: bool = False
) -> Iterator[Target]:
    """`vigil agent` with default collectors, shipping to `write_url` (the shipper is on); `host_only`
    turns the security side off, for a like-for-like comparison with node_exporter's collectors."""
    binary = REPO / ".venv" / "bin" / "vigil"
    if not binary.exists():
        raise PeerError(f"vigil binary {binary} is missing (is the package installed in .venv?)")
    port = free_port()
    interval_ms = round(interval_s * 1000)
    config = work_dir / "vigil.yml"
    config.write_text(
        "agent:\n"
        f"  listen: 127.0.0.1:{port}\n"
        f"  interval: {interval_ms}ms\n"
        f"  data_dir: {work_dir / 'agent-data'}\n"
        + ("  disable: [listening_ports, file_integrity, updates, logs]\n" if host_only else "")
        + "  ship:\n"
        f"    url: {write_url}\n"
    )
    with _started("vigil", [str(binary), "agent", "--config", str(config)], work_dir, port) as t:
        _wait_children_done(t, ("apt-get", "dnf", "yum"))
        yield t


def _wait_children_done(target: Target, names: tuple[str, ...], timeout: float = 180.0) -> None:
    """Wait until the agent's start-up package check (apt-get/dnf, then hourly) has finished, so the
    window measures steady collections; its cost is once an hour, not per collection."""
    deadline, seen_by = time.monotonic() + timeout, time.monotonic() + 15.0
    seen = False
    while time.monotonic() < deadline:
        running = any(n in names for n in target.tree.child_names())
        seen = seen or running
        if (seen and not running) or (not seen and time.monotonic() > seen_by):
            return
        time.sleep(0.2)
    log(f"{target.name}: package check still running after {timeout:.0f} s")


@contextlib.contextmanager
def node_exporter(work_dir: Path) -> Iterator[Target]:
    """Debian's node_exporter with its default collectors."""
    if shutil.which(NODE_EXPORTER) is None:
        raise PeerError(f"{NODE_EXPORTER} is not installed (apt-get install prometheus-node-exporter)")
    port = free_port()
    argv = [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    with _started("node_exporter", argv, work_dir, port) as t:
        yield t


# --- the measurement window ---------------------------------------------------------------------


@dataclass
class Result:
    name: str
    collections: int
    cpu_s: float
    wall_s: float
    peak_rss: int
    window_peak_rss: int
    series: float
    note: str

    @property
    def ms_per_collection(self) -> float:
        return 1000.0 * self.cpu_s / self.collections if self.collections else 0.0

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def line(self) -> str:
        unit = "collection" if self.name == "vigil" else "scrape"
        return (f"agent {self.name}: {self.ms_per_collection:.1f} ms cpu/{unit}, "
                f"{self.cpu_percent:.2f} % cpu, peak RSS {self.peak_rss / MIB:.0f} MiB, "
                f"{self.series:.0f} series/{unit} ({self.collections} {unit}s, {self.note})")


def _sleep_until(wall: float) -> None:
    while (left := wall - time.time()) > 0:
        time.sleep(min(left, 1.0))


def _scraper(url: str, first: float, interval_s: float, n: int, counts: list[int],
             errors: list[str]) -> Callable[[], None]:
    """A loop that GETs url at first, first+interval, ... (n times), recording series per scrape."""

    def run() -> None:
        with httpx.Client(timeout=interval_s) as client:
            for k in range(n):
                _sleep_until(first + k * interval_s)
                try:
                    r = client.get(url)
                    r.raise_for_status()
                    counts.append(_series_lines(r.text))
                except httpx.HTTPError as e:
                    errors.append(f"scrape {k}: {type(e).__name__}: {e}")

    return run


def measure(targets: list[Target], duration_s: float, interval_s: float,
            receiver: ProcessTree | None = None) -> list[Result]:
    """Run the window over the started targets (concurrently) and return one Result each.

    `receiver` (the vigil server the agent ships to) is not counted; stderr reports its CPU."""
    n = max(1, round(duration_s / interval_s))
    margin = min(1.0, interval_s / 4)
    # Let the agent's startup round (run right after start) finish: the window opens on a later boundary.
    earliest = time.time() + 2.0 + margin
    boundary = (earliest // interval_s + 1) * interval_s
    start, end = boundary - margin, boundary - margin + n * interval_s
    log(f"window: {n} intervals of {interval_s:g} s, opens in {start - time.time():.1f} s, "
        f"{n * interval_s:.0f} s long")

    ne_counts: list[int] = []
    ne_errors: list[str] = []
    threads = [threading.Thread(
        target=_scraper(t.url + "/metrics", boundary + interval_s / 2, interval_s, n, ne_counts, ne_errors),
        name="scrape-node-exporter", daemon=True) for t in targets if t.name == "node_exporter"]

    _sleep_until(start)
    cpu0 = {t.name: t.tree.cpu_seconds() for t in targets}
    srv0 = receiver.cpu_seconds() if receiver else 0.0
    me0, busy0, w0 = time.process_time(), _busy_cpu_seconds(), time.monotonic()
    window_samplers = [RssSampler(t.tree, interval=0.5) for t in targets]
    with contextlib.ExitStack() as stack:
        for s in window_samplers:
            stack.enter_context(s)
        for th in threads:
            th.start()
        _sleep_until(end)
        cpu1 = {t.name: t.tree.cpu_seconds() for t in targets}
        srv1 = receiver.cpu_seconds() if receiver else 0.0
        me1, busy1, wall = time.process_time(), _busy_cpu_seconds(), time.monotonic() - w0
    for th in threads:
        th.join(timeout=interval_s)

    ours = sum(cpu1[k] - cpu0[k] for k in cpu0) + (me1 - me0) + (srv1 - srv0)
    other = max(0.0, (busy1 - busy0) - ours)
    warn = "  <-- WARNING: the machine is busy, numbers are unreliable" if other / wall > 0.25 else ""
    log(f"window: {wall:.1f} s wall; benchmark process {me1 - me0:.2f} cpu-s; receiving vigil server "
        f"{srv1 - srv0:.2f} cpu-s (not counted); other processes {other:.1f} cpu-s "
        f"({other / wall:.2f} of {psutil.cpu_count()} cores){warn}")

    results = []
    for t, ws in zip(targets, window_samplers, strict=True):
        cpu = cpu1[t.name] - cpu0[t.name]
        if t.proc.poll() is not None:
            raise PeerError(f"{t.name} exited with code {t.proc.returncode} during the window\n"
                            f"{t.log_tail()}")
        t.sampler.sample()
        hwm = t.tree.hwm_bytes()
        # The target's own process: Vigil's children (journalctl following the journal, the hourly
        # apt-get/dnf check) are reported apart, as node_exporter's textfile scripts would be.
        peak = max(t.sampler.peak_root, hwm)
        children = max(0, t.sampler.peak - t.sampler.peak_root)
        log(f"{t.name}: {cpu:.3f} cpu-s in the window; RSS now {t.tree.rss_bytes() / MIB:.1f} MiB, "
            f"peak sampled {t.sampler.peak / MIB:.1f} MiB (process alone {t.sampler.peak_root / MIB:.1f}), "
            f"VmHWM {hwm / MIB:.1f} MiB, peak inside the window {ws.peak / MIB:.1f} MiB; "
            f"children now: {', '.join(t.tree.child_names()) or 'none'}")
        if t.name == "vigil":
            series, note = _vigil_after(t, n)
        else:
            for e in ne_errors[:5]:
                log(f"node_exporter: {e}")
            series = statistics.fmean(ne_counts) if ne_counts else 0.0
            if ne_counts:
                log(f"node_exporter: series per scrape min {min(ne_counts)}, max {max(ne_counts)}; "
                    f"{len(ne_counts)} of {n} scrapes answered")
            note = "default collectors" + (f", {len(ne_errors)} failed scrapes" if ne_errors else "")
        if children:
            note += f", children peak +{children / MIB:.0f} MiB"
        results.append(Result(t.name, n, cpu, wall, peak, ws.peak, series, note))
    return results


def _vigil_after(t: Target, n: int) -> tuple[float, str]:
    """Series per collection and shipping figures from the agent's /metrics (read after the window)."""
    try:
        text = httpx.get(t.url + "/metrics", timeout=30.0).text
    except httpx.HTTPError as e:
        log(f"vigil: could not read /metrics after the window: {e}")
        return 0.0, "shipper on"
    series = _metric(text, "vigil_agent_collection_series") or 0.0
    rounds = _metric(text, "vigil_agent_collections_total")
    shipped = _metric(text, "vigil_agent_ship_samples_total")
    retries = _metric(text, "vigil_agent_ship_retries_total")
    queued = _metric(text, "vigil_agent_queue_entries")
    round_s = _metric(text, "vigil_agent_collection_duration_seconds")
    log(f"vigil: {rounds:.0f} rounds in all (startup round + {n} in the window + any after it), "
        f"last round took {1000 * (round_s or 0):.1f} ms wall; shipped {shipped:.0f} samples, "
        f"{retries:.0f} retries, {queued:.0f} payloads still queued")
    pattern = r'^vigil_agent_collector_duration_seconds\{collector="([^"]+)"\} (\S+)$'
    durations = sorted(re.findall(pattern, text, re.M), key=lambda cv: -float(cv[1]))
    if durations:
        log("vigil: last collection per collector (ms wall): "
            + ", ".join(f"{c} {1000 * float(v):.1f}" for c, v in durations))
    ok = shipped is not None and shipped >= 0.9 * n * series
    note = "shipper on" if ok else f"shipper on, but only {shipped or 0:.0f} samples shipped"
    return series, note


# --- main ---------------------------------------------------------------------------------------


def ratio_line(vigil: Result, ne: Result) -> str:
    cpu = vigil.ms_per_collection / ne.ms_per_collection if ne.ms_per_collection else float("inf")
    rss = vigil.peak_rss / ne.peak_rss if ne.peak_rss else float("inf")
    series = vigil.series / ne.series if ne.series else float("inf")
    cpu_ok = "met" if cpu <= 1.0 else "missed"
    rss_ok = "met" if vigil.peak_rss / MIB <= RSS_TARGET_MIB else "missed"
    return (f"ratio vigil/node_exporter: {cpu:.2f}x cpu/collection, {rss:.2f}x peak RSS, "
            f"{series:.2f}x series (target cpu <= 1.00x: {cpu_ok}; "
            f"peak RSS <= {RSS_TARGET_MIB:.0f} MiB: {rss_ok})")


def run(only: list[str], duration_s: float, interval_s: float, sequential: bool, keep: bool,
        tmp_dir: Path | None, host_only: bool = False) -> list[Result]:
    work_dir = Path(tempfile.mkdtemp(prefix="vigil-bench-agent-", dir=tmp_dir))
    try:
        # The receiver runs for the whole benchmark; its CPU is not counted.
        receiver = running("vigil", tmp_dir=tmp_dir, keep=keep) if "vigil" in only else None
        with receiver or contextlib.nullcontext() as srv:
            write_url = f"{srv.url}/api/v1/write" if srv is not None else ""

            def start(stack: contextlib.ExitStack, name: str) -> Target:
                if name == "vigil":
                    return stack.enter_context(vigil_agent(work_dir, interval_s, write_url, host_only))
                return stack.enter_context(node_exporter(work_dir))

            results: list[Result] = []
            groups = [[name] for name in only] if sequential else [only]
            for group in groups:
                with contextlib.ExitStack() as stack:
                    targets = [start(stack, name) for name in group]
                    log("started " + ", ".join(f"{t.name} (pid {t.proc.pid}, {t.url})" for t in targets))
                    server_tree = ProcessTree(srv.pid) if srv is not None and srv.pid else None
                    results += measure(targets, duration_s, interval_s, server_tree)
            if srv is not None:
                with contextlib.suppress(httpx.HTTPError, KeyError, IndexError, ValueError):
                    r = httpx.get(srv.url + "/api/v1/query", params={"query": 'count({job="vigil-agent"})'},
                                  timeout=30.0)
                    value = r.json()["data"]["result"][0]["value"][1]
                    log(f"vigil server (receiver) holds {value} series with job=vigil-agent")
            return results
    finally:
        if keep:
            log(f"kept work dir {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--duration", type=float, default=300.0, help="measurement window, seconds (300)")
    ap.add_argument("--interval", type=float, default=10.0,
                    help="agent collection and node_exporter scrape interval, seconds (10)")
    ap.add_argument("--only", default=",".join(TARGETS),
                    help=f"comma-separated subset of {','.join(TARGETS)}")
    ap.add_argument("--sequential", action="store_true",
                    help="run the targets one after the other, each for --duration (default: concurrently)")
    ap.add_argument("--keep", action="store_true", help="keep the work dirs (configs, logs, queue)")
    ap.add_argument("--tmp-dir", type=Path, default=None, help="where to make the temp dirs")
    ap.add_argument("--host-only", action="store_true",
                    help="Vigil without its security collectors (like for like with node_exporter)")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    if bad := [s for s in only if s not in TARGETS]:
        ap.error(f"unknown target {bad[0]!r}; choose from {', '.join(TARGETS)}")
    if args.interval <= 0 or args.duration < args.interval:
        ap.error("need --interval > 0 and --duration >= --interval")
    install_sigterm_handler()
    log(f"{'sequentially' if args.sequential else 'concurrently'}: {', '.join(only)}; "
        f"{args.duration:g} s at {args.interval:g} s intervals")
    try:
        results = run(
            only, args.duration, args.interval, args.sequential, args.keep, args.tmp_dir, args.host_only
        )
    except PeerError as e:
        print(f"agent benchmark failed: {e}", file=sys.stderr)
        return 1
    for r in results:
        print(r.line(), flush=True)
    by_name = {r.name: r for r in results}
    if "vigil" in by_name and "node_exporter" in by_name:
        print(ratio_line(by_name["vigil"], by_name["node_exporter"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
