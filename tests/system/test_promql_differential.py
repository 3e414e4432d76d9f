"""Differential PromQL test: the same data in Debian's Prometheus and in Vigil, the same queries.

One hour of deterministic data (`promql_corpus.build_dataset`: counters with resets, negative and
fractional gauges, classic histograms, missing scrapes, stale markers, several jobs) is
remote-written to a fresh Prometheus 2.42 (`--web.enable-remote-write-receiver`, no scrape
targets) and to Vigil.  Every corpus query is run as an instant query at several times and as a
range query with several steps, over HTTP on both, and the answers must agree: same result type,
same label sets, same timestamps, values within 1e-9 relative (NaN equals NaN); `sort` results
also in the same order.  The corpus avoids what 2.x and 3.x answer differently (see
`promql_corpus`).

Until Vigil serves /api/v1/query the comparison is skipped; the harness itself (the data as
loaded, every query succeeding on Prometheus, no ties where order matters) is always checked.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import VigilProcess, free_port, require_binary, wait_http
from tests.system import promql_corpus as corpus

pytestmark = [pytest.mark.peer, pytest.mark.slow, pytest.mark.timeout(240)]

WRITE_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
# The last scrape slot ends this long before now, so that every evaluation time is in the past.
END_BEFORE_NOW_MS = 8 * 60_000
WORKERS = 4

# An evaluation: (expanded expression, "instant", (time,)) or (expr, "range", (start, end, step)).
Eval = tuple[str, str, tuple[int, ...]]


@dataclass
class Loaded:
    ds: corpus.Dataset
    prom_url: str
    vigil: VigilProcess
    vigil_write_errors: list[str]


def _start_prometheus(binary: str, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    cfg = work / "prometheus.yml"
    cfg.write_text("# no scrape targets: data arrives by remote write only\n")
    port = free_port()
    log = open(work / "prometheus.log", "wb")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-remote-write-receiver",
            "--log.level=warn",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/-/ready", timeout=60, proc=proc)
    except BaseException:
        _stop(proc)
        raise
    return proc, url


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    binary = require_binary("prometheus")
    work = tmp_path_factory.mktemp("promql-diff")
    ds = corpus.build_dataset(int(time.time() * 1000) - END_BEFORE_NOW_MS)
    payloads = corpus.write_requests(ds)
    proc, prom_url = _start_prometheus(binary, work)
    vigil = VigilProcess(work / "vigil")
    try:
        vigil.start()
        vigil_errors: list[str] = []
        with httpx.Client(timeout=30) as c:
            for i, p in enumerate(payloads):
                r = c.post(prom_url + "/api/v1/write", content=p, headers=WRITE_HEADERS)
                assert r.status_code == 204, f"prometheus rejected payload {i}: {r.status_code} {r.text}"
                r = c.post(vigil.url + "/api/v1/write", content=p, headers=WRITE_HEADERS)
                if not 200 <= r.status_code < 300:
                    vigil_errors.append(f"payload {i}: HTTP {r.status_code} {r.text[:300]}")
        yield Loaded(ds, prom_url, vigil, vigil_errors)
    finally:
        if vigil.proc is not None:
            vigil.stop()
        _stop(proc)


def evaluations(ds: corpus.Dataset) -> list[tuple[corpus.Query, Eval]]:
    out: list[tuple[corpus.Query, Eval]] = []
    for query in corpus.QUERIES:
        expr = ds.expand(query.expr)
        if query.instant:
            out += [(query, (expr, "instant", (t,))) for t in ds.instants]
        if query.range:
            out += [(query, (expr, "range", spec)) for spec in ds.ranges]
    return out


def run_one(client: httpx.Client, url: str, ev: Eval) -> corpus.Result | str:
    """The parsed answer, or a string describing the error."""
    expr, kind, args = ev
    if kind == "instant":
        r = client.get(url + "/api/v1/query", params={"query": expr, "time": args[0]})
    else:
        start, end, step = args
        r = client.get(
            url + "/api/v1/query_range", params={"query": expr, "start": start, "end": end, "step": step}
        )
    try:
        body = r.json()
    except ValueError:
        return f"HTTP {r.status_code}: {r.text[:200]}"
    if r.status_code != 200 or body.get("status") != "success":
        return f"HTTP {r.status_code}: {body.get('errorType')}: {body.get('error')}"
    try:
        return corpus.parse_result(body)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        return f"unparseable answer ({type(e).__name__}: {e}): {r.text[:200]}"


def run_all(url: str, evs: list[Eval]) -> dict[Eval, corpus.Result | str]:
    with httpx.Client(timeout=60) as client, ThreadPoolExecutor(WORKERS) as pool:
        return dict(zip(evs, pool.map(lambda ev: run_one(client, url, ev), evs), strict=True))


def describe(ev: Eval) -> str:
    expr, kind, args = ev
    return f"{kind} {expr!r} at {args}"


@pytest.fixture(scope="module")
def prom_results(loaded: Loaded) -> dict[Eval, corpus.Result | str]:
    evs = [ev for _, ev in evaluations(loaded.ds)]
    distinct = {q.distinct for q in corpus.QUERIES if q.distinct}
    for inner in sorted(distinct):  # ask for the inner expressions too, to check them for ties
        evs += [(inner, "instant", (t,)) for t in loaded.ds.instants]
        evs += [(inner, "range", spec) for spec in loaded.ds.ranges]
    return run_all(loaded.prom_url, list(dict.fromkeys(evs)))


def test_corpus_is_well_formed() -> None:
    exprs = [q.expr for q in corpus.QUERIES]
    assert len(exprs) >= 150, len(exprs)
    assert len(set(exprs)) == len(exprs), [e for e in exprs if exprs.count(e) > 1]
    assert all(t % 5 == 2 for t in corpus.INSTANT_OFFSETS_S + tuple(corpus.AT_OFFSETS_S.values()))
    assert all(a % 5 == 2 and step % 5 == 0 for a, _, step in corpus.RANGE_SPECS_S)
    assert all(t.offset_ms % 1000 for t in corpus.TARGETS)


def test_data_loaded_into_prometheus(loaded: Loaded) -> None:
    """Prometheus holds exactly the samples we sent, and honours the stale markers."""
    ds = loaded.ds
    with httpx.Client(timeout=30) as c:

        def instant(expr: str, t: int) -> corpus.Result:
            res = run_one(c, loaded.prom_url, (expr, "instant", (t,)))
            assert isinstance(res, corpus.Result), res
            return res

        raw = instant('{__name__=~".+"}[2h]', ds.t0_s + 3662)  # range selectors skip stale markers
        want = {}
        for s in ds.series:
            real = s.values.view("u8") != corpus.STALE_NAN_BITS
            want[frozenset(s.labels.items())] = list(
                zip(s.timestamps[real].tolist(), s.values[real].tolist(), strict=True)
            )
        assert raw.series.keys() == want.keys()
        assert {k: [(t, float(v)) for t, v in pts] for k, pts in raw.series.items()} == want
        # batch-0's last real scrape is at 37m15.919s, its stale marker at 37m30.919s.
        assert instant('up{job="batch"}', ds.t0_s + 2247).series
        assert not instant('up{job="batch"}', ds.t0_s + 2252).series
        # legacy_metric just stops at 29m45.587s: visible for the 5 min lookback, then gone.
        assert instant("legacy_metric", ds.t0_s + 2077).series
        assert not instant("legacy_metric", ds.t0_s + 2092).series


def test_corpus_runs_on_prometheus(loaded: Loaded, prom_results: dict[Eval, corpus.Result | str]) -> None:
    """Every corpus query succeeds on Prometheus, most return data, and order-sensitive ones see no ties."""
    errors = [f"{describe(ev)}: {res}" for ev, res in prom_results.items() if isinstance(res, str)]
    assert not errors, f"{len(errors)} evaluations failed on Prometheus:\n" + "\n".join(errors[:30])
    by_query: dict[str, list[corpus.Result]] = {}
    for query, ev in evaluations(loaded.ds):
        res = prom_results[ev]
        assert isinstance(res, corpus.Result)
        by_query.setdefault(query.expr, []).append(res)
    empty = [
        q.expr
        for q in corpus.QUERIES
        if not q.empty_ok and not any(r.series or r.scalar is not None for r in by_query[q.expr])
    ]
    assert not empty, f"queries that returned nothing at every evaluation: {empty}"
    tied = []
    for query in corpus.QUERIES:
        if query.distinct:
            for ev, res in prom_results.items():
                if ev[0] == query.distinct and isinstance(res, corpus.Result) and corpus.ties(res):
                    tied.append(f"{describe(ev)}: {corpus.ties(res)[:3]}")
    assert not tied, "ties where topk/bottomk/sort need distinct values:\n" + "\n".join(sorted(set(tied)))


def test_vigil_matches_prometheus(loaded: Loaded, prom_results: dict[Eval, corpus.Result | str]) -> None:
    vigil_url = loaded.vigil.url
    assert not loaded.vigil_write_errors, "Vigil rejected data:\n" + "\n".join(loaded.vigil_write_errors)
    pairs = evaluations(loaded.ds)
    got = run_all(vigil_url, [ev for _, ev in pairs])
    failures: list[str] = []
    failed_queries: set[str] = set()
    for query, ev in pairs:
        want, have = prom_results[ev], got[ev]
        assert isinstance(want, corpus.Result), want
        if isinstance(have, str):
            diff: str | None = f"error: {have}"
        else:
            diff = corpus.compare(want, have, ordered=query.ordered and ev[1] == "instant")
        if diff:
            failures.append(f"{describe(ev)}: {diff}")
            failed_queries.add(query.expr)
    assert not failures, (
        f"{len(failed_queries)} of {len(corpus.QUERIES)} queries differ from Prometheus "
        f"({len(failures)} of {len(pairs)} evaluations):\n" + "\n".join(failures[:40])
    )


def test_compare_catches_differences() -> None:
    """The comparison itself: tolerance, NaN, value text, timestamps, label sets, order."""

    def vec(*pts: tuple[dict[str, str], Any, Any]) -> corpus.Result:
        return corpus.parse_result(
            {"data": {"resultType": "vector", "result": [{"metric": m, "value": [t, v]} for m, t, v in pts]}}
        )

    a, b = {"__name__": "x", "i": "a"}, {"__name__": "x", "i": "b"}
    want = vec((a, 10.5, "1.5"), (b, 10.5, "NaN"))
    assert corpus.compare(want, vec((b, 10.5, "NaN"), (a, 10.5, "1.5"))) is None
    assert corpus.compare(want, vec((a, 10.5, "1.5000000000001"), (b, 10.5, "NaN"))) is None
    assert corpus.compare(want, vec((b, 10.5, "NaN"), (a, 10.5, "1.5")), ordered=True)
    assert corpus.compare(want, vec((a, 10.5, "1.50001"), (b, 10.5, "NaN")))
    assert corpus.compare(want, vec((a, 10.5, "1.5"), (b, 10.5, "0")))
    assert corpus.compare(want, vec((a, 10.5, "1.50"), (b, 10.5, "NaN")))  # same number, other text
    assert corpus.compare(want, vec((a, 10.501, "1.5"), (b, 10.5, "NaN")))
    assert corpus.compare(want, vec((a, 10.5, "1.5")))
    assert corpus.compare(want, vec((a, 10.5, "1.5"), (b, 10.5, "NaN"), ({"i": "c"}, 10.5, "1")))
    for bad in ((a, 10.5, 1.5), (a, 10.5, "inf"), (a, "10.5", "1")):
        with pytest.raises(ValueError):
            vec(bad)
    with pytest.raises(ValueError):
        vec((a, 10.5, "1"), (a, 10.5, "2"))
