"""`GET /api/v1/rules` and `GET /api/v1/alerts` in Prometheus' JSON format (Grafana's rule and alert
views, `amtool`-style scripts and dashboards read them).

The rule manager stands behind a small protocol (`RuleSource`): snapshots of its groups and alerts
(`vigil.rules.view`), so this module needs neither the store nor the manager's internals. The
manager evaluates the default tenant's rules only: a reader confined to a tenant gets empty lists.

Filters are Prometheus 3.x's: `type=alert|record`, `rule_name[]`, `rule_group[]`, `file[]`,
`match[]` (selectors on a rule's configured labels) and `exclude_alerts`; a group whose rules are
all filtered out is left out. `query` is the expression as Prometheus prints it (`promql_parser`'s
rendering, which follows Prometheus' String(); one too long for a line is shown as written).
"""

from __future__ import annotations

import datetime
import functools
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Protocol

import promql_parser
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from vigil.model.matcher import Matcher
from vigil.promql.errors import PromQLError
from vigil.promql.parser import parse_selector
from vigil.rules.view import AlertView, GroupView, RuleView
from vigil.web.auth import Caller, Scope, TokenAuth, requires
from vigil.web.errors import invalid_param
from vigil.web.promapi import dumps, go_quote, success_body
from vigil.web.query_api import read_form

__all__ = ["RuleSource", "RulesAPI", "format_go_e", "rfc3339_nano"]

_ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, for a rule not evaluated yet


class RuleSource(Protocol):
    """What the rules API reads from the rule manager."""

    def rule_groups(self) -> Sequence[GroupView]: ...

    def active_alerts(self) -> Sequence[AlertView]: ...


def format_go_e(v: float) -> str:
    """strconv.FormatFloat(v, 'e', -1, 64): shortest round-tripping digits, exponent of at least two
    digits (1 -> "1e+00", 1234.5 -> "1.2345e+03"); how Prometheus writes an alert's value."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    sign, digits, exp = Decimal(repr(v)).as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    e = exp + len(digits) - 1 if any(digits) else 0
    mantissa = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}e{'+' if e >= 0 else '-'}{abs(e):02d}"


def rfc3339_nano(ms: int | None) -> str:
    """Go's RFC3339Nano of a ms timestamp in UTC (trailing zeros of the fraction dropped)."""
    if ms is None:
        return _ZERO_TIME
    sec, frac = divmod(ms, 1000)
    base = datetime.datetime.fromtimestamp(sec, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return base + (f".{frac:03d}".rstrip("0") if frac else "") + "Z"


def _seconds(ms: int) -> float | int:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


@functools.lru_cache(maxsize=8192)
def display_expr(expr: str) -> str:
    """The expression as Prometheus prints it. Cached: a rule's expression is parsed once, not on
    every poll of /api/v1/rules (about half a millisecond each: a second for 2,000 rules)."""
    try:
        out = str(promql_parser.parse(expr).prettify())
    except Exception:  # the rule parsed with Vigil's parser; show it as written if this one differs
        return expr.strip()
    return expr.strip() if "\n" in out else out


def _alert_json(a: AlertView) -> dict[str, Any]:
    out: dict[str, Any] = {
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state,
        "activeAt": rfc3339_nano(a.active_at_ms),
    }
    if a.keep_firing_since_ms is not None:
        out["keepFiringSince"] = rfc3339_nano(a.keep_firing_since_ms)
    out["value"] = format_go_e(a.value)
    return out


def _rule_json(r: RuleView, with_alerts: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r.type == "alerting":
        out["state"] = r.state
    out["name"] = r.name
    out["query"] = display_expr(r.query)
    if r.type == "alerting":
        out["duration"] = _seconds(r.duration_ms)
        out["keepFiringFor"] = _seconds(r.keep_firing_for_ms)
        out["labels"] = r.labels
        out["annotations"] = r.annotations or {}
        if with_alerts:
            out["alerts"] = [_alert_json(a) for a in r.alerts]
    elif r.labels:
        out["labels"] = r.labels
    out["health"] = r.health
    if r.last_error:
        out["lastError"] = r.last_error
    out["evaluationTime"] = r.last_duration_s
    out["lastEvaluation"] = rfc3339_nano(r.last_eval_ms)
    out["type"] = r.type
    return out


def _selectors(texts: Sequence[str]) -> list[list[Matcher]]:
    """`match[]`: selectors on the rules' configured labels (OR'ed), as Prometheus 3.x."""
    out = []
    for text in texts:
        try:
            matchers = parse_selector(text)
        except PromQLError as exc:
            raise invalid_param("match[]", str(exc)) from None
        if all(m.matches_empty for m in matchers):
            raise invalid_param("match[]", "match[] must contain at least one non-empty matcher")
        out.append(matchers)
    return out


class RulesAPI:
    """The rules and alerts endpoints over a `RuleSource`."""

    def __init__(self, source: RuleSource, auth: TokenAuth) -> None:
        self._source = source
        self.auth = auth

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/v1/rules", self.rules, methods=["GET"]),
            Route("/api/v1/alerts", self.alerts, methods=["GET"]),
        ]

    @requires(Scope.READ)
    async def rules(self, request: Request, caller: Caller) -> Response:
        form = await read_form(request)
        kind = form.get("type").lower()
        if kind not in ("", "alert", "record"):
            raise invalid_param("type", f"not supported value {go_quote(form.get('type'))}")
        exclude = form.get("exclude_alerts")
        if exclude not in ("", "true", "false", "1", "0", "t", "f", "TRUE", "FALSE", "True", "False"):
            raise invalid_param(
                "exclude_alerts", f"strconv.ParseBool: parsing {go_quote(exclude)}: invalid syntax"
            )
        with_alerts = exclude not in ("true", "1", "t", "TRUE", "True")
        names, groups, files = (set(form.getlist(k)) for k in ("rule_name[]", "rule_group[]", "file[]"))
        selectors = _selectors(form.getlist("match[]"))
        if caller.tenant is not None:
            return Response(success_body(dumps({"groups": []})), media_type="application/json")

        def listing() -> list[dict[str, Any]]:
            # Snapshots take each group's lock and the JSON costs per rule: off the event loop,
            # which an evaluation (or another request) must not wait for.
            out: list[dict[str, Any]] = []
            for g in self._source.rule_groups():
                if (groups and g.name not in groups) or (files and g.file not in files):
                    continue
                rules = [
                    _rule_json(r, with_alerts)
                    for r in g.rules
                    if (not names or r.name in names)
                    and (not kind or r.type == ("alerting" if kind == "alert" else "recording"))
                    and (
                        not selectors
                        or any(all(m.matches(r.labels.get(m.name, "")) for m in ms) for ms in selectors)
                    )
                ]
                if not rules:
                    continue
                out.append(
                    {
                        "name": g.name,
                        "file": g.file,
                        "rules": rules,
                        "interval": _seconds(g.interval_ms),
                        "limit": g.limit,
                        "evaluationTime": g.last_duration_s,
                        "lastEvaluation": rfc3339_nano(g.last_eval_ms),
                    }
                )
            return out

        out = await run_in_threadpool(listing)
        return Response(success_body(dumps({"groups": out})), media_type="application/json")

    @requires(Scope.READ)
    async def alerts(self, _: Request, caller: Caller) -> Response:
        alerts = [] if caller.tenant is not None else await run_in_threadpool(self._source.active_alerts)
        body = dumps({"alerts": [_alert_json(a) for a in alerts]})
        return Response(success_body(body), media_type="application/json")
