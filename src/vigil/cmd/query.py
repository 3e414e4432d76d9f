"""`vigil query`: run a PromQL query against a Vigil (or any Prometheus-compatible) server's HTTP API.

    vigil query 'rate(http_requests_total[5m])'                       instant query, now
    vigil query 'up' --time 2024-05-01T12:00:00Z
    vigil query 'sum(up)' --start now-1h --step 1m                     range query up to now
    vigil query 'up' --json                                            the server's JSON as is

The server is the one `vigil up` in this directory would run: `server.listen` of `./vigil.yml` (or
`--config`), else 127.0.0.1:9400; `--url` names any other.
Times are RFC 3339, Unix seconds, `now`, or relative to now (`now-1h`, `-30m`); steps are float
seconds or durations (`1m`). Results print as an aligned table; an error prints as one line on
stderr and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from vigil.config import load_config
from vigil.model.duration import parse_duration
from vigil.model.listen import parse_listen

DEFAULT_URL = "http://127.0.0.1:9400"
EXIT_ERROR = 1
HTTP_TIMEOUT_S = 150.0  # above the server's default query timeout, so its own error wins
RANGE_POINTS = 250  # the default step aims at about this many points, as Prometheus' graph page


class QueryError(Exception):
    """Anything that stops the query; str() is the one line shown."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "query",
        help="run a PromQL query against a server",
        description="Run a PromQL query (instant, or range with --start/--end/--step) over the HTTP API.",
    )
    p.add_argument("expr", help="PromQL expression")
    p.add_argument("--time", help="evaluation time of an instant query (default: now)")
    p.add_argument("--start", help="range query start (RFC 3339, Unix seconds, now-1h)")
    p.add_argument("--end", help="range query end (default: now)")
    p.add_argument("--step", help="range query step, e.g. 15s or 15 (default: about 250 points)")
    p.add_argument(
        "--url", help=f"server URL (default: server.listen of ./vigil.yml if present, else {DEFAULT_URL})"
    )
    p.add_argument("--config", "-c", type=Path, help="vigil.yml whose server.listen to query")
    p.add_argument("--token", help="bearer token for servers with read tokens configured")
    p.add_argument("--json", action="store_true", help="print the server's JSON response")
    return p


