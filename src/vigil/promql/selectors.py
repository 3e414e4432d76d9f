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
    # As in Prometheus: the first `=` on a name sets it, any later matcher on it deletes it; a
    # non-`=` matcher deletes without marking the name seen, so a later `=` sets it again.
    eq: dict[str, str | None] = {}
    seen: set[str] = set()
    for m in matchers:
        if m.name == "__name__":
            continue
        if m.type is MatchType.EQ and m.name not in seen:
            eq[m.name] = m.value
            seen.add(m.name)
        else:
            eq[m.name] = None
    return Labels.from_pairs((k, v) for k, v in eq.items() if v is not None)
