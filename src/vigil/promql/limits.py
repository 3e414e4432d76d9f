"""What one query may spend: a sample budget and a deadline, checked before the work is done.

The budget is Prometheus' `query.max_samples`, counted over the points evaluation materialises:
samples loaded from storage, the step grids of range queries and subqueries, the series × steps
grids that selectors, range windows and vector matching fill, the padded windows some range
functions build. Callers charge a count *before* allocating for it, so a query over budget fails
with TooManySamples having spent next to nothing, however many GiB it asked for
(`max_over_time(vector(1)[30d:1ms])`). The count is cumulative over the query (Prometheus counts
what is held at once); for one pass over vectorised grids the two differ little.

The deadline is checked at every node of the expression and inside every loop that runs in
Python per series, group, window sample or step, so a slow evaluation stops with QueryTimeout
soon after its time is up. The clock is passed in: tests drive it by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vigil.promql.errors import QueryTimeout, TooManySamples


@dataclass
class QueryLimits:
    max_samples: int
    deadline: float  # in the clock's time
    clock: Callable[[], float]
    charged: int = 0  # points charged so far

    def charge(self, points: int) -> None:
        """Count `points` about to be materialised; TooManySamples once past the budget."""
        self.charged += points
        if self.charged > self.max_samples:
            raise TooManySamples(self.max_samples)

    def tick(self) -> None:
        """QueryTimeout once the deadline has passed."""
        if self.clock() > self.deadline:
            raise QueryTimeout()
