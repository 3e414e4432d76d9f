"""Alertmanager's v2 HTTP API under `/api/v2`, so `amtool`, Grafana and Prometheus talk to Vigil as to
an Alertmanager: silences (`GET/POST /silences`, `GET/DELETE /silence/{id}`), alerts (`GET/POST
/alerts`, `GET /alerts/groups`), `GET /receivers` and `GET /status`.

Shapes are Alertmanager's swagger (api/v2/openapi.yaml): field names, RFC 3339 times in UTC with
milliseconds (`2024-05-01T12:00:00.000Z`), `status: {state, silencedBy, inhibitedBy}`, and its
errors: a JSON string with the reason (400, 404 from a POST), go-swagger's `{"code", "message"}`
for a body that is no JSON (400) or breaks the schema (422: a required field missing, a path id
that is no UUID). Where Alertmanager 0.25 and later versions differ we follow the later one and say
so: expiring an unknown silence is 404 (0.25 answered 500).

What stands behind the API is passed in as the protocols below, defined here where they are used:
a silence store (`vigil.notifier.silence.Silences`), an alert sink and source, the aggregation
groups, and the configuration in force. An alert's status is evaluated when it is listed, as
Alertmanager's API does (a silence added a moment ago shows at once): the active silences matching
it and, if an inhibitor is given, the alerts inhibiting it.

The API acts on the whole notifier, not on one tenant's data: a tenant's token is refused (403).
Work is bounded before it is spent: bodies by size and JSON depth, filters by count and length.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from vigil import __version__
from vigil.model.event import json_depth
from vigil.model.labels import is_valid_label_name
from vigil.model.matcher import MatchType
from vigil.notifier.alert import Alert, fingerprint, fingerprint_hex
from vigil.notifier.config import AlertmanagerConfig
from vigil.notifier.config_yaml import render_config
from vigil.notifier.matchers import Matcher, MatcherError, go_quote, parse_matcher
from vigil.notifier.routing import Route as RoutingNode
from vigil.notifier.routing import build_routes
from vigil.notifier.silence import (
    Silence,
    SilenceError,
    SilenceNotFound,
    SilenceState,
    SilenceStoreError,
)
from vigil.notifier.store import StoreFull
from vigil.web.auth import Caller, Scope, TokenAuth, requires
from vigil.web.body import BodyTooLarge, read_body
from vigil.web.errors import APIError

__all__ = [
    "AlertSink",
    "AlertSource",
    "AlertStatusLike",
    "AlertmanagerAPI",
    "ConfigView",
    "GroupLike",
    "GroupSource",
    "InhibitionSource",
    "MarkerInhibition",
    "NotifierView",
    "SilenceStore",
    "format_time",
    "parse_time",
]

MAX_SILENCE_BODY = 1 << 20  # a silence is small; its own size limit is the store's
MAX_JSON_DEPTH = 8  # [{"labels": {...}}] is 3 deep, a silence 3
MAX_FILTERS = 64
MAX_FILTER_LENGTH = 4096


# -- what the API needs ------------------------------------------------------------------------------


class SilenceStore(Protocol):
    def get(self, silence_id: str) -> Silence:
        """Raises SilenceNotFound."""
        ...

    def query(
        self,
        *,
        ids: Sequence[str] | None = None,
        matchers: Sequence[Matcher] = (),
        states: Iterable[SilenceState] | None = None,
        now_ms: int | None = None,
    ) -> list[Silence]: ...

    def set(
        self,
        silence_id: str | None,
        matchers: Sequence[Matcher],
        starts_at_ms: int,
        ends_at_ms: int,
        created_by: str = "",
        comment: str = "",
    ) -> str:
        """Raises SilenceError (SilenceNotFound, limits) or SilenceStoreError."""
        ...

    def expire(self, silence_id: str) -> bool: ...


class AlertSink(Protocol):
    def put(self, alerts: Iterable[Alert], now_ms: int) -> Sequence[Alert]:
        """Store alerts received at `now_ms` (the sink fills in missing times as Alertmanager does);
        ValueError for an alert it refuses, StoreFull (429) when it holds all it may."""
        ...


class AlertSource(Protocol):
    def list(self) -> list[Alert]:
        """Every alert held now, resolved ones included (the API leaves those out)."""
        ...


class AlertStatusLike(Protocol):
    @property
    def state(self) -> str: ...

    @property
    def silenced_by(self) -> Sequence[str]: ...

    @property
    def inhibited_by(self) -> Sequence[str]: ...


class InhibitionSource(Protocol):
    def inhibited_by(self, labels: Mapping[str, str], now_ms: int) -> list[str]:
        """Fingerprints (16 hex digits) of the alerts inhibiting an alert with `labels`."""
        ...


class GroupLike(Protocol):
    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def receiver(self) -> str: ...

    @property
    def alerts(self) -> Sequence[Alert]: ...


class GroupSource(Protocol):
    def groups(self) -> Sequence[GroupLike]:
        """The aggregation groups in Alertmanager's order (group labels, then receiver)."""
        ...


