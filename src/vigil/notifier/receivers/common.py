"""What every integration class shares: its identity in the pipeline (`name`, `index`,
`send_resolved`), the http_config it inherits from `global`, and the per-request timeout."""

from __future__ import annotations

from vigil.notifier.config import GlobalConfig, HTTPConfig
from vigil.notifier.receivers.sender import DEFAULT_TIMEOUT_S

__all__ = ["IntegrationBase", "http_config", "timeout_s"]


class IntegrationBase:
    """`name`/`index`/`send_resolved` as the Integration protocol reads them; `label` (`slack[0]`)
    names the integration in errors."""

    kind = ""

    def __init__(self, index: int, send_resolved: bool, external_url: str = "") -> None:
        self._index = index
        self._send_resolved = send_resolved
        self.external_url = external_url  # the links' base when a notification's context has none

    @property
    def name(self) -> str:
        return self.kind

    @property
    def index(self) -> int:
        return self._index

    @property
    def send_resolved(self) -> bool:
        return self._send_resolved

    @property
    def label(self) -> str:
        return f"{self.kind}[{self._index}]"


def http_config(own: HTTPConfig | None, global_: GlobalConfig) -> HTTPConfig:
    """The item's http_config, else `global.http_config` (Alertmanager's inheritance)."""
    return own if own is not None else global_.http_config


def timeout_s(timeout_ms: int | None) -> float:
    """The item's `timeout` (ms), else the default; never unbounded."""
    return timeout_ms / 1000 if timeout_ms else DEFAULT_TIMEOUT_S
