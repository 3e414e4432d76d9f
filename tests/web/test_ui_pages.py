"""The UI's pages over a real server app (DB, event store, rule-less): status, security headers, the
URL state, sorting and paging, tenants, bounded work, and a hostile label value shown as text."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from bench.ui_fleet import HEADERS, XSS, fleet, instance, send
from prometheus_client import CollectorRegistry

from tests.web.asgi import Client
from vigil.cmd.server import build_app
from vigil.config import config_from_yaml
from vigil.events.store import EventStore
from vigil.model.event import Event
from vigil.promql.engine import Engine
from vigil.promql.errors import PromQLError
from vigil.promql.parser import parse
from vigil.rules.view import AlertView
from vigil.tsdb.db import DB, Options
from vigil.web.app import create_app
from vigil.web.auth import Tenant, TokenAuth
from vigil.web.promapi import parse_duration_param
from vigil.web.ui import panels as P
from vigil.web.ui.pages import CSP, PagesAPI
from vigil.web.ui.state import StateError, parse_state

HOSTS = 20
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;"
EVIL_LINE = "Failed password for <script>alert(2)</script> from 203.0.113.9"


class Fleet:
    def __init__(self, root: Path) -> None:
        self.now = int(time.time() * 1000)
        self.db = DB(root / "data", Options(fsync=False))
        self.events = EventStore(root / "events.db", 86_400_000)
        self.client = Client(build_app(config_from_yaml("{}"), self.db, CollectorRegistry(), self.events))
        self.samples = send(
            fleet(HOSTS, 40, self.now),
            lambda p: self.client.post("/api/v1/write", content=p, headers=HEADERS).status_code,
        )
        ev = Event(self.now - 60_000, "auth", EVIL_LINE, {"user": "<b>root</b>"}, {"instance": XSS}, "e1")
        changes = [
            Event(
                self.now - 120_000 - i * 1000,
                "file_change",
                f"changed /etc/f{i}",
                {"path": f"/etc/f{i}"},
                {"instance": instance(5)},
                f"f{i}",
            )
            for i in range(130)
        ]
        assert self.events.append([ev, *changes]) == 131

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.client.get(url, **kw)

    def close(self) -> None:
        self.events.close()
        self.db.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = Fleet(tmp_path_factory.mktemp("ui"))
    yield f
    f.close()


def host_url(inst: str) -> str:
    return "/hosts/" + quote(inst, safe="")


PAGES = ["/", "/hosts", host_url(XSS), host_url(instance(3)), "/events", "/security"]


class Markup(HTMLParser):
    """What the CSP forbids, collected: inline scripts, style attributes, event-handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts = 0
        self.bad_attrs: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._script_src: list[bool] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        self.tags.append((tag, d))
        if tag == "script":
            self._script_src.append(bool(d.get("src")))
        if tag == "style":
            self.inline_scripts += 1
        self.bad_attrs += [k for k in d if k == "style" or k.startswith("on")]

    def handle_data(self, data: str) -> None:
        if self._script_src and not self._script_src[-1] and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script_src:
            self._script_src.pop()


@pytest.mark.parametrize("path", PAGES)
def test_pages_answer_with_a_strict_csp_and_no_inline_code(app: Fleet, path: str) -> None:
    r = app.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-security-policy"] == CSP
    assert "script-src 'self';" in CSP and "'unsafe-inline'" not in CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"
    m = Markup()
    m.feed(r.text)
    assert m.inline_scripts == 0 and m.bad_attrs == [], (m.inline_scripts, m.bad_attrs)
    # Every script and stylesheet is ours, with its content hash in the URL.
    srcs = [a.get("src") or a.get("href") for t, a in m.tags if t == "script" or (t == "link")]
    assert srcs and all(re.fullmatch(r"/static/[\w./-]+\?v=[0-9a-f]{12}", s or "") for s in srcs), srcs