class NotifierView(Protocol):
    """The configuration in force (it may change on reload: read per request)."""

    def original(self) -> str:
        """The configuration as YAML, secrets hidden (`GET /status` config.original)."""
        ...

    def receivers(self) -> list[str]: ...

    def route(self) -> RoutingNode | None:
        """The routing tree (None: no routing configured, alerts go to no receiver)."""
        ...

    def resolve_timeout_ms(self) -> int: ...


class ConfigView:
    """A NotifierView of one loaded configuration (None: no `alerting:` configured)."""

    def __init__(self, cfg: AlertmanagerConfig | None) -> None:
        self._cfg = cfg
        self._text = render_config(cfg)
        self._route = build_routes(cfg.route) if cfg is not None and cfg.route is not None else None

    def original(self) -> str:
        return self._text

    def receivers(self) -> list[str]:
        return [r.name for r in self._cfg.receivers] if self._cfg is not None else []

    def route(self) -> RoutingNode | None:
        return self._route

    def resolve_timeout_ms(self) -> int:
        return self._cfg.global_.resolve_timeout if self._cfg is not None else 5 * 60_000


class _Marker(Protocol):
    def status(self, fp: int) -> AlertStatusLike: ...


class MarkerInhibition:
    """An InhibitionSource reading the notifier's marker: the inhibitors its pipeline found when it
    last looked at the alert (evaluating every inhibit rule for every listed alert would cost
    alerts x sources per request)."""

    def __init__(self, marker: _Marker) -> None:
        self._marker = marker

    def inhibited_by(self, labels: Mapping[str, str], now_ms: int) -> list[str]:
        return list(self._marker.status(fingerprint(labels)).inhibited_by)


@dataclass(frozen=True, slots=True)
class _Status:
    state: str
    silenced_by: tuple[str, ...]
    inhibited_by: tuple[str, ...]


# -- times -------------------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)",
    re.ASCII,
)
_GO_ZERO = "0001-01-01T00:00:00.000Z"  # Go's zero time.Time: an unset time


def parse_time(text: str) -> int:
    """An RFC 3339 date-time as Unix milliseconds (fractions below a millisecond dropped); ValueError."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(f"parsing time {go_quote(text)}: expected RFC 3339, e.g. 2024-05-01T12:00:00Z")
    year, month, day, hour, minute, sec = (int(g) for g in m.groups()[:6])
    frac, zone = m.group(7) or "", m.group(8)
    try:
        dt = datetime(year, month, day, hour, minute, sec, tzinfo=UTC)
    except ValueError as e:
        raise ValueError(f"parsing time {go_quote(text)}: {e}") from None
    if zone not in "Zz":
        sign = 1 if zone[0] == "+" else -1
        try:
            dt -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        except OverflowError:  # the offset takes it past year 1 or 9999
            raise ValueError(f"parsing time {go_quote(text)}: out of range") from None
    seconds = int((dt - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    return seconds * 1000 + int((frac + "000")[:3])


def format_time(ms: int) -> str:
    """Unix milliseconds as Alertmanager prints a time; 0 (unset) as Go's zero time."""
    if ms == 0:
        return _GO_ZERO
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


