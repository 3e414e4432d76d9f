"""The UI's pages: Overview (`/`), Security (`/security`), Hosts (`/hosts`), a host
(`/hosts/{instance}`), Events (`/events`), and their static files (`/static/`).

Pages are rendered on the server from instant queries (tables, rankings, counts) evaluated with the
reader's view of the store, as `/api/v1/query` would (a tenant's reader sees its tenant's series
only); each chart is a `<div>` carrying its PromQL, which the chart script draws from
`/api/v1/query_range` on the same origin. Every query a page runs is one value per host at one
instant, the hosts list renders `hosts_per_page` rows, events are paged (`EVENTS_PER_PAGE`; a
host's page shows `MAX_EVENTS`), counters over long ranges read two instants
(`panels.over_range`), and the engine's timeout and sample limit bound each query: a page's work
does not grow with the range.

Templates are autoescaped (labels and log lines are attacker-controlled), and every response
carries a strict Content-Security-Policy: no inline script or style anywhere.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from vigil.events.store import EventStore, decode_cursor
from vigil.model.event import Event
from vigil.model.matcher import Matcher
from vigil.promql.errors import PromQLError
from vigil.storage.interface import Queryable, StorageError
from vigil.storage.tenant import TenantView
from vigil.web.auth import Caller, Scope, TokenAuth, requires
from vigil.web.promapi import go_quote
from vigil.web.query_api import QueryEngine
from vigil.web.rules_api import RuleSource
from vigil.web.session import login_redirect
from vigil.web.ui import panels as P
from vigil.web.ui.format import fmt_time, fmt_value, iso_time
from vigil.web.ui.state import REFRESHES, StateError, ViewState, parse_state
from vigil.web.ui.static import LONG_CACHE, StaticFiles

__all__ = ["CSP", "SECURITY_HEADERS", "PagesAPI"]

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
HERE = Path(__file__).parent
TOP_HOSTS = 5  # hosts drawn one by one in a fleet chart; the rest are one "others" line
RANKED = 10  # hosts listed under a fleet chart
MAX_EVENTS = 50  # on a host's page
EVENTS_PER_PAGE = 100
MAX_KINDS = 20  # kinds one events query may name
SECURITY_ROWS = 50  # hosts listed on the Security page (worst first)
CERT_ROWS = 20  # certificates listed, soonest to expire first
MAX_HOSTS = 10_000  # hosts a page considers at all (the rest are counted, not listed)
SILENT_MS = 10 * 60_000  # as the HostStoppedSending rule: no report for 10 minutes

# (title, path) of the navigation; pages not built yet are listed without a link.
NAV: tuple[tuple[str, str | None], ...] = (
    ("Overview", "/"),
    ("Security", "/security"),
    ("Hosts", "/hosts"),
    ("Alerts", None),
    ("Explore", None),
    ("Events", "/events"),
    ("Status", None),
)
HOST_COLUMNS = ("instance", "up", "cpu", "mem", "disk", "last_seen", "security")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class _Queries:
    """The instant queries of one page, run in the thread pool; failures are collected, not raised."""

    engine: QueryEngine
    at_ms: int
    problems: list[str] = field(default_factory=list)

    def by_instance(self, expr: str) -> dict[str, float]:
        """`expr`'s vector result keyed by `instance` (at most MAX_HOSTS; series without one dropped)."""
        try:
            result = self.engine.instant_query(expr, self.at_ms)
        except (PromQLError, StorageError) as exc:
            self.problems.append(f"{expr}: {exc}")
            return {}
        out: dict[str, float] = {}
        for s in result.series:
            inst = s.labels.get("instance")
            if inst and len(s.values) and len(out) < MAX_HOSTS:
                out[inst] = float(s.values[-1])
        return out

    def vector(self, expr: str, limit: int) -> list[tuple[dict[str, str], float]]:
        """`expr`'s vector result as (labels, value), sorted by value, at most `limit`."""
        try:
            result = self.engine.instant_query(expr, self.at_ms)
        except (PromQLError, StorageError) as exc:
            self.problems.append(f"{expr}: {exc}")
            return []
        found = [(s.labels.to_dict(), float(s.values[-1])) for s in result.series if len(s.values)]
        return sorted(found, key=lambda lv: (_rank_key(lv[1]), sorted(lv[0].items())))[:limit]


