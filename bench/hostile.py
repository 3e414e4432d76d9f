"""The hostile table and a bounded fuzz run against a Vigil server, as an attacker on 127.0.0.1 would.

Every request of the table is one of the audit's findings (future-dated and int64-min samples,
nested PromQL, backtracking regexes, subqueries at 1 ms, cross-tenant reads, series floods,
bit-flipped protobufs, JSON bombs, one series x 1M samples, gzip member floods, oversized events);
the fuzz phase then sends random and mutated payloads to every write and read endpoint. Meanwhile
a second thread polls `/-/ready` and a third samples the server's RSS, so the one line of figures
says whether the server kept serving:

    hostile vigil: 1,234 inputs, statuses 200=.. 204=.. 400=.., 0 server errors, worst request 1.20 s,
    worst /-/ready 0.05 s (0 unanswered), peak RSS 180 MiB, 0 table failures

`python -m bench.hostile` starts its own server (tenants `a` and `b`, low series limits) in a temp dir;
`--fuzz N` sets the number of fuzz inputs (default 2,000; the suite runs a few hundred),
`--seed S` makes a run repeatable. The longer run for a release: `--fuzz 50000`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cramjam
import httpx

from bench.peers import ProcessTree, RssSampler, install_sigterm_handler, running
from vigil.prompb.encode import encode_write_request

TOKENS = {
    "write_a": "wa-token-0001",
    "read_a": "ra-token-0001",
    "write_b": "wb-token-0001",
    "read_b": "rb-token-0001",
    "admin": "admin-token-01",
}
CONFIG = f"""
server:
  auth:
    admin_tokens: [{TOKENS["admin"]}]
    tenants:
      a: {{write_tokens: [{TOKENS["write_a"]}], read_tokens: [{TOKENS["read_a"]}]}}
      b: {{write_tokens: [{TOKENS["write_b"]}], read_tokens: [{TOKENS["read_b"]}]}}
limits:
  max_series: 60000
  max_series_per_tenant: 50000
query:
  timeout: 20s
  max_samples: 5000000
