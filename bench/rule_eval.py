"""Rule evaluation cost: Vigil and Debian's Prometheus evaluating the same rule file on the same data.

The rule file (`rule_pack`, deterministic) has `--groups` groups of `--rules` rules shaped like the
rule packs people run over node_exporter: recording rules (CPU busy rate per instance, network and
disk rates, memory ratios, `avg_over_time`/`max_over_time`/`quantile_over_time`, `histogram_quantile`
over bucket rates) and alerting rules with `for` (filesystem almost full, `predict_linear` over an
hour, `absent`, `up == 0`, load, latency, error increases).  `for` is either absent (the alert fires
at once) or 10 m and longer (it stays pending), so alert states do not depend on exactly when the
measurement starts.  Annotations are plain text.

The data is the query benchmark's workload (`bench.workload.generate(histograms=True)`: 100
node_exporter-shaped series and a 14-series classic histogram per host, 240 scrapes 15 s apart =
one hour) plus an `up` series per host (one host is down for the last 10 minutes), sent to each
server through remote write in time order.  The hour ends `--ahead` (5 min) after the start, not
at it: Prometheus evaluates at its wall clock, minutes after the data was generated and loaded, and
an hour that ended at the start would leave its short rate windows empty by then (queries only
look back, so samples ahead of an evaluation take no part in it).

Prometheus: loaded first; then its config gets `rule_files` (evaluation interval `--interval`)
and it is reloaded (SIGHUP), so no rule runs while data arrives.  `/metrics` is polled until every
group has `--warmup + --evals` iterations (`prometheus_rule_group_iterations_total`); after each
iteration `prometheus_rule_group_last_duration_seconds{rule_group="file;name"}` is recorded.
The evaluation slots it used are read back as `timestamp()` of each group's first recording rule.

Vigil, `--mode in-process` (the default while `vigil server` does not load rule files): the data
goes through a real `vigil server` (remote write), the server is stopped, and its data directory
is opened as a `vigil.tsdb.db.DB` (the server's storage options).  Every group of the same file
(`vigil.rules.group.load_groups`) is then evaluated with `Group.eval` through the real engine
(`engine_query`) and `StorageAppender`, at the same slots Prometheus used (or, with `--only
vigil`, at slots just after the data), in the same order of iterations; the duration is the
group's own measurement (`Group.last_duration_s`).  `--mode server`: the server itself loads the
file (`SERVER_RULES_CONFIG`) and is measured like Prometheus, from its `/metrics`.

Per group the median of the measured iterations (the first `--warmup` are dropped); "median group"
is the median over groups, "total" the sum over groups (one evaluation of the whole file).  The
ratio is Vigil's total over Prometheus'.  Wall times on a shared 2-core machine include waiting
for the CPU (and Prometheus runs its groups side by side, Vigil here one after the other), so each
side also gets "cpu": the CPU time of one evaluation of all groups, per measured iteration (for a
server, its whole process between the end of the warm-up and the last iteration, to the 0.25 s of
the polling; in-process, `time.process_time()` around the groups).

Equal work is checked, not assumed: after the last iteration both sides are asked, at each
group's last evaluation, how many series every recording rule of the group wrote (`count by
(__name__)`) and how many of its alerts are in each state (`count by (alertname, alertstate)
(ALERTS{...})`), and which rules failed; the line says whether all of it agrees.

    rule_eval vigil(in-process): 1000 rules/10 groups over 11,500 series: median group 12.3 ms, total
    123 ms (cpu 120 ms); prometheus: median group 4.5 ms, total 45 ms (cpu 50 ms); ratio 2.73x (cpu
    2.40x); same work: 37,000 recorded series, 100 firing/250 pending alerts, 0 failed rules

Usage:
    python -m bench.rule_eval                                  # full size
    python -m bench.rule_eval --hosts 5 --scrapes 40 --groups 2 --rules 20 --interval 2
    python -m bench.rule_eval --profile                        # + cProfile of one group evaluation
    python -m bench.rule_eval --write-rules rules.yml          # only write the rule file
    python -m bench.rule_eval --mode server --url URL          # a running, empty Vigil

Exit code 1 if a target failed, a rule failed, or the two sides did not do the same work.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import signal
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx
import numpy as np
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bench.ingest import WRITE_PATH, send_all
from bench.peers import Peer, PeerError, ProcessTree, install_sigterm_handler, running, stop_process
from bench.workload import Workload, encode_streams, generate

MODES = ("in-process", "server")
TARGETS = ("vigil", "prometheus")
RECORD_PREFIX = "bench:"
# How `vigil server` is told to load the rule file in `--mode server` (the server's rule manager).
SERVER_RULES_CONFIG = (
    "rule_files:\n  - {path}\nrules:\n  evaluation_interval: {interval}ms\n  builtin: {{enabled: false}}\n"
)

# An instant query answer: (labels, value) per sample.
Vector = list[tuple[dict[str, str], float]]
QueryFn = Callable[[str, int], Vector]


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


# --- the rule file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleSpec:
    kind: str  # "record" or "alert"
    name: str
    expr: str
    for_s: int = 0


_WINDOWS = ("1m", "2m", "5m", "10m", "15m")
_QUANTILES = ("0.5", "0.9", "0.95", "0.99")
_DIRECTIONS = ("receive", "transmit")
_DISK = (
    "io_time_seconds_total",
    "read_bytes_total",
    "written_bytes_total",
    "reads_completed_total",
    "writes_completed_total",
)
_MEMORY = ("Active", "Cached", "Buffers", "MemFree", "Slab")
_FOR_S = (0, 600, 1800, 0, 3600)  # no `for` (fires at once) or long enough to stay pending


def _record(v: int) -> tuple[str, str]:
    """(what, expr) of recording template `v % 12`, its parameters from `v // 12`."""
    t, p = v % 12, v // 12
    w, q = _WINDOWS[p % len(_WINDOWS)], _QUANTILES[p % len(_QUANTILES)]
    d, disk, mem = _DIRECTIONS[p % 2], _DISK[p % len(_DISK)], _MEMORY[p % len(_MEMORY)]
    return [
        ("cpu_busy", f'sum by (instance) (rate(node_cpu_seconds_total{{mode!="idle"}}[{w}]))'),
        ("cpu_mode", f"avg by (instance, mode) (rate(node_cpu_seconds_total[{w}]))"),
        ("load1_avg", f"avg_over_time(node_load1[{w}])"),
        (
            "latency_quantile",
            f"histogram_quantile({q}, sum by (instance, le) "
            f"(rate(http_request_duration_seconds_bucket[{w}])))",
        ),
        ("net_bytes", f'sum by (instance) (rate(node_network_{d}_bytes_total{{device!="lo"}}[{w}]))'),
        ("memory_used", "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes"),
        ("disk_rate", f"rate(node_disk_{disk}[{w}])"),
        ("memory_max", f"max_over_time(node_memory_{mem}_bytes[{w}])"),
        ("requests", f"sum by (job) (rate(http_request_duration_seconds_count[{w}]))"),
        (
            "latency_mean",
            f"rate(http_request_duration_seconds_sum[{w}]) / rate(http_request_duration_seconds_count[{w}])",
        ),
        ("fs_used", "1 - node_filesystem_avail_bytes / node_filesystem_size_bytes"),
        ("load5_q", f"quantile_over_time({q}, node_load5[{w}])"),
    ][t]


def _alert(v: int) -> tuple[str, str]:
    """(what, expr) of alerting template `v % 8`, its parameters from `v // 8`."""
    t, p = v % 8, v // 8
    w = _WINDOWS[p % len(_WINDOWS)]
    return [
        (
            "FilesystemAlmostFull",
            f"node_filesystem_avail_bytes / node_filesystem_size_bytes < {(0.1, 0.2, 0.3, 0.4)[p % 4]}",
        ),
        (
            "FilesystemFillsUp",
            f"predict_linear(node_filesystem_avail_bytes[{('1h', '30m')[p % 2]}], "
            f"{(4, 24)[p % 2]} * 3600) < 0",
        ),
        ("TargetAbsent", f'absent(up{{job="{("node", "gone")[p % 2]}"}})'),
        ("TargetDown", "up == 0"),
        ("HighLoad", f"node_load5 > {(1, 2, 3)[p % 3]}"),
        ("HighCpu", f'avg by (instance) (rate(node_cpu_seconds_total{{mode!="idle"}}[{w}])) > 0.02'),
        (
            "SlowRequests",
            f"histogram_quantile(0.99, sum by (instance, le) "
            f"(rate(http_request_duration_seconds_bucket[{w}]))) > 0.1",
        ),
        ("NetworkDrops", f"increase(node_network_receive_drop_total[{w}]) > 0"),
    ][t]


def rule_pack(groups: int = 10, per_group: int = 100) -> list[tuple[str, list[RuleSpec]]]:
    """`groups` groups of `per_group` rules: 3 recording rules then 2 alerting rules, repeated,
    each template with varying windows, quantiles and thresholds; names are unique."""
    out = []
    n_rec = n_alert = 0
    for g in range(groups):
        rules = []
        for i in range(per_group):
            if i % 5 < 3:
                what, expr = _record(n_rec)
                rules.append(RuleSpec("record", f"{RECORD_PREFIX}g{g:02d}r{i:03d}:{what}", expr))
                n_rec += 1
            else:
                what, expr = _alert(n_alert)
                rules.append(
                    RuleSpec("alert", f"{what}G{g:02d}R{i:03d}", expr, _FOR_S[n_alert % len(_FOR_S)])
                )
                n_alert += 1
        out.append((f"bench-{g:02d}", rules))
    return out


def rule_file_text(pack: list[tuple[str, list[RuleSpec]]]) -> str:
    """The pack as a Prometheus rule file (groups take the global evaluation interval)."""
    groups = []
    for name, rules in pack:
        items: list[dict[str, object]] = []
        for r in rules:
            if r.kind == "record":
                items.append({"record": r.name, "expr": r.expr})
                continue
            item: dict[str, object] = {"alert": r.name, "expr": r.expr}
            if r.for_s:
                item["for"] = f"{r.for_s // 60}m"
            item["labels"] = {"severity": "warning"}
            item["annotations"] = {"summary": f"{r.name} from the rule benchmark"}
            items.append(item)
        groups.append({"name": name, "rules": items})
    return yaml.safe_dump({"groups": groups}, sort_keys=False, width=200)


# --- the data -----------------------------------------------------------------------------------


def with_up(wl: Workload, down_host: int = 3, down_scrapes: int = 40) -> Workload:
    """`wl` plus `up{instance, job="node"}` per host: 1, but 0 on `down_host` for its last scrapes."""
    hosts, k = wl.timestamps.shape
    up = np.ones((hosts, k))
    if 0 <= down_host < hosts:
        up[down_host, max(0, k - down_scrapes) :] = 0.0
    labels = [
        sorted({"__name__": "up", "instance": f"host-{h:02d}:9100", "job": "node"}.items())
        for h in range(hosts)
    ]
    return Workload(
        wl.labels + labels,
        np.concatenate([wl.host_of, np.arange(hosts)]),
        np.ascontiguousarray(np.concatenate([wl.values, up])),
        wl.timestamps,
    )


def load(peer_url: str, wl: Workload, kind: str) -> None:
    """Send the workload in time order (one sender); raises RuntimeError on any failed request."""
    t = time.perf_counter()
    stats, wall = send_all(peer_url + WRITE_PATH, encode_streams(wl, senders=1))
    log(
        f"{kind}: loaded {stats.accepted_samples:,} samples in {wall:.1f} s "
        f"({time.perf_counter() - t:.1f} s with encoding), {stats.failed_requests} failed requests"
    )
    if stats.failed_requests:
        raise RuntimeError(f"{kind}: loading failed: {(stats.error_examples or ['?'])[0]}")


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Work:
    """What the rules produced: series per recording rule, alerts per (rule, state), failed rules."""

    recorded: dict[str, int] = field(default_factory=dict)
    alerts: dict[tuple[str, str], int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        firing = sum(n for (_, s), n in self.alerts.items() if s == "firing")
        pending = sum(n for (_, s), n in self.alerts.items() if s == "pending")
        return (
            f"{sum(self.recorded.values()):,} recorded series, {firing} firing/{pending} pending alerts, "
            f"{len(self.failed)} failed rules"
        )

    def differences(self, other: Work) -> list[str]:
        out = [
            f"recorded {k}: {self.recorded.get(k, 0)} vs {other.recorded.get(k, 0)}"
            for k in sorted(set(self.recorded) | set(other.recorded))
            if self.recorded.get(k, 0) != other.recorded.get(k, 0)
        ]
        out += [
            f"alerts {k}: {self.alerts.get(k, 0)} vs {other.alerts.get(k, 0)}"
            for k in sorted(set(self.alerts) | set(other.alerts))
            if self.alerts.get(k, 0) != other.alerts.get(k, 0)
        ]
        return out


def count_work(query: QueryFn, last_ms: dict[str, int], failed: dict[str, str]) -> Work:
    """Ask a store (through `query`) what each group's rules wrote, as seen at the group's last
    evaluation (`last_ms`, per group name): what later iterations wrote lies ahead of that instant."""
    w = Work(failed=failed)
    for name, ts_ms in last_ms.items():
        tag = name.removeprefix("bench-")  # the group's number, in its rules' names (`rule_pack`)
        for lb, v in query(f'count by (__name__) ({{__name__=~"{RECORD_PREFIX}g{tag}r.+"}})', ts_ms):
            w.recorded[lb["__name__"]] = int(v)
        for lb, v in query(
            f'count by (alertname, alertstate) (ALERTS{{alertname=~".+G{tag}R[0-9]+"}})', ts_ms
        ):
            w.alerts[(lb["alertname"], lb["alertstate"])] = int(v)
    return w


@dataclass
class Measured:
    """Per group key (`file;name`): the measured durations (s), warm-up dropped."""

    durations: dict[str, list[float]]
    # CPU seconds one evaluation of every group cost the evaluating process (the whole server
    # process for a server, between the warm-up and the end: a fairer figure on a shared machine).
    cpu_per_round_s: float | None = None

    def per_group(self) -> dict[str, float]:
        return {k: statistics.median(v) for k, v in self.durations.items() if v}

    @property
    def median_group_s(self) -> float:
        return statistics.median(self.per_group().values())

    @property
    def total_s(self) -> float:
        return sum(self.per_group().values())


def http_query(client: httpx.Client, url: str) -> QueryFn:
    def query(expr: str, ts_ms: int) -> Vector:
        r = client.get(url + "/api/v1/query?" + urlencode({"query": expr, "time": f"{ts_ms / 1000:.3f}"}))
        if r.status_code != 200:
            raise RuntimeError(f"{url}: {expr}: HTTP {r.status_code}: {r.text[:200]}")
        data = r.json()["data"]
        if data["resultType"] != "vector":
            raise RuntimeError(f"{url}: {expr}: a {data['resultType']}, not a vector")
        return [(s["metric"], float(s["value"][1])) for s in data["result"]]

    return query


@dataclass
class GroupState:
    iterations: float = 0.0
    last_eval_s: float = 0.0
    last_duration_s: float = 0.0
    missed: float = 0.0


_SUFFIXES = {
    "rule_group_iterations_total": "iterations",
    "rule_group_last_evaluation_timestamp_seconds": "last_eval_s",
    "rule_group_last_duration_seconds": "last_duration_s",
    "rule_group_iterations_missed_total": "missed",
}


def parse_group_metrics(text: str) -> dict[str, GroupState]:
    """The rule-group gauges and counters of a /metrics page (prefix `prometheus_` or `vigil_`),
    per `rule_group` label."""
    out: dict[str, GroupState] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            prefix, _, rest = s.name.partition("_")
            attr = _SUFFIXES.get(rest)
            if attr is None or prefix not in ("prometheus", "vigil") or "rule_group" not in s.labels:
                continue
            setattr(out.setdefault(s.labels["rule_group"], GroupState()), attr, float(s.value))
    return out


def new_iterations(state: dict[str, GroupState], seen: dict[str, list[tuple[float, float]]]) -> bool:
    """Append each group's last (start, duration) to `seen` if it is a new iteration; any new?"""
    added = False
    for k, got in seen.items():
        st = state.get(k)
        # A new iteration shows as a new evaluation start time (both servers expose it).
        if st is not None and st.last_eval_s > 0 and (not got or got[-1][0] != st.last_eval_s):
            got.append((st.last_eval_s, st.last_duration_s))
            added = True
    return added


