"""Inhibition and time intervals: Alertmanager's semantics, with the clock passed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from vigil.config import ConfigError
from vigil.notifier.config import alertmanager_config_from_dict
from vigil.notifier.inhibit import build_inhibit_rules, inhibited_by
from vigil.notifier.timeintervals import active_intervals, compile_spec, contains

NOW = 1_800_000_000.0


@dataclass
class Alert:
    labels: dict[str, str] = field(default_factory=dict)
    ends_at: float | None = None


def _cfg(**extra: object) -> dict[str, object]:
    return {"route": {"receiver": "r"}, "receivers": [{"name": "r"}], **extra}


def _rules(*rules: dict[str, object]) -> list:  # type: ignore[type-arg]
    return build_inhibit_rules(alertmanager_config_from_dict(_cfg(inhibit_rules=list(rules))).inhibit_rules)


CRIT_MUTES_WARN = {
    "source_matchers": ['severity="critical"'],
    "target_matchers": ['severity="warning"'],
    "equal": ["cluster"],
}


def test_source_inhibits_target_with_equal_labels() -> None:
    rules = _rules(CRIT_MUTES_WARN)
    src = Alert({"severity": "critical", "cluster": "eu"})
    assert inhibited_by(rules, {"severity": "warning", "cluster": "eu"}, [src], NOW) is src
    assert inhibited_by(rules, {"severity": "warning", "cluster": "us"}, [src], NOW) is None
    assert inhibited_by(rules, {"severity": "info", "cluster": "eu"}, [src], NOW) is None


def test_equal_label_missing_on_both_sides_counts_as_equal() -> None:
    rules = _rules(CRIT_MUTES_WARN)
    assert inhibited_by(rules, {"severity": "warning"}, [Alert({"severity": "critical"})], NOW) is not None
    # Missing on one side only: not equal.
    assert (
        inhibited_by(rules, {"severity": "warning"}, [Alert({"severity": "critical", "cluster": "eu"})], NOW)
        is None
    )


def test_resolved_source_does_not_inhibit() -> None:
    rules = _rules(CRIT_MUTES_WARN)
    target = {"severity": "warning"}
    assert inhibited_by(rules, target, [Alert({"severity": "critical"}, ends_at=NOW)], NOW) is None
    assert inhibited_by(rules, target, [Alert({"severity": "critical"}, ends_at=NOW + 1)], NOW) is not None


def test_an_alert_does_not_inhibit_itself() -> None:
    # Source and target matchers both match alerts with `team=db`: such an alert must not mute itself
    # or its like, but it still mutes a target that does not match the source side.
    rules = _rules({"source_matchers": ["team=db"], "target_matchers": ["team=db"]})
    a = Alert({"team": "db", "alertname": "A"})
    assert inhibited_by(rules, a.labels, [a], NOW) is None
    rules = _rules({"source_matchers": ["team=db"], "target_matchers": ['alertname=~"A|B"']})
    b = {"alertname": "B"}
    assert inhibited_by(rules, b, [a], NOW) is a


def test_legacy_source_match_and_regex() -> None:
    rules = _rules(
        {
            "source_match": {"alertname": "NodeDown"},
            "target_match_re": {"alertname": "Disk.*"},
            "equal": ["instance"],
        }
    )
    src = Alert({"alertname": "NodeDown", "instance": "h1"})
    assert inhibited_by(rules, {"alertname": "DiskFull", "instance": "h1"}, [src], NOW) is src
    assert inhibited_by(rules, {"alertname": "xDiskFull", "instance": "h1"}, [src], NOW) is None  # anchored


def _spec(**kw: object) -> object:
    cfg = alertmanager_config_from_dict(_cfg(time_intervals=[{"name": "t", "time_intervals": [kw]}]))
    return compile_spec(cfg.time_intervals[0].time_intervals[0])


def test_times_weekdays_months_years() -> None:
    ti = _spec(
        times=[{"start_time": "09:00", "end_time": "17:00"}],
        weekdays=["monday:friday"],
        months=["december"],
        years=["2026"],
    )
    assert contains(ti, datetime(2026, 12, 7, 9, 0, tzinfo=UTC))  # a Monday
    assert not contains(ti, datetime(2026, 12, 7, 17, 0, tzinfo=UTC))  # end exclusive
    assert not contains(ti, datetime(2026, 12, 6, 12, 0, tzinfo=UTC))  # Sunday
    assert not contains(ti, datetime(2025, 12, 8, 12, 0, tzinfo=UTC))
    assert contains(
        _spec(times=[{"start_time": "23:00", "end_time": "24:00"}]), datetime(2026, 1, 1, 23, 59, tzinfo=UTC)
    )
    assert contains(_spec(weekdays=["Sunday"]), datetime(2026, 12, 6, tzinfo=UTC))  # case-insensitive


def test_days_of_month_negative_counts_from_the_end() -> None:
    last = _spec(days_of_month=["-1"])
    assert contains(last, datetime(2026, 2, 28, tzinfo=UTC)) and not contains(
        last, datetime(2026, 2, 27, tzinfo=UTC)
    )
    assert contains(last, datetime(2028, 2, 29, tzinfo=UTC))  # leap year
    first_week = _spec(days_of_month=["1:7"])
    assert contains(first_week, datetime(2026, 3, 7, tzinfo=UTC)) and not contains(
        first_week, datetime(2026, 3, 8, tzinfo=UTC)
    )
    # 31 in a 30-day month: the range is clamped, and a start past the month's end skips it.
    assert not contains(_spec(days_of_month=["31"]), datetime(2026, 4, 30, tzinfo=UTC))
    assert contains(_spec(days_of_month=["30:31"]), datetime(2026, 4, 30, tzinfo=UTC))


def test_location_is_applied() -> None:
    ti = _spec(times=[{"start_time": "09:00", "end_time": "10:00"}], location="Europe/Berlin")
    assert contains(ti, datetime(2026, 12, 7, 8, 30, tzinfo=UTC))  # 09:30 in Berlin (CET)
    assert not contains(ti, datetime(2026, 12, 7, 9, 30, tzinfo=UTC))
    assert contains(ti, datetime(2026, 7, 7, 7, 30, tzinfo=UTC))  # CEST
    assert contains(ti, datetime(2026, 7, 7, 9, 30, tzinfo=ZoneInfo("Europe/Berlin")))


def test_active_intervals() -> None:
    cfg = alertmanager_config_from_dict(
        _cfg(
            time_intervals=[{"name": "weekend", "time_intervals": [{"weekdays": ["saturday", "sunday"]}]}],
            mute_time_intervals=[
                {
                    "name": "night",
                    "time_intervals": [{"times": [{"start_time": "00:00", "end_time": "06:00"}]}],
                }
            ],
        )
    )
    intervals = {name: [compile_spec(s) for s in specs] for name, specs in cfg.intervals().items()}
    sunday_night = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    assert active_intervals(["weekend", "night"], intervals, sunday_night) == ["weekend", "night"]
    assert active_intervals(["weekend", "night"], intervals, datetime(2026, 12, 7, 12, tzinfo=UTC)) == []


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        ({"times": [{"start_time": "10:00", "end_time": "09:00"}]}, "times[0]"),
        ({"times": [{"start_time": "25:00", "end_time": "26:00"}]}, "times[0].start_time"),
        ({"times": [{"start_time": "10:00"}]}, "times[0]"),
        ({"weekdays": ["friday:monday"]}, "weekdays[0]"),
        ({"weekdays": ["funday"]}, "weekdays[0]"),
        ({"days_of_month": ["0"]}, "days_of_month[0]"),
        ({"days_of_month": ["-3:5"]}, "days_of_month[0]"),
        ({"days_of_month": ["32"]}, "days_of_month[0]"),
        ({"months": ["march:january"]}, "months[0]"),
        ({"years": ["2027:2026"]}, "years[0]"),
        ({"location": "Mars/Base"}, "location"),
    ],
)
def test_bad_time_intervals_name_the_key(spec: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        alertmanager_config_from_dict(
            _cfg(time_intervals=[{"name": "t", "time_intervals": [spec]}]), "am.yml"
        )
    assert str(e.value).startswith(f"am.yml: time_intervals[0].time_intervals[0].{key}: expected"), str(
        e.value
    )
