"""Data, queries and result comparison for the differential PromQL test against Prometheus.

The data set (`build_dataset`) is one hour of 15 s scrapes of six targets in three jobs, with
counters that reset (api-1 restarts twice), negative and fractional gauges, classic histograms,
a target with missing scrapes (db-1), a target that goes away with Prometheus stale markers
(batch-0), a series that ends without one, and a series that appears and goes stale mid-hour.

Everything is chosen so that Prometheus 2.42 (Debian's) and 3.x (what Vigil follows) must give
the same answer:

- Sample timestamps are `t0 + k*15 s + offset`, with a per-target offset of 137..919 ms, so no
  sample ever lies on a whole second.  Evaluation times, ranges, offsets, `@` times and
  subquery steps are whole seconds (evaluation times are all 2 s past a multiple of 5 s, and
  every step is a multiple of 5 s), so no sample and no subquery step ever sits exactly on the
  left boundary of a range or of the lookback window: 3.0 made both left-open, 2.x has them
  closed, and with this layout that cannot matter.  A subquery nested in another one runs at
  the outer one's steps, so its range must not be a multiple of its own step.
- Values are dyadic rationals (multiples of 1/1024 and small enough), so sums are exact whatever
  the summation order or algorithm (3.x uses Kahan summation in more places than 2.42), and
  averages differ in the last bit at most.
- Each series adds `uid/1024` (uid unique, < 256) to its gauge values and counter increments,
  so `topk`, `bottomk` and `sort` see no ties; the harness checks that on Prometheus' answers.
- Every counter starts at least two increments above zero, so `rate()`'s extrapolation towards
  the start of a range is the same before and after 2.50 changed it (#13725).
- No value is -0.0: it equals 0.0, so where it sorts (quantiles, `sort`) would be arbitrary.
- Label values contain no newline, so 3.0's regex change (`.` matches `\\n`) cannot matter.

`QUERIES` is the corpus, `EXCLUDED` the queries kept out because 2.x and 3.x answer differently
(or order is undefined), each with the reason.  Queries may use `$T_MID`, `$T_LATE` and
`$T_EARLY` (absolute Unix seconds, for `@`), filled in by `Dataset.expand`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cramjam
import numpy as np

from vigil.prompb.encode import encode_write_request

INTERVAL_MS = 15_000
SCRAPES = 240  # one hour
STALE_NAN_BITS = 0x7FF0000000000002
SEED = 20_240_611
REL_TOL = 1e-9
# Values that should be 0 may come out as ~1e-13 when both engines cancel large terms in a
# different order (e.g. 3.x's Kahan summation); below this, two values count as equal.
ABS_TOL = 1e-12

# Seconds after t0 (a whole minute).  All are 2 mod 5, see the module docstring.
INSTANT_OFFSETS_S = (
    242,  # 4m02s: ranges reach back before the first sample
    1232,  # 20m32s: db-1 is in its 6.25 min gap and out of the lookback window
    1637,  # 27m17s: everything present; the 503 series exists; batch-0 is alive
    2747,  # 45m47s: batch-0 went stale at 37m30s; api-1 restarted at 25m
    3662,  # 61m02s: 1m17s after the last scrape, still within the lookback window
    3967,  # 66m07s: past the lookback window of every series; only ranges still see data
)
# (start, end, step) in seconds after t0.
RANGE_SPECS_S = ((2, 3662, 15), (37, 3967, 60), (302, 3902, 300))
AT_OFFSETS_S = {"$T_EARLY": 607, "$T_MID": 1637, "$T_LATE": 3487}


@dataclass(frozen=True)
class Target:
    job: str
    instance: str
    offset_ms: int  # position of the sample within its 15 s slot; never a multiple of 1000


TARGETS = (
    Target("api", "api-0:8080", 137),
    Target("api", "api-1:8080", 291),
    Target("api", "api-2:8080", 403),
    Target("db", "db-0:9187", 587),
    Target("db", "db-1:9187", 733),
    Target("batch", "batch-0:9091", 919),
)
API_RESTARTS = (100, 180)  # api-1 restarts: its counters start again from 0 at these scrapes
DB1_GAP = range(60, 85)  # db-1 misses these scrapes (6.25 min) besides ~4 % random ones
BATCH_STALE_AT = 150  # batch-0's series get a stale marker at this scrape and end
LEGACY_END = 120  # legacy_metric simply stops after scrape 119, without a stale marker
S503_START, S503_STALE_AT = 40, 200  # the 503 series of api-2 lives from 40 and is marked stale at 200
LE = ("0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf")
HANDLERS = ("/api/v1/users", "/healthz")


@dataclass
class Series:
    labels: dict[str, str]
    timestamps: np.ndarray  # int64 ms, ascending
    values: np.ndarray  # float64; stale markers carry STALE_NAN_BITS exactly

    @property
    def real_samples(self) -> int:
        """Samples that are not stale markers (what a range selector returns)."""
        return int(np.count_nonzero(self.values.view(np.uint64) != STALE_NAN_BITS))


@dataclass
class Dataset:
    t0_ms: int
    series: list[Series] = field(default_factory=list)

    @property
    def t0_s(self) -> int:
        return self.t0_ms // 1000

    @property
    def instants(self) -> list[int]:
        """Instant-query evaluation times (Unix seconds)."""
        return [self.t0_s + o for o in INSTANT_OFFSETS_S]

    @property
    def ranges(self) -> list[tuple[int, int, int]]:
        """Range-query (start, end, step) in Unix seconds / seconds."""
        return [(self.t0_s + a, self.t0_s + b, step) for a, b, step in RANGE_SPECS_S]

    def expand(self, expr: str) -> str:
        for name, off in AT_OFFSETS_S.items():
            expr = expr.replace(name, str(self.t0_s + off))
        return expr


# --- data generation ----------------------------------------------------------------------------


def _counter(start: float, incs: np.ndarray, restarts: tuple[int, ...] = ()) -> np.ndarray:
    """Running sum of `incs` from `start`; at each restart index it starts again from 0."""
    out = np.empty_like(incs)
    acc = start
    for k, inc in enumerate(incs):
        if k in restarts:
            acc = 0.0
        acc += inc
        out[k] = acc
    return out


def _walk(rng: np.random.Generator, start: float, step: float, lo: float, hi: float) -> np.ndarray:
    """A gauge moving by -2..2 steps of `step` per scrape, kept in [lo, hi]."""
    x = np.empty(SCRAPES)
    v = start
    for k in range(SCRAPES):
        v = min(hi, max(lo, v + step * int(rng.integers(-2, 3))))
        x[k] = v
    return x


def _normal_cdf(x: float, mu: float, sigma: float) -> float:
    return 0.5 * (1.0 + math.erf((math.log(x) - mu) / (sigma * math.sqrt(2.0))))


def build_dataset(end_ms: int) -> Dataset:
    """The data set, its last scrape slot ending just before `end_ms` (t0 is a whole minute)."""
    rng = np.random.default_rng(SEED)
    t0 = (end_ms - SCRAPES * INTERVAL_MS) // 60_000 * 60_000
    ds = Dataset(t0)
    uid = 0

    def add(
        name: str,
        tgt: Target,
        extra: dict[str, str],
        values: np.ndarray,
        present: np.ndarray | None = None,
        stale_at: int | None = None,
        end: int = SCRAPES,
    ) -> None:
        nonlocal uid
        uid += 1
        assert uid < 256
        ks = np.arange(SCRAPES)
        keep = ks < min(end, stale_at if stale_at is not None else SCRAPES)
        if present is not None:
            keep &= present
        ts = t0 + ks * INTERVAL_MS + tgt.offset_ms
        t, v = ts[keep].astype(np.int64), values[keep].astype(np.float64)
        if stale_at is not None:
            t = np.append(t, np.int64(ts[stale_at]))
            v = np.append(v, 0.0)
            v.view(np.uint64)[-1] = STALE_NAN_BITS
        # -0.0 and 0.0 compare equal, so where they sort (quantiles, sort) is arbitrary: keep -0.0 out.
        assert not np.any((v == 0) & np.signbit(v)), (name, tgt)
        if name.endswith(("_total", "_bucket", "_count", "_sum")) and v.size > 1:
            # A counter that starts near zero while the range starts before it is where 2.50 changed
            # rate()'s extrapolation (#13725): keep every first value well above its increments.
            real = v[np.isfinite(v)]
            assert real[0] >= 2 * np.max(np.diff(real), initial=0), (name, tgt, real[:3])
        labels = {"__name__": name, "job": tgt.job, "instance": tgt.instance, **extra}
        ds.series.append(Series(labels, t, v))

    def frac() -> float:
        return (uid + 1) / 1024  # the uid `add` is about to give

    db1_present = np.ones(SCRAPES, dtype=bool)
    db1_present[list(DB1_GAP)] = False
    db1_present[1:-1] &= rng.random(SCRAPES - 2) >= 0.04

    for tgt in TARGETS:
        present = db1_present if tgt.instance == "db-1:9187" else None
        stale = BATCH_STALE_AT if tgt.job == "batch" else None
        restarts = API_RESTARTS if tgt.instance == "api-1:8080" else ()
        up = np.ones(SCRAPES) if present is None else present.astype(np.float64)
        add("up", tgt, {}, up, stale_at=stale)  # `up` is 0 when the scrape failed, never missing
        version = {"api-2:8080": "1.5.0-rc.1", "db-0:9187": "15.3", "db-1:9187": "15.3"}.get(
            tgt.instance, "0.9.1" if tgt.job == "batch" else "1.4.2"
        )
        add("build_info", tgt, {"version": version}, np.ones(SCRAPES), present, stale)
        f = frac()
        add(
            "process_cpu_seconds_total",
            tgt,
            {},
            _counter(float(rng.integers(1000, 90000)) / 8, rng.integers(1, 24, SCRAPES) / 8 + f, restarts),
            present,
            stale,
        )
        mem = _walk(rng, 2e8 + 4096 * int(rng.integers(0, 5000)), 4096 * 64, 5e7, 6e8) + uid + 1
        for r in restarts:
            mem[r:] -= 4096 * 1000
        add("process_resident_memory_bytes", tgt, {}, mem, present, stale)

        if tgt.job in ("api", "db"):
            for sensor, start, lo, hi in (("cpu", 55.0, 30.0, 90.0), ("ambient", -5.0, -25.0, 15.0)):
                start += float(rng.integers(-40, 41)) / 4
                add(
                    "temperature_celsius",
                    tgt,
                    {"sensor": sensor},
                    _walk(rng, start, 0.25, lo, hi) + frac(),
                    present,
                    stale,
                )
        if tgt.job in ("db", "batch"):
            for queue, lam in (("high", 0.3), ("low", 4.0)):
                depth = np.round(np.cumsum(rng.normal(0, 1.0, SCRAPES)) + rng.poisson(lam, SCRAPES))
                add("queue_depth", tgt, {"queue": queue}, np.maximum(0, depth) + 0.0, present, stale)  # no -0
        if tgt.job == "db":
            add("account_balance_dollars", tgt, {}, _walk(rng, 0.0, 0.125, -40, 40) + frac(), present, stale)
        if tgt.instance == "db-0:9187":
            add("legacy_metric", tgt, {}, np.full(SCRAPES, 42.0) + frac(), end=LEGACY_END)
        if tgt.job == "batch":
            add(
                "batch_jobs_processed_total",
                tgt,
                {},
                _counter(500.0, rng.poisson(3, SCRAPES) + frac()),
                present,
                stale,
            )
            done = rng.random(SCRAPES) < 0.3
            done[0] = True
            slot_s = (t0 + np.arange(SCRAPES) * INTERVAL_MS) // 1000
            last = np.maximum.accumulate(np.where(done, slot_s - rng.integers(1, 14, SCRAPES), 0))
            add("batch_last_success_timestamp_seconds", tgt, {}, last.astype(np.float64), present, stale)
        if tgt.job == "api":
            for handler in HANDLERS:
                for method in ("GET", "POST"):
                    for code, lam in (("200", 40.0), ("500", 0.5)):
                        incs = rng.poisson(lam if method == "GET" else lam / 4, SCRAPES) + frac()
                        add(
                            "http_requests_total",
                            tgt,
                            {"handler": handler, "method": method, "code": code},
                            _counter(float(rng.integers(5000, 50000)), incs, restarts),
                            present,
                            stale,
                        )
            if tgt.instance == "api-2:8080":
                # Starts at 1000, not 0: see the counter check in `add` and EXCLUDED.
                incs = rng.poisson(2.0, SCRAPES) + frac()
                incs[:S503_START] = 0
                vals = _counter(1000.0, incs)
                pres = np.arange(SCRAPES) >= S503_START
                add(
                    "http_requests_total",
                    tgt,
                    {"handler": "/api/v1/users", "method": "GET", "code": "503"},
                    vals,
                    pres,
                    S503_STALE_AT,
                )
            for handler in HANDLERS:
                mu = math.log(0.2 if handler == "/api/v1/users" else 0.01)
                bounds = [float(le) for le in LE[:-1]]
                cdf = [_normal_cdf(b, mu, 1.0) for b in bounds]
                probs = np.diff([0.0, *cdf, 1.0])
                n = rng.poisson(30, SCRAPES)
                per_bucket = np.stack([rng.multinomial(int(x), probs) for x in n])  # (scrapes, buckets)
                cumulative = np.cumsum(per_bucket, axis=1).astype(np.float64)
                base = float(rng.integers(100, 1000))
                for i, le in enumerate(LE):
                    add(
                        "request_duration_seconds_bucket",
                        tgt,
                        {"handler": handler, "le": le},
                        _counter(base * (i + 1), cumulative[:, i], restarts),
                        present,
                        stale,
                    )
                add(
                    "request_duration_seconds_count",
                    tgt,
                    {"handler": handler},
                    _counter(base * len(LE), cumulative[:, -1], restarts),
                    present,
                    stale,
                )
                sums = np.round(n * math.exp(mu) * rng.uniform(0.8, 1.25, SCRAPES) * 1024) / 1024
                add(
                    "request_duration_seconds_sum",
                    tgt,
                    {"handler": handler},
                    _counter(base, sums, restarts),
                    present,
                    stale,
                )
    return ds


# --- remote-write encoding ----------------------------------------------------------------------


def write_requests(ds: Dataset, window_scrapes: int = 20) -> list[bytes]:
    """Snappy-compressed WriteRequests, one per `window_scrapes` slots, in time order.

    Sent in this order, no sample is older than (newest sample sent so far - window), which both
    Prometheus 2.42 (rejects samples older than head max time - 1 h) and Vigil (10 min
    out-of-order window) accept.
    """
    out = []
    for w0 in range(0, SCRAPES + 1, window_scrapes):
        lo = ds.t0_ms + w0 * INTERVAL_MS
        hi = lo + window_scrapes * INTERVAL_MS
        series, samples = [], []
        for s in ds.series:
            sel = (s.timestamps >= lo) & (s.timestamps < hi)
            if sel.any():
                series.append(sorted(s.labels.items()))
                # tolist() keeps the stale-marker NaN's bits, and protobuf writes doubles bit for bit.
                samples.append(list(zip(s.timestamps[sel].tolist(), s.values[sel].tolist(), strict=True)))
        if series:
            # The shipper's encoder; Prometheus decoding the same bytes checks it independently.
            out.append(bytes(cramjam.snappy.compress_raw(encode_write_request(series, samples))))
    return out


# --- the corpus ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    expr: str
    instant: bool = True
    range: bool = True  # False for expressions that return a range vector or a string
    ordered: bool = False  # instant results must come in the same order (sort, sort_desc)
    distinct: str | None = None  # inner expression whose values must have no ties (topk/bottomk/sort)
    empty_ok: bool = False  # may be empty at every evaluation


def q(expr: str, **kw: Any) -> Query:
    return Query(expr, **kw)


_RATE = "rate(http_requests_total[5m])"

QUERIES: list[Query] = [
    # --- selectors: every matcher type, __name__ matchers, empty-value matchers
    q("up"),
    q('up{job="api"}'),
    q('up{job!="api"}'),
    q('http_requests_total{code=~"5.."}'),
    q('http_requests_total{handler!~"/api/.*"}'),
    q('{__name__=~"process_.+", job="db"}'),
    q('temperature_celsius{sensor="ambient", instance=~"api-.*|db-0.*"}'),
    q('http_requests_total{code=~"200|503", method="GET"}'),
    q(r'build_info{version=~"1\\.5.*"}'),
    q('{job="batch"}'),
    q('temperature_celsius{sensor!=""}'),
    q('up{sensor=""}'),
    q('{__name__="up", instance=~".+:9187"}'),
    q('{__name__!~"http_.*|request_.*|process_.*", job=~"api|db"}'),
    q("legacy_metric"),
    q('http_requests_total{code="503"}'),
    q("http_requests_total[2m]", range=False),
    q('temperature_celsius{instance="db-1:9187"}[5m]', range=False),
    q("batch_jobs_processed_total[3m]", range=False),
    q('{__name__=~"queue_.*"}[1m]', range=False),
    # --- offset and @
    q("up offset 5m"),
    q("temperature_celsius offset 10m"),
    q("rate(http_requests_total[5m] offset 15m)"),
    q("temperature_celsius @ $T_MID"),
    q("rate(http_requests_total[5m] @ $T_MID)"),
    q("sum(rate(process_cpu_seconds_total[5m] @ end()))"),
    q("temperature_celsius @ start()"),
    q("temperature_celsius @ $T_LATE offset 5m"),
    q("max_over_time(temperature_celsius[10m] @ $T_MID offset 2m)"),
    q("temperature_celsius offset -5m"),
    q("batch_jobs_processed_total @ $T_EARLY"),
    q("account_balance_dollars[2m] @ $T_MID", range=False),
    # --- counters and derivatives
    q(_RATE),
    q("rate(http_requests_total[1m])"),
    q("irate(http_requests_total[5m])"),
    q("increase(http_requests_total[10m])"),
    q("increase(process_cpu_seconds_total[15m])"),
    q("rate(process_cpu_seconds_total[2m])"),
    q("resets(process_cpu_seconds_total[30m])"),
    q("resets(http_requests_total[1h])"),
    q("changes(queue_depth[10m])"),
    q("changes(up[30m])"),
    q("delta(temperature_celsius[10m])"),
    q("idelta(temperature_celsius[5m])"),
    q("deriv(temperature_celsius[10m])"),
    q("predict_linear(temperature_celsius[15m], 3600)"),
    q("deriv(process_resident_memory_bytes[5m])"),
    q("predict_linear(account_balance_dollars[10m], 600)"),
    q("rate(batch_jobs_processed_total[5m])"),
    q("idelta(queue_depth[2m])"),
    q('rate(http_requests_total{code="503"}[5m])'),
    q("irate(process_cpu_seconds_total[1m])"),
    q("delta(queue_depth[15m])"),
    # --- *_over_time
    q("avg_over_time(temperature_celsius[10m])"),
    q("min_over_time(account_balance_dollars[15m])"),
    q("max_over_time(account_balance_dollars[15m])"),
    q("sum_over_time(queue_depth[5m])"),
    q("count_over_time(up[10m])"),
    q('count_over_time(temperature_celsius{instance="db-1:9187"}[10m])'),
    q("quantile_over_time(0.9, temperature_celsius[15m])"),
    q("quantile_over_time(0, account_balance_dollars[5m])"),
    q("quantile_over_time(0.5, queue_depth[10m])"),
    q("quantile_over_time(1.5, temperature_celsius[5m])"),
    q("quantile_over_time(-1, temperature_celsius[5m])"),
    q("stddev_over_time(temperature_celsius[10m])"),
    q("stdvar_over_time(account_balance_dollars[10m])"),
    q("last_over_time(legacy_metric[10m])"),
    q("last_over_time(batch_last_success_timestamp_seconds[15m])"),
    q("present_over_time(batch_jobs_processed_total[10m])"),
    q('present_over_time(temperature_celsius{instance="db-1:9187"}[2m])'),
    q("absent_over_time(batch_jobs_processed_total[5m])", empty_ok=True),
    q('absent_over_time(temperature_celsius{instance="db-1:9187", sensor="cpu"}[3m])'),
    q('absent_over_time(nonexistent_metric{job="x", env=~"p.*"}[5m])'),
    q("avg_over_time(http_requests_total[30m])"),
    q("sum_over_time(temperature_celsius[1h])"),
    q('count_over_time({__name__=~"up|build_info"}[2h])'),
    # --- absent
    q("absent(up)", empty_ok=True),
    q("absent(nonexistent)"),
    q('absent(nonexistent{job="api", instance=~"x.*"})'),
    q("absent(batch_jobs_processed_total)"),
    q("absent(sum(nonexistent))"),
    q('absent(legacy_metric{job="db"})'),
    # --- aggregations
    q(f"sum({_RATE})"),
    q("sum by (job) (up)"),
    q(f"sum without (code, method) ({_RATE})"),
    q("avg by (sensor) (temperature_celsius)"),
    q("min by (job) (temperature_celsius)"),
    q("max without (instance) (temperature_celsius)"),
    q("count by (job) (up)"),
    q('count({__name__=~".+"})'),
    q('count by (__name__) ({__name__=~".+"})'),
    q("group by (job, instance) (up)"),
    q("group(temperature_celsius)"),
    q("stddev by (sensor) (temperature_celsius)"),
    q("stdvar(account_balance_dollars)"),
    q("stddev without (code) (rate(http_requests_total[10m]))"),
    q("quantile by (sensor) (0.75, temperature_celsius)"),
    q(f"quantile(0.5, {_RATE})"),
    q("quantile(1.2, account_balance_dollars)"),
    q('count_values("depth", queue_depth)'),
    q('count_values by (job) ("value", up)'),
    q('count_values("temp", round(temperature_celsius))'),
    q(f"topk(3, {_RATE})", distinct=_RATE),
    q("bottomk(2, temperature_celsius)", distinct="temperature_celsius"),
    q("topk by (sensor) (1, temperature_celsius)", distinct="temperature_celsius"),
    q("bottomk by (job) (1, process_resident_memory_bytes)", distinct="process_resident_memory_bytes"),
    q("topk(5, process_cpu_seconds_total)", distinct="process_cpu_seconds_total"),
    q("bottomk(3, account_balance_dollars)", distinct="account_balance_dollars"),
    q("sum by (le) (rate(request_duration_seconds_bucket[5m]))"),
    q("avg without (handler) (rate(request_duration_seconds_sum[5m]))"),
    q("max(batch_last_success_timestamp_seconds)"),
    q("sum(queue_depth) by (queue)"),
    q("count without (sensor) (temperature_celsius)"),
    q("group without (le) (request_duration_seconds_bucket)"),
    q("min(up)"),
    q("avg(account_balance_dollars)"),
    # --- binary operators: arithmetic, comparison (filter and bool), scalar/vector, precedence
    q("temperature_celsius + 273.15"),
    q("temperature_celsius - temperature_celsius offset 5m"),
    q("temperature_celsius * 1.8 + 32"),
    q("account_balance_dollars / 3"),
    q("queue_depth % 3"),
    q("account_balance_dollars % 0.75"),
    q("temperature_celsius ^ 2"),
    q("2 ^ queue_depth"),
    q("queue_depth / 0"),
    q("-account_balance_dollars"),
    q("temperature_celsius > 20"),
    q("temperature_celsius < bool 0"),
    q("queue_depth == 0"),
    q("queue_depth != bool 0"),
    q("temperature_celsius <= -3"),
    q("account_balance_dollars >= bool 0"),
    q("1 < bool 2"),
    q("2 * 3 + 4 / 5 - 7 % 2 ^ 2"),
    q("-2 ^ 2"),
    q("2 ^ 3 ^ 2"),
    q("(up + 1) * 2"),
    q("(temperature_celsius atan2 10) * 1"),  # `* 1` drops the name: see EXCLUDED
    q("10 - temperature_celsius"),
    q("0.5 > bool account_balance_dollars"),
    q("42"),
    q("-1.5e3"),
    q("0x1F"),
    q("NaN"),
    q("1e308 * 10"),
    q('"hello"', range=False),
    # value text: Prometheus writes %e below 1e-6 and from 1e21 on, and keeps the sign of zero
    q("vector(1e21) + vector(1.5e-7)"),
    q("vector(123456789012345678) / 3"),
    q("vector(0.000001)"),
    q("-vector(0)"),
    q("-0.0"),
    # --- vector matching
    q(f"{_RATE} / on(instance) group_left sum by (instance) ({_RATE})"),
    q(
        'sum by (instance, job) (rate(http_requests_total{code=~"5.."}[5m])) '
        f"/ sum by (instance, job) ({_RATE})"
    ),
    q(f"{_RATE} * on(instance) group_left(version) build_info"),
    q("build_info * on(instance) group_right(version) http_requests_total"),
    q("temperature_celsius - ignoring(sensor) group_left avg without (sensor) (temperature_celsius)"),
    q("temperature_celsius > on(instance) group_left avg by (instance) (temperature_celsius)"),
    q('http_requests_total{code="200"} - ignoring(code) http_requests_total{code="500"}'),
    q("up + ignoring(instance) group_left sum by (job) (up)"),
    q("vector(1) + on() sum(up)"),
    q("temperature_celsius * on(instance) group_left() (up == 1)"),
    q("process_resident_memory_bytes / on(job, instance) process_cpu_seconds_total"),
    q("rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])"),
    q("build_info * on(instance, job) group_right() temperature_celsius"),
    # --- set operators
    q("up and on(instance) (temperature_celsius > 50)"),
    q("up or temperature_celsius"),
    q("temperature_celsius unless on(instance) (up == 0)"),
    q('http_requests_total{code="200"} and ignoring(code) http_requests_total{code="500"}'),
    q('up{job="api"} or vector(0)'),
    q("(temperature_celsius > 20) or (account_balance_dollars < 0)"),
    q('queue_depth unless queue_depth{queue="low"}'),
    q("process_cpu_seconds_total and up"),
    q("legacy_metric or on(job) up"),
    # --- histograms
    q("histogram_quantile(0.9, rate(request_duration_seconds_bucket[5m]))"),
    q("histogram_quantile(0.5, sum by (le) (rate(request_duration_seconds_bucket[5m])))"),
    q("histogram_quantile(0.99, sum by (le, handler) (rate(request_duration_seconds_bucket[10m])))"),
    q("histogram_quantile(0, sum by (le) (rate(request_duration_seconds_bucket[5m])))"),
    q("histogram_quantile(1, sum by (le, instance) (rate(request_duration_seconds_bucket[5m])))"),
    q("histogram_quantile(1.5, sum by (le) (rate(request_duration_seconds_bucket[5m])))"),
    q("histogram_quantile(0.9, sum by (le) (increase(request_duration_seconds_bucket[1h])))"),
    q("histogram_quantile(0.75, request_duration_seconds_bucket)"),
    q("sum by (handler) (rate(request_duration_seconds_count[5m]))"),
    # --- label functions
    q('label_replace(up, "host", "$1", "instance", "(.*):.*")'),
    q(r'label_replace(up, "port", "$2", "instance", "([^:]+):(\\d+)")'),
    q('label_replace(temperature_celsius, "sensor", "", "sensor", "cpu")'),
    q('label_replace(up, "job", "$1-x", "job", "(db|batch)")'),
    q('label_replace(up, "nomatch", "y", "instance", "zzz")'),
    q('label_join(up, "id", "/", "job", "instance")'),
    q('label_join(temperature_celsius, "all", ",", "sensor", "instance", "job")'),
    q('label_join(up, "job", "", "instance")'),
    q('label_replace(rate(http_requests_total[5m]), "class", "${1}xx", "code", "(.).*")'),
    # --- math functions
    q("abs(account_balance_dollars)"),
    q("ceil(temperature_celsius)"),
    q("floor(temperature_celsius)"),
    q("round(temperature_celsius)"),
    q("round(account_balance_dollars, 0.5)"),
    q("round(temperature_celsius, 5)"),
    q("sqrt(account_balance_dollars)"),
    q("exp(account_balance_dollars / 10)"),
    q("ln(temperature_celsius)"),
    q("log2(process_resident_memory_bytes)"),
    q("log10(queue_depth)"),
    q("sgn(account_balance_dollars)"),
    q("clamp(temperature_celsius, -5, 40)"),
    q("clamp_min(account_balance_dollars, 0)"),
    q("clamp_max(temperature_celsius, 10)"),
    q("clamp(temperature_celsius, 10, 5)", empty_ok=True),
    q("sin(temperature_celsius)"),
    q("cos(account_balance_dollars)"),
    q("tan(temperature_celsius / 100)"),
    q("asin(clamp(account_balance_dollars / 40, -1, 1))"),
    q("acos(clamp(temperature_celsius / 100, -1, 1))"),
    q("atan(account_balance_dollars)"),
    q("sinh(account_balance_dollars / 20)"),
    q("cosh(temperature_celsius / 50)"),
    q("tanh(account_balance_dollars)"),
    q("asinh(temperature_celsius)"),
    q("acosh(temperature_celsius)"),
    q("atanh(account_balance_dollars / 50)"),
    q("deg(account_balance_dollars)"),
    q("rad(temperature_celsius)"),
    q("pi()"),
    # --- time, timestamp, vector, scalar
    q("time()"),
    q("timestamp(up)"),
    q("timestamp(temperature_celsius offset 5m)"),
    q("timestamp(vector(1))"),
    q("vector(time())"),
    q("vector(3.5)"),
    q('scalar(up{instance="api-0:8080"})'),
    q("scalar(up)"),
    q("time() - batch_last_success_timestamp_seconds"),
    q("scalar(sum(up)) * up"),
    q("max by (instance) (time() - timestamp(up))"),
    # --- sort (the order is defined for instant queries; range results are sorted by labels)
    q("sort(temperature_celsius)", ordered=True, distinct="temperature_celsius"),
    q(f"sort_desc({_RATE})", ordered=True, distinct=_RATE),
    q("sort(process_resident_memory_bytes)", ordered=True, distinct="process_resident_memory_bytes"),
    # --- date functions
    q("hour()"),
    q("minute()"),
    q("month()"),
    q("year()"),
    q("day_of_month()"),
    q("day_of_week()"),
    q("day_of_year()"),
    q("days_in_month()"),
    q("hour(batch_last_success_timestamp_seconds)"),
    q("day_of_week(batch_last_success_timestamp_seconds)"),
    q("minute(timestamp(up))"),
    q("days_in_month(vector(1709251200))"),
    q("year(vector(0))"),
    q("month(vector(4102444800))"),
    q("day_of_year(vector(1735603200))"),
    # --- subqueries (steps are multiples of 5 s; see the module docstring)
    q("max_over_time(rate(http_requests_total[5m])[30m:1m])"),
    q("min_over_time(temperature_celsius[20m:15s])"),
    q("avg_over_time(sum by (job) (up)[10m:30s])"),
    q("rate(process_cpu_seconds_total[5m:20s])"),
    q("max_over_time(deriv(temperature_celsius[5m])[15m:5s])"),
    q("quantile_over_time(0.5, rate(http_requests_total[2m])[10m:])"),
    q("count_over_time((temperature_celsius > 50)[30m:1m])"),
    q("sum_over_time(up[1h:5m] offset 10m)"),
    q("max_over_time((time() - batch_last_success_timestamp_seconds)[10m:1m])"),
    q("last_over_time(rate(http_requests_total[5m])[10m:1m] @ $T_MID)"),
    q("temperature_celsius[10m:1m]", range=False),
    q("deriv(sum(process_resident_memory_bytes)[10m:30s])"),
    q("changes(sum(queue_depth)[30m:1m])"),
    # Nested: the inner subquery runs at the outer one's 5m steps, so its range (4m30s) must not
    # be a multiple of its own step, or its left boundary would fall on one of its steps.
    q("max_over_time(max_over_time(temperature_celsius[4m30s:1m])[20m:5m])"),
    q("absent_over_time(batch_jobs_processed_total[5m:1m])", empty_ok=True),
    q("present_over_time(up[10m:10s])"),
    # --- dashboard- and alert-shaped
    q("100 * (1 - avg by (instance) (rate(process_cpu_seconds_total[5m])))"),
    q("up == 0"),
    q("count by (job) (up == 1)"),
    q(
        'sum by (job) (rate(http_requests_total{code=~"5.."}[5m])) '
        "/ sum by (job) (rate(http_requests_total[5m])) > 0.001"
    ),
    q("avg_over_time(up[10m]) < 0.95"),
    q("predict_linear(process_resident_memory_bytes[30m], 4 * 3600) > 5e8"),
    q("increase(process_cpu_seconds_total[1h]) < 1000"),
    q("changes(process_resident_memory_bytes[15m]) > 30"),
]

# Left out because Prometheus 2.x (Debian ships 2.42) and 3.x (Vigil's reference) answer them
# differently, or because their answer is not uniquely defined.  Kept here as documentation.
EXCLUDED: list[tuple[str, str]] = [
    # 3.0 made range selectors left-open: a sample exactly at t - range is dropped.  Evaluated at
    # t = some sample's timestamp + 1m, 2.x counts one more sample than 3.x.
    ("count_over_time(up[1m]) @ <a sample timestamp + 60 s>", "range selector left-open in 3.0"),
    # The lookback window is left-open too: a sample exactly 5m before t is no longer seen.
    ("up @ <a sample timestamp + 300 s>", "lookback window left-open in 3.0"),
    # Subquery steps on the left boundary: with t a multiple of 1m, 2.x returns 11 points, 3.x 10.
    ("count_over_time(up[10m:1m]) at a whole minute", "subquery range left-open in 3.0"),
    # The same inside a nested subquery, whatever the evaluation time: the inner subquery is
    # evaluated at the outer one's steps (multiples of 5m), its range starts on one of its 1m steps.
    ("max_over_time(max_over_time(temperature_celsius[5m:1m])[20m:5m])", "subquery range left-open in 3.0"),
    (
        "holt_winters(temperature_celsius[10m], 0.5, 0.5)",
        "renamed double_exponential_smoothing (experimental, behind a feature flag) in 3.0",
    ),
    ("double_exponential_smoothing(temperature_celsius[10m], 0.5, 0.5)", "3.x name; unknown to 2.42"),
    # In 3.0 regex `.` also matches a newline: 2.x leaves dst unset, 3.x copies "a\nb".  (No label
    # value in the data contains a newline, so the corpus' regex matchers are safe.)
    (
        'label_replace(label_replace(vector(1), "src", "a\\nb", "", ""), "dst", "$1", "src", "(.*)")',
        "regex . matches newline since 3.0",
    ),
    # 3.x-only syntax and functions (parse errors on 2.42).
    ('{"up", job="api"}', "UTF-8 quoted metric names: 3.0"),
    ('sort_by_label(up, "instance")', "3.x experimental function"),
    ("limitk(2, up)", "3.x experimental aggregation"),
    ("limit_ratio(0.5, up)", "3.x experimental aggregation"),
    ("mad_over_time(temperature_celsius[10m])", "added in 2.49 (experimental)"),
    ("first_over_time(temperature_celsius[10m])", "added in 3.7"),
    ("ts_of_max_over_time(temperature_celsius[10m])", "3.x experimental function"),
    ("temperature_celsius[5m * 2]", "duration expressions: 3.x experimental"),
    ('info(up, {version=~".+"})', "3.x experimental function"),
    # Order or selection not defined: ties.
    ("sort(queue_depth)", "integer gauge with ties: the order among equal values is undefined"),
    ("topk(1, queue_depth)", "ties at the cut: which series is kept is undefined"),
    ("topk(2, up)", "all values 1: the selection is undefined"),
    # Summation of values that cancel in floating point: 3.x sums with Kahan compensation (sum()
    # since 2.54, avg since 2.55), 2.42 naively: 1e100 + 1 - 1e100 is 1 in 3.x and 0 in 2.42.
    (
        'sum(label_replace(vector(1e100), "i", "a", "", "") or label_replace(vector(1), "i", "b", "", "") '
        'or label_replace(vector(-1e100), "i", "c", "", ""))',
        "Kahan summation in sum/avg since 2.54/2.55",
    ),
    # 2.50 (#13725) clamps the extrapolation towards the range start to half a scrape interval
    # before the counter's zero point, 2.42 after: for a counter that appears inside the range
    # with a small value (durationToZero between 0.5 and 1.1 scrape intervals) the rates differ.
    # The data avoids it: every counter starts at least 2 increments above zero.
    (
        "rate(new_counter_from_zero[5m]) within 5 min of its first sample",
        "rate/increase start extrapolation changed in 2.50",
    ),
    # 2.50 (#13559) fixed predict_linear over an `@`-pinned range in range queries (2.42 shrinks
    # the range at every step, issue #11708).
    (
        "predict_linear(temperature_celsius[15m] @ $T_MID, 600) as a range query",
        "2.42 bug with @ in predict_linear, fixed in 2.50",
    ),
    # 2.47 made `atan2` drop the metric name like the arithmetic operators; 2.42 keeps it.
    ("temperature_celsius atan2 10", "atan2 keeps __name__ in 2.42, drops it since 2.47"),
    # Numbers and durations are interchangeable since 3.0 (experimental from 2.51).
    ("time() - batch_last_success_timestamp_seconds > 10m", "duration as a number: 3.0"),
    ("rate(http_requests_total[300])", "number as a range duration: 3.0"),
    ("1_000 * up", "underscores in number literals: since 2.54"),
]


# --- results and comparison ---------------------------------------------------------------------


@dataclass
class Result:
    """A parsed Prometheus API answer: type, and per label set its (timestamp ms, value text) points."""

    type: str
    series: dict[frozenset[tuple[str, str]], list[tuple[int, str]]]
    order: list[frozenset[tuple[str, str]]]  # as returned (vector only)
    scalar: tuple[int, str] | None = None  # scalar/string: (timestamp ms, value text)


_SPECIAL = {"NaN", "+Inf", "-Inf"}


def _ts(t: Any) -> int:
    if not isinstance(t, int | float) or isinstance(t, bool):
        raise ValueError(f"timestamp {t!r} is not a JSON number")
    return round(float(t) * 1000)


def _value(v: Any) -> str:
    """Check a sample value as Prometheus writes it: a string, "NaN"/"+Inf"/"-Inf" when not finite."""
    if not isinstance(v, str):
        raise ValueError(f"value {v!r} is not a JSON string")
    f = float(v)
    if not math.isfinite(f) and v not in _SPECIAL:
        raise ValueError(f"non-finite value written as {v!r}, want one of {sorted(_SPECIAL)}")
    return v


def parse_result(body: dict[str, Any]) -> Result:
    """Parse and check the `data` of a successful query answer; raises ValueError on malformed data."""
    data = body["data"]
    rtype, raw = data["resultType"], data["result"]
    if rtype == "scalar":
        return Result(rtype, {}, [], (_ts(raw[0]), _value(raw[1])))
    if rtype == "string":
        return Result(rtype, {}, [], (_ts(raw[0]), str(raw[1])))
    if rtype not in ("vector", "matrix"):
        raise ValueError(f"unknown resultType {rtype!r}")
    series: dict[frozenset[tuple[str, str]], list[tuple[int, str]]] = {}
    order = []
    for s in raw:
        key = frozenset(s["metric"].items())
        if key in series:
            raise ValueError(f"duplicate label set {dict(key)}")
        pts = [s["value"]] if rtype == "vector" else s["values"]
        series[key] = [(_ts(t), _value(v)) for t, v in pts]
        order.append(key)
    return Result(rtype, series, order)


def values_equal(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def _value_diff(want: str, got: str) -> str | None:
    """None if equal within tolerance and, when numerically identical, also written identically."""
    w, g = float(want), float(got)
    if not values_equal(w, g):
        return f"{got}, want {want}"
    if (w == g or math.isnan(w)) and want != got:
        return f"written as {got!r}, Prometheus writes {want!r}"
    return None


def _fmt(key: frozenset[tuple[str, str]]) -> str:
    d = dict(key)
    name = d.pop("__name__", "")
    return name + "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(d.items())) + "}"


def compare(want: Result, got: Result, ordered: bool = False) -> str | None:
    """None if `got` matches `want`, else a short description of the first differences."""
    if want.type != got.type:
        return f"result type {got.type!r}, want {want.type!r}"
    if want.scalar is not None or got.scalar is not None:
        assert want.scalar is not None and got.scalar is not None
        (wt, wv), (gt, gv) = want.scalar, got.scalar
        if wt != gt:
            return f"timestamp {gt}, want {wt}"
        if want.type == "string":
            return None if wv == gv else f"value {gv!r}, want {wv!r}"
        diff = _value_diff(wv, gv)
        return f"value {diff}" if diff else None
    problems = []
    missing = want.series.keys() - got.series.keys()
    extra = got.series.keys() - want.series.keys()
    problems += [f"missing series {_fmt(k)}" for k in sorted(missing, key=_fmt)[:3]]
    problems += [f"unexpected series {_fmt(k)}" for k in sorted(extra, key=_fmt)[:3]]
    if len(missing) + len(extra) > 6:
        problems.append(f"({len(missing)} missing, {len(extra)} unexpected in all)")
    for key in sorted(want.series.keys() & got.series.keys(), key=_fmt):
        w, g = want.series[key], got.series[key]
        w_ts, g_ts = [t for t, _ in w], [t for t, _ in g]
        if w_ts != g_ts:
            only_w, only_g = sorted(set(w_ts) - set(g_ts)), sorted(set(g_ts) - set(w_ts))
            problems.append(
                f"{_fmt(key)}: timestamps differ ({len(g_ts)} points, want {len(w_ts)}; "
                f"missing {only_w[:3]}, unexpected {only_g[:3]})"
            )
        else:
            bad = [(t, d) for (t, wv), (_, gv) in zip(w, g, strict=True) if (d := _value_diff(wv, gv))]
            if bad:
                problems.append(f"{_fmt(key)}: {len(bad)} values differ, first at {bad[0][0]}: {bad[0][1]}")
        if len(problems) >= 6:
            break
    if not problems and ordered and want.order != got.order:
        problems.append(f"order {[_fmt(k) for k in got.order]}, want {[_fmt(k) for k in want.order]}")
    return "; ".join(problems) if problems else None


def ties(res: Result) -> list[tuple[int, float]]:
    """(timestamp, value) pairs shared by more than one series: where topk/sort would be undefined."""
    seen: dict[tuple[int, float], int] = {}
    for pts in res.series.values():
        for t, v in pts:
            seen[(t, float(v))] = seen.get((t, float(v)), 0) + 1
    return sorted(k for k, n in seen.items() if n > 1)