def poll_iterations(
    client: httpx.Client,
    url: str,
    keys: Sequence[str],
    iterations: int,
    interval_s: float,
    timeout_s: float,
    cpu: Callable[[], float] = lambda: 0.0,
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, GroupState], dict[int, float]]:
    """Poll /metrics until every group in `keys` was seen finishing `iterations` evaluations after
    the first poll; (start time, duration) of each (all of them, warm-up included), the state, and
    `cpu()` at the first poll that saw every group done with i iterations, per i."""
    seen: dict[str, list[tuple[float, float]]] = {k: [] for k in keys}
    marks: dict[int, float] = {}
    deadline = time.monotonic() + timeout_s
    state: dict[str, GroupState] = {}
    while True:
        r = client.get(url + "/metrics")
        r.raise_for_status()
        state = parse_group_metrics(r.text)
        new_iterations(state, seen)
        done = min(len(v) for v in seen.values())
        if done not in marks:
            marks[done] = cpu()
        if done >= iterations:
            return seen, state, marks
        if time.monotonic() > deadline:
            short = {k: len(v) for k, v in seen.items() if len(v) < iterations}
            raise RuntimeError(
                f"{url}: groups not evaluated {iterations} times in {timeout_s:.0f} s: {short}"
            )
        time.sleep(min(0.25, interval_s / 8))


