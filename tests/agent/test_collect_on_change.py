"""A probe whose result flips is shipped at once: the probes collector calls `on_change`, and the
agent's `collect_now` runs a round before the next aligned one (counted, not timed)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from tests.waiting import wait_until
from vigil.agent.identity import Identity
from vigil.agent.runner import Agent
from vigil.config.probes import ProbeConfig
from vigil.model.batch import Batch
from vigil.probe.collector import ProbesCollector


def test_a_probe_that_goes_down_or_up_calls_on_change_once_per_flip() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    probe = ProbeConfig.model_validate(
        {"name": "t", "module": "tcp", "target": f"127.0.0.1:{port}", "timeout": "2s"}
    )
    collector = ProbesCollector([probe])
    flips: list[int] = []
    collector.on_change = lambda: flips.append(1)
    collector.run_once()  # up: the first result is no change
    collector.run_once()  # still up
    assert flips == []
    server.close()
    collector.run_once()  # down
    assert flips == [1]
    collector.run_once()  # still down
    assert flips == [1]
    server = socket.create_server(("127.0.0.1", port))
    try:
        collector.run_once()  # up again
    finally:
        server.close()
    assert flips == [1, 1]


def test_collect_now_runs_a_round_between_the_aligned_ones() -> None:
    rounds: list[Batch] = []
    seen = threading.Event()

    def sink(batch: Batch, metadata: Sequence[object] = ()) -> None:
        rounds.append(batch)
        seen.set()

    agent = Agent([], Identity("h1", "kvm"), "vigil-agent", CollectorRegistry(), interval_s=3600.0, sink=sink)
    agent.start()
    try:
        wait_until(lambda: len(rounds) == 1, what="the first round")
        agent.collect_now()
        wait_until(lambda: len(rounds) == 2, what="a round on request, an hour before the next one")
    finally:
        agent.stop()
    assert len(rounds) == 2
