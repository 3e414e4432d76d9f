"""metric_relabel_configs semantics and scrape config validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.isolated import run_isolated
from vigil.config.scrape import RelabelConfig, ScrapeConfig
from vigil.scrape.relabel import relabel

BASE = {"__name__": "http_requests_total", "code": "200", "path": "/api", "instance": "h:1"}


def rc(**kw: object) -> RelabelConfig:
    return RelabelConfig.model_validate(kw)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        # replace with defaults: copy a label (regex (.*), replacement $1)
        ([{"source_labels": ["code"], "target_label": "status"}], {**BASE, "status": "200"}),
        # capture groups, separator, anchoring
        (
            [
                {
                    "source_labels": ["code", "path"],
                    "regex": "(2)..;/(.*)",
                    "target_label": "x",
                    "replacement": "${1}xx-$2",
                }
            ],
            {**BASE, "x": "2xx-api"},
        ),
        # regex is fully anchored: "0" does not match "200"
        ([{"source_labels": ["code"], "regex": "0", "target_label": "x", "replacement": "y"}], BASE),
        # no match leaves the set unchanged
        ([{"source_labels": ["code"], "regex": "5..", "target_label": "code", "replacement": "err"}], BASE),
        # empty replacement deletes the target label
        (
            [{"source_labels": ["code"], "target_label": "path", "replacement": ""}],
            {k: v for k, v in BASE.items() if k != "path"},
        ),
        # missing source label counts as "" and (.*) matches it -> deletes target
        (
            [{"source_labels": ["nope"], "target_label": "code"}],
            {k: v for k, v in BASE.items() if k != "code"},
        ),
        # unknown group and Go-style "$1x" (group named "1x") expand to ""; "$$" is a literal $
        (
            [{"source_labels": ["code"], "target_label": "a", "replacement": "$1x|$$|$9|${name}"}],
            {**BASE, "a": "|$||"},
        ),
        # named groups
        (
            [
                {
                    "source_labels": ["path"],
                    "regex": "/(?P<seg>.*)",
                    "target_label": "seg",
                    "replacement": "$seg",
                }
            ],
            {**BASE, "seg": "api"},
        ),
        # templated target label; an invalid resulting name leaves the set alone
        (
            [{"source_labels": ["code"], "regex": "(.*)", "target_label": "l_$1", "replacement": "v"}],
            {**BASE, "l_200": "v"},
        ),
        ([{"source_labels": ["path"], "target_label": "$1", "replacement": "v"}], BASE),
        # keep / drop
        ([{"source_labels": ["code"], "regex": "2..", "action": "keep"}], BASE),
        ([{"source_labels": ["code"], "regex": "5..", "action": "keep"}], None),
        ([{"source_labels": ["__name__"], "regex": "http_.*", "action": "drop"}], None),
        ([{"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"}], BASE),
        # labeldrop / labelkeep match label names
        (
            [{"regex": "code|path", "action": "labeldrop"}],
            {"__name__": "http_requests_total", "instance": "h:1"},
        ),
        (
            [{"regex": "__name__|code", "action": "labelkeep"}],
            {"__name__": "http_requests_total", "code": "200"},
        ),
        # steps apply in order; a drop stops the chain
        (
            [
                {"source_labels": ["code"], "target_label": "code", "replacement": "ok"},
                {"source_labels": ["code"], "regex": "ok", "action": "drop"},
                {"source_labels": ["code"], "target_label": "never"},
            ],
            None,
        ),
        # a prefix-style pattern still has to match the whole value
        ([{"source_labels": ["code"], "regex": "2.*", "action": "keep"}], BASE),
    ],
)
def test_relabel(steps: list[dict[str, object]], expected: dict[str, str] | None) -> None:
    original = dict(BASE)
    assert relabel(BASE, [rc(**s) for s in steps]) == expected
    assert original == BASE  # input untouched


def test_dot_does_not_match_newline() -> None:
    cfg = rc(source_labels=["v"], regex="a.b", action="keep")
    assert relabel({"__name__": "m", "v": "a\nb"}, [cfg]) is None
    assert relabel({"__name__": "m", "v": "axb"}, [cfg]) is not None


def test_dot_nl_flag_is_honoured() -> None:
    # (?s) turns `.` matching newlines back on; the Python spelling once lost it without DOTALL.
    cfg = rc(source_labels=["v"], regex="(?s)a.b", action="keep")
    assert relabel({"__name__": "m", "v": "a\nb"}, [cfg]) is not None


def test_hostile_label_values_match_in_linear_time() -> None:
    # A scraped target picks its label values; with Python's re, `(a+)+b` over 40 a's would hold
    # the GIL (every scrape and query of the server) for about 2^40 steps. The child process makes
    # a regression a failed test, not a hung suite.
    outcome = run_isolated(
        """
        from vigil.config.scrape import RelabelConfig
        from vigil.model.regex import compile_regex
        from vigil.scrape.relabel import relabel
        cfg = RelabelConfig.model_validate(
            {"source_labels": ["v"], "regex": "(a+)+b", "target_label": "x", "replacement": "$1"}
        )
        hostile = {"__name__": "m", "v": "a" * 40}
        print(relabel(hostile, [cfg]) == hostile, relabel({"__name__": "m", "v": "aab"}, [cfg])["x"])
        print(compile_regex("(a+)+b").engine)
        """
    )
    assert outcome.ok, outcome.stderr
    assert outcome.stdout.split() == ["True", "aa", "re2"]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"action": "replace", "source_labels": ["a"]}, "needs a target_label"),
        ({"action": "replace", "target_label": "1bad"}, "label name"),
        ({"action": "keep"}, "needs source_labels"),
        ({"action": "labeldrop", "regex": "a", "target_label": "b"}, "takes only a regex"),
        ({"action": "keep", "source_labels": ["a"], "regex": "(?<=x)"}, "RE2"),
        ({"action": "hashmod", "source_labels": ["a"]}, "action"),
    ],
)
def test_relabel_config_errors(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        RelabelConfig.model_validate(data)


def test_scrape_config_defaults_and_timing() -> None:
    c = ScrapeConfig.model_validate({"job_name": "j", "static_configs": [{"targets": ["localhost:9100"]}]})
    assert (c.metrics_path, c.scheme, c.honor_labels, c.sample_limit) == ("/metrics", "http", False, 0)
    assert c.scrape_interval is None
    assert c.timing(60_000) == (60_000, 10_000)
    assert c.timing(5_000) == (5_000, 5_000)  # default timeout shortened to the agent interval
    explicit = ScrapeConfig.model_validate({"job_name": "j", "scrape_timeout": "20s"})
    with pytest.raises(ValueError, match="scrape_timeout"):
        explicit.timing(10_000)
    c2 = ScrapeConfig.model_validate(
        {
            "job_name": "j",
            "scrape_interval": "15s",
            "scrape_timeout": "5s",
            "params": {"a": "1", "b": ["2", "3"]},
        },
        context={"vigil_from_text": True},
    )
    assert c2.timing(60_000) == (15_000, 5_000)
    assert c2.params == {"a": ("1",), "b": ("2", "3")}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({}, "job_name"),
        ({"job_name": ""}, "non-empty job name"),
        ({"job_name": "j", "scrape_interval": "5s", "scrape_timeout": "10s"}, "scrape_timeout"),
        ({"job_name": "j", "static_configs": [{"targets": ["http://h:1/metrics"]}]}, "host:port"),
        ({"job_name": "j", "static_configs": [{"targets": ["h"]}]}, "host:port"),
        ({"job_name": "j", "static_configs": [{"labels": {"bad-name": "x"}}]}, "label name"),
        ({"job_name": "j", "scheme": "ftp"}, "scheme"),
        ({"job_name": "j", "metrics_path": "metrics"}, "metrics_path"),
        ({"job_name": "j", "sample_limit": -1}, "integer >= 0"),
        ({"job_name": "j", "bearer_token": "t", "basic_auth": {"username": "u"}}, "mutually exclusive"),
        ({"job_name": "j", "tls_config": {"cert_file": "c.pem"}}, "together"),
        ({"job_name": "j", "unknown": 1}, "extra"),
    ],
)
def test_scrape_config_errors(data: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        ScrapeConfig.model_validate(data)


def test_unique_job_names() -> None:
    from pydantic import TypeAdapter

    from vigil.config.scrape import ScrapeConfigs

    ta = TypeAdapter(ScrapeConfigs)
    assert ta.validate_python(None) == ()
    assert len(ta.validate_python([{"job_name": "a"}, {"job_name": "b"}])) == 2
    with pytest.raises(ValidationError, match="unique job names"):
        ta.validate_python([{"job_name": "a"}, {"job_name": "a"}])