# -- errors in Alertmanager's shapes -----------------------------------------------------------------


class _AMError(APIError):
    """An Alertmanager API error: a JSON string (`body=None`: no body) or go-swagger's object."""

    def __init__(self, status: int, message: str, *, swagger_code: int | None = None, empty: bool = False):
        super().__init__(status, "alertmanager", message)
        self._code = swagger_code
        self._empty = empty

    def response(self) -> Response:
        if self._empty:
            return Response(status_code=self.status)
        if self._code is not None:
            body = json.dumps({"code": self._code, "message": self.message}, ensure_ascii=False)
        else:
            body = json.dumps(self.message, ensure_ascii=False) + "\n"
        return Response(
            body.encode("utf-8", "replace"), status_code=self.status, media_type="application/json"
        )


def _bad(message: str) -> _AMError:
    return _AMError(400, message)


def _undecodable(what: str, why: str) -> _AMError:
    return _AMError(400, f'parsing {what} body from "" failed, because {why}', swagger_code=400)


def _required(path: str) -> _AMError:
    return _AMError(422, f"{path} in body is required", swagger_code=602)


def _wrong_type(path: str, kind: str, value: object) -> _AMError:
    shown = value if isinstance(value, str) else json.dumps(value)
    return _AMError(422, f"{path} in body must be of type {kind}: {go_quote(str(shown))}", swagger_code=601)


