"""Event latency: from a security-relevant change on the host to the event stored on the server.

The part of `bench/alert_latency.py` that the agent owns, measured without the notifier: one `vigil up`
on 127.0.0.1 with its defaults (the auth log pointed at a file of the benchmark's), then per run, at a
random moment of the agent's collection cycle:

- `port`: a new TCP listener appears on 127.0.0.1 -> its `listener_new` event is stored;
- `logins`: ten "Failed password" lines are appended to the auth log -> its first `auth` event is stored.

"Stored" is seen by polling `GET /api/v1/events` every 20 ms; latency = first seen minus trigger time,
so it includes up to one poll period. The line gives the median over runs:

    event_latency port: median 0.6 s (n=5, min 0.3, max 1.1)

Usage:
    python -m bench.event_latency --runs 5
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.alert_latency import Listener, append_failed_logins, process, wait_until
from bench.peers import REPO, free_port, install_sigterm_handler

POLL_S = 0.02
RUN_TIMEOUT_S = 120.0


def _events(base: str, kind: str) -> list[dict[str, object]]:
    got = httpx.get(f"{base}/api/v1/events", params={"kind": kind, "limit": "1000"}, timeout=5).json()
    return list(got["data"]["events"])


def _port_seen(base: str, port: int) -> bool:
    return any(e.get("fields", {}).get("port") == port for e in _events(base, "listener_new"))  # type: ignore[union-attr]


def _login_seen(base: str, source: str) -> bool:
    return any(e.get("fields", {}).get("source_address") == source for e in _events(base, "auth"))  # type: ignore[union-attr]


def measure(work: Path, runs: int) -> dict[str, list[float]]:
    port, agent_port, auth_log = free_port(), free_port(), work / "auth.log"
    auth_log.write_text("")
    (work / "vigil.yml").write_text(
        f"""\
server: {{listen: "127.0.0.1:{port}"}}
storage: {{path: "{work / "data"}"}}
agent:
  listen: "127.0.0.1:{agent_port}"
  statsd: {{udp_listen: ""}}
  disable: [updates, file_integrity]
  logs: {{auth: {{paths: ["{auth_log}"], journal: never}}}}
"""
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    argv = [sys.executable, "-m", "vigil", "up", "--config", str(work / "vigil.yml")]
    out: dict[str, list[float]] = {"port": [], "logins": []}
    log = work / "vigil.log"
    os.environ.update(env)  # `process` inherits the environment
    with process(argv, log, work):
        base = f"http://127.0.0.1:{port}"
        # Steady state: the agent's collections reach the server (the listening-port baseline is learned).
        q = f"{base}/api/v1/query?query=vigil_listening_ports"
        wait_until("vigil: ports collected", lambda: bool(httpx.get(q).json()["data"]["result"]), 120, log)
        for run in range(runs):
            time.sleep(random.uniform(0, 10))  # a random phase of the 10 s collection cycle
            t0 = time.time()
            listener = Listener()
            append_failed_logins(auth_log, run)
            source = f"198.51.100.{run % 200}"
            pending: dict[str, Callable[[], bool]] = {
                "port": functools.partial(_port_seen, base, listener.port),
                "logins": functools.partial(_login_seen, base, source),
            }
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while pending and time.monotonic() < deadline:
                for name, seen in list(pending.items()):
                    if seen():
                        out[name].append(time.time() - t0)
                        del pending[name]
                        shown = f"{out[name][-1]:.2f} s"
                        print(f"# run {run + 1}/{runs} {name}: {shown}", file=sys.stderr, flush=True)
                time.sleep(POLL_S)
            listener.close()
            for name in pending:
                print(f"# run {run + 1}/{runs} {name}: timeout", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tmp-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    install_sigterm_handler()
    with tempfile.TemporaryDirectory(prefix="vigil-bench-events-", dir=args.tmp_dir) as d:
        got = measure(Path(d), args.runs)
    for name, values in got.items():
        if values:
            print(
                f"event_latency {name}: median {statistics.median(values):.2f} s (n={len(values)}, "
                f"min {min(values):.2f}, max {max(values):.2f})",
                flush=True,
            )
        else:
            print(f"event_latency {name}: no event (0/{args.runs})", flush=True)
    return 0 if all(got.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
