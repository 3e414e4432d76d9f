"""What a collector is: something that yields metric families on demand, as in prometheus_client.

Collectors return `prometheus_client.Metric` families (`GaugeMetricFamily`, `CounterMetricFamily`, ...),
so the agent's `/metrics` is rendered by prometheus_client and the same families are shipped by
remote write. A collector that cannot do its job raises; the agent counts and logs that once per
distinct error and keeps going with the others.

In the model, not in the agent, because the security collectors (a floor below the agent) implement
the same contract and raise the same `CollectorUnavailable`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from prometheus_client import Metric


class Collector(Protocol):
    name: str  # short, stable, used as the `collector` label and the config key to turn it off

    def collect(self) -> Iterable[Metric]: ...


class CollectorUnavailable(Exception):
    """The data source is absent on this host (no PSI, no cgroups, ...): not an error, just nothing."""
