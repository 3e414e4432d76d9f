"""What hostile-shaped write requests cost the server: wall time per request, in-process.

Each case is one request through the real application (`build_app` on its own fresh data directory,
Starlette's TestClient, no network), timed from send to response; the line says the status too,
so a case that should be refused early shows whether it was. Cases (default sizes):

- `one-series`: one series x 200,000 samples (remote write);
- `spread`: the same 200,000 samples over 1,000 series, which `one-series` should cost about as much as;
- `over-limit`: one series x 1,000,001 samples, one past the default per-request limit (413);
- `gzip-members`: an events body of 200,000 empty gzip members (400);
- `json-depth`: an event line nested 100,000 arrays deep (400);
- `series-flood`: 200,000 new series of one metric in 100 requests (429 past the per-metric limit).

Usage: `python -m bench.request_cost` (all), `--only one-series,over-limit`, `--samples 50000`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gzip
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cramjam
import httpx
import numpy as np
from prometheus_client import CollectorRegistry

from vigil.cmd.server import build_app, open_db, open_events
from vigil.config import Config
from vigil.prompb.encode import encode_write_request

RW = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}
T0 = 1_700_000_000_000


class TestClient:
    """Requests straight into the ASGI app (httpx's ASGI transport): no sockets, no threads."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self._app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://vigil") as c:
                return await c.post(url, **kwargs)

        return asyncio.run(go())


@contextlib.contextmanager
def _client() -> Iterator[TestClient]:
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        cfg = Config.model_validate({"storage": {"path": str(Path(tmp) / "data"), "out_of_order_window": 0}})
        registry = CollectorRegistry()
        db = open_db(cfg, registry)
        events = open_events(cfg)
        try:
            yield TestClient(build_app(cfg, db, registry, events))
        finally:
            events.close()
            db.close()


def _series_body(n_series: int, per_series: int) -> bytes:
    series = [[("__name__", "bench_metric"), ("i", str(i))] for i in range(n_series)]
    ts = (T0 + 15_000 * np.arange(per_series)).tolist()
    samples = [[(t, float(k % 7)) for k, t in enumerate(ts)] for _ in range(n_series)]
    return bytes(cramjam.snappy.compress_raw(encode_write_request(series, samples)))


def _time(label: str, send: Callable[[], object]) -> None:
    started = time.perf_counter()
    status = send()
    print(f"hostile {label}: {status} in {time.perf_counter() - started:.3f} s", flush=True)


def one_series(client: TestClient, samples: int) -> None:
    body = _series_body(1, samples)
    _time(
        f"1 series x {samples:,} samples",
        lambda: client.post("/api/v1/write", content=body, headers=RW).status_code,
    )


def spread(client: TestClient, samples: int) -> None:
    body = _series_body(1000, samples // 1000)
    _time(
        f"1,000 series x {samples // 1000:,} samples",
        lambda: client.post("/api/v1/write", content=body, headers=RW).status_code,
    )


def over_limit(client: TestClient, _: int) -> None:
    body = _series_body(1, 1_000_001)
    _time(
        "1 series x 1,000,001 samples",
        lambda: client.post("/api/v1/write", content=body, headers=RW).status_code,
    )


def gzip_members(client: TestClient, _: int) -> None:
    body = gzip.compress(b"", mtime=0) * 200_000
    _time(
        "events body of 200,000 empty gzip members",
        lambda: client.post("/api/v1/events", content=body, headers={"Content-Encoding": "gzip"}).status_code,
    )


def json_depth(client: TestClient, _: int) -> None:
    line = b'{"time_ms": 1, "kind": "auth", "fields": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}\n"
    _time(
        "event nested 100,000 deep",
        lambda: client.post("/api/v1/events", content=line).status_code,
    )


def series_flood(client: TestClient, _: int) -> None:
    # Finding: 200,000 random series were all accepted; the default limits.max_series_per_metric
    # (100,000) now refuses the requests that would pass it.
    bodies = []
    for k in range(100):
        series = [[("__name__", "flood"), ("id", f"{k}-{i}")] for i in range(2000)]
        bodies.append(bytes(cramjam.snappy.compress_raw(encode_write_request(series, [[(T0, 1.0)]] * 2000))))
    statuses: collections.Counter[int] = collections.Counter()

    def send() -> str:
        for body in bodies:
            statuses[client.post("/api/v1/write", content=body, headers=RW).status_code] += 1
        return ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items()))

    _time("200,000 new series in 100 requests", send)


CASES: dict[str, Callable[[TestClient, int], None]] = {
    "one-series": one_series,
    "spread": spread,
    "over-limit": over_limit,
    "gzip-members": gzip_members,
    "json-depth": json_depth,
    "series-flood": series_flood,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(CASES), help="comma-separated cases")
    ap.add_argument("--samples", type=int, default=200_000, help="samples for the one-series case")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        ap.error(f"unknown case {unknown[0]!r}; expected one of {', '.join(CASES)}")
    for name in names:
        with _client() as client:
            CASES[name](client, args.samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
