"""Why whole conformance files (or parts) are expected to fail: features Vigil leaves out.

Shown in front of each strict xfail's observed failure. Everything here is behind a feature flag
in Prometheus 3 itself, or needs syntax the `promql-parser` package does not parse.
"""

from __future__ import annotations

FILE_REASONS: dict[str, str] = {
    "extended_vectors.test": "experimental `anchored`/`smoothed` range modifiers "
    "(feature flag in Prometheus; promql-parser cannot parse them)",
    "duration_expression.test": "experimental duration expressions like `[5m+1m]`, `step()` in durations "
    "(feature flag in Prometheus; promql-parser cannot parse them)",
    "info.test": "experimental info() function (feature flag in Prometheus), not implemented",
    "type_and_unit.test": "experimental __type__/__unit__ labels "
    "(feature flag in Prometheus), not implemented",
    "start_timestamps.test": "created (start) timestamps are not stored by Vigil",
    "name_label_dropping.test": "delayed __name__ removal (feature flag in Prometheus), not implemented",
    "limit.test": "experimental limit_ratio() (feature flag in Prometheus), not implemented",
    "aggregators.test": "experimental limit_ratio() (feature flag in Prometheus), not implemented",
    "functions.test": "mad_over_time with NaN samples differs from Prometheus",
}


def reason(case_id: str, observed: str) -> str:
    why = FILE_REASONS.get(case_id.split(":")[0])
    return f"{why} — {observed}" if why else observed
