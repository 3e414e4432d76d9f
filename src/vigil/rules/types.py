"""What rule evaluation is given (a query function, an appender, a template expander) and returns.

Everything a rule needs from the outside is passed in as one of these, so evaluation is pure given
its inputs: tests drive it with a list appender and a fake query, the server with the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from vigil.model.labels import Labels

ALERTS_METRIC = "ALERTS"
ALERTS_FOR_STATE_METRIC = "ALERTS_FOR_STATE"
ALERTNAME = "alertname"
ALERTSTATE = "alertstate"


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector as a rule sees it."""

    labels: Labels
    value: float


QueryFunc = Callable[[str, int], list[Sample]]
"""(expr, ts_ms) -> instant vector. A scalar result is one Sample with empty labels; raising any
exception is an evaluation error of the rule."""


class Appender(Protocol):
    """Where rule results go: `append` buffers, `commit` makes a rule's writes durable and returns
    how many samples the store refused, by reason (e.g. `too_old`: older than its out-of-order
    window); None or empty when it kept them all."""

    def append(self, labels: Labels, ts_ms: int, value: float) -> None: ...

    def commit(self) -> Mapping[str, int] | None: ...


class Expander(Protocol):
    """Renders one Go template as Prometheus does for alert labels and annotations."""

    def __call__(
        self,
        text: str,
        *,
        name: str,
        labels: Mapping[str, str],
        value: float,
        external_labels: Mapping[str, str],
        external_url: str,
        timestamp_ms: int,
        query: Any = None,
    ) -> str: ...


@dataclass
class ListAppender:
    """An Appender keeping committed samples in a list (tests, `vigil rules test`)."""

    samples: list[tuple[Labels, int, float]] = field(default_factory=list)
    _pending: list[tuple[Labels, int, float]] = field(default_factory=list)

    def append(self, labels: Labels, ts_ms: int, value: float) -> None:
        self._pending.append((labels, ts_ms, value))

    def commit(self) -> Mapping[str, int] | None:
        self.samples.extend(self._pending)
        self._pending.clear()
        return None
