"""What a vector selector's matchers say about the labels of the series it selects.

Shared by the engine (absent_over_time over a range selector) and the functions (absent over an
instant selector), so that neither has to import the other.
"""

from __future__ import annotations

from collections.abc import Sequence

from vigil.model.labels import Labels
from vigil.model.matcher import Matcher, MatchType


def selector_labels(matchers: Sequence[Matcher]) -> Labels:
    """Labels absent()/absent_over_time() report: those of equality matchers, unless repeated."""
    eq: dict[str, str | None] = {}
    for m in matchers:
        if m.name == "__name__":
            continue
        if m.type is MatchType.EQ:
            eq[m.name] = None if m.name in eq else m.value
        else:
            eq.setdefault(m.name, None)
            if m.name in eq and eq[m.name] is not None and m.type is not MatchType.EQ:
                eq[m.name] = None
    return Labels.from_pairs((k, v) for k, v in eq.items() if v is not None)