@dataclass(frozen=True)
class _Chart:
    """What the chart script needs: its series (PromQL, legend label) and how to show values."""

    key: str
    title: str
    unit: str
    series: list[dict[str, str]]
    thresholds: list[dict[str, Any]]


def _chart(panel: P.Panel, sel: str, extra: Sequence[dict[str, str]] = ()) -> _Chart:
    series = [{"expr": P.narrow(s.expr, sel), "legend": s.legend} for s in panel.series]
    return _Chart(
        panel.key,
        panel.title,
        panel.unit,
        series + list(extra),
        [{"value": t.value, "level": t.level} for t in panel.thresholds],
    )


def _level(value: float | None, panel: P.Panel) -> str:
    level = ""
    for t in panel.thresholds:
        if value is not None and value >= t.value:
            level = t.level
    return level


class PagesAPI:
    """The UI's routes (see the module docstring). Reads need the read scope, as the query API."""

    def __init__(
        self,
        engine: QueryEngine,
        storage: Queryable,
        auth: TokenAuth,
        events: EventStore | None = None,
        rules: RuleSource | None = None,
        now: Callable[[], int] = _now_ms,
        hosts_per_page: int = 50,
    ) -> None:
        self._engine = engine
        self._storage = storage
        self.auth = auth
        self._events = events
        self._rules = rules
        self._now = now
        self._per_page = hosts_per_page
        self.static = StaticFiles(HERE / "static")
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,  # every template, whatever its name
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # the package's templates do not change under a running server
        )
        self._env.globals.update(static=self.static.url, fmt=fmt_value, fmt_time=fmt_time, iso_time=iso_time)
        self._env.filters["urlpart"] = lambda s: quote(str(s), safe="")

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.overview, methods=["GET"]),
            Route("/hosts", self.hosts, methods=["GET"]),
            Route("/hosts/{instance:path}", self.host, methods=["GET"]),
            Route("/events", self.events, methods=["GET"]),
            Route("/security", self.security, methods=["GET"]),
            Route("/static/{path:path}", self.static_file, methods=["GET", "HEAD"]),
        ]

    # -- plumbing ----------------------------------------------------------------------------------

    def _engine_for(self, caller: Caller) -> QueryEngine:
        if caller.tenant is None:
            return self._engine
        return self._engine.with_storage(TenantView(self._storage, caller.tenant))

    def _render(self, template: str, http_status: int = 200, **ctx: Any) -> Response:
        body = self._env.get_template(template).render(**ctx)
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
        return HTMLResponse(body, status_code=http_status, headers=headers)

    def _base(
        self, request: Request, state: ViewState, title: str, keep: Mapping[str, str]
    ) -> dict[str, Any]:
        path = request.url.path
        nav = [
            {
                "title": t,
                "href": state.link(p) if p else None,
                "current": p == path or (p == "/hosts" and path.startswith("/hosts/")),
            }
            for t, p in NAV
        ]
        return {
            "title": title,
            "state": state,
            "path": path,
            "keep": dict(keep),
            "nav": nav,
            "refresh_ms": REFRESHES[state.refresh],
            "approx": state.span_ms > P.EXACT_INCREASE_MS,
        }

    def _state(self, request: Request) -> ViewState | Response:
        try:
            return parse_state(request.query_params, self._now())
        except StateError as exc:
            return self._error(request, 400, str(exc))

    def _error(self, request: Request, status: int, message: str) -> Response:
        state = parse_state({}, self._now())
        ctx = self._base(request, state, "Error", {})
        return self._render("error.html", status, status=status, message=message, **ctx)

    async def static_file(self, request: Request) -> Response:
        found = self.static.get(request.path_params["path"])
        if found is None:
            return Response("not found\n", 404, media_type="text/plain", headers=SECURITY_HEADERS)
        cache = LONG_CACHE if request.query_params.get("v") == found.version else "no-cache"
        headers = {**SECURITY_HEADERS, "Cache-Control": cache, "ETag": f'"{found.version}"'}
        if request.headers.get("if-none-match") == f'"{found.version}"':
            return Response(status_code=304, headers=headers)
        return Response(found.body, media_type=found.media_type, headers=headers)

    # -- data --------------------------------------------------------------------------------------

    def _security(self, q: _Queries, state: ViewState, sel: str = "") -> dict[str, dict[str, float]]:
        """Per security item, its value by host (`$range` = the page's range)."""
        return {
            item.key: q.by_instance(P.narrow(P.over_range(item.expr, state.span_ms), sel))
            for item in P.SECURITY_ITEMS
        }

    def _hosts_status(self, q: _Queries, sel: str = "") -> tuple[dict[str, float], dict[str, float]]:
        return q.by_instance(P.narrow(P.HOST_UP, sel)), q.by_instance(P.narrow(P.LAST_SEEN, sel))

    def _alerts(self, caller: Caller) -> list[dict[str, Any]]:
        # The rule manager's alerts are the default tenant's: a tenant's reader sees none (as /api/v1/alerts).
        if self._rules is None or caller.tenant is not None:
            return []
        return [
            {
                "labels": a.labels,
                "state": a.state,
                "since": a.active_at_ms,
                "summary": a.annotations.get("summary", ""),
            }
            for a in self._rules.active_alerts()
        ]

    # -- pages -------------------------------------------------------------------------------------

    @login_redirect  # a browser without a session goes to /login, not to a bare 401
    @requires(Scope.READ)
    async def overview(self, request: Request, caller: Caller) -> Response:
        state = self._state(request)
        if isinstance(state, Response):
            return state
        q = _Queries(self._engine_for(caller), state.end_ms)

        def work() -> dict[str, Any]:
            up, seen = self._hosts_status(q)
            hosts = _host_counts(up, seen, state.end_ms)
            use = [_ranked_chart(q, panel) for panel in P.FLEET_PANELS]
            security = self._security(q, state)
            filling = sorted(
                q.by_instance(P.narrow(P.DISK_FILLING, "")).items(), key=lambda kv: (-kv[1], kv[0])
            )
            return {"hosts": hosts, "use": use, "security": _security_summary(security), "filling": filling}

        data = await run_in_threadpool(work)
        alerts = self._alerts(caller)
        ctx = self._base(request, state, "Overview", {})
        firing = [a for a in alerts if a["state"] == "firing"]
        return self._render(
            "overview.html",
            alerts_firing=firing,
            alerts_pending=len(alerts) - len(firing),
            problems=q.problems,
            **data,
            **ctx,
        )

    @login_redirect  # a browser without a session goes to /login, not to a bare 401
    @requires(Scope.READ)
    async def hosts(self, request: Request, caller: Caller) -> Response:
        state = self._state(request)
        if isinstance(state, Response):
            return state
        params = request.query_params
        sort = params.get("sort") or "instance"
        order = params.get("dir") or ("asc" if sort == "instance" else "desc")
        if sort not in HOST_COLUMNS:
            return self._error(request, 400, f'parameter "sort": expected one of {", ".join(HOST_COLUMNS)}')
        if order not in ("asc", "desc"):
            return self._error(request, 400, 'parameter "dir": expected "asc" or "desc"')
        page_text = params.get("page") or "1"
        if not re.fullmatch(r"[0-9]{1,9}", page_text) or int(page_text) < 1:
            return self._error(request, 400, 'parameter "page": expected a positive integer')
        page = int(page_text)
        text = params.get("q", "")
        q = _Queries(self._engine_for(caller), state.end_ms)

        def work() -> list[dict[str, Any]]:
            up, seen = self._hosts_status(q)
            use = {p.key: q.by_instance(P.instant(p.series[0].expr)) for p in P.FLEET_PANELS[:3]}
            security = self._security(q, state)
            names = set(up) | set(seen) | {i for v in use.values() for i in v}
            rows = []
            for inst in sorted(names)[:MAX_HOSTS]:
                if text and text.lower() not in inst.lower():
                    continue
                findings = [
                    (it.title, security[it.key][inst])
                    for it in P.SECURITY_ITEMS
                    if security[it.key].get(inst, 0) > 0
                ]
                rows.append(
                    {
                        "instance": inst,
                        "up": up.get(inst),
                        "status": _status(up.get(inst), seen.get(inst), state.end_ms),
                        "cpu": use["cpu"].get(inst),
                        "mem": use["mem"].get(inst),
                        "disk": use["disk"].get(inst),
                        "last_seen": seen.get(inst),
                        "security": len(findings),
                        "findings": findings,
                    }
                )
            return rows

        rows = await run_in_threadpool(work)
        rows.sort(key=lambda r: _sort_key(r[sort]), reverse=order == "desc")
        if order == "desc":  # hosts without the value last either way
            rows.sort(key=lambda r: r[sort] is None)
        pages = max(1, math.ceil(len(rows) / self._per_page))
        shown = rows[(page - 1) * self._per_page : page * self._per_page]
        keep = {k: v for k, v in (("sort", sort), ("dir", order), ("q", text)) if v}
        ctx = self._base(request, state, "Hosts", keep)
        return self._render(
            "hosts.html",
            rows=shown,
            total=len(rows),
            page=page,
            pages=pages,
            sort=sort,
            order=order,
            q=text,
            columns=HOST_COLUMNS,
            problems=q.problems,
            **ctx,
        )

    @login_redirect  # a browser without a session goes to /login, not to a bare 401
    @requires(Scope.READ)
    async def security(self, request: Request, caller: Caller) -> Response:
        """The fleet's security signals: over time (ranked charts), by host, and certificates."""
        state = self._state(request)
        if isinstance(state, Response):
            return state
        q = _Queries(self._engine_for(caller), state.end_ms)

        def work() -> dict[str, Any]:
            charts = [_ranked_chart(q, panel) for panel in P.SECURITY_PANELS]
            security = self._security(q, state)
            updates = q.by_instance(P.narrow(P.UPDATES_PENDING, ""))
            reboot = q.by_instance(P.narrow(P.REBOOT_REQUIRED, ""))
            names = {i for v in security.values() for i in v} | set(updates) | set(reboot)
            rows: list[dict[str, Any]] = []
            for inst in names:
                values = {it.key: security[it.key].get(inst) for it in P.SECURITY_ITEMS}
                findings = sum(1 for v in values.values() if v and v > 0) + (
                    1 if reboot.get(inst, 0) > 0 else 0
                )
                rows.append(
                    {
                        "instance": inst,
                        "values": values,
                        "updates": updates.get(inst),
                        "reboot": reboot.get(inst),
                        "findings": findings,
                    }
                )
            rows.sort(key=lambda r: (-r["findings"], r["instance"]))
            flagged = [r for r in rows if r["findings"]]
            return {
                "charts": charts,
                "rows": flagged[:SECURITY_ROWS],
                "flagged": len(flagged),
                "clean": len(rows) - len(flagged),
                "certs": q.vector(P.CERT_FILES_DAYS, CERT_ROWS),
                "probes": q.vector(P.CERT_PROBES_DAYS, CERT_ROWS),
            }

        data = await run_in_threadpool(work)
        ctx = self._base(request, state, "Security", {})
        return self._render("security.html", items=P.SECURITY_ITEMS, problems=q.problems, **data, **ctx)

    @login_redirect  # a browser without a session goes to /login, not to a bare 401
    @requires(Scope.READ)
    async def events(self, request: Request, caller: Caller) -> Response:
        """Security events in the view's range, newest first, by host and kind, paged by cursor."""
        state = self._state(request)
        if isinstance(state, Response):
            return state
        if self._events is None:
            return self._error(request, 404, "this server keeps no events")
        params = request.query_params
        host = params.get("host", "")
        kinds = sorted({k.strip() for v in params.getlist("kind") for k in v.split(",") if k.strip()})
        if len(kinds) > MAX_KINDS or not all(_KIND.fullmatch(k) for k in kinds):
            return self._error(request, 400, f'parameter "kind": up to {MAX_KINDS} names of [A-Za-z0-9_.:-]')
        cursor = params.get("cursor") or None
        if cursor is not None:
            try:
                decode_cursor(cursor)
            except ValueError:
                return self._error(request, 400, 'parameter "cursor": not a cursor this page made')
        matchers = [Matcher.eq("instance", host)] if host else []
        store = self._events
        found, next_cursor = await run_in_threadpool(
            lambda: store.query(
                matchers, state.start_ms, state.end_ms, kinds, EVENTS_PER_PAGE, cursor, tenant=caller.tenant
            )
        )
        keep = {k: v for k, v in (("host", host), ("kind", ",".join(kinds))) if v}
        ctx = self._base(request, state, "Events", keep)
        return self._render(
            "events.html",
            events=found,
            next_cursor=next_cursor,
            host=host,
            kinds=",".join(kinds),
            first_page=cursor is None,
            **ctx,
        )

    @login_redirect  # a browser without a session goes to /login, not to a bare 401
    @requires(Scope.READ)
    async def host(self, request: Request, caller: Caller) -> Response:
        state = self._state(request)
        if isinstance(state, Response):
            return state
        inst = request.path_params["instance"]
        sel = P.sel_eq("instance", inst)
        q = _Queries(self._engine_for(caller), state.end_ms)

        def work() -> dict[str, Any]:
            up, seen = self._hosts_status(q, sel)
            now = {p.key: q.by_instance(P.instant(p.series[0].expr, sel)).get(inst) for p in P.FLEET_PANELS}
            security = self._security(q, state, sel)
            agent = [
                (it, q.by_instance(P.narrow(P.over_range(it.expr, state.span_ms), sel)).get(inst))
                for it in P.AGENT_ITEMS
            ]
            filling = q.by_instance(P.narrow(P.DISK_FILLING, sel)).get(inst)
            events: list[Event] = []
            if self._events is not None:
                events, _ = self._events.query(
                    [Matcher.eq("instance", inst)],
                    state.start_ms,
                    state.end_ms,
                    limit=MAX_EVENTS,
                    tenant=caller.tenant,
                )
            return {
                "up": up.get(inst),
                "last_seen": seen.get(inst),
                "now": now,
                "security": [(it, security[it.key].get(inst)) for it in P.SECURITY_ITEMS],
                "agent": agent,
                "filling": filling,
                "events": events,
            }

        data = await run_in_threadpool(work)
        known = (
            data["up"] is not None
            or data["last_seen"] is not None
            or any(v is not None for v in data["now"].values())
        )
        if not known and not data["events"] and not q.problems:
            return self._error(request, 404, f"no host {inst!r} has reported in this time range")
        ctx = self._base(request, state, inst, {})
        return self._render(
            "host.html",
            instance=inst,
            status=_status(data["up"], data["last_seen"], state.end_ms),
            charts=[_chart(p, sel) for p in P.HOST_PANELS],
            fleet_panels=P.FLEET_PANELS,
            problems=q.problems,
            **data,
            **ctx,
        )