def rules_api_failures(client: httpx.Client, url: str) -> dict[str, str]:
    """Rules whose last evaluation failed, from the rules API (name -> error)."""
    r = client.get(url + "/api/v1/rules")
    r.raise_for_status()
    out = {}
    for g in r.json()["data"]["groups"]:
        for rule in g["rules"]:
            if rule.get("health") not in ("ok", "unknown"):
                out[rule["name"]] = rule.get("lastError", "")
    return out


def slots_of(last_ms: int, starts_s: Sequence[float], step_ms: int) -> list[int]:
    """The evaluation timestamps of iterations that started (wall clock) at `starts_s`, the last of
    which evaluated at `last_ms`: slots are `step_ms` apart, an iteration starts at its slot plus a
    delay shorter than half a step, and a late one makes the server skip (miss) slots."""
    return [last_ms + round((t - starts_s[-1]) * 1000 / step_ms) * step_ms for t in starts_s]


def last_slots(query: QueryFn, pack: list[tuple[str, list[RuleSpec]]], at_ms: int) -> dict[str, int]:
    """Per group name: the timestamp of its latest evaluation, from its first recording rule's output."""
    out = {}
    for name, rules in pack:
        rec = next((r.name for r in rules if r.kind == "record"), None)
        if rec is None:
            continue
        got = query(f"max(timestamp({{__name__={json.dumps(rec)}}}))", at_ms)
        if got:
            out[name] = round(got[0][1] * 1000)
    return out


