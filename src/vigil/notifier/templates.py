"""The data notification templates see, and the links every notification carries.

Templates are Go text/template text (`vigil.template`), written against Alertmanager's data model so
that templates written for Alertmanager work unchanged: `.Receiver .Status .Alerts .GroupLabels
.CommonLabels .CommonAnnotations .ExternalURL`; per alert `.Status .Labels .Annotations .StartsAt
.EndsAt .GeneratorURL .Fingerprint`; `.Alerts.Firing`/`.Alerts.Resolved`; on label and annotation
maps `.SortedPairs .Names .Values .Remove`. Vigil adds `.GraphURL` and `.EventsURL` per alert: the
alert's query in the graph view and the security events behind it (both under `server.external_url`;
the events link is the HTTP API until the UI exists).

Integrations render through the small `Templater` protocol (`load_templater` builds the real one,
`vigil.template`'s Alertmanager TemplateSet); `Renderer` turns a failed render into a non-retryable
`NotifyError` naming the integration and the field (a bad template is not fixed by sending again).

Times are `vigil.template.gotime.GoTime`, so `.StartsAt.Format "15:04"` works as in Go. Vigil's own
default templates live in `default.tmpl` beside this module (`DEFAULT_TEMPLATES`): the
title reads `[FIRING:3] BruteForce bastion-1`, then one line per alert with its summary (or
description) and its two links, short enough to read on a phone.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

from vigil.notifier.alert import Alert, fingerprint_hex
from vigil.notifier.integration import NotifyContext, NotifyError
from vigil.template.alertmanager import TemplateSet
from vigil.template.gotime import GoTime

__all__ = [
    "DEFAULT_TEMPLATES",
    "EVENTS_LOOKBACK_MS",
    "EVENT_IDENTITY_LABELS",
    "KV",
    "AlertData",
    "Alerts",
    "Data",
    "Pair",
    "Pairs",
    "Renderer",
    "Templater",
    "alert_expr",
    "common",
    "events_url",
    "go_time",
    "go_time_json",
    "graph_url",
    "load_templater",
    "quote_meta",
    "status_of",
    "template_data",
    "truncate",
]

DEFAULT_TEMPLATES = Path(__file__).with_name("default.tmpl")
"""Vigil's default notification templates (`vigil.*` names); load it before the receiver's globs."""

# Labels an event shares with its host's series (vigil.model.event): these select an alert's evidence.
EVENT_IDENTITY_LABELS = ("tenant", "cluster", "instance", "platform", "app", "job")
EVENTS_LOOKBACK_MS = 3_600_000  # the events link starts an hour before the alert: what led to it
_GO_ZERO_S = -62_135_596_800  # 0001-01-01T00:00:00Z in Unix seconds
GO_ZERO_TIME = GoTime(_GO_ZERO_S * 1_000_000_000)  # Go's time.Time{}: "no end" in templates and JSON
_LEGACY_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class Templater(Protocol):
    """Renders Go template text against `Data`; `html` selects html/template escaping (e-mail bodies).
    Raises an exception (the engine's `TemplateError`) when the text does not parse or execute."""

    def render(self, text: str, data: Any, *, html: bool = False) -> str: ...


def load_templater(globs: Iterable[str] = (), *, now_ns: Callable[[], int] = time.time_ns) -> TemplateSet:
    """The engine with Vigil's defaults and then the configuration's `templates:` globs (later
    files may redefine a default). Raises the engine's TemplateError naming the file for a syntax
    error, OSError for an unreadable file: both are configuration errors, found at start-up."""
    return TemplateSet([str(DEFAULT_TEMPLATES), *globs], now_ns=now_ns)


# ---------------------------------------------------------------------------------------------
# The data model. Names are Go's, as templates spell them; methods take what Go's take.


@dataclass(frozen=True, slots=True)
class Pair:
    Name: str
    Value: str


class Pairs(list[Pair]):
    """Alertmanager's `template.Pairs`."""

    def Names(self) -> list[str]:
        return [p.Name for p in self]

    def Values(self) -> list[str]:
        return [p.Value for p in self]

    def String(self) -> str:
        return ", ".join(f"{p.Name}={p.Value}" for p in self)


class KV(dict[str, str]):
    """Alertmanager's `template.KV`: a label or annotation map with its methods."""

    def SortedPairs(self) -> Pairs:
        """The pairs sorted by name, `alertname` first (as Alertmanager sorts them)."""
        names = sorted(k for k in self if k != "alertname")
        if "alertname" in self:
            names.insert(0, "alertname")
        return Pairs(Pair(k, self[k]) for k in names)

    def Names(self) -> list[str]:
        return self.SortedPairs().Names()

    def Values(self) -> list[str]:
        return self.SortedPairs().Values()

    def Remove(self, keys: Iterable[str]) -> KV:
        drop = set(keys)
        return KV({k: v for k, v in self.items() if k not in drop})


@dataclass(frozen=True, slots=True)
class AlertData:
    """Alertmanager's `template.Alert`, plus Vigil's links."""

    Status: str
    Labels: KV
    Annotations: KV
    StartsAt: GoTime
    EndsAt: GoTime  # GO_ZERO_TIME while firing: an end in the future is not shown
    GeneratorURL: str
    Fingerprint: str
    GraphURL: str
    EventsURL: str


class Alerts(list[AlertData]):
    """Alertmanager's `template.Alerts`."""

    def Firing(self) -> Alerts:
        return Alerts(a for a in self if a.Status == "firing")

    def Resolved(self) -> Alerts:
        return Alerts(a for a in self if a.Status == "resolved")


@dataclass(frozen=True, slots=True)
class Data:
    """Alertmanager's `template.Data`."""

    Receiver: str
    Status: str
    Alerts: Alerts
    GroupLabels: KV
    CommonLabels: KV
    CommonAnnotations: KV
    ExternalURL: str


def go_time(ms: int) -> GoTime:
    """Unix milliseconds as a UTC Go time; 0 is Go's zero time."""
    return GO_ZERO_TIME if ms == 0 else GoTime(ms * 1_000_000)


def go_time_json(ms: int) -> str:
    """Unix milliseconds as Go's `time.Time` marshals to JSON in UTC (RFC 3339 with the fraction's
    trailing zeros dropped); 0 is `0001-01-01T00:00:00Z`."""
    return go_time(ms).Format("2006-01-02T15:04:05.999999999Z07:00")


def common(maps: Sequence[Mapping[str, str]]) -> KV:
    """The pairs every map has with the same value (CommonLabels / CommonAnnotations)."""
    if not maps:
        return KV()
    out = dict(maps[0])
    for m in maps[1:]:
        for k in list(out):
            if m.get(k) != out[k]:
                del out[k]
    return KV(out)


_GO_META = frozenset("\\.+*?()|[]{}^$")


def quote_meta(text: str) -> str:
    """Go's regexp.QuoteMeta: Alertmanager puts the receiver name into `.Receiver` quoted this way."""
    return "".join("\\" + c if c in _GO_META else c for c in text)


def status_of(alerts: Sequence[Alert], now_ms: int) -> str:
    return "firing" if any(not a.resolved_at(now_ms) for a in alerts) else "resolved"


# ---------------------------------------------------------------------------------------------
# Links.


def _quote(value: str) -> str:
    # A PromQL string literal.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _selector(metric: str, labels: Mapping[str, str]) -> str:
    # Names outside the classic syntax are left out rather than risk a selector the parser refuses;
    # empty values are absent labels.
    inner = ",".join(
        f"{k}={_quote(v)}" for k, v in sorted(labels.items()) if v != "" and _LEGACY_NAME.fullmatch(k)
    )
    return f"{metric}{{{inner}}}"


def _base(external_url: str) -> str:
    return external_url.rstrip("/")


def alert_expr(alert: Alert) -> str:
    """The query behind the alert: the `g0.expr` of its generatorURL (Prometheus' and Vigil's rule
    links), else the alert's own `ALERTS` series."""
    if alert.generator_url:
        exprs = parse_qs(urlsplit(alert.generator_url).query).get("g0.expr")
        if exprs and exprs[0].strip():
            return exprs[0]
    return _selector("ALERTS", {k: v for k, v in alert.labels.items() if k != "__name__"})


def graph_url(alert: Alert, external_url: str) -> str:
    return f"{_base(external_url)}/graph?{urlencode({'g0.expr': alert_expr(alert)})}"


def events_url(alert: Alert, external_url: str, now_ms: int) -> str:
    """`/api/v1/events` for the alert's host identity labels, from an hour before it started to its
    end (open-ended while it fires)."""
    ident = {k: alert.labels[k] for k in EVENT_IDENTITY_LABELS if alert.labels.get(k)}
    params: list[tuple[str, str]] = []
    if ident:
        params.append(("match[]", _selector("", ident)))
    if alert.starts_at_ms:
        params.append(("start", _seconds(alert.starts_at_ms - EVENTS_LOOKBACK_MS)))
    if alert.resolved_at(now_ms):
        params.append(("end", _seconds(alert.ends_at_ms)))
    return f"{_base(external_url)}/api/v1/events?{urlencode(params)}"


def _seconds(ms: int) -> str:
    whole, frac = divmod(ms, 1000)
    return f"{whole}.{frac:03d}" if frac else str(whole)


# ---------------------------------------------------------------------------------------------
# Building the data.


def template_data(ctx: NotifyContext, alerts: Sequence[Alert], external_url: str = "") -> Data:
    """The data for one notification of `alerts`, firing/resolved decided at `ctx.now_ms`.
    Links are built from `ctx.external_url` (or `external_url` when the context has none)."""
    base = ctx.external_url or external_url
    items = Alerts()
    for a in alerts:
        resolved = a.resolved_at(ctx.now_ms)
        items.append(
            AlertData(
                Status="resolved" if resolved else "firing",
                Labels=KV(a.labels),
                Annotations=KV(a.annotations),
                StartsAt=go_time(a.starts_at_ms),
                EndsAt=go_time(a.ends_at_ms) if resolved else GO_ZERO_TIME,
                GeneratorURL=a.generator_url,
                Fingerprint=fingerprint_hex(a.labels),
                GraphURL=graph_url(a, base),
                EventsURL=events_url(a, base, ctx.now_ms),
            )
        )
    return Data(
        Receiver=quote_meta(ctx.receiver),
        Status=status_of(alerts, ctx.now_ms),
        Alerts=items,
        GroupLabels=KV(ctx.group_labels),
        CommonLabels=common([a.labels for a in alerts]),
        CommonAnnotations=common([a.annotations for a in alerts]),
        ExternalURL=base,
    )


class Renderer:
    """Renders one notification's fields; a failure is a non-retryable NotifyError naming the
    integration (`slack[0]`) and the field, with the engine's reason."""

    def __init__(self, integration: str, templater: Templater, data: Data) -> None:
        self.integration = integration
        self.templater = templater
        self.data = data

    def __call__(self, field: str, text: str, *, html: bool = False) -> str:
        if text == "":
            return ""
        try:
            return self.templater.render(text, self.data, html=html)
        except Exception as exc:  # whatever the engine raises, retrying the same text cannot help
            raise NotifyError(f"{self.integration}: template of {field}: {exc}", retryable=False) from None


def truncate(text: str, limit: int) -> str:
    """At most `limit` characters, ending in "…" when cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"