_KIND = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


def _ranked_chart(q: _Queries, panel: P.Panel) -> dict[str, Any]:
    """A fleet chart of `panel`: its worst TOP_HOSTS hosts now, one by one, and the others as one
    average line; with the worst RANKED hosts and their values (one instant query to rank)."""
    values = q.by_instance(P.instant(panel.series[0].expr))
    ranked = sorted(values.items(), key=lambda kv: _rank_key(kv[1]), reverse=panel.higher_is_worse)
    top = [inst for inst, _ in ranked[:TOP_HOSTS]]
    extra = []
    if len(ranked) > TOP_HOSTS:
        expr = P.narrow(panel.series[0].expr, f"instance!~{_go(P.regex_any(top))}")
        extra.append(
            {"expr": f"avg({expr})", "legend": "", "name": f"others (avg of {len(ranked) - TOP_HOSTS})"}
        )
    sel = f"instance=~{_go(P.regex_any(top))}" if top else 'instance="-"'
    return {
        "chart": _chart(panel, sel, extra),
        "ranked": [(i, v, _level(v, panel)) for i, v in ranked[:RANKED]],
        "hosts": len(ranked),
    }


def _go(pattern: str) -> str:
    return go_quote(pattern)


def _rank_key(v: float) -> float:
    return -math.inf if math.isnan(v) else v


