"""Tenant isolation on the read side, through the application `vigil server` builds (`build_app`).

Two stores are built through the HTTP write endpoints with the same configuration: `full` holds
tenant acme's data, tenant beta's (including a beta write forging `tenant="acme"`) and untenanted
data; `acme_only` holds acme's writes alone. A read with acme's token must give the same answer from
both, byte for byte (non-interference: nothing of beta or of the untenanted data can change what
acme sees), and never contain one of the strings only beta's or the untenanted data carry. The
PromQL is generated (hypothesis) and includes the classic escape attempts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from tests.web.asgi import Client
from vigil.cmd.server import build_app
from vigil.config import config_from_yaml
from vigil.events.store import EventStore
from vigil.model.event import Event
from vigil.model.matcher import Matcher
from vigil.storage.tenant import TenantView
from vigil.tsdb.db import DB, Options

T0 = 1_700_000_000_000  # ms: samples every 15 s for ten minutes from here
STEP = 15_000
MID = T0 + 300_000
EVENT_T0 = int(time.time() * 1000) - 600_000  # events: ten minutes ago (inside the store's retention)

CONFIG = """
server:
  auth:
    write_tokens: [global-w]
    read_tokens: [global-r]
    admin_tokens: [admin]
    trusted_proxy_tokens: [proxy]
    tenants:
      acme: {write_tokens: [acme-w], read_tokens: [acme-r]}
      beta: {write_tokens: [beta-w], read_tokens: [beta-r]}