def url_for_listen(listen: str) -> str:
    """The URL a client on this host uses for a server listening on `listen` (a wildcard address is
    reached through loopback)."""
    host, port = parse_listen(listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def server_url(args: argparse.Namespace) -> str:
    """`--url`, else the server configured in `--config` / ./vigil.yml, else the default address.
    Raises ConfigError when the file is wrong."""
    if args.url:
        return str(args.url)
    path = args.config
    if path is None and Path("vigil.yml").exists():
        path = Path("vigil.yml")
    return DEFAULT_URL if path is None else url_for_listen(load_config(path).server.listen)


def run(args: argparse.Namespace) -> int:
    args.url = server_url(args)
    try:
        body, raw = _request(args)
    except QueryError as exc:
        print(f"vigil query: {exc}", file=sys.stderr)
        return EXIT_ERROR
    warnings = body.get("warnings")
    for w in warnings if isinstance(warnings, list) else []:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(raw.rstrip("\n"))
        return 0
    try:
        table = render(body.get("data"))
    except QueryError as exc:
        print(f"vigil query: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(table)
    return 0


def _request(args: argparse.Namespace) -> tuple[dict[str, object], str]:
    """The decoded success envelope and the response text as the server sent it."""
    now = time.time()
    is_range = any(v is not None for v in (args.start, args.end, args.step))
    if is_range:
        if args.time is not None:
            raise QueryError("--time is for instant queries; use --start/--end/--step for a range")
        if args.start is None:
            raise QueryError("a range query needs --start")
        start = resolve_time(args.start, now)
        end = resolve_time(args.end, now) if args.end is not None else _seconds(now)
        step = args.step
        if step is None:
            lo, hi = _as_seconds(start), _as_seconds(end)
            if lo is None or hi is None:
                raise QueryError("cannot work out a default --step for these times; give one")
            step = default_step(lo, hi)
        path, params = "/api/v1/query_range", {"query": args.expr, "start": start, "end": end, "step": step}
    else:
        path, params = "/api/v1/query", {"query": args.expr}
        if args.time is not None:
            params["time"] = resolve_time(args.time, now)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    url = args.url.rstrip("/") + path
    try:
        resp = httpx.post(url, data=params, headers=headers, timeout=HTTP_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise QueryError(f"cannot reach {args.url}: {exc}") from None
    try:
        body = resp.json()
    except ValueError:
        text = resp.text.strip().splitlines()[0] if resp.text.strip() else resp.reason_phrase
        raise QueryError(f"HTTP {resp.status_code}: {text}") from None
    if not isinstance(body, dict) or body.get("status") != "success":
        if isinstance(body, dict) and "error" in body:
            raise QueryError(f"{body.get('errorType', 'error')}: {body['error']}")
        raise QueryError(f"HTTP {resp.status_code}: unexpected response")
    return body, resp.text


def resolve_time(text: str, now: float) -> str:
    """`now`, `now-1h`, `-1h` become Unix seconds; anything else goes to the server as written."""
    t = text.strip()
    if t == "now":
        return _seconds(now)
    for prefix in ("now-", "-"):
        if t.startswith(prefix):
            rest = t[len(prefix) :]
            try:
                return _seconds(now - parse_duration(rest) / 1000)
            except ValueError:
                if prefix == "now-":
                    raise QueryError(f"bad relative time {text!r}: expected e.g. now-1h") from None
    return t


def default_step(start: float, end: float) -> str:
    """A whole-second step giving about RANGE_POINTS points (at least 1s)."""
    return f"{max(1, int(-(-(end - start) // RANGE_POINTS)))}s"


def _seconds(t: float) -> str:
    return f"{t:.3f}"


def _as_seconds(t: str) -> float | None:
    try:
        return float(t)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(t).timestamp()
    except ValueError:
        return None


# -- rendering --------------------------------------------------------------------------------------


def render(data: object) -> str:
    """A result as an aligned table: SERIES, VALUE, TIME (one row per point for a matrix).
    QueryError for what is not a result: it is the server's JSON, whatever that server is."""
    d = _object(data, "data")
    kind, result = d.get("resultType"), d.get("result") or []
    rows: list[tuple[str, str, str]] = []
    if kind in ("scalar", "string"):
        rows.append(("", *_point(result)))
    elif kind == "vector":
        for s in _list(result, "result"):
            entry = _object(s, "a series")
            rows.append((_series(entry.get("metric")), *_point(entry.get("value"))))
    elif kind == "matrix":
        for s in _list(result, "result"):
            entry = _object(s, "a series")
            name = _series(entry.get("metric"))
            for i, p in enumerate(_list(entry.get("values") or [], "values")):
                rows.append((name if i == 0 else "", *_point(p)))
    else:
        raise QueryError(f"unknown result type {kind!r}")
    if not rows:
        return "(empty result)"
    header = ("SERIES", "VALUE", "TIME") if kind in ("vector", "matrix") else ("", "VALUE", "TIME")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    lines = []
    for series, value, when in [header, *rows]:
        line = (
            f"{series:<{widths[0]}}  {value:>{widths[1]}}  {when}"
            if widths[0]
            else f"{value:>{widths[1]}}  {when}"
        )
        lines.append(line.rstrip())
    return "\n".join(lines)


def _object(v: object, what: str) -> dict[str, object]:
    if not isinstance(v, dict):
        raise QueryError(f"unexpected response: {what} is not an object")
    return v


def _list(v: object, what: str) -> list[object]:
    if not isinstance(v, list):
        raise QueryError(f"unexpected response: {what} is not a list")
    return v


def _point(p: object) -> tuple[str, str]:
    """(value, time) of a [time, "value"] pair."""
    if isinstance(p, list) and len(p) == 2 and isinstance(p[0], int | float | str):
        try:
            return str(p[1]), _time(p[0])
        except (ValueError, OverflowError):  # not a number, or an infinite one
            pass
    raise QueryError(f"unexpected response: a point is not [time, value]: {json.dumps(p)[:80]}")


def _series(metric: object) -> str:
    labels = _object(metric, "a metric")
    name = str(labels.get("__name__", ""))
    inner = ", ".join(
        f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in labels.items() if k != "__name__"
    )
    return f"{name}{{{inner}}}" if inner or not name else name


def _time(t: float | str) -> str:
    ms = round(float(t) * 1000)
    try:
        dt = datetime.fromtimestamp(ms // 1000, UTC)
    except (ValueError, OverflowError, OSError):  # beyond datetime's years
        return str(t)
    frac = f".{ms % 1000:03d}" if ms % 1000 else ""
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"
