"""The Prometheus query API over a real DB: parameters, defaults, limits, errors and response shapes,
including the request sequence Grafana's Prometheus data source makes.

Request handling (parameter parsing, error mapping, truncation) is checked with a scripted engine;
query results end to end with the real engine once it exists.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests.web.asgi import Client
from vigil.ingest.ingester import Ingester, IngestMetrics
from vigil.ingest.validate import Limits
from vigil.model.labels import Labels
from vigil.promql.engine import Engine, EngineOptions
from vigil.promql.errors import ExecutionError, ParseError, QueryTimeout, TooManySamples
from vigil.promql.result import QueryResult, Series
from vigil.storage.interface import StorageError
from vigil.storage.metadata import MetadataStore
from vigil.tsdb.db import DB, Options
from vigil.web.app import create_app
from vigil.web.auth import TokenAuth
from vigil.web.query_api import QueryAPI
from vigil.web.status import StatusAPI
from vigil.web.write import WriteAPI, WriteOptions

T0 = 1_700_000_000_000  # ms; all samples are around here
STEP = 15_000
NOW = T0 + 3_600_000
OLD = T0 - 86_400_000  # one day earlier: the only sample of old_metric
JSON = "application/json"


def _append(db: DB, labels: dict[str, str], ts: np.ndarray, values: np.ndarray) -> None:
    ref = db.series_ref(Labels.from_dict(labels))
    res = db.append(np.full(ts.size, ref, np.int64), ts.astype(np.int64), values.astype(np.float64))
    assert res.accepted == ts.size, res


SPECIAL = {
    "hundred": 100.0,
    "small": 1e-05,
    "tiny": 1e-07,
    "huge": 1e21,
    "nan": math.nan,
    "inf": math.inf,
    "neginf": -math.inf,
    "negzero": -0.0,
}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[DB]:
    """Ten minutes of 15s samples from T0, loaded through the storage interface."""
    d = DB(tmp_path / "data", Options(fsync=False), now_ms=lambda: NOW)
    _append(d, {"__name__": "old_metric", "job": "batch"}, np.array([OLD]), np.array([7.0]))
    ts = np.arange(T0, T0 + 600_000, STEP)
    _append(d, {"__name__": "up", "job": "node", "instance": "a"}, ts, np.ones(ts.size))
    _append(d, {"__name__": "up", "job": "node", "instance": "b"}, ts, np.zeros(ts.size))
    # A counter growing 10/s; the 500s stop after five minutes.
    _append(d, {"__name__": "http_requests_total", "job": "api", "code": "200"}, ts, (ts - T0) / 100)
    early = ts[ts < T0 + 300_000]
    _append(d, {"__name__": "http_requests_total", "job": "api", "code": "500"}, early, (early - T0) / 1000)
    for kind, v in SPECIAL.items():
        _append(d, {"__name__": "special", "kind": kind}, ts, np.full(ts.size, v))
    yield d
    d.close()


class ScriptedEngine:
    """Returns `result` (or raises `error`) and records every call with its arguments."""

    def __init__(self, result: QueryResult | None = None, error: Exception | None = None) -> None:
        self.result = result or QueryResult("vector")
        self.error = error
        self.calls: list[tuple[Any, ...]] = []

    def instant_query(
        self, query: str, time_ms: int, lookback_delta_ms: int | None = None, timeout_s: float | None = None
    ) -> QueryResult:
        self.calls.append(("instant", query, time_ms, lookback_delta_ms, timeout_s))
        if self.error:
            raise self.error
        return self.result

    def range_query(
        self,
        query: str,
        start_ms: int,
        end_ms: int,
        step_ms: int,
        lookback_delta_ms: int | None = None,
        timeout_s: float | None = None,
    ) -> QueryResult:
        self.calls.append(("range", query, start_ms, end_ms, step_ms, lookback_delta_ms, timeout_s))
        if self.error:
            raise self.error
        return self.result


def metadata_store() -> MetadataStore:
    md = MetadataStore()
    md.update("up", "gauge", "1 if the target is up.", "")
    md.update("http_requests_total", "counter", "Requests served.", "")
    md.update("process_cpu_seconds_total", "COUNTER", "CPU time.", "seconds")
    return md


def client(
    db: DB,
    engine: Any = None,
    auth: TokenAuth | None = None,
    metadata: MetadataStore | None = None,
    **kwargs: Any,
) -> Client:
    api = QueryAPI(
        engine if engine is not None else ScriptedEngine(),
        db,
        auth or TokenAuth([], []),
        metadata if metadata is not None else metadata_store(),
        now=lambda: NOW,
        **kwargs,
    )
    return Client(create_app([api], registry=None))


def ok(resp: httpx.Response) -> Any:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == JSON
    body = resp.json()
    assert body["status"] == "success"
    return body["data"]


def err(resp: httpx.Response, status: int, error_type: str) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == JSON
    body = resp.json()
    assert set(body) == {"status", "errorType", "error"}
    assert body["status"] == "error" and body["errorType"] == error_type
    return str(body["error"])


def series(labels: dict[str, str], points: list[tuple[int, float]]) -> Series:
    ts = np.array([t for t, _ in points], np.int64)
    return Series(Labels.from_dict(labels), ts, np.array([v for _, v in points], np.float64))


def sec(ms: int) -> str:
    return str(ms / 1000)


# -- /api/v1/query and /api/v1/query_range: request handling ------------------------------------------


def test_query_get_post_and_time_parameter(db: DB) -> None:
    engine = ScriptedEngine()
    c = client(db, engine)
    assert ok(c.get("/api/v1/query", params={"query": "up"})) == {"resultType": "vector", "result": []}
    ok(c.get("/api/v1/query", params={"query": "up", "time": "1435781451.781"}))
    ok(c.post("/api/v1/query", data={"query": "up", "time": "2015-07-01T22:10:51.781+02:00"}))
    ok(c.post("/api/v1/query", data={"query": "up", "time": ""}))  # empty is absent
    assert [call[1:3] for call in engine.calls] == [
        ("up", NOW),  # time defaults to now
        ("up", 1435781451781),
        ("up", 1435781451781),
        ("up", NOW),
    ]


def test_post_body_wins_over_query_string(db: DB) -> None:
    engine = ScriptedEngine()
    c = client(db, engine)
    ok(c.post("/api/v1/query?query=from_url&time=1", data={"query": "from_body"}))
    assert engine.calls[0][1:3] == ("from_body", 1000)
    # A body that is not form-encoded is ignored, as Go's ParseForm does.
    ok(c.post("/api/v1/query?query=from_url", content=b'{"query":"x"}', headers={"Content-Type": JSON}))
    assert engine.calls[1][1] == "from_url"


def test_form_body_size_is_bounded(db: DB) -> None:
    c = client(db, max_form_bytes=100)
    msg = err(c.post("/api/v1/query", data={"query": "x" * 200}), 400, "bad_data")
    assert msg == "error parsing form values: http: POST too large"


def test_query_result_shapes(db: DB) -> None:
    vec = QueryResult(
        "vector",
        [
            series({"__name__": "up", "job": "b"}, [(1435781451781, 1.0)]),
            series({"job": "a"}, [(1435781451781, 1e-7)]),
        ],
    )
    assert ok(client(db, ScriptedEngine(vec)).get("/api/v1/query", params={"query": "q"})) == {
        "resultType": "vector",  # instant vectors keep the engine's order
        "result": [
            {"metric": {"__name__": "up", "job": "b"}, "value": [1435781451.781, "1"]},
            {"metric": {"job": "a"}, "value": [1435781451.781, "1e-07"]},
        ],
    }
    mat = QueryResult(
        "matrix", [series({"job": "b"}, [(1000, 2.0)]), series({"job": "a"}, [(1000, 1.0), (2500, 0.5)])]
    )
    resp = client(db, ScriptedEngine(mat)).get(
        "/api/v1/query_range", params={"query": "q", "start": "1", "end": "3", "step": "1"}
    )
    assert '"values":[[1,"1"],[2.500,"0.5"]]' in resp.text  # exact timestamp digits
    assert ok(resp)["result"] == [  # matrices sorted by labels
        {"metric": {"job": "a"}, "values": [[1, "1"], [2.5, "0.5"]]},
        {"metric": {"job": "b"}, "values": [[1, "2"]]},
    ]
    scalar = QueryResult("scalar", scalar=(4000, 2.0))
    resp = client(db, ScriptedEngine(scalar)).get("/api/v1/query", params={"query": "1+1", "time": "4"})
    assert resp.text == '{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}'
    string = QueryResult("string", string=(4000, "hi"))
    assert ok(client(db, ScriptedEngine(string)).get("/api/v1/query", params={"query": '"hi"'})) == {
        "resultType": "string",
        "result": [4, "hi"],
    }


def test_query_limit_truncates_with_warning(db: DB) -> None:
    vec = QueryResult(
        "vector", [series({"i": str(i)}, [(1000, i)]) for i in range(3)], warnings=["w"], infos=["i"]
    )
    c = client(db, ScriptedEngine(vec))
    body = c.get("/api/v1/query", params={"query": "q", "limit": "2"}).json()
    assert [s["metric"]["i"] for s in body["data"]["result"]] == ["0", "1"]
    assert body["warnings"] == ["w", "results truncated due to limit"]
    assert body["infos"] == ["i"]
    body = c.get("/api/v1/query", params={"query": "q", "limit": "3"}).json()
    assert len(body["data"]["result"]) == 3 and body["warnings"] == ["w"]
    body = c.get("/api/v1/query", params={"query": "q", "limit": "0"}).json()  # 0: no limit
    assert len(body["data"]["result"]) == 3
    plain = client(db, ScriptedEngine(QueryResult("vector", vec.series))).get(
        "/api/v1/query", params={"query": "q"}
    )
    assert "warnings" not in plain.json() and "infos" not in plain.json()


@pytest.mark.parametrize(
    ("error", "status", "error_type", "message"),
    [
        (
            ParseError("1:5: parse error: unexpected end of input"),
            400,
            "bad_data",
            'invalid parameter "query": 1:5: parse error: unexpected end of input',
        ),
        (
            ExecutionError("many-to-many matching not allowed"),
            422,
            "execution",
            "many-to-many matching not allowed",
        ),
        (
            TooManySamples(100),
            422,
            "execution",
            "query processing would load too many samples into memory in query execution (limit 100)",
        ),
        (QueryTimeout(), 503, "timeout", "query timed out in query execution"),
        (StorageError("disk on fire"), 500, "internal", "disk on fire"),
        (RuntimeError("bug"), 500, "internal", "RuntimeError: bug"),
    ],
)
def test_engine_errors(db: DB, error: Exception, status: int, error_type: str, message: str) -> None:
    c = client(db, ScriptedEngine(error=error))
    assert err(c.get("/api/v1/query", params={"query": "q"}), status, error_type) == message
    params = {"query": "q", "start": "1", "end": "2", "step": "1"}
    assert err(c.post("/api/v1/query_range", data=params), status, error_type) == message


RANGE = {"query": "q", "start": "100", "end": "200", "step": "10"}


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        (
            "/api/v1/query",
            {"query": "q", "time": "yesterday"},
            "invalid parameter \"time\": invalid time value for 'time': "
            'cannot parse "yesterday" to a valid timestamp',
        ),
        (
            "/api/v1/query",
            {"query": "q", "limit": "-1"},
            'invalid parameter "limit": limit must be non-negative',
        ),
        (
            "/api/v1/query",
            {"query": "q", "limit": "ten"},
            'invalid parameter "limit": strconv.Atoi: parsing "ten": invalid syntax',
        ),
        (
            "/api/v1/query",
            {"query": "q", "timeout": "soon"},
            'invalid parameter "timeout": cannot parse "soon" to a valid duration',
        ),
        (
            "/api/v1/query",
            {"query": "q", "lookback_delta": "1x"},
            'error parsing lookback delta duration: cannot parse "1x" to a valid duration',
        ),
        (
            "/api/v1/query_range",
            {**RANGE, "start": ""},
            'invalid parameter "start": cannot parse "" to a valid timestamp',
        ),
        (
            "/api/v1/query_range",
            {**RANGE, "end": "x"},
            'invalid parameter "end": cannot parse "x" to a valid timestamp',
        ),
        (
            "/api/v1/query_range",
            {**RANGE, "end": "99"},
            'invalid parameter "end": end timestamp must not be before start time',
        ),
        (
            "/api/v1/query_range",
            {**RANGE, "step": ""},
            'invalid parameter "step": cannot parse "" to a valid duration',
        ),
        (
            "/api/v1/query_range",
            {**RANGE, "step": "0"},
            'invalid parameter "step": zero or negative query resolution step widths are not accepted. '
            "Try a positive integer",
        ),
        (
            "/api/v1/query_range",
            {**RANGE, "step": "-15"},
            'invalid parameter "step": zero or negative query resolution step widths are not accepted. '
            "Try a positive integer",
        ),
        (
            "/api/v1/query_range",
            {**RANGE, "start": "0", "end": "11001", "step": "1"},
            "exceeded maximum resolution of 11,000 points per timeseries. "
            "Try decreasing the query resolution (?step=XX)",
        ),
        (
            "/api/v1/query_range",
            {**RANGE, "limit": "x"},
            'invalid parameter "limit": strconv.Atoi: parsing "x": invalid syntax',
        ),
    ],
)
def test_query_bad_parameters(db: DB, path: str, params: dict[str, str], message: str) -> None:
    engine = ScriptedEngine()
    c = client(db, engine)
    assert err(c.get(path, params=params), 400, "bad_data") == message
    assert err(c.post(path, data=params), 400, "bad_data") == message
    assert engine.calls == []


def test_query_range_parameters(db: DB) -> None:
    engine = ScriptedEngine(QueryResult("matrix"))
    c = client(db, engine)
    base = {"query": "q", "start": "1435781451.781", "end": "2015-07-01T20:20:51.781Z"}
    for step in ("15s", "15", "15.0", "0.5", "1m30s"):
        assert ok(c.post("/api/v1/query_range", data={**base, "step": step})) == {
            "resultType": "matrix",
            "result": [],
        }
    assert [call[2:5] for call in engine.calls] == [
        (1435781451781, 1435782051781, 15_000),
        (1435781451781, 1435782051781, 15_000),
        (1435781451781, 1435782051781, 15_000),
        (1435781451781, 1435782051781, 500),
        (1435781451781, 1435782051781, 90_000),
    ]
    # Exactly 11,000 steps is allowed (Prometheus refuses only more).
    ok(c.get("/api/v1/query_range", params={"query": "q", "start": "0", "end": "11000", "step": "1"}))


def test_query_options_reach_the_engine(db: DB) -> None:
    engine = ScriptedEngine()
    c = client(db, engine)
    ok(c.get("/api/v1/query", params={"query": "q", "time": "1", "lookback_delta": "1m", "timeout": "2.5"}))
    ok(c.get("/api/v1/query", params={"query": "q", "time": "1", "lookback_delta": "0"}))  # 0: default
    ok(c.get("/api/v1/query_range", params={**RANGE, "lookback_delta": "30", "timeout": "1m"}))
    assert engine.calls == [
        ("instant", "q", 1000, 60_000, 2.5),
        ("instant", "q", 1000, None, None),
        ("range", "q", 100_000, 200_000, 10_000, 30_000, 60.0),
    ]


# -- series, labels, label values -----------------------------------------------------------------------


def test_series(db: DB) -> None:
    c = client(db)
    up = [
        {"__name__": "up", "instance": "a", "job": "node"},
        {"__name__": "up", "instance": "b", "job": "node"},
    ]
    assert ok(c.get("/api/v1/series", params={"match[]": "up"})) == up
    assert ok(c.post("/api/v1/series", data={"match[]": 'up{instance="b"}'})) == up[1:]
    # Several match[] are OR'ed, duplicates merged, the result sorted by labels.
    data = ok(c.post("/api/v1/series", data={"match[]": ['{job="node"}', "old_metric", 'up{instance="a"}']}))
    assert data == [{"__name__": "old_metric", "job": "batch"}, *up]
    assert ok(c.get("/api/v1/series", params={"match[]": "nothing_here"})) == []
    regex = ok(c.get("/api/v1/series", params={"match[]": '{__name__=~"http_.*", code!="500"}'}))
    assert regex == [{"__name__": "http_requests_total", "code": "200", "job": "api"}]


def test_series_time_range(db: DB) -> None:
    c = client(db)
    names = lambda d: sorted({s["__name__"] for s in d})  # noqa: E731
    everything = ok(c.get("/api/v1/series", params={"match[]": '{__name__=~".+"}'}))
    assert names(everything) == ["http_requests_total", "old_metric", "special", "up"]
    recent = ok(c.get("/api/v1/series", params={"match[]": '{__name__=~".+"}', "start": sec(T0)}))
    assert names(recent) == ["http_requests_total", "special", "up"]
    old = {"match[]": '{__name__=~".+"}', "start": sec(OLD - 1000), "end": sec(OLD + 1000)}
    assert ok(c.get("/api/v1/series", params=old)) == [{"__name__": "old_metric", "job": "batch"}]
    late = {"match[]": "http_requests_total", "start": sec(T0 + 400_000), "end": "2030-01-01T00:00:00Z"}
    assert ok(c.get("/api/v1/series", params=late)) == [
        {"__name__": "http_requests_total", "code": "200", "job": "api"}
    ]
    # Prometheus' own min/max time strings mean "everything".
    bounds = {
        "match[]": "old_metric",
        "start": "-292273086-05-16T16:47:06Z",
        "end": "292277025-08-18T07:12:54.999999999Z",
    }
    assert len(ok(c.get("/api/v1/series", params=bounds))) == 1


def test_series_limit_and_errors(db: DB) -> None:
    c = client(db)
    body = c.get("/api/v1/series", params={"match[]": "special", "limit": "3"}).json()
    assert [s["kind"] for s in body["data"]] == ["huge", "hundred", "inf"]
    assert body["warnings"] == ["results truncated due to limit"]
    assert "warnings" not in c.get("/api/v1/series", params={"match[]": "special", "limit": "8"}).json()
    assert err(c.get("/api/v1/series"), 400, "bad_data") == "no match[] parameter provided"
    assert (
        err(c.post("/api/v1/series", data={"start": "1"}), 400, "bad_data") == "no match[] parameter provided"
    )
    msg = err(c.get("/api/v1/series", params={"match[]": "up{"}), 400, "bad_data")
    assert msg.startswith('invalid parameter "match[]": ') and "parse error" in msg
    # Prometheus' parser already refuses selectors that match everything, as the API would.
    msg = err(c.get("/api/v1/series", params={"match[]": '{job=""}'}), 400, "bad_data")
    assert msg.startswith('invalid parameter "match[]": ') and "at least one non-empty matcher" in msg
    msg = err(c.get("/api/v1/series", params={"match[]": "up", "start": "x"}), 400, "bad_data")
    assert msg == (
        'invalid parameter "start": invalid time value for \'start\': cannot parse "x" to a valid timestamp'
    )
    msg = err(c.get("/api/v1/series", params={"match[]": "up", "limit": "-2"}), 400, "bad_data")
    assert msg == 'invalid parameter "limit": limit must be non-negative'


def test_labels(db: DB) -> None:
    c = client(db)
    everything = ["__name__", "code", "instance", "job", "kind"]
    assert ok(c.get("/api/v1/labels")) == everything
    assert ok(c.post("/api/v1/labels", data={})) == everything
    assert ok(c.get("/api/v1/labels", params={"match[]": "up"})) == ["__name__", "instance", "job"]
    assert ok(c.post("/api/v1/labels", data={"match[]": ["up", "special"]})) == [
        "__name__",
        "instance",
        "job",
        "kind",
    ]
    assert ok(c.get("/api/v1/labels", params={"match[]": "nothing"})) == []
    old = {"start": sec(OLD - 1000), "end": sec(OLD + 1000)}
    assert ok(c.get("/api/v1/labels", params=old)) == ["__name__", "job"]
    body = c.get("/api/v1/labels", params={"limit": "2"}).json()
    assert body["data"] == ["__name__", "code"] and body["warnings"] == ["results truncated due to limit"]
    msg = err(c.get("/api/v1/labels", params={"match[]": "up{"}), 400, "bad_data")
    assert "parse error" in msg and not msg.startswith("invalid parameter")  # as Prometheus words it
    msg = err(c.get("/api/v1/labels", params={"match[]": '{job=~".*"}'}), 400, "bad_data")
    assert "at least one non-empty matcher" in msg
    msg = err(c.get("/api/v1/labels", params={"end": "x"}), 400, "bad_data")
    assert (
        msg
        == 'invalid parameter "end": invalid time value for \'end\': cannot parse "x" to a valid timestamp'
    )


def test_label_values(db: DB) -> None:
    c = client(db)
    assert ok(c.get("/api/v1/label/__name__/values")) == [
        "http_requests_total",
        "old_metric",
        "special",
        "up",
    ]
    assert ok(c.get("/api/v1/label/job/values")) == ["api", "batch", "node"]
    assert ok(c.get("/api/v1/label/job/values", params={"match[]": ["up", "old_metric"]})) == [
        "batch",
        "node",
    ]
    assert ok(c.get("/api/v1/label/code/values", params={"start": sec(T0 + 400_000)})) == ["200"]
    assert ok(c.get("/api/v1/label/nope/values")) == []
    assert ok(c.get("/api/v1/label/U__j_6f_b/values")) == ["api", "batch", "node"]  # U__ escaped "job"
    body = c.get("/api/v1/label/kind/values", params={"limit": "2"}).json()
    assert body["data"] == ["huge", "hundred"] and body["warnings"] == ["results truncated due to limit"]
    assert c.post("/api/v1/label/job/values").status_code == 405  # GET only, as Prometheus
    msg = err(c.get("/api/v1/label/job/values", params={"match[]": "{"}), 400, "bad_data")
    assert "parse error" in msg


def test_metadata(db: DB) -> None:
    c = client(db)
    everything = {
        "http_requests_total": [{"type": "counter", "help": "Requests served.", "unit": ""}],
        "process_cpu_seconds_total": [{"type": "counter", "help": "CPU time.", "unit": "seconds"}],
        "up": [{"type": "gauge", "help": "1 if the target is up.", "unit": ""}],
    }
    assert ok(c.get("/api/v1/metadata")) == everything
    assert ok(c.get("/api/v1/metadata", params={"metric": "up"})) == {"up": everything["up"]}
    assert ok(c.get("/api/v1/metadata", params={"metric": "nope"})) == {}
    assert len(ok(c.get("/api/v1/metadata", params={"limit": "2"}))) == 2
    assert ok(c.get("/api/v1/metadata", params={"limit": "0"})) == {}
    assert ok(c.get("/api/v1/metadata", params={"limit": "-1"})) == everything
    assert ok(c.get("/api/v1/metadata", params={"limit_per_metric": "1"})) == everything
    assert err(c.get("/api/v1/metadata", params={"limit": "x"}), 400, "bad_data") == "limit must be a number"
    msg = err(c.get("/api/v1/metadata", params={"limit_per_metric": "1.5"}), 400, "bad_data")
    assert msg == "limit_per_metric must be a number"
    empty = QueryAPI(ScriptedEngine(), db, TokenAuth([], []), None)
    assert ok(Client(create_app([empty], registry=None)).get("/api/v1/metadata")) == {}


def test_metadata_store() -> None:
    md = MetadataStore(max_families=3)
    md.update("a", "counter", "first", "")
    md.update("a", "gauge", "second", "bytes")  # last write wins
    assert md.query() == {"a": [{"type": "gauge", "help": "second", "unit": "bytes"}]}
    md.update_many(
        [("b", 1, "remote write enum", ""), ("c", "UNTYPED", "", ""), ("", "gauge", "no name", "")]
    )
    assert md.get("b") == ("counter", "remote write enum", "") and md.get("c") == ("unknown", "", "")
    md.update("a", "histogram", "", "")  # refreshed: now the most recently updated
    md.update("d", "bogus", "", "")
    assert list(md.query()) == ["a", "c", "d"] and len(md) == 3  # "b" was the oldest update
    assert md.query(metric="d") == {"d": [{"type": "unknown", "help": "", "unit": ""}]}
    assert list(md.query(limit=2)) == ["a", "c"] and md.query(limit=0) == {}
    assert md.query(limit_per_metric=0)["a"] == md.query(limit_per_metric=1)["a"]


def test_metadata_store_is_per_tenant() -> None:
    md = MetadataStore(max_families=2)
    md.update("shared", "counter", "acme's", "", tenant="acme")
    md.update("shared", "gauge", "beta's", "", tenant="beta")
    md.update("plain", "gauge", "", "")  # untenanted
    assert md.query(tenant="acme") == {"shared": [{"type": "counter", "help": "acme's", "unit": ""}]}
    assert md.query(tenant="gamma") == {} and md.query(metric="plain", tenant="acme") == {}
    assert md.get("shared", tenant="beta") == ("gauge", "beta's", "") and md.get("shared") is None
    # A global reader sees each distinct version; identical ones once.
    assert [m["help"] for m in md.query()["shared"]] == ["acme's", "beta's"]
    assert [m["help"] for m in md.query(limit_per_metric=1)["shared"]] == ["acme's"]
    md.update("shared", "counter", "acme's", "", tenant="gamma")
    assert len(md.query()["shared"]) == 2
    # The bound is per tenant: beta inventing names evicts beta's oldest, never acme's.
    md.update_many([(f"spam{i}", "gauge", "", "") for i in range(50)], tenant="beta")
    assert list(md.query(tenant="acme")) == ["shared"]
    assert list(md.query(tenant="beta")) == ["spam48", "spam49"]
    assert len(md) == 2 + 1 + 1 + 1


def test_metadata_store_concurrent_updates() -> None:
    md = MetadataStore(max_families=500)

    def writer(w: int) -> None:
        for i in range(2000):
            md.update(f"m{i % 700}", "gauge", f"w{w}", "")
            if i % 100 == 0:
                md.query(limit=10)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(md) == 500 and all(len(v) == 1 for v in md.query().values())


def test_format_query(db: DB) -> None:
    c = client(db)
    assert (
        ok(c.get("/api/v1/format_query", params={"query": "sum(rate(x[5m]))by(a)"}))
        == "sum by (a) (rate(x[5m]))"
    )
    assert ok(c.post("/api/v1/format_query", data={"query": "up  ==  1"})) == "up == 1"
    msg = err(c.get("/api/v1/format_query", params={"query": "sum("}), 400, "bad_data")
    assert msg.startswith('invalid parameter "query": ') and "parse error" in msg


ENDPOINTS = [
    ("GET", "/api/v1/query?query=up"),
    ("POST", "/api/v1/query_range"),
    ("GET", "/api/v1/series?match[]=up"),
    ("POST", "/api/v1/labels"),
    ("GET", "/api/v1/label/job/values"),
    ("GET", "/api/v1/metadata"),
    ("GET", "/api/v1/format_query?query=up"),
]


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_read_token_required(db: DB, method: str, url: str) -> None:
    c = client(db, auth=TokenAuth(["w"], ["r1", "r2"]))
    assert c.request(method, url).status_code == 401
    assert c.request(method, url, headers={"Authorization": "Bearer w"}).status_code == 401
    resp = c.request(method, url, headers={"Authorization": "Bearer r2"})
    assert resp.status_code in (200, 400), resp.text  # query_range without parameters is a 400
    assert resp.headers["content-type"] == JSON


# -- with the real engine ---------------------------------------------------------------------------------


@pytest.fixture
def engine(db: DB) -> Engine:
    return Engine(db, EngineOptions(lookback_delta_ms=300_000, timeout_s=120.0, max_samples=50_000_000))


def test_instant_query_end_to_end(db: DB, engine: Any) -> None:
    c = client(db, engine)
    t = T0 + 300_000
    data = ok(c.post("/api/v1/query", data={"query": "up", "time": sec(t)}))
    assert data["resultType"] == "vector"
    assert sorted(data["result"], key=lambda s: s["metric"]["instance"]) == [
        {"metric": {"__name__": "up", "instance": "a", "job": "node"}, "value": [1700000300, "1"]},
        {"metric": {"__name__": "up", "instance": "b", "job": "node"}, "value": [1700000300, "0"]},
    ]
    data = ok(c.get("/api/v1/query", params={"query": "special", "time": "1700000300.123"}))
    got = {s["metric"]["kind"]: s["value"] for s in data["result"]}
    assert got == {
        "hundred": [1700000300.123, "100"],
        "small": [1700000300.123, "0.00001"],
        "tiny": [1700000300.123, "1e-07"],
        "huge": [1700000300.123, "1e+21"],
        "nan": [1700000300.123, "NaN"],
        "inf": [1700000300.123, "+Inf"],
        "neginf": [1700000300.123, "-Inf"],
        "negzero": [1700000300.123, "-0"],
    }
    # Grafana's health check: `1+1` at time=4 must be the scalar [4, "2"].
    resp = c.get("/api/v1/query", params={"query": "1+1", "time": "4"})
    assert resp.text == '{"status":"success","data":{"resultType":"scalar","result":[4,"2"]}}'
    assert ok(c.get("/api/v1/query", params={"query": "nothing_here", "time": sec(t)})) == {
        "resultType": "vector",
        "result": [],
    }
    data = ok(c.get("/api/v1/query", params={"query": "up[1m]", "time": sec(t)}))
    assert data["resultType"] == "matrix" and [len(s["values"]) for s in data["result"]] == [4, 4]


def test_range_query_end_to_end(db: DB, engine: Any) -> None:
    c = client(db, engine)
    params = {
        "query": "rate(http_requests_total[1m])",
        "start": sec(T0 + 120_000),
        "end": sec(T0 + 420_000),
        "step": "60",
    }
    data = ok(c.post("/api/v1/query_range", data=params))
    assert data["resultType"] == "matrix"
    assert [s["metric"] for s in data["result"]] == [
        {"code": "200", "job": "api"},
        {"code": "500", "job": "api"},
    ]
    ok_200 = data["result"][0]["values"]
    assert [t for t, _ in ok_200] == [1700000120, 1700000180, 1700000240, 1700000300, 1700000360, 1700000420]
    assert all(float(v) == pytest.approx(10) for _, v in ok_200)
    assert all(float(v) == pytest.approx(1) for _, v in data["result"][1]["values"])
    scalar = ok(c.get("/api/v1/query_range", params={"query": "2", "start": "0", "end": "30", "step": "15"}))
    assert scalar == {
        "resultType": "matrix",
        "result": [{"metric": {}, "values": [[0, "2"], [15, "2"], [30, "2"]]}],
    }


def test_query_errors_end_to_end(db: DB, engine: Any) -> None:
    c = client(db, engine)
    msg = err(c.get("/api/v1/query", params={"query": "up +"}), 400, "bad_data")
    assert msg.startswith('invalid parameter "query": ') and "parse error" in msg
    msg = err(c.get("/api/v1/query", params={"query": ""}), 400, "bad_data")
    assert msg == 'invalid parameter "query": 1:1: parse error: no expression found in input'
    msg = err(
        c.get(
            "/api/v1/query_range",
            params={"query": "up[5m]", **{k: RANGE[k] for k in ("start", "end", "step")}},
        ),
        400,
        "bad_data",
    )
    assert msg.startswith('invalid parameter "query": ') and "range vector" in msg


def test_grafana_request_sequence(db: DB, engine: Any) -> None:
    """What Grafana's Prometheus data source sends when a dashboard opens, through the full app."""
    registry = CollectorRegistry()
    auth = TokenAuth([], [])
    opts = WriteOptions(max_body=1 << 20, max_decompressed=1 << 24, max_samples=10**6)
    apis = [
        QueryAPI(engine, db, auth, metadata_store(), now=lambda: NOW),
        WriteAPI(Ingester(db, Limits(), IngestMetrics(registry)), auth, opts),
        StatusAPI(auth, registry, [db], db.refresh_metrics),
    ]
    c = Client(create_app(apis, registry=registry))
    start, end = sec(T0), sec(T0 + 600_000)
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    info = ok(c.get("/api/v1/status/buildinfo"))
    assert set(info) == {"version", "revision", "branch", "buildUser", "buildDate", "goVersion"}
    assert "features" not in info  # otherwise Grafana treats the server as Mimir

    health = ok(c.post("/api/v1/query", data={"query": "1+1", "time": "4"}, headers=form))
    assert health == {"resultType": "scalar", "result": [4, "2"]}

    names = ok(c.post("/api/v1/labels", data={"start": start, "end": end}, headers=form))
    assert names == ["__name__", "code", "instance", "job", "kind"]

    metrics = ok(c.get("/api/v1/label/__name__/values", params={"start": start, "end": end}))
    assert metrics == ["http_requests_total", "special", "up"]

    found = ok(c.post("/api/v1/series", data={"match[]": "up", "start": start, "end": end}, headers=form))
    assert all(set(s) == {"__name__", "instance", "job"} for s in found) and len(found) == 2

    metadata = ok(c.get("/api/v1/metadata"))
    assert metadata["up"] == [{"type": "gauge", "help": "1 if the target is up.", "unit": ""}]

    step = "15"
    rng = ok(
        c.post(
            "/api/v1/query_range",
            data={"query": 'sum by (job) (up{job="node"})', "start": start, "end": end, "step": step},
            headers=form,
        )
    )
    assert rng["resultType"] == "matrix" and len(rng["result"]) == 1
    only = rng["result"][0]
    assert only["metric"] == {"job": "node"}
    assert only["values"][0] == [T0 // 1000, "1"] and len(only["values"]) == 41
    assert all(isinstance(t, int | float) and isinstance(v, str) for t, v in only["values"])

    inst = ok(c.post("/api/v1/query", data={"query": "up", "time": sec(T0 + 60_000)}, headers=form))
    assert {s["metric"]["instance"]: s["value"][1] for s in inst["result"]} == {"a": "1", "b": "0"}
