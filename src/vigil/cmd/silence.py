"""`vigil silence`: add, list, query and expire silences on a Vigil server (or any Alertmanager), as
`amtool silence` does, through the Alertmanager v2 API.

    vigil silence add alertname=DiskFull instance=~"db-.*" --duration 2h --comment "resizing"
    vigil silence list                       the silences that have not expired
    vigil silence query severity=page -q     ids only, of those whose matchers include severity="page"
    vigil silence query --expired
    vigil silence expire 3f6d... 9a1c...

The server is found as for `vigil query` (`--url`, else `server.listen` of `--config` / ./vigil.yml,
else 127.0.0.1:9400); `--token` is sent as a bearer token. `add` prints the new silence's id; a bare
first argument without an operator is an alert name (`vigil silence add DiskFull ...`), as in amtool.
Tables are amtool's: ID, Matchers, Ends At, Created By, Comment, times in UTC. Errors are one line on
stderr and exit 1.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from vigil.cmd.query import server_url
from vigil.model.duration import parse_duration
from vigil.model.matcher import MatchType
from vigil.notifier.matchers import Matcher, MatcherError, go_quote, parse_matcher

EXIT_ERROR = 1
HTTP_TIMEOUT_S = 30.0
_FLAGS = {
    MatchType.EQ: (True, False),
    MatchType.NEQ: (False, False),
    MatchType.RE: (True, True),
    MatchType.NRE: (False, True),
}
_OPS = {(True, False): "=", (False, False): "!=", (True, True): "=~", (False, True): "!~"}


class SilenceCommandError(Exception):
    """What stops the command; str() is the one line shown."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "silence",
        help="add, list, query and expire silences (amtool silence)",
        description="Silences on a Vigil server (or an Alertmanager) through the Alertmanager v2 API.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url", help="server URL (default: server.listen of ./vigil.yml, else 127.0.0.1:9400)"
    )
    common.add_argument("--config", "-c", type=Path, help="vigil.yml whose server.listen to use")
    common.add_argument("--token", help="bearer token (a write token for add and expire)")
    sub = p.add_subparsers(dest="silence_command", required=True)
    add = sub.add_parser("add", parents=[common], help="add a silence; prints its id")
    add.add_argument("matchers", nargs="+", help='matchers, e.g. alertname=X instance=~"db-.*"')
    add.add_argument("--duration", "-d", default="1h", help="how long it lasts (default 1h)")
    add.add_argument("--comment", required=True, help="why (required)")
    add.add_argument("--author", "-a", default=None, help="who (default: the user name)")
    for name, help_ in (("list", "list silences"), ("query", "list silences whose matchers include these")):
        q = sub.add_parser(name, parents=[common], help=help_)
        q.add_argument("matchers", nargs="*", help="filter: each must be one of the silence's matchers")
        q.add_argument("--expired", action="store_true", help="show expired silences instead of current ones")
        q.add_argument("--quiet", "-q", action="store_true", help="print ids only")
    exp = sub.add_parser("expire", parents=[common], help="expire silences by id")
    exp.add_argument("ids", nargs="+", help="silence ids")
    return p


