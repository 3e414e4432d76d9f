"""A synthetic fleet for the UI tests and `bench.ui`: node_exporter-shaped series (bench.workload)
for `hosts` hosts, plus what the pages read besides (`up`, PSI, the agent's security metrics),
sent by remote write.

Host 1's instance is a hostile label value (`XSS`): every page that shows it must show it as text.
Host 1 also has security findings (failed logins, pending security updates, an unexpected port,
integrity changes, unknown log lines, a certificate expiring in 3 days) and a root filesystem that
fills within the hour; host 2 is down (`up` 0); host 3's agent reports its queue and a collector error.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bench.workload import Workload, encode_streams, generate

XSS = "<img src=x onerror=alert(1)>"
HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def instance(h: int) -> str:
    return XSS if h == 1 else f"host-{h:02d}:9100"


def fleet(hosts: int, scrapes: int, end_ms: int, interval_ms: int = 15_000) -> Workload:
    wl = generate(hosts=hosts, scrapes=scrapes, interval_ms=interval_ms, end_ms=end_ms)
    k = wl.n_scrapes
    labels = [
        [(n, instance(int(wl.host_of[i])) if n == "instance" else v) for n, v in ls]
        for i, ls in enumerate(wl.labels)
    ]
    extra_labels: list[list[tuple[str, str]]] = []
    extra_rows: list[np.ndarray] = []
    extra_host: list[int] = []
    ramp = np.arange(k, dtype=np.float64)

    def add(h: int, name: str, row: np.ndarray, **more: str) -> None:
        ls = {"__name__": name, "instance": instance(h), "job": "node", **more}
        extra_labels.append(sorted(ls.items()))
        extra_rows.append(row.astype(np.float64))
        extra_host.append(h)

    gib = float(1 << 30)
    for i, ls in enumerate(labels):  # host 1's root filesystem loses 10 GiB an hour, 10 GiB left
        d = dict(ls)
        if d["__name__"] == "node_filesystem_avail_bytes" and d["instance"] == XSS and d["mountpoint"] == "/":
            wl.values[i] = np.round((20 * gib - ramp / (k - 1) * 10 * gib) / 4096) * 4096
    end_s = end_ms / 1000
    for h in range(hosts):
        add(h, "up", np.full(k, 0.0 if h == 2 else 1.0))
        add(h, "node_pressure_cpu_waiting_seconds_total", ramp * (0.5 + 0.1 * h) * interval_ms / 1000 * 0.01)
        add(h, "node_pressure_io_stalled_seconds_total", ramp * 0.002 * interval_ms / 1000)
        add(h, "vigil_updates_pending", np.full(k, 4.0 if h == 1 else 0.0), kind="security", manager="apt")
        add(h, "vigil_listening_ports_unexpected", np.full(k, 1.0 if h == 1 else 0.0))
        bad = h == 1
        add(
            h,
            "vigil_auth_attempts_total",
            ramp * (2.0 if bad else 0.0),
            service="sshd",
            result="failure",
            method="password",
        )
        add(h, "vigil_file_integrity_changes_total", np.floor(ramp / 40) if bad else np.zeros(k))
        add(h, "vigil_log_unknown_lines_total", ramp * (1.0 if bad else 0.0))
        add(
            h,
            "vigil_cert_file_earliest_expiry_timestamp_seconds",
            np.full(k, end_s + (3 if bad else 90) * 86400),
            path="/etc/ssl/site.pem",
        )
    add(3, "vigil_agent_collections_total", ramp + 100)
    add(3, "vigil_agent_collector_errors_total", np.floor(ramp / (k / 2)), collector="apt")
    add(3, "vigil_agent_queue_entries", np.full(k, 2.0))
    add(3, "vigil_agent_queue_bytes", np.full(k, 4096.0))
    host_of = np.concatenate([wl.host_of, np.array(extra_host)])
    values = np.concatenate([wl.values, np.stack(extra_rows)])
    return Workload(labels + extra_labels, host_of, values, wl.timestamps)


def send(wl: Workload, post: Callable[[bytes], int]) -> int:
    """Remote-writes the workload with `post(payload) -> status`; returns the samples sent."""
    sent = 0
    for stream in encode_streams(wl, senders=1, batch=5000):
        for b in stream:
            status = post(b.payload)
            assert status == 204, status
            sent += b.samples
    return sent
