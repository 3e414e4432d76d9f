"""Process and thread counts by state, as node_exporter's `processes` collector names them.

Families (gauges): `node_processes_pids`, `node_processes_max_processes` (`kernel.pid_max`),
`node_processes_threads`, `node_processes_max_threads` (`kernel.threads-max`),
`node_processes_state{state}` and `node_processes_threads_state{thread_state}` (the one-letter
states of /proc/<pid>/stat: R, S, D, Z, T, I, ...).

Not in `default_collectors()`, as it is off by default in node_exporter 1.5 too: it reads one stat
file per process and one per thread, so its cost grows with the host's thread count (about 10 µs per
thread). A fork bomb or a pile of zombies shows up here first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily

from vigil.agent.collectors._fs import read_source


def _state_and_threads(stat: str) -> tuple[str, int]:
    # "pid (comm) S ppid ...": comm may hold blanks and parentheses, so split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split(" ", 18)
    return fields[0], int(fields[17])  # state is field 3, num_threads field 20 of the whole line


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:  # the process or thread exited between listing and reading
        return None


class ProcessesCollector:
    name = "processes"

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self._proc = proc

    def collect(self) -> Iterable[Metric]:
        proc = str(self._proc)
        pids = 0
        threads = 0
        states: dict[str, int] = {}
        thread_states: dict[str, int] = {}
        for entry in os.listdir(proc):
            if not entry.isdigit():
                continue
            stat = _read(f"{proc}/{entry}/stat")
            if stat is None:
                continue
            state, nthreads = _state_and_threads(stat)
            pids += 1
            threads += nthreads
            states[state] = states.get(state, 0) + 1
            try:
                tids = os.listdir(f"{proc}/{entry}/task")
            except OSError:
                continue
            for tid in tids:
                if tid == entry:  # the main thread: its state is the process's
                    thread_state: str | None = state
                else:
                    tstat = _read(f"{proc}/{entry}/task/{tid}/stat")
                    thread_state = _state_and_threads(tstat)[0] if tstat is not None else None
                if thread_state is not None:
                    thread_states[thread_state] = thread_states.get(thread_state, 0) + 1
        kernel = self._proc / "sys/kernel"
        families: list[Metric] = [
            GaugeMetricFamily(
                "node_processes_pids", "Processes (thread groups) that exist.", value=float(pids)
            ),
            GaugeMetricFamily(
                "node_processes_max_processes",
                "Highest PID the kernel hands out (kernel.pid_max).",
                value=float(read_source(kernel / "pid_max")),
            ),
            GaugeMetricFamily(
                "node_processes_threads", "Threads that exist, all processes together.", value=float(threads)
            ),
            GaugeMetricFamily(
                "node_processes_max_threads",
                "Most threads the kernel allows (kernel.threads-max).",
                value=float(read_source(kernel / "threads-max")),
            ),
        ]
        by_state = GaugeMetricFamily("node_processes_state", "Processes in each state.", labels=["state"])
        for state, count in sorted(states.items()):
            by_state.add_metric([state], float(count))
        by_thread_state = GaugeMetricFamily(
            "node_processes_threads_state", "Threads in each state.", labels=["thread_state"]
        )
        for state, count in sorted(thread_states.items()):
            by_thread_state.add_metric([state], float(count))
        families += [by_state, by_thread_state]
        return families
