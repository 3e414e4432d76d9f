"""What a log processor is: something that turns log lines into metrics and events.

The agent's log pipeline reads lines from files (`FileFollower`) and syslog, and hands each to the
processors configured for its source: auth-log parsing, log rules, access-log RED metrics, unknown-line
detection. A processor keeps its metrics itself (exposed by `collect`, as a prometheus_client
collector) and returns the events a line produced; the pipeline adds identity labels and ids to those.

Counters survive restarts exactly: the pipeline saves each processor's `snapshot()` together with the
log offsets in one atomic checkpoint, and calls `restore()` with it on start. Lines read after the
checkpoint are read again after a crash, and counted against the counters as they were at the
checkpoint, so no line is counted twice and none is lost. Processors are called from one thread (the
pipeline's); `collect` may run on another, and the pipeline serialises the two.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple, Protocol

from prometheus_client import Metric

from vigil.model.event import Event


class LogLine(NamedTuple):
    # A tuple, not a dataclass: one is made per line, and a tuple is the cheapest immutable record.
    source: str  # the configured source name ("auth", "nginx", "syslog", ...): a bounded label value
    text: str  # the line, without its newline (for syslog: the whole message, header included)
    time_ms: int  # when the agent read or received it
    origin: str = ""  # where exactly, for event ids: "syslog:<peer>#<n>"; file lines leave it to the
    # pipeline, which knows "file:<dev>:<ino>:<offset>" and formats it only when a line has events


class LineProcessor(Protocol):
    name: str  # stable, used as the `collector` label and in checkpoints

    def process(self, line: LogLine) -> Iterable[Event]: ...

    def collect(self) -> Iterable[Metric]: ...

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state of the processor's metrics, for the checkpoint."""
        ...

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a `snapshot()` (taken by this or an earlier process)."""
        ...