@pytest.mark.parametrize("path", [*PAGES[:3], "/events", "/security"])
def test_a_hostile_label_value_is_text_on_every_page_that_shows_it(app: Fleet, path: str) -> None:
    body = app.get(path).text
    assert ESCAPED in body  # it is shown (host 1 has security findings: on the overview too)...
    assert "<img" not in body  # ...and never as markup, in text or in attributes
    assert "onerror=alert(1)>" not in body.replace(ESCAPED, "")


def test_event_evidence_is_escaped_on_the_host_page(app: Fleet) -> None:
    body = app.get(host_url(XSS)).text
    assert "Failed password for &lt;script&gt;alert(2)&lt;/script&gt; from 203.0.113.9" in body
    assert "&lt;b&gt;root&lt;/b&gt;" in body
    assert "<script>alert" not in body and "<b>root" not in body


def test_security_page_ranks_hosts_by_findings_and_certificates_by_expiry(app: Fleet) -> None:
    body = app.get("/security").text
    assert 'Hosts with findings <span class="muted">(1; ' in body  # only host 1 has any
    [row] = re.findall(r'<table class="security-hosts">.*?<tbody>(.*?)</tbody>', body, re.S)
    cells = re.findall(r'<td class="num[^"]*">([^<]*)</td>', row)
    assert ESCAPED in row and cells[1:4] == ["4", "1", "1"], cells  # updates, certs, ports
    certs = re.findall(r"<td>/etc/ssl/site.pem</td><td class=\"num\">([0-9.]+)</td>", body)
    assert certs[0] == "3.0" and all(c == "90.0" for c in certs[1:]) and len(certs) == 20  # soonest first
    assert body.count("others (avg of 15)") == len(P.SECURITY_PANELS)


def event_rows(body: str) -> list[str]:
    return re.findall(r'<td class="msg">([^<]*)</td>', body)


def test_events_page_filters_by_host_and_kind_and_pages_by_cursor(app: Fleet) -> None:
    first = app.get("/events", params={"host": instance(5)}).text
    assert event_rows(first) == [f"changed /etc/f{i}" for i in range(100)]  # newest first
    [older] = re.findall(r'href="([^"]*)" rel="next"', first)
    older = older.replace("&amp;", "&")
    assert "host=host-05%3A9100" in older and "cursor=" in older
    second = app.get(older).text
    assert event_rows(second) == [f"changed /etc/f{i}" for i in range(100, 130)]
    assert 'rel="next"' not in second and ">Newest<" in second
    auth = app.get("/events", params={"kind": "auth"}).text
    assert event_rows(auth) == ["Failed password for &lt;script&gt;alert(2)&lt;/script&gt; from 203.0.113.9"]
    assert ESCAPED in auth  # the host column links the hostile instance, as text
    assert event_rows(
        app.get("/events", params={"kind": "auth,file_change", "host": XSS}).text
    ) == event_rows(auth)
    assert event_rows(app.get("/events", params={"range": "15m", "kind": "nothing"}).text) == []
    # The host page shows its newest events and links to all of them.
    host = app.get(host_url(instance(5))).text
    assert len(event_rows(host)) == 50 and "/events?host=host-05%3A9100" in host


@pytest.mark.parametrize(
    "query", ["kind=a%20b", "kind=" + ",".join(f"k{i}" for i in range(21)), "cursor=nope"]
)
def test_bad_events_parameters_are_a_400(app: Fleet, query: str) -> None:
    r = app.get(f"/events?{query}")
    assert r.status_code == 400 and "parameter" in r.text


def test_overview_counts_hosts_alerts_and_security_items(app: Fleet) -> None:
    body = app.get("/").text
    assert f"{HOSTS - 1} / {HOSTS}" in body and "1 down, 0 silent" in body  # host 2's up is 0
    for title in [i.title for i in P.SECURITY_ITEMS]:
        assert title in body
    # Host 1 has 4 pending security updates and one unexpected port; nobody else has any.
    tiles = re.findall(r'tile-value">([^<]+)</span>\s*<span class="tile-label">([^<]+)<', body)
    values = {label: value for value, label in tiles}
    assert values["Security updates pending"] == "4" and values["Unexpected listening ports"] == "1"
    assert values["Certificates expiring in 14 days"] == "1"
    # Each fleet chart draws the worst 5 hosts and one "others" line for the other 15.
    assert body.count("others (avg of 15)") == len(P.FLEET_PANELS)


