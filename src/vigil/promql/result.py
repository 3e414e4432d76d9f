"""Query results as the engine returns them to the HTTP API, the CLI and the rule manager."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from vigil.model.labels import Labels

ResultType = Literal["vector", "matrix", "scalar", "string"]


@dataclass(frozen=True)
class Series:
    """One series of a result: for a vector, exactly one point; for a matrix, one or more (ascending)."""

    labels: Labels
    timestamps: npt.NDArray[np.int64]  # ms
    values: npt.NDArray[np.float64]


@dataclass(frozen=True)
class QueryResult:
    """`series` for vector and matrix results (matrix: sorted by labels); `scalar`/`string` hold
    (timestamp ms, value) for those result types."""

    type: ResultType
    series: list[Series] = field(default_factory=list)
    scalar: tuple[int, float] | None = None
    string: tuple[int, str] | None = None
    warnings: list[str] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)