"""

# What only beta's and the untenanted data contain. No generated query contains these strings, so
# one in an answer to acme can only have come from data acme must not see.
SECRETS = ("mallory", "beta-db-7", "beta_secret_label", "beta_only_metric", "core-router-9", "global_metric")


def _samples(series: str, value: Any) -> str:
    return "".join(f"{series} {value(i)} {T0 + i * STEP}\n" for i in range(40))


ACME_TEXT = (
    "# HELP http_requests_total Requests served.\n# TYPE http_requests_total counter\n"
    + _samples('http_requests_total{job="api",instance="acme-web-1",code="200"}', lambda i: 10 * i)
    + _samples('http_requests_total{job="api",instance="acme-web-1",code="500"}', lambda i: i // 4)
    + "# TYPE up gauge\n"
    + _samples('up{job="node",instance="acme-web-1"}', lambda i: 1)
    + _samples('acme_metric{job="node",instance="acme-web-1",user="alice"}', lambda i: i % 7)
)
BETA_TEXT = (
    "# HELP http_requests_total Requests served by mallory.\n# TYPE http_requests_total counter\n"
    + _samples('http_requests_total{job="api",instance="beta-db-7",code="200"}', lambda i: 3 * i)
    + _samples('up{job="node",instance="beta-db-7"}', lambda i: 0)
    + "# HELP beta_only_metric mallory's own.\n"
    + _samples('beta_only_metric{user="mallory",beta_secret_label="x"}', lambda i: 42)
    # A forged tenant label: the server must store it as beta's anyway.
    + _samples('acme_metric{job="node",tenant="acme",instance="beta-db-7",user="mallory"}', lambda i: 99)
)
GLOBAL_TEXT = "# HELP global_metric core-router-9 only.\n" + _samples(
    'global_metric{instance="core-router-9"}', lambda i: 5
)


def _events(instance: str, user: str, labels: dict[str, str] | None = None) -> bytes:
    lines = []
    for i in range(12):
        ev = Event(
            EVENT_T0 + i * 1000,
            "auth" if i % 2 else "file_changed",
            f"event {i} on {instance}",
            {"user": user, "n": i},
            {"instance": instance, **(labels or {})},
            f"e{i}",  # the same ids for every tenant: ids are unique per tenant only
        )
        lines.append(ev.to_json())
    return ("\n".join(lines) + "\n").encode()


class Server:
    """An application from `build_app` over its own DB and event store, with a client for it."""

    def __init__(self, root: Path, config: str = CONFIG, now_ms: Callable[[], int] | None = None) -> None:
        self.db = DB(root / "data", Options(fsync=False), **({"now_ms": now_ms} if now_ms else {}))
        self.events = EventStore(root / "events.db", 86_400_000)
        self.client = Client(build_app(config_from_yaml(config), self.db, CollectorRegistry(), self.events))

    def request(self, method: str, url: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.request(method, url, headers=headers, **kwargs)

    def get(self, url: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, token, **kwargs)

    def write(self, text: str, token: str) -> None:
        r = self.request("POST", "/api/v1/import/prometheus", token, content=text.encode())
        assert r.status_code == 204, r.text

    def post_events(self, body: bytes, token: str) -> None:
        r = self.request(
            "POST", "/api/v1/events", token, content=body, headers={"Content-Type": "application/x-ndjson"}
        )
        assert r.status_code == 200, r.text

    def close(self) -> None:
        self.events.close()
        self.db.close()


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    at_t0 = lambda: T0 + 600_000  # noqa: E731 - the store's clock: the samples are written at T0
    full = Server(tmp_path_factory.mktemp("full"), now_ms=at_t0)
    acme_only = Server(tmp_path_factory.mktemp("acme_only"), now_ms=at_t0)
    # beta and the untenanted writer write before and after acme, so their rows interleave with acme's.
    full.write(BETA_TEXT, "beta-w")
    full.post_events(_events("beta-db-7", "mallory"), "beta-w")
    for s in (full, acme_only):
        s.write(ACME_TEXT, "acme-w")
        s.post_events(_events("acme-web-1", "alice", {"tenant": "beta"}), "acme-w")  # forged label
    full.write(GLOBAL_TEXT, "global-w")
    full.post_events(_events("core-router-9", "mallory"), "global-w")
    yield full, acme_only
    full.close()
    acme_only.close()


def data(resp: httpx.Response) -> Any:
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "success", body
    return body["data"]


def query(s: Server, q: str, token: str, **extra: str) -> Any:
    return data(s.get("/api/v1/query", token, params={"query": q, "time": str(MID / 1000), **extra}))


def assert_same_for_acme(full: Server, acme_only: Server, method: str, url: str, **kwargs: Any) -> None:
    """acme's answer does not depend on anyone else's data and holds nothing of theirs."""
    a = full.request(method, url, "acme-r", **kwargs)
    b = acme_only.request(method, url, "acme-r", **kwargs)
    assert (a.status_code, a.text) == (b.status_code, b.text), (url, kwargs)
    for secret in SECRETS:
        assert secret not in a.text, (secret, url, kwargs, a.text[:500])


# -- the escape attempts named in the audit, one by one ---------------------------------------------------

ESCAPES = [
    '{__name__=~".+"}',
    '{__name__=~".*",tenant=~".*"}',
    'count({__name__=~".+"})',
    'count by (tenant, instance) ({__name__=~".+"})',
    'up{tenant="beta"}',
    'up{tenant!="acme"}',
    '{tenant=~"beta|acme", __name__=~".+"}',
    'acme_metric{tenant="acme"}',  # beta's forged series is beta's, not acme's
    'label_replace(up, "tenant", "beta", "", "")',
    'label_replace({__name__=~".+"}, "tenant", "$1", "instance", "(.*)")',
    "up or vector(1)",
    'vector(1) and on() up{tenant="beta"}',
    'absent(up{tenant="beta"})',
    'absent(beta_only_metric{job="x"})',
    'absent_over_time({__name__=~"b.+"}[1h])',
    'max_over_time({__name__=~".+"}[10m:1m])',
    'count(count_over_time({__name__=~".+"}[1h:30s]))',
    'sum by (user) (acme_metric) or sum by (user) ({__name__=~"b.*"})',
    'count_values("tenant", up)',
    'topk(100, {__name__=~".+"} offset 1m)',
    '{__name__=~".+"} @ end()',
    'label_join({__name__=~".+"}, "x", ",", "tenant", "instance", "user")',
    'group by (__name__) ({__name__=~".+"})',
    "rate(http_requests_total[5m]) * on(instance) group_left(tenant) up",
]


@pytest.mark.parametrize("q", ESCAPES)
def test_escape_attempts_see_only_acme(stores: tuple[Server, Server], q: str) -> None:
    full, acme_only = stores
    params = {"query": q, "time": str(MID / 1000)}
    assert_same_for_acme(full, acme_only, "GET", "/api/v1/query", params=params)
    rng = {"query": q, "start": str(T0 / 1000), "end": str((T0 + 600_000) / 1000), "step": "60"}
    assert_same_for_acme(full, acme_only, "GET", "/api/v1/query_range", params=rng)


def test_a_tenant_reader_sees_its_own_series_and_a_global_reader_all(stores: tuple[Server, Server]) -> None:
    full, _ = stores
    everything = query(full, 'count by (tenant) ({__name__=~".+"})', "global-r")["result"]
    assert {tuple(r["metric"].items()) for r in everything} == {
        (("tenant", "acme"),),
        (("tenant", "beta"),),
        (),
    }
    mine = query(full, '{__name__=~".+"}', "acme-r")["result"]
    assert len(mine) == 4 and {r["metric"]["tenant"] for r in mine} == {"acme"}
    assert {r["metric"]["tenant"] for r in query(full, '{__name__=~".+"}', "beta-r")["result"]} == {"beta"}
    # beta's forged `tenant="acme"` series stayed beta's.
    forged = query(full, 'acme_metric{user="mallory"}', "global-r")["result"]
    assert [r["metric"]["tenant"] for r in forged] == ["beta"]
    assert query(full, 'acme_metric{user="mallory"}', "acme-r")["result"] == []
    assert (
        query(full, '{__name__=~".+"}', "admin")["result"]
        == query(full, '{__name__=~".+"}', "global-r")["result"]
    )


# -- the other read endpoints -----------------------------------------------------------------------------


def test_series_labels_and_label_values_are_scoped(stores: tuple[Server, Server]) -> None:
    full, acme_only = stores
    for url, params in [
        ("/api/v1/series", {"match[]": '{__name__=~".+"}'}),
        ("/api/v1/series", {"match[]": ['{tenant="beta"}', '{tenant=""}', "up"]}),
        ("/api/v1/labels", {}),
        ("/api/v1/labels", {"match[]": '{tenant=~".*",__name__=~".+"}'}),
        ("/api/v1/label/tenant/values", {}),
        ("/api/v1/label/__name__/values", {}),
        ("/api/v1/label/instance/values", {"match[]": '{tenant!="acme"}'}),
        ("/api/v1/label/user/values", {}),
    ]:
        assert_same_for_acme(full, acme_only, "GET", url, params=params)
    assert data(full.get("/api/v1/label/tenant/values", "acme-r")) == ["acme"]
    assert data(full.get("/api/v1/label/tenant/values", "global-r")) == ["acme", "beta"]
    assert data(full.get("/api/v1/label/tenant/values", "admin")) == ["acme", "beta"]
    assert "beta_secret_label" in data(full.get("/api/v1/labels", "beta-r"))
    assert "beta_secret_label" not in data(full.get("/api/v1/labels", "acme-r"))
    assert data(full.get("/api/v1/label/user/values", "acme-r")) == ["alice"]
    assert data(full.get("/api/v1/label/user/values", "beta-r")) == ["mallory"]


def test_metadata_is_scoped(stores: tuple[Server, Server]) -> None:
    full, acme_only = stores
    for params in [{}, {"metric": "beta_only_metric"}, {"metric": "http_requests_total"}, {"limit": "1"}]:
        assert_same_for_acme(full, acme_only, "GET", "/api/v1/metadata", params=params)
    assert data(full.get("/api/v1/metadata", "acme-r")) == {
        "http_requests_total": [{"type": "counter", "help": "Requests served.", "unit": ""}],
        "up": [{"type": "gauge", "help": "", "unit": ""}],
    }
    beta = data(full.get("/api/v1/metadata", "beta-r"))
    assert beta["http_requests_total"] == [
        {"type": "counter", "help": "Requests served by mallory.", "unit": ""}
    ]
    assert set(beta) == {"http_requests_total", "beta_only_metric"}
    # A global reader gets every tenant's version of a family, as Prometheus lists one per target.
    everything = data(full.get("/api/v1/metadata", "global-r"))
    assert set(everything) == {"http_requests_total", "up", "beta_only_metric", "global_metric"}
    assert [m["help"] for m in everything["http_requests_total"]] == [
        "Requests served.",
        "Requests served by mallory.",
    ]


def _events_answer(s: Server, token: str, params: dict[str, Any]) -> tuple[int, Any]:
    """Status and events of a GET; of the cursor only whether there is one (see test_events_get_is_scoped)."""
    r = s.get("/api/v1/events", token, params=params)
    body = r.json()
    if r.status_code != 200:
        return r.status_code, body
    return 200, (body["data"]["events"], body["data"]["next_cursor"] is None)


EVENT_RANGE = {"start": str((EVENT_T0 - 1000) / 1000), "end": str((EVENT_T0 + 60_000) / 1000)}


def test_events_get_is_scoped(stores: tuple[Server, Server]) -> None:
    full, acme_only = stores
    extras: list[dict[str, Any]] = [
        {},
        {"match[]": '{tenant="beta"}'},
        {"match[]": '{tenant=""}'},
        {"match[]": ['{user="mallory"}', '{instance=~".+"}']},
        {"match[]": 'auth{tenant!="acme"}'},
        {"limit": "5", "direction": "forward"},
    ]
    for extra in extras:
        params = {**EVENT_RANGE, **extra}
        a, b = _events_answer(full, "acme-r", params), _events_answer(acme_only, "acme-r", params)
        assert a == b, extra
        for secret in SECRETS:
            assert secret not in json.dumps(a), (secret, extra)
    mine, _ = _events_answer(full, "acme-r", {**EVENT_RANGE, "limit": "100"})[1]
    assert len(mine) == 12 and {e["labels"]["tenant"] for e in mine} == {"acme"}  # forged "beta" replaced
    theirs, _ = _events_answer(full, "beta-r", {**EVENT_RANGE, "limit": "100"})[1]
    assert len(theirs) == 12 and {e["fields"]["user"] for e in theirs} == {"mallory"}
    everything, _ = _events_answer(full, "global-r", {**EVENT_RANGE, "limit": "100"})[1]
    assert len(everything) == 36
    # Paging a tenant's events walks its own events only, to the end.
    seen, cursor = [], None
    while True:
        params = {**EVENT_RANGE, "limit": "5", **({"cursor": cursor} if cursor else {})}
        page = data(full.get("/api/v1/events", "acme-r", params=params))
        seen += page["events"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["id"] for e in seen] == [f"e{i}" for i in reversed(range(12))]
    assert {e["labels"]["instance"] for e in seen} == {"acme-web-1"}


def test_a_tenant_view_needs_a_tenant(stores: tuple[Server, Server]) -> None:
    full, _ = stores
    with pytest.raises(ValueError):
        TenantView(full.db, "")  # tenant="" would select every untenanted series
    view = TenantView(full.db, "beta")
    assert {lb.get("tenant") for lb in view.series([Matcher.re("__name__", ".+")], T0, T0 + 600_000)} == {
        "beta"
    }
    assert view.label_values("tenant", [Matcher.eq("tenant", "acme")], T0, T0 + 600_000) == []


# -- generated PromQL ---------------------------------------------------------------------------------

NAMES = ["http_requests_total", "up", "acme_metric", "nothing_here"]
LABELS = ["job", "instance", "code", "tenant", "user"]
VALUES = ["api", "node", "200", "500", "acme", "beta", "acme-web-1", "alice", ""]
REGEXES = [".+", ".*", "acme|beta", "b.*", "a.*", "2..", "be.+|.*db.*", ""]
FUNCS_RANGE = ["rate", "increase", "count_over_time", "max_over_time", "absent_over_time", "last_over_time"]


MODIFIERS = st.sampled_from(["", "", "", " offset 1m", " offset -2m", " @ end()"])


@st.composite
def selectors(draw: st.DrawFn) -> str:
    matchers = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(LABELS))
        op = draw(st.sampled_from(["=", "!=", "=~", "!~"]))
        value = draw(st.sampled_from(REGEXES if "~" in op else VALUES))
        matchers.append(f'{name}{op}"{value}"')
    head = draw(st.sampled_from([*NAMES, '{__name__=~".+"}', '{__name__=~"b.*|u.*"}', ""]))
    if head.startswith("{"):
        text = head[:-1] + "".join("," + m for m in matchers) + "}"
    elif not head and not matchers:
        text = '{__name__=~".+"}'
    else:
        text = head + "{" + ",".join(matchers) + "}"
    return text


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    by = st.sampled_from(["tenant", "instance", "job", "user", "tenant, instance"])
    ops = st.sampled_from(["+", "-", "*", "/", "or", "and", "unless", "== bool", ">", "< bool"])
    matching = st.sampled_from(["", " on()", " ignoring(tenant)", " on(instance)"])
    dst = st.sampled_from(["tenant", "instance", "x"])
    rep = st.sampled_from(["beta", "$1", "acme", "", "copy-$1"])
    return st.one_of(
        st.builds(
            lambda a, b: f"{a} by ({b}) ({{}})", st.sampled_from(["sum", "count", "max", "group"]), by
        ).flatmap(lambda template: children.map(lambda c: template.replace("{}", c, 1))),
        st.builds(lambda c, k: f"topk({k}, {c})", children, st.integers(1, 3)),
        st.builds(lambda c: f'count_values("tenant", {c})', children),
        st.builds(lambda a, op, m, b: f"({a}) {op}{m} ({b})", children, ops, matching, children),
        st.builds(
            lambda c, d, r, s, x: f'label_replace({c}, "{d}", "{r}", "{s}", "{x}")',
            children,
            dst,
            rep,
            st.sampled_from(LABELS),
            st.sampled_from(["(.*)", "a(.*)", ""]),
        ),
        st.builds(lambda c: f"absent({c})", children),
        st.builds(lambda c, w: f"max_over_time(({c})[{w}:1m])", children, st.sampled_from(["5m", "10m"])),
        st.builds(lambda c: f"({c}) or vector(1)", children),
    )


def _leaf() -> st.SearchStrategy[str]:
    ranged = st.builds(
        lambda f, s, w, m: f"{f}({s}[{w}]{m})",
        st.sampled_from(FUNCS_RANGE),
        selectors(),
        st.sampled_from(["1m", "5m"]),
        MODIFIERS,
    )
    instant = st.builds(lambda s, m: s + m, selectors(), MODIFIERS)
    return st.one_of(instant, ranged, st.sampled_from(["vector(1)", "time()", "absent(nothing_here)"]))


PROMQL = st.recursive(_leaf(), _extend, max_leaves=5)


@st.composite
def read_requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(["query", "query_range", "series", "labels", "label_values", "events"]))
    if kind == "query":
        return "/api/v1/query", {
            "query": draw(PROMQL),
            "time": str(draw(st.integers(T0, T0 + 900_000)) / 1000),
        }
    if kind == "query_range":
        start = draw(st.integers(T0 - 300_000, T0 + 600_000))
        return "/api/v1/query_range", {
            "query": draw(PROMQL),
            "start": str(start / 1000),
            "end": str((start + draw(st.integers(0, 900_000))) / 1000),
            "step": draw(st.sampled_from(["15", "60", "5m"])),
        }
    matches = draw(st.lists(selectors(), min_size=0 if kind in ("labels", "label_values") else 1, max_size=3))
    if kind == "series":
        return "/api/v1/series", {"match[]": matches}
    if kind == "labels":
        return "/api/v1/labels", {"match[]": matches}
    if kind == "label_values":
        name = draw(st.sampled_from([*LABELS, "__name__"]))
        return f"/api/v1/label/{name}/values", {"match[]": matches}
    return "/api/v1/events", {**EVENT_RANGE, "match[]": matches, "limit": str(draw(st.integers(1, 40)))}


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(read_requests())
def test_random_reads_never_show_acme_anything_of_another(
    stores: tuple[Server, Server], request: tuple[str, dict[str, Any]]
) -> None:
    full, acme_only = stores
    url, params = request
    if url == "/api/v1/events":
        a, b = _events_answer(full, "acme-r", params), _events_answer(acme_only, "acme-r", params)
        assert a == b, params
        for secret in SECRETS:
            assert secret not in json.dumps(a), (secret, params)
    else:
        assert_same_for_acme(full, acme_only, "GET", url, params=params)