def test_overview_names_filesystems_filling_within_a_day(app: Fleet) -> None:
    body = app.get("/").text
    [note] = re.findall(r'<span class="filling">(.*?)</span>', body, re.S)
    assert ESCAPED in note and "host-0" not in note  # only host 1's root filesystem is filling


def test_host_page_shows_its_agents_health(app: Fleet) -> None:
    body = app.get(host_url(instance(3))).text
    cells = dict(re.findall(r'<th scope="row">([^<]+)</th><td class="num">([^<]+)</td>', body))
    assert cells["Queued payloads"] == "2" and cells["Queued bytes"] == "4 KiB"
    assert cells["Collector errors in range"] != "–" and float(cells["Collector errors in range"]) >= 1
    assert cells["Filesystems filling within 24 h"] == "–"
    other = dict(
        re.findall(r'<th scope="row">([^<]+)</th><td class="num">([^<]+)</td>', app.get(host_url(XSS)).text)
    )
    assert other["Queued payloads"] == "–" and other["Filesystems filling within 24 h"] == "1"


def test_chart_queries_are_valid_promql_for_hostile_instances(app: Fleet) -> None:
    # The top hosts' regex is built from label values: quotes, backslashes and regex syntax in one
    # must neither break the query nor widen it.
    hostile = ['a"b', "c\\d", "x.y|z", "(?i)host", "new\nline", XSS]
    sel = f"instance=~{P.go_quote(P.regex_any(hostile))}"
    for panel in P.FLEET_PANELS + P.HOST_PANELS:
        for s in panel.series:
            parse(P.narrow(s.expr, sel).replace("$__rate_interval", "1m"))
    pattern = P.regex_any(hostile)
    assert all(re.fullmatch(pattern, h) for h in hostile)
    assert not any(re.fullmatch(pattern, h) for h in ["aXb", "xzy", "x.y", "HOST", "z"])


def test_host_page_queries_only_that_host(app: Fleet) -> None:
    body = app.get(host_url(instance(3))).text
    assert body.count("data-series=") == len(P.HOST_PANELS)
    exprs = re.findall(r"data-series='([^']*)'", body)
    assert all(
        "instance=\\&#34;host-03:9100\\&#34;" in e or 'instance=\\"host-03:9100\\"' in e for e in exprs
    ), exprs


def test_unknown_host_is_a_404_page(app: Fleet) -> None:
    r = app.get(host_url("no-such-host:9100"))
    assert r.status_code == 404 and "no host" in r.text
    assert r.headers["content-security-policy"] == CSP


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("range=2h", '"range"'),
        ("from=100", '"from" and "to"'),
        ("from=100&to=50", '"from" and "to"'),
        ("from=0&to=99999999", '"from" and "to"'),  # longer than 31 days
        ("from=yesterday&to=1", '"from"'),
        ("refresh=1s", '"refresh"'),
        ("theme=pink", '"theme"'),
        ("tz=mars", '"tz"'),
    ],
)
def test_bad_view_state_is_a_400_naming_the_parameter(app: Fleet, query: str, named: str) -> None:
    for path in ("/", "/hosts"):
        r = app.get(f"{path}?{query}")
        assert r.status_code == 400, (path, query)
        assert f"parameter{'s' if ' and ' in named else ''} {named}".replace("&", "&amp;") in r.text.replace(
            "&#34;", '"'
        )
        assert r.headers["content-security-policy"] == CSP


@pytest.mark.parametrize(
    "query", ["sort=bogus", "dir=up", "page=0", "page=x", "page=" + "9" * 5000, "page=%C2%B2"]
)
def test_bad_hosts_parameters_are_a_400(app: Fleet, query: str) -> None:
    r = app.get(f"/hosts?{query}")
    assert r.status_code == 400 and "parameter" in r.text


