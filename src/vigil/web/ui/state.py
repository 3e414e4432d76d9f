"""The URL state every page shares: time range, auto-refresh, theme override, time zone.

The whole state lives in the query string so that a link is the view: `range=1h` (one of `RANGES`)
or `from=`/`to=` (Unix seconds or RFC 3339, a custom range), `refresh=30s`, `theme=dark`,
`tz=utc`. Parsing is pure and refuses what it does not know with a message naming the parameter
(the page answers 400 with it): a page never guesses at a range it was not given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlencode

from vigil.web.promapi import parse_time

__all__ = ["MAX_CUSTOM_MS", "RANGES", "REFRESHES", "StateError", "ViewState", "parse_state"]

_S = 1000
_M = 60 * _S
_H = 60 * _M
_D = 24 * _H
RANGES: dict[str, int] = {"15m": 15 * _M, "1h": _H, "6h": 6 * _H, "24h": _D, "7d": 7 * _D, "30d": 30 * _D}
REFRESHES: dict[str, int] = {"off": 0, "10s": 10 * _S, "30s": 30 * _S, "1m": _M, "5m": 5 * _M}
THEMES = ("", "light", "dark")  # "": follow the system
ZONES = ("local", "utc")
MAX_CUSTOM_MS = 31 * _D  # a custom range is bounded like the presets: per-page work stays bounded
MIN_CUSTOM_MS = 10 * _S
DEFAULT_RANGE = "1h"


class StateError(ValueError):
    """A URL parameter the pages do not accept; the message names it."""


@dataclass(frozen=True)
class ViewState:
    """One page's view: `start_ms`..`end_ms` (inclusive) and the display settings."""

    range: str  # a RANGES key, or "custom"
    start_ms: int
    end_ms: int
    refresh: str
    theme: str
    tz: str

    @property
    def span_ms(self) -> int:
        return self.end_ms - self.start_ms

    def params(self) -> dict[str, str]:
        """The query parameters that reproduce this view (defaults left out: shorter links)."""
        out: dict[str, str] = {}
        if self.range == "custom":
            out["from"] = _seconds(self.start_ms)
            out["to"] = _seconds(self.end_ms)
        elif self.range != DEFAULT_RANGE:
            out["range"] = self.range
        if self.refresh != "off":
            out["refresh"] = self.refresh
        if self.theme:
            out["theme"] = self.theme
        if self.tz != "local":
            out["tz"] = self.tz
        return out

    def link(self, path: str, **extra: str | int | None) -> str:
        """`path` with this view's state and `extra` page parameters (None drops one)."""
        params: dict[str, str] = self.params()
        for k, v in extra.items():
            if v is None:
                params.pop(k, None)
            else:
                params[k] = str(v)
        return path + ("?" + urlencode(params) if params else "")

    def with_range(self, name: str) -> ViewState:
        return replace(self, range=name)


def _seconds(ms: int) -> str:
    return str(ms // 1000) if ms % 1000 == 0 else f"{ms / 1000:.3f}"


def _choice(params: Mapping[str, str], name: str, allowed: tuple[str, ...] | list[str], default: str) -> str:
    value = params.get(name, "") or default
    if value not in allowed:
        shown = ", ".join(a or '""' for a in allowed)
        raise StateError(f'parameter "{name}": expected one of {shown}')
    return value


def parse_state(params: Mapping[str, str], now_ms: int) -> ViewState:
    """The view a page's query string asks for; StateError naming the parameter if it is invalid."""
    refresh = _choice(params, "refresh", list(REFRESHES), "off")
    theme = _choice(params, "theme", THEMES, "")
    tz = _choice(params, "tz", ZONES, "local")
    frm, to = params.get("from", ""), params.get("to", "")
    if frm or to:
        if not (frm and to):
            raise StateError('parameters "from" and "to": a custom range needs both')
        times = []
        for name, text in (("from", frm), ("to", to)):
            try:
                times.append(parse_time(text))
            except ValueError as exc:
                raise StateError(f'parameter "{name}": {exc}') from None
        start, end = times
        if not MIN_CUSTOM_MS <= end - start <= MAX_CUSTOM_MS:
            raise StateError(
                'parameters "from" and "to": the range must be between 10s and 31d long, "to" after "from"'
            )
        return ViewState("custom", start, end, refresh, theme, tz)
    name = _choice(params, "range", list(RANGES), DEFAULT_RANGE)
    return ViewState(name, now_ms - RANGES[name], now_ms, refresh, theme, tz)
