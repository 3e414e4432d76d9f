"""Assembles the server's notification side from `vigil.yml`: silences, templates, receivers, notifier.

`vigil server` calls `open_notifier` once at start-up. Everything a user can get wrong here — the
Alertmanager configuration (inline `alerting:` or `alerting.config_file`), an integration Vigil does
not deliver to, a template file that does not parse — is a `ConfigError` raised before anything
listens, so a broken configuration never half-starts. With no `alerting:` section the notifier still
runs, with one receiver and no integrations: alerts are kept, grouped, silenced and shown
(`/api/v2/alerts`, `amtool alert query`), and nothing is sent.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from vigil.config import Config, ConfigError
from vigil.notifier.alert import Alert
from vigil.notifier.config import (
    AlertmanagerConfig,
    alertmanager_config_from_dict,
    check_supported,
    load_alerting,
)
from vigil.notifier.integration import Integration
from vigil.notifier.notifier import Notifier
from vigil.notifier.receivers import build_integrations
from vigil.notifier.routing import Route
from vigil.notifier.silence import Silences
from vigil.notifier.templates import load_templater
from vigil.template import TemplateError
from vigil.web.alertmanager_api import ConfigView

__all__ = [
    "GROUP_WAIT_MS",
    "NotifierParts",
    "NotifierSender",
    "RunningConfig",
    "default_alerting",
    "open_notifier",
    "with_vigil_defaults",
]

# What runs when vigil.yml has no `alerting:` section: alerts are kept and shown, none is sent.
_NO_RECEIVERS = {"route": {"receiver": "none"}, "receivers": [{"name": "none"}]}


# Vigil's one departure from Alertmanager's defaults. Alertmanager waits 30 s before a new group's
# first notification, to collect the alerts that Prometheus servers send spread over an evaluation
# cycle. Vigil's rule manager hands over all alerts of an evaluation at once, and event rules fire the
# moment the event is stored, so one second collects an incident's alerts into one message without
# holding a new listening port back for half a minute. A `group_wait` in the file (root or any
# route) is used as written; `vigil routes` shows Alertmanager's own defaults.
GROUP_WAIT_MS = 1_000


def default_alerting() -> AlertmanagerConfig:
    return alertmanager_config_from_dict(_NO_RECEIVERS, "<default>")


def with_vigil_defaults(cfg: AlertmanagerConfig) -> AlertmanagerConfig:
    """`cfg` with Vigil's root `group_wait` when the file sets none (routes below inherit it)."""
    if cfg.route is None or cfg.route.group_wait is not None:
        return cfg
    return cfg.model_copy(update={"route": cfg.route.model_copy(update={"group_wait": GROUP_WAIT_MS})})


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class NotifierParts:
    """The notifier (a service) with its silences, and the configuration that runs (`reload` swaps
    it; readers such as the v2 API's `/status` see the new one through `RunningConfig`)."""

    notifier: Notifier
    silences: Silences
    config: AlertmanagerConfig
    configured: bool  # False: vigil.yml has no `alerting:` (the no-receiver default runs)
    external_url: str = ""

    def reload(self, cfg: Config, config_dir: Path, source: str = "vigil.yml") -> None:
        """Apply `cfg`'s `alerting:` as Alertmanager reloads: alerts, silences and the notification
        log kept, routes, receivers and templates rebuilt. Raises ConfigError and keeps the old
        configuration when the new one is wrong."""
        loaded = load_alerting(cfg.alerting, source, config_dir)
        am = with_vigil_defaults(loaded if loaded is not None else default_alerting())
        integrations = integrations_for(am, external_url=self.external_url, source=source)
        self.notifier.reload(am, integrations)
        self.config, self.configured = am, loaded is not None


class NotifierSender:
    """The rule manager's AlertSender: hands alerts to the notifier's store, as Prometheus posts
    them to Alertmanager. A full store (`StoreFull`) or an invalid alert is the store's to count."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def send(self, alerts: Sequence[Alert]) -> None:
        if alerts:
            self.notifier.put(list(alerts))


class RunningConfig:
    """The v2 API's view of the configuration in force: a `ConfigView` of `parts.config`, rebuilt when
    a reload swapped it (the API reads it per request)."""

    def __init__(self, parts: NotifierParts) -> None:
        self._parts = parts
        self._of: AlertmanagerConfig | None = None
        self._view = ConfigView(parts.config)
        self._of = parts.config

    def _current(self) -> ConfigView:
        cfg = self._parts.config
        if cfg is not self._of:
            self._view, self._of = ConfigView(cfg), cfg
        return self._view

    def original(self) -> str:
        return self._current().original()

    def receivers(self) -> list[str]:
        return self._current().receivers()

    def route(self) -> Route | None:
        return self._current().route()

    def resolve_timeout_ms(self) -> int:
        return self._current().resolve_timeout_ms()


def integrations_for(
    cfg: AlertmanagerConfig, *, external_url: str, source: str
) -> dict[str, list[Integration]]:
    """Every receiver's integrations, templates loaded once. Raises ConfigError."""
    check_supported(cfg, source, "alerting.")
    try:
        templater = load_templater(cfg.templates)
    except TemplateError as exc:
        raise ConfigError(
            f"expected templates that parse, got {exc}", source=source, key="alerting.templates"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read a template file: {exc}", source=source, key="alerting.templates"
        ) from None
    return {
        r.name: build_integrations(r, cfg.global_, templater, external_url=external_url)
        for r in cfg.receivers
    }


def open_notifier(
    cfg: Config,
    registry: CollectorRegistry | None,
    *,
    config_dir: Path,
    external_url: str,
    source: str = "vigil.yml",
) -> NotifierParts:
    """Silences under the data directory (`silences.json`), the notification log under
    `<data>/notifier/`, and the notifier built from `alerting:`. Raises ConfigError."""
    loaded = load_alerting(cfg.alerting, source, config_dir)
    am = with_vigil_defaults(loaded if loaded is not None else default_alerting())
    integrations = integrations_for(am, external_url=external_url, source=source)
    silences = Silences(
        cfg.storage.path,
        clock=_now_ms,
        retention_ms=cfg.storage.silence_retention,
        max_silences=cfg.limits.max_silences,
        max_silence_size_bytes=cfg.limits.max_silence_size_bytes,
        registry=registry,
    )
    notifier = Notifier(
        am,
        integrations,
        state_dir=cfg.storage.path / "notifier",
        registry=registry,
        muter=silences,
        external_url=external_url,
    )
    return NotifierParts(notifier, silences, am, loaded is not None, external_url)