def test_links_carry_the_view_state(app: Fleet) -> None:
    body = app.get("/?range=6h&tz=utc&theme=dark").text
    links = re.findall(r'href="(/hosts/[^"]+)"', body)
    assert links and all("range=6h" in u and "tz=utc" in u and "theme=dark" in u for u in links), links
    assert '<option value="6h" selected>' in body and 'data-theme="dark"' in body


def rows(body: str) -> list[tuple[str, str]]:
    """(host link text, CPU cell) of each row of the hosts table."""
    found = re.findall(
        r'<tr>\s*<td><a href="/hosts/[^"]*">([^<]*)</a></td>\s*<td>.*?</td>\s*<td class="num">([^<]*)<',
        body,
        re.S,
    )
    return [(h, c) for h, c in found]


def test_hosts_sort_page_and_filter(app: Fleet) -> None:
    auth = TokenAuth([], [])
    small = Client(
        create_app([PagesAPI(Engine(app.db), app.db, auth, app.events, hosts_per_page=7)], registry=None)
    )
    pages = [rows(small.get(f"/hosts?sort=cpu&dir=desc&page={n}").text) for n in (1, 2, 3)]
    assert [len(p) for p in pages] == [7, 7, 6]
    cpu = [float(c.rstrip("%")) for p in pages for _, c in p]
    assert cpu == sorted(cpu, reverse=True)
    assert len({h for p in pages for h, _ in p}) == HOSTS
    by_name = rows(small.get("/hosts").text)
    assert [h for h, _ in by_name] == sorted(h for h, _ in by_name)
    body = small.get("/hosts?q=HOST-1").text  # case-insensitive substring
    assert sorted(h for h, _ in rows(body)) == [instance(h) for h in range(10, 20)][:7]
    assert "page 1 of 2" in body
    assert 'rel="next"' in body and "q=HOST-1" in body


class CountingEngine:
    """An engine that counts the queries a page runs, by kind."""

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.instant: list[str] = []
        self.ranges = 0

    def with_storage(self, storage: Any) -> CountingEngine:
        return CountingEngine(self.inner.with_storage(storage))

    def instant_query(self, query: str, time_ms: int, *a: Any, **kw: Any) -> Any:
        self.instant.append(query)
        return self.inner.instant_query(query, time_ms, *a, **kw)

    def range_query(self, *a: Any, **kw: Any) -> Any:
        self.ranges += 1
        return self.inner.range_query(*a, **kw)


def test_page_work_does_not_grow_with_the_range(app: Fleet) -> None:
    counted: dict[str, list[int]] = {}
    for rng in ("15m", "30d"):
        engine = CountingEngine(Engine(app.db))
        c = Client(create_app([PagesAPI(engine, app.db, TokenAuth([], []), app.events)], registry=None))  # type: ignore[arg-type]
        for path in PAGES:
            assert c.get(f"{path}?range={rng}").status_code == 200
            counted.setdefault(path, []).append(len(engine.instant))
            engine.instant.clear()
        assert engine.ranges == 0  # charts are the browser's: the server renders no series
    # The same fixed number of instant queries whatever the range (a 30d page is not 2880x a 15m one).
    assert all(a == b and a <= 25 for a, b in counted.values()), counted


def test_no_page_query_reads_more_than_a_day_whatever_the_range(app: Fleet) -> None:
    engine = CountingEngine(Engine(app.db))
    c = Client(create_app([PagesAPI(engine, app.db, TokenAuth([], []), app.events)], registry=None))  # type: ignore[arg-type]
    for path in PAGES:
        body = c.get(f"{path}?range=30d").text
        if path == "/":
            assert "Failed logins (approx.)" in body
    windows = [parse_duration_param(w) for q in engine.instant for w in re.findall(r"\[(\w+)\]", q)]
    assert windows and max(windows) <= 86_400_000, sorted(set(engine.instant))
    assert any("offset 2592000s" in q for q in engine.instant)  # the counters' 30 days: two instants


def test_counter_increase_over_the_range() -> None:
    expr = 'sum by (instance) (increase(x_total{a="b",$sel}[$range]))'
    assert P.over_range(expr, 3_600_000) == 'sum by (instance) (increase(x_total{a="b",$sel}[3600s]))'
    week = P.over_range(expr, 7 * 86_400_000)
    assert (
        week == 'sum by (instance) (clamp_min(x_total{a="b",$sel} - x_total{a="b",$sel} offset 604800s, 0))'
    )
    parse(P.narrow(week, 'instance="h]"'))


