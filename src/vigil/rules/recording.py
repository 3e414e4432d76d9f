"""A recording rule: evaluates its expression and records the result under a new metric name."""

from __future__ import annotations

from dataclasses import dataclass, field

from vigil.model.labels import METRIC_NAME, Labels
from vigil.rules.types import QueryFunc, Sample

DUPLICATE_SERIES = "vector contains metrics with the same labelset after applying rule labels"


class RuleEvalError(Exception):
    """An evaluation failed; str() is the rule's `lastError`."""


@dataclass
class RuleStatus:
    """What the rules API shows of one rule's last evaluation."""

    health: str = "unknown"  # ok | err | unknown (not evaluated yet), as Prometheus' API
    last_error: str = ""
    last_eval_ms: int | None = None
    last_duration_s: float = 0.0
    refused_samples: int = 0  # samples of this rule the store refused since it was loaded


@dataclass
class RecordingRule:
    name: str
    expr: str
    labels: dict[str, str] = field(default_factory=dict)
    status: RuleStatus = field(default_factory=RuleStatus)

    def eval(self, ts_ms: int, query_offset_ms: int, query: QueryFunc, limit: int) -> list[Sample]:
        """The samples to record for an evaluation at `ts_ms`; they are stamped `ts_ms - offset`
        by the caller. Raises RuleEvalError (duplicate series, limit) or what `query` raises."""
        out: list[Sample] = []
        seen: set[Labels] = set()
        for s in query(self.expr, ts_ms - query_offset_ms):
            d = s.labels.to_dict()
            d[METRIC_NAME] = self.name
            d.update(self.labels)  # static: recording rule labels are not templated
            lb = Labels.from_dict(d)
            if lb in seen:
                raise RuleEvalError(
                    "vector contains metrics with the same labelset after applying rule labels"
                )
            seen.add(lb)
            out.append(Sample(lb, s.value))
        if limit > 0 and len(out) > limit:
            raise RuleEvalError(f"exceeded limit of {limit} with {len(out)} series")
        return out
