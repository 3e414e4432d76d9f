"""The contract between the producers of samples (the agent's collectors, the scrape loop) and the
shipper that queues and sends them: a batch of label sets with their points, and family metadata.

In the model because producers (scrape, a floor below the agent) and the consumer (ship) both speak
it and neither may import the other or the agent that wires them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

# One series' label set: (name, value) pairs sorted by name, `__name__` included, no empty values.
Series = list[tuple[str, str]]
# (series label sets, samples per series) — the shape producers build and the shipper's enqueue takes.
Batch = tuple[list[Series], list[list[tuple[int, float]]]]
# (family name, type, help, unit), as remote write's MetricMetadata carries them.
MetricMetadata = tuple[str, str, str, str]


class Sink(Protocol):
    """Where batches go: the shipper's `enqueue` (metadata rides in the batch's first payload).
    `metadata` by keyword only: `enqueue`'s second positional parameter is something else."""

    def __call__(self, batch: Batch, /, *, metadata: Sequence[MetricMetadata] = ...) -> object: ...
