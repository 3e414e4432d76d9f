"""The `scrape_configs` schema: a Prometheus-compatible subset of Prometheus' `scrape_config`.

Field names and defaults follow Prometheus so existing snippets (CrowdSec, Suricata exporters, ...)
can be pasted in. `scrape_interval` is optional: absent, the agent's interval is used (the manager
fills it in), and `scrape_timeout` then defaults to the smaller of 10s and that interval.

The lead wires `scrape_configs: ScrapeConfigs = ()` into the top-level `Config`; `ScrapeConfigs` checks
that job names are unique.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from vigil.config.types import (
    Bool,
    LabelValue,
    OptionalPath,
    PositiveDuration,
    RE2Regex,
    Section,
    integer,
)
from vigil.model.labels import is_valid_label_name
from vigil.model.listen import parse_listen
from vigil.model.show import show

__all__ = [
    "BasicAuth",
    "RelabelConfig",
    "ScrapeConfig",
    "ScrapeConfigs",
    "StaticConfig",
    "TLSConfig",
]

DEFAULT_TIMEOUT_MS = 10_000


def _job_name(value: object) -> str:
    if not isinstance(value, str) or value == "":
        raise ValueError(f"expected a non-empty job name, got {show(value)}")
    return value


def _target(value: object) -> str:
    # Prometheus targets are host:port without a scheme; a URL here is a common mistake.
    if not isinstance(value, str) or "/" in value:
        raise ValueError(f"expected a target host:port like localhost:9100, got {show(value)}")
    try:
        parse_listen(value)
    except ValueError:
        raise ValueError(f"expected a target host:port like localhost:9100, got {show(value)}") from None
    return value


def _label_name(value: object) -> str:
    if not isinstance(value, str) or not is_valid_label_name(value):
        raise ValueError(f"expected a label name like instance, got {show(value)}")
    return value


def _label_map(value: object) -> object:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of label names to values, got {show(value)}")
    for k in value:
        _label_name(k)
    return value


def _params(value: object) -> object:
    # Prometheus takes `name: [values]`; a single string is accepted as a one-value list.
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of parameter names to lists of values, got {show(value)}")
    out: dict[str, tuple[str, ...]] = {}
    for k, v in value.items():
        vals = [v] if isinstance(v, str) else v
        if (
            not isinstance(k, str)
            or not isinstance(vals, list | tuple)
            or not all(isinstance(x, str) for x in vals)
        ):
            raise ValueError(f"expected a mapping of parameter names to lists of values, got {show(value)}")
        out[k] = tuple(vals)
    return out


def _secret(value: object) -> str:
    # Never echo the value: error messages end up in logs.
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError("expected a string (value not shown)")
    return value


JobName = Annotated[str, BeforeValidator(_job_name)]
Target = Annotated[str, BeforeValidator(_target)]
LabelName = Annotated[str, BeforeValidator(_label_name)]
LabelMap = Annotated[dict[LabelName, LabelValue], BeforeValidator(_label_map)]
Regex = RE2Regex
Secret = Annotated[str, BeforeValidator(_secret)]


class StaticConfig(Section):
    targets: tuple[Target, ...] = ()
    labels: LabelMap = Field(default_factory=dict)


class RelabelConfig(Section):
    """One `metric_relabel_configs` step (Prometheus semantics, see `vigil.scrape.relabel`)."""

    source_labels: tuple[LabelName, ...] = ()
    separator: str = ";"
    regex: Regex = "(.*)"
    target_label: str = ""
    replacement: str = "$1"
    action: Literal["replace", "keep", "drop", "labeldrop", "labelkeep"] = "replace"

    @model_validator(mode="after")
    def _check(self) -> RelabelConfig:
        if self.action == "replace":
            if not self.target_label:
                raise ValueError("action replace needs a target_label")
            # A templated target (`$1`) is checked after expansion, at relabel time.
            if "$" not in self.target_label and not is_valid_label_name(self.target_label):
                raise ValueError(f"expected a label name as target_label, got {show(self.target_label)}")
        elif self.action in ("labeldrop", "labelkeep"):
            if self.source_labels or self.target_label:
                raise ValueError(f"action {self.action} takes only a regex (matched against label names)")
        elif not self.source_labels:
            raise ValueError(f"action {self.action} needs source_labels")
        return self


class BasicAuth(Section):
    username: str = ""
    password: Secret = ""


class TLSConfig(Section):
    ca_file: OptionalPath = None
    cert_file: OptionalPath = None
    key_file: OptionalPath = None
    insecure_skip_verify: Bool = False
    server_name: str = ""

    @model_validator(mode="after")
    def _pair(self) -> TLSConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class ScrapeConfig(Section):
    job_name: JobName
    scrape_interval: PositiveDuration | None = None
    """Milliseconds; None means the agent's interval."""
    scrape_timeout: PositiveDuration = DEFAULT_TIMEOUT_MS
    metrics_path: str = "/metrics"
    scheme: Literal["http", "https"] = "http"
    params: Annotated[dict[str, tuple[str, ...]], BeforeValidator(_params)] = Field(default_factory=dict)
    honor_labels: Bool = False
    static_configs: tuple[StaticConfig, ...] = ()
    metric_relabel_configs: tuple[RelabelConfig, ...] = ()
    basic_auth: BasicAuth | None = None
    bearer_token: Secret = ""
    tls_config: TLSConfig = TLSConfig()
    sample_limit: Annotated[int, integer(minimum=0)] = 0
    """Most samples one scrape may return; more fails the scrape. 0 means no limit."""

    @model_validator(mode="after")
    def _check(self) -> ScrapeConfig:
        if not self.metrics_path.startswith("/"):
            raise ValueError(f"expected metrics_path to start with /, got {show(self.metrics_path)}")
        if self.basic_auth is not None and self.bearer_token:
            raise ValueError("basic_auth and bearer_token are mutually exclusive")
        # Only an explicit timeout conflicts; the default is shortened to the interval (see timing()).
        explicit = "scrape_timeout" in self.model_fields_set
        if explicit and self.scrape_interval is not None and self.scrape_timeout > self.scrape_interval:
            raise ValueError("scrape_timeout must not be greater than scrape_interval")
        return self

    def timing(self, default_interval_ms: int) -> tuple[int, int]:
        """(interval, timeout) in ms, filling in the agent's interval when none is set.

        An explicit timeout longer than the filled-in interval is a ValueError; the default 10s is
        shortened to the interval instead, as a user who set neither cannot have meant a conflict."""
        interval = self.scrape_interval if self.scrape_interval is not None else default_interval_ms
        timeout = self.scrape_timeout
        if timeout > interval:
            if "scrape_timeout" in self.model_fields_set:
                raise ValueError(
                    f"scrape_configs job {self.job_name!r}: scrape_timeout must not be greater than "
                    "scrape_interval"
                )
            timeout = interval
        return interval, timeout


def _unique_jobs(configs: tuple[ScrapeConfig, ...]) -> tuple[ScrapeConfig, ...]:
    seen: set[str] = set()
    for c in configs:
        if c.job_name in seen:
            raise ValueError(f"expected unique job names, got {show(c.job_name)} twice")
        seen.add(c.job_name)
    return configs


def _scrape_list(value: object) -> object:
    return () if value is None else value


ScrapeConfigs = Annotated[
    tuple[ScrapeConfig, ...], BeforeValidator(_scrape_list), AfterValidator(_unique_jobs)
]
