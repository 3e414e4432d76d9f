"""Alert latency: from the thing happening to the webhook holding the notification, Vigil against
Debian's Prometheus + Alertmanager (+ blackbox_exporter and mtail, which that stack needs for the same
signals), default settings on both sides.

Scenarios, all triggered at the same instant in one fresh stack per run:

- `probe`: a TCP service on 127.0.0.1 that a probe checks stops listening
  (Vigil: `agent.probes` tcp; peer: blackbox_exporter's tcp prober scraped by Prometheus);
- `logins`: ten "Failed password" lines appended to an auth log
  (Vigil: the agent's auth log reader; peer: an mtail counter scraped by Prometheus);
- `port`: a new TCP listener appears on 127.0.0.1 (Vigil only: an event rule on `listener_new`;
  the peer stack has no collector for listening sockets, so it is not measured there).

Latency = the time the webhook receiver got the first notification naming the scenario's alert minus
the trigger time (which comes at a random moment of the collection/scrape cycle, seeded per run),
wall clock, one figure per scenario per run; the line gives the median over runs:

    alert_latency probe: vigil median 6.1 s (n=10, min 3.2, max 9.8);
        prometheus+alertmanager median 78.4 s (n=3, ...); ratio 0.08x   (one line)

Both sides route with `group_by: [alertname]` (so the scenarios do not wait for each other's group)
and evaluate the same metric rule for the probe (`probe_success == 0`, no `for`, so the figure is the
pipeline's); otherwise defaults: the peer as Debian packages it (prometheus.yml's scrape and
evaluation every 15 s, alertmanager.yml's `group_wait` 30 s), Vigil as `vigil up` runs (its 10 s
collections, probes and evaluations, `group_wait` 1 s, the built-in rule pack and event rules: the
logins and port alerts are its `SSHBruteForceSource` and `NewListeningPort`). A run of the peer stack
takes about a minute and a half; `--runs` sets Vigil's count and `--peer-runs` the peer's (default 3).

Usage:
    python -m bench.alert_latency                     # both stacks
    python -m bench.alert_latency --only vigil --runs 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from bench.peers import REPO, PeerError, _die_with_parent, free_port, install_sigterm_handler, stop_process

SCENARIOS = ("probe", "logins", "port")
PEER_SCENARIOS = ("probe", "logins")
# The alert each scenario raises, per stack (Vigil's names are its built-in pack's and the event rule below).
ALERTS = {
    "vigil": {"probe": "BenchProbeDown", "logins": "SSHBruteForceSource", "port": "NewListeningPort"},
    "peer": {"probe": "BenchProbeDown", "logins": "SSHBruteForce"},
}
FAILED_LOGIN = "{ts} bench sshd[4242]: Failed password for root from 198.51.100.{n} port 5{i:04d} ssh2\n"
LOGIN_LINES = 12
RUN_TIMEOUT_S = 300.0


# --- the webhook receiver ------------------------------------------------------------------------


@dataclass
class Capture:
    """Notifications received: (wall time, alertname) of every firing alert in every payload."""

    seen: list[tuple[float, str]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def add(self, payload: dict[str, object]) -> None:
        now = time.time()
        alerts = payload.get("alerts")
        with self.cond:
            for a in alerts if isinstance(alerts, list) else []:
                if isinstance(a, dict) and a.get("status") == "firing":
                    labels = a.get("labels") or {}
                    self.seen.append((now, str(labels.get("alertname", ""))))
            self.cond.notify_all()

    def first(self, alertname: str, after: float) -> float | None:
        return next((t for t, name in self.seen if name == alertname and t >= after), None)

    def wait(self, names: list[str], after: float, timeout: float) -> dict[str, float | None]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = {n: self.first(n, after) for n in names}
                left = deadline - time.monotonic()
                if all(v is not None for v in got.values()) or left <= 0:
                    return got
                self.cond.wait(min(left, 1.0))


@contextlib.contextmanager
def webhook() -> Iterator[tuple[str, Capture]]:
    capture = Capture()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with contextlib.suppress(ValueError):
                capture.add(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="bench-webhook", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", capture
    finally:
        server.shutdown()
        server.server_close()


# --- the things that happen ----------------------------------------------------------------------


class Listener:
    """A TCP service on 127.0.0.1 that accepts and closes connections until `close()`."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.create_server(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="bench-listener", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)


PHASE_SPAN_S = 15.0  # a whole cycle of either stack (Vigil's 10 s, the peer's 15 s)


def random_phase(run: int) -> None:
    """Wait a random part of a cycle before the trigger. Steady state is seen just after a probe or
    scrape succeeded, so triggering at once would always hit the start of a cycle (the worst case);
    things break at any moment. Seeded per run, so both stacks get the same delays."""
    time.sleep(random.Random(run).uniform(0, PHASE_SPAN_S))


def append_failed_logins(path: Path, run: int) -> None:
    ts = time.strftime("%b %e %H:%M:%S")
    with path.open("a") as f:
        f.writelines(FAILED_LOGIN.format(ts=ts, n=run % 200, i=i) for i in range(LOGIN_LINES))
        f.flush()
        os.fsync(f.fileno())


