"""The template data model (Alertmanager's names and semantics) and the graph/events links."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from vigil.notifier.alert import Alert
from vigil.notifier.integration import NotifyError
from vigil.notifier.templates import (
    GO_ZERO_TIME,
    KV,
    Renderer,
    alert_expr,
    events_url,
    go_time_json,
    graph_url,
    load_templater,
    quote_meta,
    template_data,
)

from .conftest import EXTERNAL, NOW_MS, ctx, firing, resolved


def test_sorted_pairs_put_alertname_first_then_sort_by_name() -> None:
    kv = KV({"zone": "z", "alertname": "A", "instance": "i", "b": "x"})
    assert kv.SortedPairs().Names() == ["alertname", "b", "instance", "zone"]
    assert kv.Values() == ["A", "x", "i", "z"]
    assert kv.Remove(["b", "zone"]) == {"alertname": "A", "instance": "i"}
    assert kv.SortedPairs().String() == "alertname=A, b=x, instance=i, zone=z"


def test_data_model_status_common_labels_and_hidden_future_end() -> None:
    later = Alert({"alertname": "BruteForce", "instance": "b3"}, {}, NOW_MS - 5, NOW_MS + 60_000)
    d = template_data(ctx("a.b"), [firing(), resolved(), later])
    assert d.Status == "firing"
    assert d.Receiver == r"a\.b"  # regexp.QuoteMeta, as Alertmanager fills .Receiver
    assert [a.Status for a in d.Alerts] == ["firing", "resolved", "firing"]
    assert len(d.Alerts.Firing()) == 2 and len(d.Alerts.Resolved()) == 1
    assert d.CommonLabels == {"alertname": "BruteForce"}
    assert d.Alerts[2].EndsAt == GO_ZERO_TIME  # an end not reached yet is not shown
    assert d.Alerts[1].EndsAt.UnixMilli() == NOW_MS - 1_000
    assert d.Alerts[0].Fingerprint == f"{firing().fingerprint:016x}"
    assert d.ExternalURL == EXTERNAL
    only_resolved = template_data(ctx(), [resolved()])
    assert only_resolved.Status == "resolved"


def test_graph_link_uses_the_generator_expression() -> None:
    url = graph_url(firing(), EXTERNAL + "/")
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == EXTERNAL + "/graph"
    assert parse_qs(parts.query) == {"g0.expr": ["rate(ssh_failed_total[5m]) > 1"]}


def test_graph_link_without_generator_selects_the_alerts_series() -> None:
    a = Alert({"alertname": "X", "instance": 'h"1', "bad.name": "v", "empty": ""})
    assert alert_expr(a) == 'ALERTS{alertname="X",instance="h\\"1"}'


def test_events_link_selects_identity_labels_from_an_hour_before() -> None:
    q = parse_qs(urlsplit(events_url(resolved(), EXTERNAL, NOW_MS)).query)
    assert q["match[]"] == ['{instance="bastion-2",job="node"}']
    assert q["start"] == [str((NOW_MS - 600_000 - 3_600_000) // 1000)]
    assert q["end"] == [f"{(NOW_MS - 1_000) // 1000}"]
    assert "end" not in parse_qs(urlsplit(events_url(firing(), EXTERNAL, NOW_MS)).query)


def test_go_time_json_formats() -> None:
    assert go_time_json(0) == "0001-01-01T00:00:00Z"
    assert go_time_json(1_700_000_000_000) == "2023-11-14T22:13:20Z"
    assert go_time_json(1_700_000_000_120) == "2023-11-14T22:13:20.12Z"
    assert go_time_json(1_700_000_000_001) == "2023-11-14T22:13:20.001Z"


def test_quote_meta() -> None:
    assert quote_meta("a.b*(c)") == r"a\.b\*\(c\)"


def test_render_failure_is_final_and_names_integration_and_field() -> None:
    r = Renderer("slack[2]", load_templater(), template_data(ctx(), [firing()]))
    with pytest.raises(NotifyError) as e:
        r("title", "{{ .Nope ")
    assert not e.value.retryable
    assert str(e.value).startswith("slack[2]: template of title:")
