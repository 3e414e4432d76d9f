"""PromQL errors, each mapped to the Prometheus HTTP API error type it is reported as."""

from __future__ import annotations


class PromQLError(Exception):
    error_type = "execution"  # Prometheus API errorType
    status = 422


class ParseError(PromQLError):
    """The query does not parse or does not type-check (`bad_data`, 400)."""

    error_type = "bad_data"
    status = 400


class ExecutionError(PromQLError):
    """The query is valid but cannot be evaluated, e.g. many-to-many matching (`execution`, 422)."""


class TooManySamples(ExecutionError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"query processing would load too many samples into memory in query execution (limit {limit})"
        )


class QueryTimeout(PromQLError):
    error_type = "timeout"
    status = 503

    def __init__(self, where: str = "query execution") -> None:
        super().__init__(f"query timed out in {where}")