def _sort_key(v: Any) -> Any:
    if v is None:
        return (1, 0)
    if isinstance(v, str):
        return (0, v)
    return (0, _rank_key(float(v)))


def _status(up: float | None, seen: float | None, now_ms: int) -> str:
    """up | down (its scraper says so) | silent (nothing for SILENT_MS) | unknown."""
    if up is not None:
        return "up" if up >= 1 else "down"
    if seen is not None and now_ms - seen * 1000 > SILENT_MS:
        return "silent"
    return "unknown"


def _host_counts(up: dict[str, float], seen: dict[str, float], now_ms: int) -> dict[str, int]:
    counts = {"up": 0, "down": 0, "silent": 0, "unknown": 0}
    for inst in set(up) | set(seen):
        counts[_status(up.get(inst), seen.get(inst), now_ms)] += 1
    counts["total"] = sum(counts.values())
    return counts


def _security_summary(security: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    out = []
    for item in P.SECURITY_ITEMS:
        values = security[item.key]
        affected = sorted(((i, v) for i, v in values.items() if v > 0), key=lambda kv: -kv[1])
        out.append(
            {
                "item": item,
                "total": sum(v for v in values.values() if not math.isnan(v)) if values else None,
                "hosts": len(affected),
                "top": affected[:3],
            }
        )
    return out