@dataclass
class RemoteResult:
    measured: Measured
    slots: dict[str, list[int]]  # group name -> evaluation timestamps (ms), oldest first
    work: Work
    missed: int


def measure_remote(
    peer: Peer, pack: list[tuple[str, list[RuleSpec]]], rule_path: Path, args: argparse.Namespace
) -> RemoteResult:
    """A server that evaluates `rule_path` by itself: iterations from /metrics, then the work."""
    keys = {f"{rule_path};{name}": name for name, _ in pack}
    with httpx.Client(timeout=args.timeout) as client:
        n = args.warmup + args.evals
        t = time.perf_counter()
        tree = ProcessTree(peer.pid) if peer.pid is not None else None
        seen, state, marks = poll_iterations(
            client,
            peer.url,
            list(keys),
            n,
            args.interval,
            timeout_s=args.interval * (n + 4) + args.timeout,
            cpu=tree.cpu_seconds if tree is not None else lambda: 0.0,
        )
        cpu_round = (marks[n] - marks[args.warmup]) / args.evals if tree and args.warmup in marks else None
        log(f"{peer.kind}: {n} iterations of {len(keys)} groups in {time.perf_counter() - t:.0f} s")
        query = http_query(client, peer.url)
        for _ in range(10):  # the slots read back must belong to the last iterations seen
            now_ms = int(time.time() * 1000)
            last = last_slots(query, pack, now_ms)
            r = client.get(peer.url + "/metrics")
            r.raise_for_status()
            state = parse_group_metrics(r.text)
            if not new_iterations(state, seen):
                break
        if len(last) < len(pack):
            lost = sorted(set(keys.values()) - set(last))
            raise RuntimeError(
                f"{peer.kind}: no output of the first recording rule of groups {lost} at {now_ms} "
                "(did the data end before the evaluations? raise --ahead)"
            )
        step = round(args.interval * 1000)
        slots = {keys[k]: slots_of(last[keys[k]], [t for t, _ in seen[k]], step) for k in keys}
        work = count_work(query, last, rules_api_failures(client, peer.url))
    missed = int(sum(state[k].missed for k in keys))
    measured = Measured({k: [d for _, d in v[args.warmup :]] for k, v in seen.items()}, cpu_round)
    return RemoteResult(measured, slots, work, missed)