# --- processes ---------------------------------------------------------------------------------


@contextlib.contextmanager
def process(argv: list[str], log: Path, cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    try:
        yield proc
    finally:
        stop_process(proc)


def wait_until(what: str, check: Callable[[], bool], timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, OSError, ValueError, KeyError):
            if check():
                return
        time.sleep(0.25)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log and log.exists() else ""
    raise PeerError(f"{what} not reached after {timeout:.0f} s\n{tail}")


def get_json(url: str) -> object:
    return httpx.get(url, timeout=5).json()


# --- Vigil -------------------------------------------------------------------------------------

# The metric rule both stacks evaluate (no `for`, so the figure is the pipeline's, not the rule's);
# the port and logins alerts are Vigil's built-in event rules.
BENCH_RULES = """\
groups:
  - name: bench
    rules:
      - alert: BenchProbeDown
        expr: probe_success{probe_selector} == 0
"""


def vigil_run(work: Path, hook_url: str, capture: Capture, run: int) -> dict[str, float | None]:
    port, auth_log = free_port(), work / "auth.log"
    auth_log.write_text("")
    target = Listener()
    (work / "rules.yml").write_text(BENCH_RULES.replace("{probe_selector}", '{probe="bench"}'))
    (work / "vigil.yml").write_text(
        f"""\
server: {{listen: "127.0.0.1:{port}", external_url: "http://127.0.0.1:{port}"}}
storage: {{path: "{work / "data"}"}}
agent:
  disable: [updates, file_integrity]
  logs: {{auth: {{paths: ["{auth_log}"], journal: never}}}}
  probes:
    - {{name: bench, module: tcp, target: "127.0.0.1:{target.port}"}}
rule_files: ["{work / "rules.yml"}"]
alerting:
  route: {{receiver: hook, group_by: [alertname]}}
  receivers:
    - name: hook
      webhook_configs: [{{url: "{hook_url}"}}]
"""
    )
    log = work / "vigil.log"
    vigil = str(REPO / ".venv" / "bin" / "vigil")
    with process([vigil, "up", "--config", str(work / "vigil.yml")], log, work):
        base = f"http://127.0.0.1:{port}"
        # steady state: the probe has succeeded and a rule group has run at least once
        wait_until(
            "vigil: probe up and rules evaluated",
            lambda: _vigil_steady(base),
            120,
            log,
        )
        random_phase(run)
        t0 = time.time()
        target.close()
        append_failed_logins(auth_log, run)
        extra = Listener()
        try:
            names = [ALERTS["vigil"][s] for s in SCENARIOS]
            got = capture.wait(names, t0, RUN_TIMEOUT_S)
        finally:
            extra.close()
    return {s: _since(got[ALERTS["vigil"][s]], t0) for s in SCENARIOS}


def _since(t: float | None, t0: float) -> float | None:
    return None if t is None else t - t0


def _vigil_steady(base: str) -> bool:
    q = get_json(f"{base}/api/v1/query?query=probe_success")
    result = q["data"]["result"]  # type: ignore[index]
    if not any(r["value"][1] == "1" for r in result):
        return False
    rules = get_json(f"{base}/api/v1/rules")
    groups = rules["data"]["groups"]  # type: ignore[index]
    return any(g.get("lastEvaluation", "").startswith("2") for g in groups)


# --- Prometheus + Alertmanager + blackbox_exporter + mtail --------------------------------------

PEER_RULES = (
    BENCH_RULES.replace("{probe_selector}", "")
    + """\
      - alert: SSHBruteForce
        expr: increase(ssh_failed_logins_total[5m]) > 5
"""
)
# Debian's packaged /etc/prometheus/prometheus.yml (its `global:` block) and alertmanager.yml's timings.
PEER_GLOBAL = "global: {scrape_interval: 15s, evaluation_interval: 15s}\n"
MTAIL_PROG = """\
counter ssh_failed_logins_total
/Failed password for / {
  ssh_failed_logins_total++
}
"""


def peer_run(work: Path, hook_url: str, capture: Capture, run: int) -> dict[str, float | None]:
    am_port, prom_port, bb_port, mtail_port = (free_port() for _ in range(4))
    auth_log = work / "auth.log"
    auth_log.write_text("")
    target = Listener()
    (work / "am.yml").write_text(
        "route: {receiver: hook, group_by: [alertname], group_wait: 30s, group_interval: 5m}\nreceivers:\n"
        f"  - name: hook\n    webhook_configs: [{{url: '{hook_url}'}}]\n"
    )
    (work / "blackbox.yml").write_text("modules:\n  tcp_connect: {prober: tcp, timeout: 5s}\n")
    (work / "progs").mkdir()
    (work / "progs" / "ssh.mtail").write_text(MTAIL_PROG)
    (work / "rules.yml").write_text(PEER_RULES)
    (work / "prometheus.yml").write_text(
        PEER_GLOBAL
        + f"""\
rule_files: ["{work / "rules.yml"}"]
alerting:
  alertmanagers: [{{static_configs: [{{targets: ["127.0.0.1:{am_port}"]}}]}}]
scrape_configs:
  - job_name: blackbox
    metrics_path: /probe
    params: {{module: [tcp_connect]}}
    static_configs: [{{targets: ["127.0.0.1:{target.port}"]}}]
    relabel_configs:
      - {{source_labels: [__address__], target_label: __param_target}}
      - {{source_labels: [__param_target], target_label: instance}}
      - {{target_label: __address__, replacement: "127.0.0.1:{bb_port}"}}
  - job_name: mtail
    static_configs: [{{targets: ["127.0.0.1:{mtail_port}"]}}]
"""
    )
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            process(
                [
                    "prometheus-alertmanager",
                    f"--config.file={work / 'am.yml'}",
                    f"--storage.path={work / 'am'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                work / "am.log",
                work,
            )
        )
        stack.enter_context(
            process(
                [
                    "prometheus-blackbox-exporter",
                    f"--config.file={work / 'blackbox.yml'}",
                    f"--web.listen-address=127.0.0.1:{bb_port}",
                ],
                work / "blackbox.log",
                work,
            )
        )
        stack.enter_context(
            process(
                [
                    "mtail",
                    "-progs",
                    str(work / "progs"),
                    "-logs",
                    str(auth_log),
                    "-address",
                    "127.0.0.1",
                    "-port",
                    str(mtail_port),
                ],
                work / "mtail.log",
                work,
            )
        )
        plog = work / "prometheus.log"
        stack.enter_context(
            process(
                [
                    "prometheus",
                    f"--config.file={work / 'prometheus.yml'}",
                    f"--storage.tsdb.path={work / 'prom'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                plog,
                work,
            )
        )
        base = f"http://127.0.0.1:{prom_port}"
        wait_until(
            "prometheus: both targets scraped and the rule group evaluated",
            lambda: _peer_steady(base),
            240,
            plog,
        )
        random_phase(run)
        t0 = time.time()
        target.close()
        append_failed_logins(auth_log, run)
        names = [ALERTS["peer"][s] for s in PEER_SCENARIOS]
        got = capture.wait(names, t0, RUN_TIMEOUT_S)
    return {s: _since(got[ALERTS["peer"][s]], t0) for s in PEER_SCENARIOS}


def _peer_steady(base: str) -> bool:
    both = "probe_success + on() group_left ssh_failed_logins_total"  # both targets scraped
    q = httpx.get(f"{base}/api/v1/query", params={"query": both}, timeout=5).json()
    if not q["data"]["result"]:  # type: ignore[index]
        return False
    rules = get_json(f"{base}/api/v1/rules")
    return any(not g["lastEvaluation"].startswith("0001") for g in rules["data"]["groups"])  # type: ignore[index]


# --- the run -----------------------------------------------------------------------------------


def measure(kind: str, runs: int, tmp_dir: Path | None) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {s: [] for s in (SCENARIOS if kind == "vigil" else PEER_SCENARIOS)}
    run_one = vigil_run if kind == "vigil" else peer_run
    for run in range(runs):
        with (
            tempfile.TemporaryDirectory(prefix=f"vigil-bench-alert-{kind}-", dir=tmp_dir) as d,
            webhook() as (url, capture),
        ):
            got = run_one(Path(d), url, capture, run)
        for scenario, latency in got.items():
            shown = "timeout" if latency is None else f"{latency:.2f} s"
            print(f"# {kind} run {run + 1}/{runs} {scenario}: {shown}", file=sys.stderr, flush=True)
            if latency is not None:
                out[scenario].append(latency)
    return out


def summary(values: list[float], runs: int) -> str:
    if not values:
        return f"no notification (0/{runs})"
    lost = f", {runs - len(values)} timed out" if len(values) < runs else ""
    return (
        f"median {statistics.median(values):.1f} s (n={len(values)}, min {min(values):.1f}, "
        f"max {max(values):.1f}{lost})"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10, help="Vigil runs (default 10)")
    ap.add_argument("--peer-runs", type=int, default=3, help="Prometheus+Alertmanager runs (default 3)")
    ap.add_argument("--only", default="vigil,prometheus", help="vigil, prometheus or both")
    ap.add_argument("--tmp-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    install_sigterm_handler()
    only = set(args.only.split(","))
    vigil = measure("vigil", args.runs, args.tmp_dir) if "vigil" in only else {}
    peer = measure("peer", args.peer_runs, args.tmp_dir) if "prometheus" in only else {}
    failed = False
    for scenario in SCENARIOS:
        parts = []
        if "vigil" in only:
            parts.append(f"vigil {summary(vigil[scenario], args.runs)}")
            failed |= not vigil[scenario]
        if "prometheus" in only:
            if scenario in peer:
                parts.append(f"prometheus+alertmanager {summary(peer[scenario], args.peer_runs)}")
                failed |= not peer[scenario]
            else:
                parts.append("prometheus+alertmanager: no collector for this signal")
        if vigil.get(scenario) and peer.get(scenario):
            ratio = statistics.median(vigil[scenario]) / statistics.median(peer[scenario])
            parts.append(f"ratio {ratio:.2f}x")
        print(f"alert_latency {scenario}: " + "; ".join(parts), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