TENANT_CONFIG = """
server:
  auth:
    write_tokens: [w]
    read_tokens: [r]
    tenants:
      acme: {write_tokens: [acme-w], read_tokens: [acme-r]}
"""


def test_a_tenants_reader_sees_only_its_hosts(tmp_path: Path) -> None:
    db = DB(tmp_path / "data", Options(fsync=False))
    events = EventStore(tmp_path / "events.db", 86_400_000)
    try:
        c = Client(build_app(config_from_yaml(TENANT_CONFIG), db, CollectorRegistry(), events))
        now = int(time.time() * 1000)
        for token, host in (("acme-w", "acme-web:9100"), ("w", "core-secret:9100")):
            text = f'up{{instance="{host}",job="node"}} 1 {now - 5000}\n'
            r = c.post(
                "/api/v1/import/prometheus", content=text, headers={"Authorization": f"Bearer {token}"}
            )
            assert r.status_code == 204, r.text
        for token, host in (("acme-w", "acme-web:9100"), ("w", "core-secret:9100")):
            line = Event(now - 5000, "auth", f"login on {host}", {}, {"instance": host}, "x").to_json()
            r = c.post(
                "/api/v1/events",
                content=line + "\n",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
            )
            assert r.status_code == 200, r.text
        seen = c.get("/events", headers={"Authorization": "Bearer acme-r"}).text
        assert "login on acme-web:9100" in seen and "core-secret" not in seen
        assert "login on core-secret:9100" in c.get("/events", headers={"Authorization": "Bearer r"}).text
        acme = c.get("/hosts", headers={"Authorization": "Bearer acme-r"})
        assert acme.status_code == 200 and "acme-web:9100" in acme.text and "core-secret" not in acme.text
        assert (
            c.get(host_url("core-secret:9100"), headers={"Authorization": "Bearer acme-r"}).status_code == 404
        )
        assert "core-secret:9100" in c.get("/hosts", headers={"Authorization": "Bearer r"}).text
        # Reads need a token here: without one a browser is sent to the login page (as the query
        # API, the page itself is refused).
        r = c.get("/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    finally:
        events.close()
        db.close()


def test_static_files_are_versioned_and_only_ours(app: Fleet) -> None:
    body = app.get("/").text
    [url] = re.findall(r'src="(/static/charts\.js\?v=[0-9a-f]+)"', body)
    r = app.get(url)
    assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert r.headers["content-type"].startswith("text/javascript")
    assert app.get("/static/charts.js?v=old").headers["cache-control"] == "no-cache"
    assert app.get(url, headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    for bad in ("/static/../pages.py", "/static/%2e%2e/pages.py", "/static/nope.js", "/static/"):
        assert app.get(bad).status_code == 404, bad
    lic = app.get("/static/vendor/uplot/LICENSE")
    assert lic.status_code == 200 and "MIT" in lic.text


def test_package_data_ships_every_ui_file() -> None:
    import tomllib

    root = Path(__file__).parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "vigil.web.ui"
    ]
    ui = root / "src/vigil/web/ui"
    files = [p.relative_to(ui) for d in ("templates", "static") for p in (ui / d).rglob("*") if p.is_file()]
    assert files and all(any(f.match(g) and len(f.parts) == len(Path(g).parts) for g in globs) for f in files)


def test_view_state_parsing_is_pure_and_bounded() -> None:
    now = 1_700_000_000_000
    s = parse_state({}, now)
    assert (s.range, s.end_ms - s.start_ms, s.refresh, s.theme, s.tz) == ("1h", 3_600_000, "off", "", "local")
    c = parse_state({"from": "1699990000", "to": "2023-11-14T22:13:20Z"}, now)
    assert (c.range, c.start_ms, c.end_ms) == ("custom", 1_699_990_000_000, now)
    assert c.params() == {"from": "1699990000", "to": "1700000000"}
    assert (
        parse_state({"range": "7d", "tz": "utc"}, now).link("/hosts", sort="cpu")
        == "/hosts?range=7d&tz=utc&sort=cpu"
    )
    with pytest.raises(StateError, match='"range"'):
        parse_state({"range": "1y"}, now)


class FailingEngine(CountingEngine):
    """Refuses the queries that mention `metric`, as an engine at its sample limit or timeout would."""

    def __init__(self, inner: Engine, metric: str) -> None:
        super().__init__(inner)
        self.metric = metric

    def instant_query(self, query: str, time_ms: int, *a: Any, **kw: Any) -> Any:
        if self.metric in query:
            raise PromQLError("query processing would load too many samples into memory")
        return super().instant_query(query, time_ms, *a, **kw)


def test_a_failing_query_is_named_on_the_page_and_the_rest_still_shows(app: Fleet) -> None:
    engine = FailingEngine(Engine(app.db), "vigil_updates_pending")
    c = Client(create_app([PagesAPI(engine, app.db, TokenAuth([], []), app.events)], registry=None))  # type: ignore[arg-type]
    for path in ("/", "/security", host_url(instance(3))):
        r = c.get(path)
        assert r.status_code == 200 and "Some queries failed" in r.text, path
        assert "too many samples" in r.text and "vigil_updates_pending" in r.text
        assert "CPU busy" in r.text or "Failed logins" in r.text


class FakeRules:
    def rule_groups(self) -> list[Any]:
        return []

    def active_alerts(self) -> list[AlertView]:
        labels = {"alertname": "<script>alert(3)</script>", "instance": XSS}
        return [
            AlertView(labels, {"summary": "s"}, "firing", 1_700_000_000_000, 1.0),
            AlertView({"alertname": "Slow"}, {}, "pending", 1_700_000_000_000, 1.0),
        ]


def test_firing_alerts_show_on_the_overview_as_text(app: Fleet) -> None:
    c = Client(
        create_app(
            [PagesAPI(Engine(app.db), app.db, TokenAuth([], []), app.events, FakeRules())], registry=None
        )
    )
    body = c.get("/").text
    assert re.search(r'tile-value">1</span><span class="tile-label">alerts firing', body)
    assert (
        "1 pending" in body
        and "&lt;script&gt;alert(3)&lt;/script&gt;" in body
        and "<script>alert" not in body
    )
    # A tenant's reader sees no alerts: the rule manager's are the default tenant's.
    auth = TokenAuth([], ["r"], [Tenant("acme", (), ("acme-r",))])
    tenant_app = Client(
        create_app([PagesAPI(Engine(app.db), app.db, auth, app.events, FakeRules())], registry=None)
    )
    seen = tenant_app.get("/", headers={"Authorization": "Bearer acme-r"}).text
    assert (
        re.search(r'tile-value">0</span><span class="tile-label">alerts firing', seen)
        and "alert(3)" not in seen
    )
    assert "alert(3)" in tenant_app.get("/", headers={"Authorization": "Bearer r"}).text


def test_pages_send_a_browser_without_a_session_to_the_login(tmp_path: Path) -> None:
    """With users configured, a page asked for without a session redirects to /login (next= the
    page); with a bearer token the refusal stays a 401 (scripts get no redirect)."""
    import argon2

    hashed = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("pw")
    cfg = config_from_yaml(f"server:\n  auth:\n    users: [{{name: ops, password_hash: '{hashed}'}}]\n")
    db = DB(tmp_path / "data", Options(fsync=False))
    events = EventStore(tmp_path / "events.db", 86_400_000)
    try:
        client = Client(build_app(cfg, db, CollectorRegistry(), events))
        for page in ("/", "/security", "/hosts", "/events", "/hosts/web-1"):
            r = client.get(page, follow_redirects=False)
            assert r.status_code == 303, (page, r.status_code)
            assert r.headers["location"].startswith("/login?next="), r.headers["location"]
        assert client.get("/", headers={"Authorization": "Bearer nope"}).status_code == 401
    finally:
        events.close()
        db.close()