def prometheus_config(rule_path: Path | None, interval_s: float) -> str:
    text = f"global:\n  evaluation_interval: {interval_s:g}s\n"
    if rule_path is not None:
        text += f"rule_files:\n  - {json.dumps(str(rule_path))}\n"
    return text


def run_prometheus(
    wl: Workload, pack: list[tuple[str, list[RuleSpec]]], rule_text: str, args: argparse.Namespace
) -> RemoteResult:
    with running("prometheus", keep=args.keep, tmp_dir=args.tmp_dir) as peer:
        load(peer.url, wl, "prometheus")
        assert peer.data_dir is not None and peer.pid is not None
        rule_path = peer.data_dir.parent / "rules.yml"
        rule_path.write_text(rule_text)
        (peer.data_dir.parent / "prometheus.yml").write_text(prometheus_config(rule_path, args.interval))
        os.kill(peer.pid, signal.SIGHUP)  # reload: the rules start only now that the data is in
        wait_rules_loaded(peer, len(pack))
        return measure_remote(peer, pack, rule_path, args)


def wait_rules_loaded(peer: Peer, groups: int, timeout_s: float = 60.0) -> None:
    """Wait until the rules API lists `groups` groups; raise at once if the reload failed."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=10.0) as client:
        while time.monotonic() < deadline:
            r = client.get(peer.url + "/api/v1/rules")
            if r.status_code == 200 and len(r.json()["data"]["groups"]) == groups:
                return
            m = client.get(peer.url + "/metrics").text
            if "\nprometheus_config_last_reload_successful 0" in m:
                raise RuntimeError(f"{peer.kind}: reloading with the rule file failed\n{peer.log_tail()}")
            time.sleep(0.2)
    raise RuntimeError(f"{peer.kind}: the rules API did not list {groups} groups in {timeout_s:.0f} s")


@dataclass
class InProcessResult:
    measured: Measured
    work: Work
    profile: str = ""


def evaluate_in_process(
    data_dir: Path, rule_path: Path, slots: dict[str, list[int]], warmup: int, profile: bool
) -> InProcessResult:
    """Evaluate every group of `rule_path` at its `slots` over the DB in `data_dir` (not in use)."""
    from vigil.promql.engine import Engine
    from vigil.rules.group import RuleOptions, load_groups
    from vigil.rules.query import StorageAppender, engine_query
    from vigil.tsdb.db import DB, Options

    db = DB(data_dir, Options())  # the server's defaults (fsync on), no maintenance thread
    try:
        groups = load_groups([str(rule_path)], RuleOptions())
        query, appender = engine_query(Engine(db)), StorageAppender(db)
        durations: dict[str, list[float]] = {g.key: [] for g in groups}
        cpu_rounds: list[float] = []
        rounds = max((len(slots.get(g.name, [])) for g in groups), default=0)
        for i in range(rounds):  # iteration by iteration, as a server's groups run side by side
            cpu0 = time.process_time()
            for g in groups:
                ts = slots.get(g.name, [])
                if i < len(ts):
                    g.eval(ts[i], query, appender)
                    durations[g.key].append(g.last_duration_s)
            cpu_rounds.append(time.process_time() - cpu0)
        if not any(slots.values()):
            raise RuntimeError("vigil: no evaluation slots")
        failed = {r.name: r.status.last_error for g in groups for r in g.rules if r.status.health == "err"}
        engine = Engine(db)

        def local(expr: str, ts_ms: int) -> Vector:
            res = engine.instant_query(expr, ts_ms)
            return [(s.labels.to_dict(), float(s.values[0])) for s in res.series]

        work = count_work(local, {name: ts[-1] for name, ts in slots.items() if ts}, failed)
        text = ""
        if profile and groups:
            g = groups[0]
            prof = cProfile.Profile()
            prof.enable()
            g.eval(slots[g.name][-1], query, appender)  # once more at the last slot: same work
            prof.disable()
            buf = io.StringIO()
            stats = pstats.Stats(prof, stream=buf).strip_dirs()
            stats.sort_stats("tottime").print_stats(10)
            stats.sort_stats("cumulative").print_stats(15)
            text = buf.getvalue()
        measured = Measured(
            {k: v[warmup:] for k, v in durations.items()}, statistics.fmean(cpu_rounds[warmup:])
        )
        return InProcessResult(measured, work, text)
    finally:
        db.close()


def default_slots(
    pack: list[tuple[str, list[RuleSpec]]], start_ms: int, n: int, interval_s: float
) -> dict[str, list[int]]:
    """Without Prometheus: n slots per group from `start_ms` on."""
    step = int(interval_s * 1000)
    return {name: [start_ms + i * step for i in range(n)] for name, _ in pack}


def run_vigil(
    wl: Workload,
    pack: list[tuple[str, list[RuleSpec]]],
    rule_text: str,
    slots: dict[str, list[int]],
    args: argparse.Namespace,
) -> tuple[Measured, Work, str]:
    if args.mode == "server":
        cfg_dir = Path(args.tmp_dir or "/tmp")
        rule_path = cfg_dir / f"vigil-bench-rules-{os.getpid()}.yml"
        cfg = cfg_dir / f"vigil-bench-rules-{os.getpid()}.vigil.yml"
        rule_path.write_text(rule_text)
        interval_ms = int(args.interval * 1000)
        cfg.write_text(SERVER_RULES_CONFIG.format(path=json.dumps(str(rule_path)), interval=interval_ms))
        try:
            with _target("vigil", args.url, args, ["--config", str(cfg)]) as peer:
                load(peer.url, wl, "vigil")
                remote = measure_remote(peer, pack, rule_path, args)
                return remote.measured, remote.work, ""
        finally:
            rule_path.unlink(missing_ok=True)
            cfg.unlink(missing_ok=True)
    if args.url:
        raise RuntimeError("--url needs --mode server (in-process mode opens the server's data directory)")
    with running("vigil", keep=args.keep, tmp_dir=args.tmp_dir) as peer:
        load(peer.url, wl, "vigil")
        assert peer.process is not None and peer.data_dir is not None
        stop_process(peer.process)  # the DB is opened here, in this process, on what it wrote
        rule_path = peer.data_dir.parent / "rules.yml"
        rule_path.write_text(rule_text)
        t = time.perf_counter()
        res = evaluate_in_process(peer.data_dir, rule_path, slots, args.warmup, args.profile)
        log(f"vigil: evaluated in-process in {time.perf_counter() - t:.1f} s")
        return res.measured, res.work, res.profile


@contextlib.contextmanager
def _target(
    kind: str, url: str | None, args: argparse.Namespace, extra_args: list[str] | None = None
) -> Iterator[Peer]:
    if url:
        yield Peer(kind, url.rstrip("/"), None, None)
    else:
        with running(kind, keep=args.keep, tmp_dir=args.tmp_dir, extra_args=extra_args) as peer:
            yield peer


# --- reporting ----------------------------------------------------------------------------------


def figures(m: Measured) -> str:
    cpu = f" (cpu {m.cpu_per_round_s * 1000:.0f} ms)" if m.cpu_per_round_s is not None else ""
    return f"median group {m.median_group_s * 1000:.1f} ms, total {m.total_s * 1000:.0f} ms{cpu}"


def report_line(
    mode: str,
    pack: list[tuple[str, list[RuleSpec]]],
    n_series: int,
    vigil: Measured | None,
    prom: Measured | None,
    work: dict[str, Work],
) -> tuple[str, bool]:
    """The one line of figures, and whether the comparison is sound (equal work, no failed rule)."""
    rules = sum(len(r) for _, r in pack)
    head = f"rule_eval vigil({mode}): {rules} rules/{len(pack)} groups over {n_series:,} series: "
    parts = [head + (figures(vigil) if vigil else "not run")]
    if prom:
        parts.append(f"prometheus: {figures(prom)}")
    ok = all(not w.failed for w in work.values())
    if vigil and prom:
        ratio = f"ratio {vigil.total_s / prom.total_s:.2f}x"
        if vigil.cpu_per_round_s and prom.cpu_per_round_s:
            ratio += f" (cpu {vigil.cpu_per_round_s / prom.cpu_per_round_s:.2f}x)"
        parts.append(ratio)
        diff = work["vigil"].differences(work["prometheus"])
        if diff:
            ok = False
            parts.append(
                f"work DIFFERS in {len(diff)} counts (vigil {work['vigil'].summary()}; "
                f"prometheus {work['prometheus'].summary()})"
            )
        else:
            parts.append(f"same work: {work['vigil'].summary()}")
    else:
        parts += [f"{k}: {w.summary()}" for k, w in work.items()]
    return "; ".join(parts), ok


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.rule_eval", description=(__doc__ or "").split("\n\n")[0]
    )
    ap.add_argument(
        "--mode", choices=MODES, default="in-process", help="how Vigil evaluates (default in-process)"
    )
    ap.add_argument("--only", default=",".join(TARGETS), help="targets (default vigil,prometheus)")
    ap.add_argument("--hosts", type=int, default=100, help="hosts, 115 series each (default 100)")
    ap.add_argument("--scrapes", type=int, default=240, help="scrapes, 15 s apart (default 240 = 1 h)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--groups", type=int, default=10, help="rule groups (default 10)")
    ap.add_argument("--rules", type=int, default=100, help="rules per group (default 100)")
    ap.add_argument("--interval", type=float, default=15.0, help="evaluation interval, s (default 15)")
    ap.add_argument(
        "--ahead", type=float, default=300.0, help="the data ends this many s after the start (default 300)"
    )
    ap.add_argument("--evals", type=int, default=5, help="measured evaluations per group (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="evaluations dropped first (default 1)")
    ap.add_argument(
        "--profile", action="store_true", help="cProfile one more evaluation of Vigil's first group"
    )
    ap.add_argument("--write-rules", type=Path, help="write the rule file there and exit")
    ap.add_argument("--url", help="a running, empty Vigil (--mode server only)")
    ap.add_argument("--timeout", type=float, default=300.0, help="per request and for waits, s (default 300)")
    ap.add_argument("--tmp-dir", type=Path, help="where started servers' data dirs go (default: system temp)")
    ap.add_argument("--keep", action="store_true", help="keep started servers' temp dirs (printed)")
    args = ap.parse_args(argv)
    args.only = [k.strip() for k in args.only.split(",") if k.strip()]
    if not args.only or any(k not in TARGETS for k in args.only):
        ap.error(f"--only: choose from {', '.join(TARGETS)}")
    if min(args.hosts, args.scrapes, args.groups, args.rules, args.evals) < 1 or args.warmup < 0:
        ap.error("--hosts, --scrapes, --groups, --rules and --evals must be positive, --warmup not negative")
    if not 0 <= args.ahead <= 540:
        ap.error("--ahead: 0 to 540 s (Vigil refuses samples more than 10 min ahead of its clock)")
    if args.interval < 1:
        ap.error("--interval: at least 1 s")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    pack = rule_pack(args.groups, args.rules)
    rule_text = rule_file_text(pack)
    if args.write_rules:
        args.write_rules.write_text(rule_text)
        log(f"wrote {sum(len(r) for _, r in pack)} rules in {len(pack)} groups to {args.write_rules}")
        return 0
    install_sigterm_handler()
    now_ms = int(time.time() * 1000)
    end_ms = now_ms + int(args.ahead * 1000)
    wl = with_up(
        generate(hosts=args.hosts, scrapes=args.scrapes, seed=args.seed, end_ms=end_ms, histograms=True)
    )
    n = args.warmup + args.evals
    log(
        f"workload: {wl.n_series:,} series x {wl.n_scrapes} scrapes (--hosts {args.hosts} --scrapes "
        f"{args.scrapes} --seed {args.seed}, ending {end_ms}); {sum(len(r) for _, r in pack)} rules in "
        f"{len(pack)} groups, {n} evaluations each ({args.warmup} warm-up), interval {args.interval:g} s"
    )
    measured: dict[str, Measured] = {}
    work: dict[str, Work] = {}
    slots = default_slots(pack, now_ms + int(args.interval * 1000), n, args.interval)
    profile = ""
    try:
        if "prometheus" in args.only:
            res = run_prometheus(wl, pack, rule_text, args)
            measured["prometheus"], work["prometheus"] = res.measured, res.work
            log(f"prometheus: {res.missed} missed iterations; slots of {len(res.slots)} groups read back")
            if args.mode == "in-process":
                slots = res.slots
        if "vigil" in args.only:
            measured["vigil"], work["vigil"], profile = run_vigil(wl, pack, rule_text, slots, args)
    except (PeerError, RuntimeError, httpx.HTTPError, OSError) as e:
        print(f"rule_eval: FAILED: {str(e).splitlines()[0]}", flush=True)
        for line in str(e).splitlines()[1:]:
            log(line)
        return 1
    for kind, m in measured.items():
        for key, med in m.per_group().items():
            log(
                f"{kind} {key.rsplit(';', 1)[-1]}: median {med * 1000:.1f} ms of "
                f"{', '.join(f'{d * 1000:.1f}' for d in m.durations[key])} ms"
            )
    for kind, w in work.items():
        log(f"{kind}: {w.summary()}")
        for name, err in list(w.failed.items())[:10]:
            log(f"{kind}: rule {name} failed: {err}")
    if "vigil" in work and "prometheus" in work:
        for d in work["vigil"].differences(work["prometheus"])[:20]:
            log(f"differs (vigil vs prometheus): {d}")
    if profile:
        for line in profile.splitlines():
            log(line)
    line, ok = report_line(
        args.mode, pack, wl.n_series, measured.get("vigil"), measured.get("prometheus"), work
    )
    print(line, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
