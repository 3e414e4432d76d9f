"""The rule manager: Prometheus' rules.Manager for Vigil, a service of `vigil server` and `vigil up`.

It loads the rule files `rule_files` names (globs relative to the directory of vigil.yml) and the
built-in pack (`vigil.rules.builtin`, unless `rules.builtin.enabled` is false; alerts named in
`rules.builtin.disable`, or by a user rule, are left out), and evaluates every group at its own
phase-aligned slots (`Group.eval_timestamp`), as Prometheus does:

- a group's first evaluation is at its first slot after the start; when evaluations fall behind,
  the slots passed are counted as missed and the latest one is evaluated;
- recording results and ALERTS / ALERTS_FOR_STATE go through the appender into the store; samples
  the store refuses (older than its out-of-order window) are counted in
  `vigil_rule_samples_refused_total` and logged (Prometheus only logs them);
- at start the `for` state of alerts is restored from ALERTS_FOR_STATE after a group's second
  evaluation (Prometheus waits one more evaluation so recording rules have caught up), with
  `outage_tolerance` and `for_grace_period`; until then no ALERTS series are written;
- alerts go to an `AlertSender` with Prometheus' sendAlerts semantics: firing and resolved alerts
  only, re-sent every `resend_delay`, a firing alert's end `now + 4 * max(resend_delay, interval)`,
  a resolved one's its resolution time (re-sent for 15 minutes), `generatorURL` the expression's
  table link under `external_url`, external labels added where the alert lacks them;
- `reload` (SIGHUP, `/-/reload`) keeps groups that did not change as they are, hands the state of
  a changed group to its replacement (alerts of rules with the same name and labels), writes stale
  markers for the series of removed groups, and on a file error keeps the old rules and says why.

One scheduler thread (`vigil-rules`) evaluates the groups that are due one after the other; a slow
group delays the others, which then count missed iterations. Tests drive it without the thread:
`run_once(now_ms)` and `next_due()` with an injected clock.

Tenants: rules are the default tenant's. The server gives the manager a query function and a
storage over `vigil.rules.query.DefaultTenantView` (untenanted series only) and an appender that
refuses tenant-labelled results, so no rule reads or writes a tenant's data. Per-tenant rules are
later work.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.resources
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote_plus

from vigil.config import Config
from vigil.notifier.alert import Alert as NotifierAlert
from vigil.rules.alerting import Alert, AlertingRule
from vigil.rules.events import EventRule, EventRules, builtin_event_rules, compile_event_rules, with_builtin
from vigil.rules.group import Group, RuleLoadError, RuleMetrics, RuleOptions, groups_from_spec
from vigil.rules.rulefmt import RuleError, RuleFileSpec, TemplateCheck, parse_rule_file, parse_rule_text
from vigil.rules.types import Appender, Expander, QueryFunc
from vigil.rules.view import AlertView, GroupView, rule_view
from vigil.storage.interface import Queryable

__all__ = [
    "BUILTIN_PACKAGE",
    "AlertSender",
    "LogSender",
    "Manager",
    "ManagerSettings",
    "generator_url",
    "settings_from_config",
    "to_notifier_alert",
]

log = logging.getLogger(__name__)

BUILTIN_PACKAGE = "vigil.rules.builtin"
BUILTIN_PREFIX = "builtin/"  # the `file` of built-in groups in the rules API
_IDLE_WAIT_S = 60.0  # with nothing due, look again this often (a reload wakes the thread anyway)


class AlertSender(Protocol):
    """Where alerts go (the notifier). `send` must not block for long: it runs in the evaluation
    loop (the notifier queues; Prometheus' notifier does the same)."""

    def send(self, alerts: Sequence[NotifierAlert]) -> None: ...


class LogSender:
    """An AlertSender that logs and counts what it is given (until the notifier is connected)."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import Counter

        self.sent = 0
        self._counter = Counter(
            "vigil_rule_alerts_sent_total", "Alerts handed to the alert sender.", registry=registry
        )

    def send(self, alerts: Sequence[NotifierAlert]) -> None:
        self.sent += len(alerts)
        self._counter.inc(len(alerts))
        for a in alerts:
            log.info("alert %s, starts %d, ends %d", dict(a.labels), a.starts_at_ms, a.ends_at_ms)


@dataclass(frozen=True)
class ManagerSettings:
    """What the manager loads and how it evaluates (from vigil.yml by `settings_from_config`)."""

    rule_files: tuple[str, ...] = ()
    base_dir: Path = Path(".")
    options: RuleOptions = field(default_factory=RuleOptions)
    builtin_enabled: bool = True
    builtin_disable: tuple[str, ...] = ()


def settings_from_config(
    cfg: Config, base_dir: Path, *, external_url: str = "", expander: Expander | None = None
) -> ManagerSettings:
    """Settings for `cfg`; `external_url` is the fallback when `server.external_url` is empty (the
    address the server listens on, as Prometheus falls back to its own host and port)."""
    r = cfg.rules
    url = (cfg.server.external_url or external_url).rstrip("/")  # Prometheus trims it too
    return ManagerSettings(
        rule_files=tuple(cfg.rule_files),
        base_dir=base_dir,
        options=RuleOptions(
            expander=expander,
            external_labels=dict(r.external_labels),
            external_url=url,
            default_interval_ms=r.evaluation_interval,
            default_query_offset_ms=r.query_offset,
            outage_tolerance_ms=r.outage_tolerance,
            grace_period_ms=r.for_grace_period,
            resend_delay_ms=r.resend_delay,
        ),
        builtin_enabled=r.builtin.enabled,
        builtin_disable=tuple(r.builtin.disable),
    )


def generator_url(external_url: str, expr: str) -> str:
    """Prometheus' generatorURL: the expression's table view (Go's url.QueryEscape of the expr)."""
    return f"{external_url}/graph?g0.expr={quote_plus(expr, safe='')}&g0.tab=1"


def to_notifier_alert(a: Alert, expr: str, options: RuleOptions) -> NotifierAlert:
    """A rule's alert as the notifier takes it (Prometheus' SendAlerts and the notifier's external
    labels): starts at its firing time, ends at its resolution or `valid_until`."""
    labels = a.labels.to_dict()
    for k, v in options.external_labels.items():
        if k not in labels and v:
            labels[k] = v
    ends = a.resolved_at_ms if a.resolved_at_ms is not None else (a.valid_until_ms or 0)
    return NotifierAlert(
        labels=labels,
        annotations=dict(a.annotations),
        starts_at_ms=a.fired_at_ms or 0,
        ends_at_ms=ends,
        generator_url=generator_url(options.external_url, expr),
    )


def expand_rule_files(patterns: Sequence[str], base_dir: Path) -> tuple[list[str], list[str]]:
    """The files `patterns` match (relative ones under `base_dir`), each once, in pattern order and
    sorted within a pattern; and the patterns that matched nothing (Prometheus warns of those)."""
    files: list[str] = []
    empty: list[str] = []
    for pat in patterns:
        full = pat if Path(pat).is_absolute() else str(base_dir / pat)
        found = sorted(glob.glob(full)) if glob.has_magic(full) else ([full] if Path(full).exists() else [])
        if not found:
            empty.append(pat)
        files += [f for f in found if f not in files]
    return files, empty


def builtin_source(package: str = BUILTIN_PACKAGE) -> Traversable | None:
    """The built-in pack's directory, None when the package is not installed."""
    try:
        return importlib.resources.files(package)
    except ModuleNotFoundError:
        return None


def _builtin_specs(
    source: Traversable | None, template_check: TemplateCheck | None
) -> tuple[list[RuleFileSpec], list[RuleError]]:
    specs: list[RuleFileSpec] = []
    errors: list[RuleError] = []
    if source is None:
        return specs, errors
    for entry in sorted(source.iterdir(), key=lambda e: e.name):
        if not entry.is_file() or not entry.name.endswith((".yml", ".yaml")):
            continue
        spec, errs = parse_rule_text(
            entry.read_text(encoding="utf-8"), BUILTIN_PREFIX + entry.name, template_check
        )
        errors += errs
        if spec is not None:
            specs.append(spec)
    return specs, errors


def _without_alerts(spec: RuleFileSpec, names: set[str]) -> RuleFileSpec:
    """The spec minus alerting rules named in `names`; groups left empty are dropped."""
    groups = []
    for g in spec.groups:
        rules = [r for r in g.rules if not (r.kind == "alert" and r.name in names)]
        if rules:
            groups.append(dataclasses.replace(g, rules=rules))
    return RuleFileSpec(spec.file, groups)


def load_specs(
    settings: ManagerSettings,
    builtin: Traversable | None,
    template_check: TemplateCheck | None = None,
    warn: Callable[[str], None] = log.warning,
) -> list[RuleFileSpec]:
    """Every file of `settings` parsed and validated, the built-in pack filtered; raises
    RuleLoadError with all the problems of all the files."""
    files, empty = expand_rule_files(settings.rule_files, settings.base_dir)
    for pat in empty:
        warn(f"rule_files: no file matches {pat!r}")
    errors: list[RuleError] = []
    user: list[RuleFileSpec] = []
    for f in files:
        spec, errs = parse_rule_file(f, template_check)
        errors += errs
        if spec is not None:
            user.append(spec)
    out = list(user)
    if settings.builtin_enabled:
        specs, errs = _builtin_specs(builtin, template_check)
        errors += errs
        known = {r.name for s in specs for g in s.groups for r in g.rules if r.kind == "alert"}
        known |= {r.alert for r in builtin_event_rules()}  # the list names those too
        for name in settings.builtin_disable:
            if name not in known:
                warn(f"rules.builtin.disable: no built-in alert is named {name!r}")
        overridden = {r.name for s in user for g in s.groups for r in g.rules if r.kind == "alert"}
        drop = overridden | set(settings.builtin_disable)
        out += [_without_alerts(s, drop) for s in specs]
    if errors:
        raise RuleLoadError(errors)
    return out


@dataclass
class _Slot:
    """A group and when it runs next (None: not scheduled yet, done at the next `run_once`)."""

    group: Group
    next_ts: int | None = None
    evals: int = 0
    restore: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Manager:
    """Loads and evaluates rule groups on a schedule (see the module docstring). Constructing it
    loads the files (raising RuleLoadError) but starts nothing."""

    name = "rules"

    def __init__(
        self,
        settings: ManagerSettings,
        *,
        query: QueryFunc,
        appender: Appender,
        storage: Queryable,
        sender: AlertSender | None = None,
        registry: Any = None,
        clock: Callable[[], int] = _wall_ms,
        sleeper: Callable[[float], object] | None = None,
        builtin: Traversable | str | None = BUILTIN_PACKAGE,
        template_check: TemplateCheck | None = None,
        event_rules: EventRules | None = None,
    ) -> None:
        """`clock`: wall time in ms; `sleeper(seconds)`: how the thread waits (default: an event a
        stop or reload sets); `builtin`: the built-in pack's package name or directory (None: no
        pack); `event_rules`: their timers (resolution, re-sending) run in the same loop, and their
        alerts are listed with the rules' ones."""
        from prometheus_client import Gauge

        self._settings = settings
        self._query, self._appender, self._storage = query, appender, storage
        self._sender = sender
        self._clock = clock
        self._wake = threading.Event()
        self._sleep = sleeper or self._wake.wait
        self._builtin = builtin_source(builtin) if isinstance(builtin, str) else builtin
        self._template_check = template_check
        self.event_rules = event_rules
        self._event_due: int | None = None
        if event_rules is not None and event_rules.wake is None:
            event_rules.wake = self.wake
        self._metrics = RuleMetrics(registry) if registry is not None else None
        self._reload_ok = Gauge(
            "vigil_rules_last_reload_successful",
            "Whether the last load of the rule files succeeded.",
            registry=registry,
        )
        self._lock = threading.Lock()  # guards the slot list (reload vs. the loop)
        self._write = threading.Lock()  # one writer on the appender: the loop, or a reload's stale markers
        self._reload_request: Callable[[], object] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.send_failures = 0
        self.last_reload_error = ""
        self._slots = [_Slot(g, restore=True) for g in self._build(settings)]
        for s in self._slots:
            s.group.mark_unrestored()
        self._reload_ok.set(1)

    def _build(self, settings: ManagerSettings) -> list[Group]:
        specs = load_specs(settings, self._builtin, self._template_check)
        groups: list[Group] = []
        for spec in specs:
            groups += groups_from_spec(spec, settings.options, self._metrics, notify=self._notify)
        return groups

    # -- the loop ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="vigil-rules", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(60)
            if thread.is_alive():
                log.warning("rule evaluation did not stop within 60s")

    def _run(self) -> None:
        while not self._stopping:
            self._reload_requested()
            try:
                self.run_once(self._clock())
            except Exception:  # a bug in one evaluation must not end rule evaluation
                log.exception("rule evaluation failed")
            due = self.next_due()
            wait = _IDLE_WAIT_S if due is None else max(0.0, (due - self._clock()) / 1000)
            if self._stopping:
                break
            self._sleep(min(wait, _IDLE_WAIT_S))
            self._wake.clear()

    def request_reload(self, reload: Callable[[], object]) -> None:
        """Have the evaluation thread run `reload` (e.g. `reload_config` of a re-read vigil.yml)
        before its next round; safe from a signal handler (SIGHUP). What it raises is logged and
        the old rules stay."""
        self._reload_request = reload
        self._wake.set()

    def _reload_requested(self) -> None:
        load, self._reload_request = self._reload_request, None
        if load is None:
            return
        try:
            load()
        except RuleLoadError:
            pass  # logged by reload
        except Exception as exc:  # e.g. vigil.yml no longer valid: say why, keep what runs
            self.last_reload_error = str(exc)
            self._reload_ok.set(0)
            log.error("reloading rules failed, keeping the old ones: %s", exc)

    def wake(self) -> None:
        """Have the loop look at its schedule again now (a tick's timer moved earlier)."""
        self._wake.set()

    def run_once(self, now_ms: int) -> None:
        """Evaluate every group due at `now_ms` (scheduling those not yet scheduled), then the ticks."""
        with self._lock:
            slots = list(self._slots)
        for slot in slots:
            g = slot.group
            with slot.lock:
                if slot.next_ts is None:
                    slot.next_ts = g.eval_timestamp(now_ms) + g.interval_ms
                    continue
                if slot.next_ts > now_ms:
                    continue
                missed = (now_ms - slot.next_ts) // g.interval_ms
                if missed > 0:
                    g.missed(missed)
                    slot.next_ts += missed * g.interval_ms
                ts = slot.next_ts
                with self._write:
                    g.eval(ts, self._query, self._appender)
                slot.evals += 1
                slot.next_ts = ts + g.interval_ms
                if slot.restore and slot.evals >= 2:
                    slot.restore = False
                    try:
                        g.restore_for_state(self._clock(), self._storage)
                    except Exception:
                        log.exception("restoring the for state of group %s failed", g.key)
        if self.event_rules is not None:
            try:
                self._event_due = self.event_rules.tick(now_ms)
            except Exception:
                log.exception("event rule timers failed")

    def next_due(self) -> int | None:
        """When something is due next (ms): the earliest group slot or tick timer."""
        with self._lock:
            slots = list(self._slots)
        dues = [s.next_ts for s in slots if s.next_ts is not None]
        if any(s.next_ts is None for s in slots):
            dues.append(self._clock())
        if self._event_due is not None:  # an event that fires wakes the loop (its timers start then)
            dues.append(self._event_due)
        return min(dues) if dues else None

    # -- alerts -------------------------------------------------------------------------------------

    def _notify(self, rule: AlertingRule, alerts: list[Alert]) -> None:
        if self._sender is None:
            return
        opts = self._settings.options
        try:
            self._sender.send([to_notifier_alert(a, rule.expr, opts) for a in alerts])
        except Exception:  # the notifier's trouble: the alerts are sent again at the next resend
            self.send_failures += 1
            log.exception("sending %d alerts of %s failed", len(alerts), rule.name)

    # -- reload -------------------------------------------------------------------------------------

    def reload_config(self, cfg: Config, base_dir: Path) -> None:
        """`reload` with the rule settings and event rules of `cfg` (raises ConfigError or
        RuleLoadError); the expander and the fallback external URL stay those of the start."""
        o = self._settings.options
        settings = settings_from_config(cfg, base_dir, external_url=o.external_url, expander=o.expander)
        self.reload(settings, compile_event_rules(with_builtin(cfg.event_rules, cfg.rules.builtin)))

    def reload(self, settings: ManagerSettings, event_rules: Sequence[EventRule] | None = None) -> None:
        """Load `settings`' files and swap them in (see the module docstring), and `event_rules` if
        given. Raises RuleLoadError (the old rules stay, event rules too) with every problem;
        `last_reload_error` keeps its text."""
        try:
            groups = self._build(settings)
        except RuleLoadError as exc:
            self.last_reload_error = str(exc)
            self._reload_ok.set(0)
            log.error("reloading rules failed, keeping the old ones:\n%s", exc)
            raise
        with self._lock:
            old = {s.group.key: s for s in self._slots}
            slots: list[_Slot] = []
            for g in groups:
                o = old.pop(g.key, None)
                if o is not None and o.group.definition() == g.definition():
                    slots.append(o)
                    continue
                if o is not None:
                    with o.lock:
                        g.copy_state(o.group)
                slots.append(_Slot(g))  # not restored: Prometheus restores only at start
            now = self._clock()
            for gone in old.values():
                with gone.lock, self._write:
                    try:
                        gone.group.mark_all_stale(now - gone.group.query_offset_ms, self._appender)
                    except Exception:
                        log.exception("stale markers for removed group %s failed", gone.group.key)
            self._slots = slots
            self._settings = settings
        if event_rules is not None and self.event_rules is not None:
            self.event_rules.reload(event_rules, settings.options)
        self.last_reload_error = ""
        self._reload_ok.set(1)
        self._wake.set()
        log.info("loaded %d rule groups", len(slots))

    # -- what the API shows -------------------------------------------------------------------------

    def rule_groups(self) -> list[GroupView]:
        """Every group, sorted by file and name as Prometheus lists them."""
        with self._lock:
            slots = sorted(self._slots, key=lambda s: (s.group.file, s.group.name))
        out = []
        for s in slots:
            g = s.group
            with s.lock:
                rules = tuple(rule_view(r) for r in g.rules)
                out.append(
                    GroupView(
                        g.name, g.file, g.interval_ms, g.limit, g.last_eval_ms, g.last_duration_s, rules
                    )
                )
        return out

    def active_alerts(self) -> list[AlertView]:
        """Pending and firing alerts of the rules, then the event rules' firing ones."""
        out = [a for g in self.rule_groups() for r in g.rules for a in r.alerts]
        if self.event_rules is not None:
            out += self.event_rules.active_alerts()
        return out

    @property
    def settings(self) -> ManagerSettings:
        return self._settings

    def groups(self) -> list[Group]:
        """The loaded groups (tests and `vigil config check`)."""
        with self._lock:
            return [s.group for s in self._slots]


def check_rule_files(
    cfg: Config,
    base_dir: Path,
    template_check: TemplateCheck | None = None,
    warn: Callable[[str], None] = log.warning,
) -> Mapping[str, int]:
    """`vigil config check`: validate the files `rule_files` names and the built-in pack; returns
    rules per file; raises RuleLoadError."""
    specs = load_specs(settings_from_config(cfg, base_dir), builtin_source(), template_check, warn)
    return {s.file: s.rule_count() for s in specs}