def run(args: argparse.Namespace) -> int:
    try:
        base = server_url(args).rstrip("/") + "/api/v2"
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        with httpx.Client(headers=headers, timeout=HTTP_TIMEOUT_S) as client:
            if args.silence_command == "add":
                print(_add(client, base, args))
            elif args.silence_command == "expire":
                for sid in args.ids:
                    _call(client, "DELETE", f"{base}/silence/{sid}")
            else:
                out = _query(client, base, args)
                if out:
                    print(out)
    except SilenceCommandError as e:
        print(f"vigil silence: {e}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def parse_silence_matchers(texts: list[str]) -> list[Matcher]:
    """amtool's: each argument one matcher; a first argument with no operator is an alert name."""
    out = []
    for i, text in enumerate(texts):
        try:
            out.append(parse_matcher(text))
        except MatcherError as e:
            if i == 0 and not any(op in text for op in "=!~"):
                out.append(Matcher(MatchType.EQ, "alertname", text))
                continue
            raise SilenceCommandError(f"bad matcher {text!r}: {e}") from None
    return out


def _rfc3339(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _add(client: httpx.Client, base: str, args: argparse.Namespace) -> str:
    matchers = parse_silence_matchers(args.matchers)
    try:
        duration = parse_duration(args.duration)
    except ValueError as e:
        raise SilenceCommandError(f"--duration: {e}") from None
    if duration <= 0:
        raise SilenceCommandError("--duration: expected a positive duration like 2h")
    now = time.time_ns() // 1_000_000
    body = {
        "matchers": [
            {"name": m.name, "value": m.value, "isEqual": _FLAGS[m.type][0], "isRegex": _FLAGS[m.type][1]}
            for m in matchers
        ],
        "startsAt": _rfc3339(now),
        "endsAt": _rfc3339(now + duration),
        "createdBy": args.author if args.author is not None else getpass.getuser(),
        "comment": args.comment,
    }
    got = _call(client, "POST", f"{base}/silences", json=body)
    if not isinstance(got, dict) or not isinstance(got.get("silenceID"), str):
        raise SilenceCommandError("unexpected answer from the server (no silenceID)")
    return str(got["silenceID"])


def _query(client: httpx.Client, base: str, args: argparse.Namespace) -> str:
    filters = parse_silence_matchers(args.matchers) if args.matchers else []
    params = [("filter", str(m)) for m in filters]
    got = _call(client, "GET", f"{base}/silences", params=params)
    if not isinstance(got, list):
        raise SilenceCommandError("unexpected answer from the server (not a list of silences)")
    wanted = [s for s in got if (s.get("status", {}).get("state") == "expired") == args.expired]
    wanted.sort(key=lambda s: str(s.get("endsAt", "")))  # amtool's order: by end (UTC text sorts so)
    if args.quiet:
        return "\n".join(str(s.get("id", "")) for s in wanted)
    return render_table(wanted)


def render_table(silences: list[dict[str, Any]]) -> str:
    """amtool's silence table (columns padded to the widest cell plus two spaces)."""
    rows = [("ID", "Matchers", "Ends At", "Created By", "Comment")]
    for s in silences:
        matchers = " ".join(
            f"{m.get('name', '')}{_OPS[(bool(m.get('isEqual', True)), bool(m.get('isRegex')))]}"
            f"{go_quote(str(m.get('value', '')))}"
            for m in s.get("matchers") or []
        )
        rows.append(
            (
                str(s.get("id", "")),
                matchers,
                _show_time(str(s.get("endsAt", ""))),
                str(s.get("createdBy", "")),
                str(s.get("comment", "")),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    # amtool's tabwriter pads the last column too: each line ends in two spaces.
    return "\n".join("".join(f"{cell:<{widths[i]}}  " for i, cell in enumerate(r)) for r in rows)


def _show_time(text: str) -> str:
    # 2024-05-01T12:00:00.000Z -> 2024-05-01 12:00:00 UTC, as amtool prints it.
    if len(text) >= 19 and text[10] == "T":
        return f"{text[:10]} {text[11:19]} UTC"
    return text


def _call(client: httpx.Client, method: str, url: str, **kw: Any) -> Any:
    try:
        resp = client.request(method, url, **kw)
    except httpx.HTTPError as e:
        raise SilenceCommandError(f"cannot reach {url}: {e}") from None
    if resp.status_code >= 400:
        try:
            detail = resp.json()
        except ValueError:
            detail = resp.text.strip()
        if isinstance(detail, dict):
            detail = detail.get("message", detail)
        raise SilenceCommandError(f"HTTP {resp.status_code}: {detail or resp.reason_phrase}")
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        raise SilenceCommandError(f"HTTP {resp.status_code}: the answer is not JSON") from None