def _json(payload: object) -> Response:
    return Response(
        (json.dumps(payload, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8", "replace"),
        media_type="application/json",
    )


# -- JSON shapes -------------------------------------------------------------------------------------

_TYPE_FLAGS = {
    MatchType.EQ: (True, False),
    MatchType.NEQ: (False, False),
    MatchType.RE: (True, True),
    MatchType.NRE: (False, True),
}
_FLAGS_TYPE = {flags: t for t, flags in _TYPE_FLAGS.items()}


def silence_json(s: Silence, now_ms: int) -> dict[str, Any]:
    """A gettableSilence, keys in Alertmanager's order."""
    matchers = []
    for m in s.matchers:
        is_equal, is_regex = _TYPE_FLAGS[m.type]
        matchers.append({"isEqual": is_equal, "isRegex": is_regex, "name": m.name, "value": m.value})
    return {
        "id": s.id,
        "status": {"state": s.state(now_ms).value},
        "updatedAt": format_time(s.updated_at_ms),
        "comment": s.comment,
        "createdBy": s.created_by,
        "endsAt": format_time(s.ends_at_ms),
        "matchers": matchers,
        "startsAt": format_time(s.starts_at_ms),
    }


def alert_json(a: Alert, status: AlertStatusLike, receivers: Sequence[str]) -> dict[str, Any]:
    """A gettableAlert, keys in Alertmanager's order (`generatorURL` left out when empty)."""
    out: dict[str, Any] = {
        "annotations": dict(a.annotations),
        "endsAt": format_time(a.ends_at_ms),
        "fingerprint": fingerprint_hex(a.labels),
        "receivers": [{"name": r} for r in receivers],
        "startsAt": format_time(a.starts_at_ms),
        "status": {
            "inhibitedBy": list(status.inhibited_by),
            "silencedBy": list(status.silenced_by),
            "state": str(status.state),
        },
        "updatedAt": format_time(a.updated_at_ms),
    }
    if a.generator_url:
        out["generatorURL"] = a.generator_url
    out["labels"] = dict(a.labels)
    return out


_STATE_ORDER = {SilenceState.ACTIVE: 0, SilenceState.PENDING: 1, SilenceState.EXPIRED: 2}


def sort_silences(silences: Iterable[Silence], now_ms: int) -> list[Silence]:
    """Alertmanager's order: active (next to end first), pending (next to start first), expired
    (most recently ended first)."""

    def key(s: Silence) -> tuple[int, int]:
        st = s.state(now_ms)
        if st is SilenceState.ACTIVE:
            return (0, s.ends_at_ms)
        if st is SilenceState.PENDING:
            return (1, s.starts_at_ms)
        return (2, -s.ends_at_ms)

    return sorted(silences, key=key)


# -- request parsing ---------------------------------------------------------------------------------

# go-openapi's ConvertBool: these are true, these false; anything else is refused here (400) rather
# than read as false.
_TRUE = frozenset({"true", "1", "yes", "ok", "y", "on", "selected", "checked", "t", "enabled"})
_FALSE = frozenset({"false", "0", "no", "n", "off", "f", "disabled", "unchecked"})


def _flag(request: Request, name: str) -> bool:
    values = request.query_params.getlist(name)
    if not values:
        return True  # every flag of the alert endpoints defaults to true
    v = values[-1].lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise _bad(f"invalid value for {name}: expected true or false, got {go_quote(values[-1])}")


def _filters(request: Request) -> list[Matcher]:
    raw = request.query_params.getlist("filter")
    if len(raw) > MAX_FILTERS:
        raise _bad(f"too many filter parameters: {len(raw)} (at most {MAX_FILTERS})")
    out = []
    for text in raw:
        if len(text) > MAX_FILTER_LENGTH:
            raise _bad(f"filter too long: {len(text)} characters (at most {MAX_FILTER_LENGTH})")
        try:
            out.append(parse_matcher(text))
        except MatcherError as e:
            raise _bad(str(e)) from None
    return out


def _receiver_filter(request: Request) -> Matcher | None:
    raw = request.query_params.get("receiver")
    if raw is None:
        return None
    if len(raw) > MAX_FILTER_LENGTH:
        raise _bad(f"failed to parse receiver param: longer than {MAX_FILTER_LENGTH} characters")
    try:
        return Matcher(MatchType.RE, "receiver", raw)  # anchored, as Alertmanager's ^(?:re)$
    except MatcherError as e:
        raise _bad(f"failed to parse receiver param: {e}") from None


def _alert_matches_filter(labels: Mapping[str, str], filters: Sequence[Matcher]) -> bool:
    # Alertmanager's matchFilterLabels special-cases empty values (`a=""` passes when `a` is absent,
    # `a!=""` when present), which is what matching "" for an absent label gives anyway.
    return all(m.matches(labels.get(m.name, "")) for m in filters)


async def _body(request: Request, limit: int, what: str) -> Any:
    try:
        raw = await read_body(request, limit)
    except BodyTooLarge:
        raise _AMError(413, f"{what} body larger than {limit} bytes", swagger_code=413) from None
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise _AMError(
            415,
            f"unsupported media type {go_quote(ctype)}, only [application/json] are allowed",
            swagger_code=415,
        )
    if not raw.strip():
        raise _required(what)  # go-swagger: "silence in body is required"
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise _undecodable(what, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise _undecodable(what, "the body is not UTF-8") from None
    except ValueError as e:
        raise _undecodable(what, str(e)) from None


def _string(obj: Mapping[str, Any], key: str, path: str, what: str, *, required: bool) -> str | None:
    v = obj.get(key)
    if v is None:
        if required:
            raise _required(f"{path}{key}")
        return None
    if not isinstance(v, str):
        raise _undecodable(what, f"{path}{key}: expected a string, got {json.dumps(v)}")
    return v


def _bool_field(obj: Mapping[str, Any], key: str, path: str, what: str) -> bool | None:
    v = obj.get(key)
    if v is not None and not isinstance(v, bool):
        raise _undecodable(what, f"{path}{key}: expected true or false, got {json.dumps(v)}")
    return v


def _time_field(obj: Mapping[str, Any], key: str, path: str, what: str, *, required: bool) -> int:
    v = obj.get(key)
    if v is None:
        if required:
            raise _required(f"{path}{key}")
        return 0
    if not isinstance(v, str):
        raise _undecodable(what, f"{path}{key}: expected an RFC 3339 time, got {json.dumps(v)}")
    try:
        return parse_time(v)
    except ValueError as e:
        raise _undecodable(what, str(e)) from None


def _label_map(obj: Mapping[str, Any], key: str, path: str) -> dict[str, str] | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
        raise _undecodable("alerts", f"{path}{key}: expected an object of strings")
    return v


def _valid_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _label_set_error(labels: Mapping[str, str]) -> str | None:
    """common/model LabelSet.Validate (names in order, so the message does not depend on a map)."""
    for name in sorted(labels):
        if not is_valid_label_name(name):
            return f"invalid name {go_quote(name)}"
        if not _valid_utf8(labels[name]):
            return f"invalid value {go_quote(labels[name])}"
    return None


_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s]*|/[^\s]*")


def _parse_silence(doc: Any) -> tuple[str | None, list[Matcher], int, int, str, str]:
    """A postableSilence: decoded first (a wrong type or time is 400, as go-swagger's unmarshal), then
    checked against the schema (a missing field is 422), then the matchers built (400)."""
    if doc is None:
        doc = {}  # JSON null decodes to the empty silence, which the schema then refuses
    if not isinstance(doc, dict):
        raise _undecodable("silence", "expected a JSON object")
    sid = _string(doc, "id", "", "silence", required=False)
    raw = doc.get("matchers")
    if raw is not None and not isinstance(raw, list):
        raise _undecodable("silence", "matchers: expected an array")
    decoded = []
    for i, m in enumerate(raw or []):
        path = f"matchers.{i}."
        if not isinstance(m, dict):
            raise _undecodable("silence", f"matchers.{i}: expected an object")
        decoded.append(
            (
                path,
                _string(m, "name", path, "silence", required=False),
                _string(m, "value", path, "silence", required=False),
                _bool_field(m, "isRegex", path, "silence"),
                _bool_field(m, "isEqual", path, "silence"),
            )
        )
    starts = _time_field(doc, "startsAt", "", "silence", required=False)
    ends = _time_field(doc, "endsAt", "", "silence", required=False)
    created_by = _string(doc, "createdBy", "", "silence", required=False)
    comment = _string(doc, "comment", "", "silence", required=False)
    # The schema's checks in go-swagger's order: the fields alphabetically, a matcher's too.
    for key in ("comment", "createdBy", "endsAt"):
        if doc.get(key) is None:
            raise _required(key)
    if raw is None:
        raise _required("matchers")
    if not raw:
        raise _AMError(422, "matchers in body should have at least 1 items", swagger_code=612)
    fields = []
    for path, name, value, is_regex, is_equal in decoded:
        for key, v in (("isRegex", is_regex), ("name", name), ("value", value)):
            if v is None:
                raise _required(path + key)
        assert name is not None and value is not None and is_regex is not None
        fields.append((_FLAGS_TYPE[(True if is_equal is None else is_equal, is_regex)], name, value))
    if doc.get("startsAt") is None:
        raise _required("startsAt")
    assert created_by is not None and comment is not None
    matchers = []
    for i, (mtype, name, value) in enumerate(fields):
        # The name first, as Alertmanager validates it before compiling the regex.
        if not is_valid_label_name(name):
            raise _bad(f"silence invalid: invalid label matcher {i}: invalid label name {go_quote(name)}")
        try:
            matchers.append(Matcher(mtype, name, value))
        except MatcherError as e:
            why = f"invalid regular expression {go_quote(value)}: {e}"
            raise _bad(f"silence invalid: invalid label matcher {i}: {why}") from None
    return sid or None, matchers, starts, ends, created_by, comment


def _parse_alerts(doc: Any, now_ms: int, resolve_timeout_ms: int) -> tuple[list[Alert], list[str]]:
    """The valid alerts of a postableAlerts body and, in order, why the others are refused."""
    if doc is None:
        doc = []  # JSON null decodes to no alerts (200, as Alertmanager)
    if not isinstance(doc, list):
        raise _undecodable("alerts", "expected a JSON array of alerts")
    parsed = []
    for i, a in enumerate(doc):
        path = f"{i}."
        if not isinstance(a, dict):
            raise _undecodable("alerts", f"{i}: expected an object")
        labels = _label_map(a, "labels", path)
        if labels is None:
            raise _required(f"{path}labels")
        annotations = _label_map(a, "annotations", path) or {}
        starts = _time_field(a, "startsAt", path, "alerts", required=False)
        ends = _time_field(a, "endsAt", path, "alerts", required=False)
        url = _string(a, "generatorURL", path, "alerts", required=False) or ""
        if url and (_URI.fullmatch(url) is None or not _valid_utf8(url)):
            raise _AMError(
                422, f"{path}generatorURL in body must be of type uri: {go_quote(url)}", swagger_code=601
            )
        parsed.append((labels, annotations, starts, ends, url))
    valid, errors = [], []
    for labels, annotations, starts, ends, url in parsed:
        labels = {k: v for k, v in labels.items() if v != ""}  # Alertmanager drops empty values
        # Validated as the store will hold it (Alertmanager's defaults, then Alert.Validate).
        eff_starts = starts or ends or now_ms
        eff_ends = ends or now_ms + resolve_timeout_ms
        why = None
        if eff_ends < eff_starts:
            why = "start time must be before end time"
        elif (e := _label_set_error(labels)) is not None:
            why = f"invalid label set: {e}"
        elif not labels:
            why = "at least one label pair required"
        elif (e := _label_set_error(annotations)) is not None:
            why = f"invalid annotations: {e}"
        if why is not None:
            errors.append(why)
            continue
        valid.append(Alert(labels, annotations, starts, ends, url))
    return valid, errors


# -- the API -----------------------------------------------------------------------------------------


class AlertmanagerAPI:
    """Alertmanager's v2 API over the protocols above. `clock` gives Unix milliseconds."""

    def __init__(
        self,
        auth: TokenAuth,
        silences: SilenceStore,
        notifier: NotifierView,
        *,
        clock: Callable[[], int],
        alerts: AlertSource | None = None,
        sink: AlertSink | None = None,
        groups: GroupSource | None = None,
        inhibition: InhibitionSource | None = None,
        max_body: int = 32 << 20,
        started_ms: int | None = None,
    ) -> None:
        self.auth = auth
        self._silences = silences
        self._notifier = notifier
        self._clock = clock
        self._alerts = alerts
        self._sink = sink
        self._groups = groups
        self._inhibition = inhibition
        self._max_body = max_body
        self._started = clock() if started_ms is None else started_ms

    def routes(self) -> list[BaseRoute]:
        p = "/api/v2"
        return [
            Route(f"{p}/status", self.status, methods=["GET"]),
            Route(f"{p}/receivers", self.receivers, methods=["GET"]),
            Route(f"{p}/silences", self.list_silences, methods=["GET"]),
            Route(f"{p}/silences", self.post_silence, methods=["POST"]),
            Route(f"{p}/silence/{{silence_id}}", self.get_silence, methods=["GET"]),
            Route(f"{p}/silence/{{silence_id}}", self.delete_silence, methods=["DELETE"]),
            Route(f"{p}/alerts", self.list_alerts, methods=["GET"]),
            Route(f"{p}/alerts", self.post_alerts, methods=["POST"]),
            Route(f"{p}/alerts/groups", self.alert_groups, methods=["GET"]),
        ]

    # -- general ----------------------------------------------------------------------------------

    @requires(Scope.READ)
    async def status(self, _: Request, caller: Caller) -> Response:
        _untenanted(caller)
        return _json(
            {
                "cluster": {"peers": [], "status": "disabled"},
                "config": {"original": self._notifier.original()},
                "uptime": format_time(self._started),
                "versionInfo": {
                    "branch": "",
                    "buildDate": "",
                    "buildUser": "",
                    "goVersion": f"python{sys.version_info.major}.{sys.version_info.minor}",
                    "revision": "",
                    "version": __version__,
                },
            }
        )

    @requires(Scope.READ)
    async def receivers(self, _: Request, caller: Caller) -> Response:
        _untenanted(caller)
        return _json([{"name": r} for r in self._notifier.receivers()])

    # -- silences ---------------------------------------------------------------------------------

    @requires(Scope.READ)
    async def list_silences(self, request: Request, caller: Caller) -> Response:
        _untenanted(caller)
        filters = _filters(request)
        now = self._clock()

        def listing() -> list[dict[str, Any]]:  # up to max_silences x 64 KiB: off the event loop
            found = self._silences.query(matchers=filters, now_ms=now)
            return [silence_json(s, now) for s in sort_silences(found, now)]

        return _json(await run_in_threadpool(listing))

    @requires(Scope.READ)
    async def get_silence(self, request: Request, caller: Caller) -> Response:
        _untenanted(caller)
        sid = _silence_id(request)
        try:
            s = self._silences.get(sid)
        except SilenceNotFound:
            raise _AMError(404, "silence not found", empty=True) from None
        return _json(silence_json(s, self._clock()))

    @requires(Scope.WRITE)
    async def delete_silence(self, request: Request, caller: Caller) -> Response:
        _untenanted(caller)
        sid = _silence_id(request)
        try:
            await run_in_threadpool(self._silences.expire, sid)  # it writes the snapshot
        except SilenceNotFound:
            raise _AMError(404, "silence not found", empty=True) from None
        except SilenceStoreError as e:
            raise _AMError(500, str(e)) from None
        return Response(status_code=200)

    @requires(Scope.WRITE)
    async def post_silence(self, request: Request, caller: Caller) -> Response:
        _untenanted(caller)
        sid, matchers, starts, ends, created_by, comment = _parse_silence(
            await _body(request, MAX_SILENCE_BODY, "silence")
        )
        if starts >= ends:
            raise _bad("Failed to create silence: start time must be before end time")
        if ends < self._clock():
            raise _bad("Failed to create silence: end time can't be in the past")
        try:
            new_id = await run_in_threadpool(
                self._silences.set, sid, matchers, starts, ends, created_by, comment
            )
        except SilenceNotFound as e:
            raise _AMError(404, str(e)) from None
        except SilenceError as e:
            raise _bad(str(e)) from None
        except SilenceStoreError as e:
            raise _AMError(500, str(e)) from None
        return _json({"silenceID": new_id})

    # -- alerts -----------------------------------------------------------------------------------

    def _alert_filter(self, request: Request) -> Callable[[Alert, int], _Status | None]:
        """Alertmanager's alertFilter: the alert's status if it is to be listed, else None. The active
        silences are taken once per request, so the status of every alert is judged by the same set."""
        filters = _filters(request)
        active, silenced, inhibited = (
            _flag(request, "active"),
            _flag(request, "silenced"),
            _flag(request, "inhibited"),
        )
        unprocessed = _flag(request, "unprocessed")
        muting = self._silences.query(states=[SilenceState.ACTIVE], now_ms=self._clock())
        inhibition = self._inhibition

        def keep(a: Alert, now: int) -> _Status | None:
            if a.resolved_at(now):
                return None
            by_silences = tuple(sorted(s.id for s in muting if s.matches(a.labels)))
            by_alerts = tuple(inhibition.inhibited_by(a.labels, now)) if inhibition is not None else ()
            state = "suppressed" if by_silences or by_alerts else "active"
            if (
                (not active and state == "active")
                or (not unprocessed and state == "unprocessed")
                or (not silenced and by_silences)
                or (not inhibited and by_alerts)
            ):
                return None
            return (
                _Status(state, by_silences, by_alerts) if _alert_matches_filter(a.labels, filters) else None
            )

        return keep

    @requires(Scope.READ)
    async def list_alerts(self, request: Request, caller: Caller) -> Response:
        _untenanted(caller)
        keep = self._alert_filter(request)
        receiver = _receiver_filter(request)
        route = self._notifier.route()
        now = self._clock()

        def listing() -> list[dict[str, Any]]:  # alerts x silences: off the event loop
            out = []
            for a in self._alerts.list() if self._alerts is not None else []:
                receivers = [r.receiver for r in route.match(a.labels)] if route is not None else []
                if receiver is not None and not any(receiver.matches(r) for r in receivers):
                    continue
                st = keep(a, now)
                if st is not None:
                    out.append(alert_json(a, st, receivers))
            out.sort(key=lambda j: j["fingerprint"])
            return out

        return _json(await run_in_threadpool(listing))

    @requires(Scope.WRITE)
    async def post_alerts(self, request: Request, caller: Caller) -> Response:
        _untenanted(caller)
        if self._sink is None:
            raise _AMError(503, "this server does not take alerts: no alerting configured")
        doc = await _body(request, self._max_body, "alerts")
        now = self._clock()
        valid, errors = _parse_alerts(doc, now, self._notifier.resolve_timeout_ms())
        if valid:  # as Alertmanager: the valid ones are stored, the others reported
            try:
                await run_in_threadpool(self._sink.put, valid, now)
            except StoreFull as e:  # nothing of the batch stored: the sender retries it
                raise _AMError(429, str(e)) from None
            except ValueError as e:
                raise _bad(str(e)) from None
        if errors:
            raise _bad("; ".join(errors))
        return Response(status_code=200)

    @requires(Scope.READ)
    async def alert_groups(self, request: Request, caller: Caller) -> Response:
        _untenanted(caller)
        keep = self._alert_filter(request)
        receiver = _receiver_filter(request)
        now = self._clock()

        def listing() -> list[dict[str, Any]]:
            groups = self._groups.groups() if self._groups is not None else []
            chosen = [g for g in groups if receiver is None or receiver.matches(g.receiver)]
            receivers_of: dict[str, list[str]] = {}
            for g in chosen:
                for a in g.alerts:
                    receivers_of.setdefault(fingerprint_hex(a.labels), []).append(g.receiver)
            out = []
            for g in chosen:
                listed = []
                for a in g.alerts:
                    st = keep(a, now)
                    if st is not None:
                        listed.append(alert_json(a, st, sorted(receivers_of[fingerprint_hex(a.labels)])))
                if listed:
                    out.append({"alerts": listed, "labels": dict(g.labels), "receiver": {"name": g.receiver}})
            return out

        return _json(await run_in_threadpool(listing))


def _untenanted(caller: Caller) -> None:
    if caller.tenant is not None:
        raise APIError(
            403,
            "forbidden",
            "the Alertmanager API acts on every tenant's alerts and silences: use a global token",
            text=True,
        )


def _silence_id(request: Request) -> str:
    raw = str(request.path_params["silence_id"])
    try:
        uuid.UUID(raw)
    except ValueError:
        raise _AMError(
            422, f"silenceID in path must be of type uuid: {go_quote(raw)}", swagger_code=601
        ) from None
    if len(raw) != 36:  # the canonical form only, as strfmt's uuid format
        raise _AMError(422, f"silenceID in path must be of type uuid: {go_quote(raw)}", swagger_code=601)
    return raw.lower()