"""
RW_HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}
REQUEST_TIMEOUT_S = 120.0


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[token]}"}


def remote_write_body(series: list[list[tuple[str, str]]], samples: list[list[tuple[int, float]]]) -> bytes:
    return bytes(cramjam.snappy.compress_raw(encode_write_request(series, samples)))


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Outcome:
    statuses: Counter[str] = field(default_factory=Counter)
    inputs: int = 0
    worst_s: float = 0.0
    worst_what: str = ""
    server_errors: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def record(self, what: str, status: int | str, seconds: float) -> None:
        self.inputs += 1
        self.statuses[str(status)] += 1
        if seconds > self.worst_s:
            self.worst_s, self.worst_what = seconds, what
        if isinstance(status, int) and status >= 500 and status != 503:
            self.server_errors.append(f"{what}: {status}")
        if not isinstance(status, int):
            self.server_errors.append(f"{what}: {status}")


class Attacker:
    """Sends requests to one server and records what came back."""

    def __init__(self, url: str, outcome: Outcome) -> None:
        self.url = url
        self.outcome = outcome
        self.client = httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S)

    def send(self, what: str, method: str, path: str, **kwargs: object) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            r = self.client.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            self.outcome.record(what, type(exc).__name__, time.perf_counter() - started)
            self.client.close()
            self.client = httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S)
            return None
        self.outcome.record(what, r.status_code, time.perf_counter() - started)
        return r

    def expect(self, what: str, r: httpx.Response | None, ok: Callable[[httpx.Response], bool]) -> None:
        if r is None or not ok(r):
            shown = "no answer" if r is None else f"{r.status_code} {r.text[:200]!r}"
            self.outcome.failures.append(f"{what}: {shown}")

    def query(self, token: str, q: str, **params: str) -> httpx.Response | None:
        return self.send(
            f"query {q[:60]}", "GET", "/api/v1/query", params={"query": q, **params}, headers=auth(token)
        )

    def close(self) -> None:
        self.client.close()


def _status(*codes: int) -> Callable[[httpx.Response], bool]:
    return lambda r: r.status_code in codes


def _series_of(r: httpx.Response) -> list[dict[str, str]]:
    data = r.json().get("data", {})
    result = data.get("result", data) if isinstance(data, dict) else data
    if not isinstance(result, list):
        return []
    return [x.get("metric", x) for x in result if isinstance(x, dict)]


def run_table(a: Attacker) -> None:
    """The audit's findings, each one request (or a few) with the answer it must get."""
    t = now_ms()
    # Tenant b's data, which nothing tenant a does may block, expire or show.
    body = remote_write_body(
        [[("__name__", "card"), ("a", "a" * 40)], [("__name__", "b_only"), ("x", "1")]],
        [[(t - 1000, 1.0)], [(t - 1000, 2.0)]],
    )
    a.expect(
        "b writes",
        a.send("b writes", "POST", "/api/v1/write", content=body, headers={**RW_HEADERS, **auth("write_b")}),
        _status(204),
    )
    body = remote_write_body([[("__name__", "card"), ("a", "a" * 40)]], [[(t - 1000, 1.0)]])
    a.expect(
        "a writes",
        a.send("a writes", "POST", "/api/v1/write", content=body, headers={**RW_HEADERS, **auth("write_a")}),
        _status(204),
    )
    # 1. A future-dated sample is refused and blocks nobody.
    body = remote_write_body([[("__name__", "future"), ("x", "1")]], [[(t + 30 * 86_400_000, 1.0)]])
    a.expect(
        "future sample",
        a.send(
            "future sample", "POST", "/api/v1/write", content=body, headers={**RW_HEADERS, **auth("write_a")}
        ),
        _status(400),
    )
    body = remote_write_body([[("__name__", "b_only"), ("x", "1")]], [[(now_ms(), 3.0)]])
    a.expect(
        "b writes after a's future sample",
        a.send(
            "b after future", "POST", "/api/v1/write", content=body, headers={**RW_HEADERS, **auth("write_b")}
        ),
        _status(204),
    )
    # 2. int64 min / max.
    for name, ts in (("int64 min", -(2**63)), ("int64 max", 2**63 - 1)):
        body = remote_write_body([[("__name__", "edge"), ("x", "1")]], [[(ts, 1.0)]])
        a.expect(
            name,
            a.send(name, "POST", "/api/v1/write", content=body, headers={**RW_HEADERS, **auth("write_a")}),
            _status(400),
        )
    a.expect(
        "compact as admin",
        a.send("compact", "POST", "/api/v1/admin/tsdb/compact", headers=auth("admin")),
        _status(204),
    )
    # 3. Nesting.
    for what, q in (
        ("10k parens", "(" * 10_000 + "1" + ")" * 10_000),
        ("5k additions", "+".join(["1"] * 5_000)),
        ("5k unary minus", "-" * 5_000 + "1"),
        ("deep function nesting", "abs(" * 3_000 + "up" + ")" * 3_000),
    ):
        a.expect(what, a.query("read_a", q), _status(400))
    # 4. Backtracking regexes finish (RE2, linear time).
    a.expect("(a?){30}a{30}", a.query("read_a", 'card{a=~"(a?){30}a{30}"}', timeout="5s"), _status(200))
    a.expect(
        "label_replace (a+)+b",
        a.query("read_a", 'label_replace(card,"x","$1","a","(a+)+b")', timeout="5s"),
        _status(200),
    )
    # 5. Subquery steps count against max_samples before they are allocated.
    for q in (
        "max_over_time(vector(1)[30d:1ms])",
        "sum_over_time(vector(1)[1d:1ms])",
        "max_over_time(card[1d:1ms])",
        "rate(card[5m])[5m:1ms]",
    ):
        a.expect(q, a.query("read_a", q), _status(422, 503))
    # 6. Tenants: a never sees b, whatever it asks.
    for q in (
        '{__name__=~".+"}',
        'count({__name__=~".+"}) by (tenant)',
        "b_only or vector(1)",
        'label_replace({tenant="b"},"tenant","a","","")',
        "absent(b_only)",
        'max_over_time({__name__=~".+"}[1h:1m])',
        '{tenant=~"a|b"}',
    ):
        r = a.query("read_a", q)
        a.expect(
            f"tenant scope {q}",
            r,
            lambda r: (
                r.status_code == 200
                and not any(m.get("tenant") == "b" or m.get("__name__") == "b_only" for m in _series_of(r))
            ),
        )
    r = a.send("label values", "GET", "/api/v1/label/tenant/values", headers=auth("read_a"))
    a.expect("label values scoped", r, lambda r: r.status_code == 200 and "b" not in r.json()["data"])
    r = a.send(
        "series", "GET", "/api/v1/series", params={"match[]": '{__name__=~".+"}'}, headers=auth("read_a")
    )
    a.expect(
        "series scoped",
        r,
        lambda r: r.status_code == 200 and all(s.get("tenant") != "b" for s in r.json()["data"]),
    )
    a.expect(
        "compact with a tenant token",
        a.send("compact as tenant", "POST", "/api/v1/admin/tsdb/compact", headers=auth("write_a")),
        _status(401, 403),
    )
    # 7. A series flood stops at the limit.
    flood = [[("__name__", "flood"), ("i", str(i))] for i in range(60_000)]
    r = a.send(
        "60k new series",
        "POST",
        "/api/v1/write",
        content=remote_write_body(flood, [[(now_ms(), 1.0)]] * len(flood)),
        headers={**RW_HEADERS, **auth("write_a")},
    )
    a.expect("series limit", r, _status(429))
    # 8. Malformed input is a 4xx.
    good = encode_write_request([[("__name__", "m"), ("x", "1")]], [[(now_ms(), 1.0)]])
    rng = random.Random(8)
    for i in range(40):
        raw = bytearray(good)
        bit = rng.randrange(len(raw) * 8)
        raw[bit // 8] ^= 1 << (bit % 8)
        r = a.send(
            f"bit flip {i}",
            "POST",
            "/api/v1/write",
            content=bytes(cramjam.snappy.compress_raw(raw)),
            headers={**RW_HEADERS, **auth("write_a")},
        )
        a.expect(f"bit flip {i}", r, lambda r: r.status_code < 500)
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    a.expect(
        "JSON nested 100k deep",
        a.send("deep json", "POST", "/api/v1/events", content=deep, headers=auth("write_a")),
        _status(400, 413),
    )
    for q in ("ln(-1)", "ln(0)", "log2(-1)", "log10(-1)"):
        a.expect(q, a.query("read_a", q), _status(400))
    # 9. Cheap requests that would cost a lot.
    big = remote_write_body(
        [[("__name__", "one"), ("x", "1")]], [[(now_ms() + i, 1.0) for i in range(1_000_001)]]
    )
    a.expect(
        "1 series x 1,000,001 samples",
        a.send("1x1M", "POST", "/api/v1/write", content=big, headers={**RW_HEADERS, **auth("write_a")}),
        _status(400, 413, 429),
    )
    members = gzip.compress(b"") * 200_000
    a.expect(
        "gzip of 200k empty members",
        a.send(
            "gzip members",
            "POST",
            "/api/v1/events",
            content=members,
            headers={**auth("write_a"), "Content-Encoding": "gzip"},
        ),
        _status(400, 413),
    )
    ev = {
        "id": "x",
        "time_ms": now_ms(),
        "kind": "auth",
        "message": "m",
        "labels": {f"l{i}": "v" for i in range(100_000)},
    }
    a.expect(
        "event with 100k labels",
        a.send(
            "event labels", "POST", "/api/v1/events", content=json.dumps(ev).encode(), headers=auth("write_a")
        ),
        _status(400, 413),
    )
    ev = {"id": "y", "time_ms": now_ms(), "kind": "auth", "message": "m", "labels": {"big": "v" * (10 << 20)}}
    a.expect(
        "event with a 10 MiB label value",
        a.send(
            "event big label",
            "POST",
            "/api/v1/events",
            content=json.dumps(ev).encode(),
            headers=auth("write_a"),
        ),
        _status(400, 413),
    )
    ev = {
        "id": "z",
        "time_ms": now_ms(),
        "kind": "auth",
        "message": "m",
        "fields": {f"f{i}": i for i in range(200_000)},
    }
    a.expect(
        "event with 200k fields",
        a.send(
            "event fields", "POST", "/api/v1/events", content=json.dumps(ev).encode(), headers=auth("write_a")
        ),
        _status(400, 413),
    )
    # b's data survived all of the above.
    r = a.query("read_b", "b_only")
    a.expect("b's data intact", r, lambda r: r.status_code == 200 and len(_series_of(r)) == 1)


# --- fuzz ---------------------------------------------------------------------------------------

_FRAGMENTS = [
    "card",
    "b_only",
    "up",
    '{__name__=~".+"}',
    'card{a=~"a+"}',
    "vector(1)",
    "time()",
    "1",
    "rate(card[5m])",
    "card[5m]",
    "sum by (a) (card)",
    "topk(2, card)",
    "absent(nope)",
    'label_replace(card,"x","$1","a","(.*)")',
    "card offset 1h",
    "card @ 0",
    "-card",
    "histogram_quantile(0.9, card)",
    "predict_linear(card[5m], 60)",
    "card[1h:1m]",
    'count_values("v", card)',
    "scalar(card)",
    "ln(card)",
    "quantile(0.5, card)",
]
_OPS = [" + ", " * ", " / ", " or ", " and ", " unless ", " > ", " == bool ", " ^ ", " % "]


def random_promql(rng: random.Random) -> str:
    def expr(depth: int) -> str:
        roll = rng.random()
        if depth > 4 or roll < 0.35:
            return rng.choice(_FRAGMENTS)
        if roll < 0.6:
            return expr(depth + 1) + rng.choice(_OPS) + expr(depth + 1)
        if roll < 0.8:
            fn = rng.choice(["abs", "sum", "max_over_time", "rate", "count", "sort", "ceil", "absent"])
            inner = expr(depth + 1)
            return (
                f"{fn}({inner}[{rng.choice(['1m', '5m', '1d'])}])"
                if fn.endswith("time")
                else f"{fn}({inner})"
            )
        return f"({expr(depth + 1)})[{rng.choice(['5m', '1h', '1d'])}:{rng.choice(['1s', '1m', '1ms', ''])}]"

    q = expr(0)
    if rng.random() < 0.3:  # mutate: delete, duplicate or insert a character
        i = rng.randrange(len(q) + 1)
        op = rng.randrange(3)
        c = rng.choice('(){}[]"=~!,.:@+-*/^%0123456789abc \\\x00é')
        q = (
            q[:i] + q[i + 1 :]
            if op == 0
            else q[:i] + q[i : i + 1] * 2 + q[i + 1 :]
            if op == 1
            else q[:i] + c + q[i:]
        )
    return q


def _mutate(data: bytes, rng: random.Random) -> bytes:
    raw = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not raw:
            break
        k = rng.randrange(4)
        i = rng.randrange(len(raw))
        if k == 0:
            raw[i] ^= 1 << rng.randrange(8)
        elif k == 1:
            del raw[i]
        elif k == 2:
            raw.insert(i, rng.randrange(256))
        else:
            raw[i:i] = raw[i : i + rng.randint(1, 16)] * rng.randint(1, 8)
    return bytes(raw)


def random_write(rng: random.Random) -> tuple[str, dict[str, object]]:
    n = rng.randint(1, 20)
    t = now_ms()
    series = [
        [("__name__", rng.choice(["fz", "fz_total", "a:b"])), ("i", str(rng.randrange(200)))]
        for _ in range(n)
    ]
    samples = [[(t - rng.randrange(600_000), rng.choice([1.0, -0.0, float("nan"), 1e308]))] for _ in range(n)]
    raw = encode_write_request(series, samples)
    if rng.random() < 0.8:
        raw = _mutate(raw, rng)
    body = bytes(cramjam.snappy.compress_raw(raw))
    if rng.random() < 0.1:
        body = _mutate(body, rng)
    return "/api/v1/write", {
        "content": body,
        "headers": {**RW_HEADERS, **auth(rng.choice(["write_a", "write_b"]))},
    }


def random_text(rng: random.Random) -> tuple[str, dict[str, object]]:
    lines = [
        "# TYPE fz_text counter",
        "# HELP fz_text help",
        f'fz_text{{i="{rng.randrange(50)}"}} 1',
        f"fz_text_ts 2 {now_ms()}",
        'fz_text{i="1",i="2"} 1',
        "fz_text{",
        "fz_text 1 2 3",
        'fz_text{i="\\x"} 1',
        "9bad 1",
        "fz_text NaN",
        "fz_text +Inf",
        'fz_text{i="é"} 1e400',
    ]
    body = "\n".join(rng.choice(lines) for _ in range(rng.randint(1, 10))).encode()
    if rng.random() < 0.5:
        body = _mutate(body, rng)
    return "/api/v1/import/prometheus", {"content": body, "headers": auth(rng.choice(["write_a", "write_b"]))}


def random_events(rng: random.Random) -> tuple[str, dict[str, object]]:
    def value(depth: int) -> object:
        roll = rng.random()
        if depth > 3 or roll < 0.5:
            return rng.choice(["x", 1, -1.5, None, True, "é" * rng.randrange(5), 2**70])
        if roll < 0.75:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        return {rng.choice(["k", "user", "", "a" * 300]): value(depth + 1) for _ in range(rng.randrange(4))}

    objs = []
    for i in range(rng.randint(1, 5)):
        obj: dict[str, object] = {
            "id": f"fz{rng.randrange(10**6)}-{i}",
            "time_ms": now_ms(),
            "kind": rng.choice(["auth", "file_changed", "custom"]),
            "message": "m",
            "labels": {"instance": "h1"},
            "fields": {"n": value(0)},
        }
        for key in rng.sample(list(obj), rng.randrange(3)):
            obj[key] = value(0)
        objs.append(obj)
    body = "\n".join(json.dumps(o) for o in objs).encode()
    if rng.random() < 0.4:
        body = _mutate(body, rng)
    return "/api/v1/events", {
        "content": body,
        "headers": {**auth(rng.choice(["write_a", "write_b"])), "Content-Type": "application/x-ndjson"},
    }


def run_fuzz(a: Attacker, n: int, rng: random.Random) -> None:
    readers = ["read_a", "read_b", "admin"]
    for i in range(n):
        kind = rng.randrange(6)
        if kind in (0, 1):
            q = random_promql(rng)
            params = {"query": q}
            path = "/api/v1/query"
            if kind == 1:
                t = time.time()
                path = "/api/v1/query_range"
                params.update(
                    start=str(t - rng.choice([300, 3600, 86400])),
                    end=str(t),
                    step=rng.choice(["15", "1", "0.001", "60", "-1", "abc"]),
                )
            reader = rng.choice(readers)
            r = a.send(f"fuzz {path} {q[:80]}", "GET", path, params=params, headers=auth(reader))
            if reader == "read_a" and r is not None and r.status_code == 200:
                leaked = [m for m in _series_of(r) if m.get("tenant") == "b"]
                if leaked:
                    a.outcome.failures.append(f"tenant a saw b's series with {q!r}: {leaked[:2]}")
        elif kind == 2:
            path, kw = random_write(rng)
            a.send(f"fuzz write {i}", "POST", path, **kw)
        elif kind == 3:
            path, kw = random_text(rng)
            a.send(f"fuzz import {i}", "POST", path, **kw)
        elif kind == 4:
            path, kw = random_events(rng)
            a.send(f"fuzz events {i}", "POST", path, **kw)
        else:
            path = rng.choice(
                [
                    "/api/v1/series",
                    "/api/v1/labels",
                    "/api/v1/label/tenant/values",
                    "/api/v1/events",
                    "/api/v1/metadata",
                    "/api/v1/label/__name__/values",
                ]
            )
            params = {
                rng.choice(["match[]", "start", "end", "limit", "kind", "cursor"]): rng.choice(
                    ['{__name__=~".+"}', "card", "-1", "1e30", "abc", "{", "0", "\x00"]
                )
                for _ in range(rng.randrange(4))
            }
            a.send(f"fuzz {path} {params}", "GET", path, params=params, headers=auth(rng.choice(readers)))


# --- watching the server ------------------------------------------------------------------------


@dataclass
class ReadyWatch:
    """Polls /-/ready throughout; records the slowest answer and polls that got none."""

    url: str
    worst_s: float = 0.0
    polls: int = 0
    unanswered: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        with httpx.Client(timeout=10.0) as c:
            while not self._stop.wait(0.2):
                started = time.perf_counter()
                try:
                    c.get(self.url + "/-/ready")
                except httpx.HTTPError:
                    self.unanswered += 1
                self.polls += 1
                self.worst_s = max(self.worst_s, time.perf_counter() - started)

    @contextmanager
    def watching(self) -> Iterator[ReadyWatch]:
        t = threading.Thread(target=self._run, name="ready-watch", daemon=True)
        t.start()
        try:
            yield self
        finally:
            self._stop.set()
            t.join()


@dataclass
class Report:
    outcome: Outcome
    ready: ReadyWatch
    peak_rss: int

    def line(self, target: str = "vigil") -> str:
        o = self.outcome
        statuses = " ".join(f"{k}={v:,}" for k, v in sorted(o.statuses.items()))
        return (
            f"hostile {target}: {o.inputs:,} inputs, statuses {statuses}, {len(o.server_errors)} server "
            f"errors, worst request {o.worst_s:.2f} s ({o.worst_what[:60]}), worst /-/ready "
            f"{self.ready.worst_s:.2f} s ({self.ready.unanswered} of {self.ready.polls} unanswered), "
            f"peak RSS {self.peak_rss / 2**20:.0f} MiB, {len(o.failures)} table failures"
        )


def attack(url: str, pid: int | None, fuzz: int, seed: int) -> Report:
    outcome = Outcome()
    watch = ReadyWatch(url)
    sampler = RssSampler(ProcessTree(pid), interval=0.05) if pid else None
    a = Attacker(url, outcome)
    try:
        with watch.watching():
            if sampler:
                sampler.__enter__()
            try:
                run_table(a)
                run_fuzz(a, fuzz, random.Random(seed))
            finally:
                if sampler:
                    sampler.__exit__()
    finally:
        a.close()
    return Report(outcome, watch, sampler.peak if sampler else 0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fuzz", type=int, default=2000, help="random inputs after the table")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    install_sigterm_handler()
    work = Path(__import__("tempfile").mkdtemp(prefix="vigil-hostile-"))
    cfg = work / "vigil.yml"
    cfg.write_text(CONFIG)
    with running("vigil", extra_args=["--config", str(cfg)]) as peer:
        report = attack(peer.url, peer.pid, args.fuzz, args.seed)
        for f in report.outcome.failures:
            print(f"# table failure: {f}", file=sys.stderr)
        for e in report.outcome.server_errors[:20]:
            print(f"# server error: {e}", file=sys.stderr)
        print(report.line(), flush=True)
    return 0 if not report.outcome.failures and not report.outcome.server_errors else 1


if __name__ == "__main__":
    sys.exit(main())
