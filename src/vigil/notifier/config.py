"""Alertmanager's configuration file (`alertmanager.yml`) as pydantic models, with its defaults and
its validation, so an existing file loads unchanged (or is refused for the reasons Alertmanager
refuses it) and `vigil.yml`'s `alerting:` section can hold the same schema inline.

Schema: Alertmanager 0.25 (Debian's, the differential oracle) plus what later versions added that
Vigil implements: `msteams_configs` (0.26), `msteamsv2_configs` (0.28, Teams Workflows), quoted UTF-8
label names in matchers and `group_by`/`equal` (0.27+ fallback mode). Vigil's own additions are
`sms_configs` (a Twilio-style form POST to a configurable HTTP gateway) and `alertmanager_configs`
(forwarding the alerts to an external Alertmanager's `POST /api/v2/alerts`).

Integrations Alertmanager has and Vigil does not deliver to (pagerduty, opsgenie, wechat, pushover,
victorops, sns, telegram, discord, webex, ...) are *loaded* (their content is kept as written, so a
file that only differs in them still routes, and `vigil routes test` works on it) and reported by
`unsupported_integrations`; whoever starts delivery refuses them with `check_supported`, one line
naming the key. Silently dropping a page would be worse than refusing to start.

Errors are one line: `<file>: <key.path>: expected ..., got ...` (`ConfigError`).
Durations are integer milliseconds; URLs and secrets are kept as strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    model_validator,
)

from vigil.config.config import AlertingConfig, config_from_yaml
from vigil.config.types import ConfigError
from vigil.config.validate import KeyedError, StrictLoader, load_yaml, section_keys, validate
from vigil.model.duration import parse_duration
from vigil.model.show import show
from vigil.notifier.matchers import Matcher, MatcherError, Matchers, legacy_matchers, parse_matchers

__all__ = [
    "AlertmanagerConfig",
    "AlertmanagerForwardConfig",
    "EmailConfig",
    "GlobalConfig",
    "HTTPConfig",
    "InhibitRuleConfig",
    "MSTeamsConfig",
    "MSTeamsV2Config",
    "ReceiverConfig",
    "RouteConfig",
    "SlackConfig",
    "SmsConfig",
    "TimeIntervalConfig",
    "WebhookConfig",
    "alertmanager_config_from_dict",
    "alertmanager_config_from_yaml",
    "check_supported",
    "load_alertmanager_config",
    "unsupported_integrations",
]

_LEGACY_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_URL = re.compile(r"https?://[^/\s?#]+(?:[/?#]\S*)?")
_SECRET = "<secret>"


# ---------------------------------------------------------------------------------------------
# Value validators: each one checks the type too, so every message reads "expected ..., got ...".


def _string(value: object) -> str:
    # yaml.v2 decodes any scalar into a string field (`receiver: 123` is "123").
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {show(value)}")
    return value


def _duration(value: object) -> int:
    text = _string(value) if not isinstance(value, list | dict) else None
    if text is None or text == "":
        raise ValueError(f"expected a duration like 5m, got {show(value)}")
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError(f"expected a duration like 5m, got {show(value)}") from None


def _opt_duration(value: object) -> int | None:
    return None if value is None else _duration(value)


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {show(value)}")
    return value


def _opt_bool(value: object) -> bool | None:
    return None if value is None else _bool(value)


def _url(value: object) -> str:
    text = _string(value)
    if text == _SECRET:  # a config read back from an API shows secrets like this
        return text
    if _URL.fullmatch(text) is None:
        raise ValueError(f"expected an http(s) URL with a host, got {show(value)}")
    return text


def _opt_url(value: object) -> str | None:
    return None if value is None else _url(value)


def _string_list(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError(f"expected a list of strings, got {show(value)}")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, list | dict) or item is None:
            raise KeyedError(f"[{i}]", f"expected a string, got {show(item)}")
        out.append(_string(item))
    return tuple(out)


def _string_map(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of strings, got {show(value)}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if isinstance(v, list | dict):
            raise KeyedError(str(k), f"expected a string, got {show(v)}")
        out[_string(k)] = _string(v)
    return out


def _label_map(value: object) -> dict[str, str]:
    out = _string_map(value)
    for k in out:
        if _LEGACY_NAME.fullmatch(k) is None:
            raise KeyedError(k, f"expected a label name like [a-zA-Z_][a-zA-Z0-9_]*, got {show(k)}")
    return out


def _regex_map(value: object) -> dict[str, str]:
    out = _label_map(value)
    for k, v in out.items():
        try:
            Matcher("=~", k, f"^(?:{v})$")  # type: ignore[arg-type]
        except MatcherError as e:
            raise KeyedError(k, f"expected an RE2 regular expression, got {show(v)} ({e})") from None
    return out


def _matchers(value: object) -> Matchers:
    if value is None:
        return Matchers()
    if not isinstance(value, list):
        raise ValueError(
            f"expected a list of matcher strings like ['severity=\"critical\"'], got {show(value)}"
        )
    found: list[Matcher] = []
    for i, item in enumerate(value):
        if isinstance(item, list | dict) or item is None:
            raise KeyedError(
                f"[{i}]", f'expected a matcher string like severity="critical", got {show(item)}'
            )
        try:
            found.extend(parse_matchers(_string(item)))
        except MatcherError as e:
            raise KeyedError(
                f"[{i}]", f'expected matchers like severity=~"warn|crit", got {show(item)} ({e})'
            ) from None
    return Matchers.of(found)


def _label_names(value: object) -> tuple[str, ...]:
    names = _string_list(value)
    for i, n in enumerate(names):
        if n == "" or "\ufffd" in n:
            raise KeyedError(f"[{i}]", f"expected a label name, got {show(n)}")
    return names


def _group_by(value: object) -> tuple[str, ...]:
    names = _string_list(value)
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n != "..." and n == "":
            raise KeyedError(f"[{i}]", f"expected a label name or '...', got {show(n)}")
        if n in seen:
            raise KeyedError(f"[{i}]", f"expected each label once, got {show(n)} twice")
        seen.add(n)
    if "..." in seen and len(seen) > 1:
        raise ValueError("expected either ['...'] (group by all labels) or label names, got both")
    return names


Str = Annotated[str, BeforeValidator(_string)]
StrList = Annotated[tuple[str, ...], BeforeValidator(_string_list)]
StrMap = Annotated[dict[str, str], BeforeValidator(_string_map)]
Bool = Annotated[bool, BeforeValidator(_bool)]
OptBool = Annotated[bool | None, BeforeValidator(_opt_bool)]
Duration = Annotated[int, BeforeValidator(_duration)]
OptDuration = Annotated[int | None, BeforeValidator(_opt_duration)]
URL = Annotated[str, BeforeValidator(_url)]
OptURL = Annotated[str | None, BeforeValidator(_opt_url)]
LabelMap = Annotated[dict[str, str], BeforeValidator(_label_map)]
RegexMap = Annotated[dict[str, str], BeforeValidator(_regex_map)]
MatcherList = Annotated[Matchers, PlainValidator(_matchers)]
LabelNames = Annotated[tuple[str, ...], BeforeValidator(_label_names)]
GroupBy = Annotated[tuple[str, ...], BeforeValidator(_group_by)]


class _AM(BaseModel):
    """A section of the Alertmanager file: unknown keys are errors (Go's yaml.UnmarshalStrict)."""

    model_config: ClassVar[ConfigDict] = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, arbitrary_types_allowed=True
    )

    @model_validator(mode="before")
    @classmethod
    def _prepare(cls, data: Any) -> Any:
        if data is None:
            return {}
        if isinstance(data, dict):
            for key in data:
                if not isinstance(key, str):
                    raise ValueError(
                        f"unknown key {show(key)} (expected one of: {', '.join(section_keys(cls))})"
                    )
        return data


# ---------------------------------------------------------------------------------------------
# HTTP client settings (Prometheus' common HTTPClientConfig, the keys Vigil uses).


class BasicAuth(_AM):
    username: Str = ""
    password: Str = ""
    password_file: Str = ""


class Authorization(_AM):
    type: Str = "Bearer"
    credentials: Str = ""
    credentials_file: Str = ""


class TLSConfig(_AM):
    ca_file: Str = ""
    cert_file: Str = ""
    key_file: Str = ""
    ca: Str = ""
    cert: Str = ""
    key: Str = ""
    server_name: Str = ""
    insecure_skip_verify: Bool = False
    min_version: Str = ""
    max_version: Str = ""


class HTTPConfig(_AM):
    """`http_config`: how an integration talks HTTP (auth, TLS, proxy)."""

    basic_auth: BasicAuth | None = None
    authorization: Authorization | None = None
    bearer_token: Str = ""
    bearer_token_file: Str = ""
    oauth2: dict[str, Any] | None = None
    tls_config: TLSConfig = TLSConfig()
    proxy_url: OptURL = None
    no_proxy: Str = ""
    proxy_from_environment: Bool = False
    proxy_connect_header: dict[str, Any] | None = None
    follow_redirects: Bool = True
    enable_http2: Bool = True

    @model_validator(mode="after")
    def _one_auth(self) -> HTTPConfig:
        kinds = [
            self.basic_auth is not None,
            self.authorization is not None,
            bool(self.bearer_token or self.bearer_token_file),
            self.oauth2 is not None,
        ]
        if sum(kinds) > 1:
            raise ValueError(
                "expected at most one of basic_auth, authorization, bearer_token and oauth2, got several"
            )
        return self


# ---------------------------------------------------------------------------------------------
# global


class GlobalConfig(_AM):
    """`global`: defaults the integrations inherit."""

    resolve_timeout: Duration = 5 * 60_000
    http_config: HTTPConfig = HTTPConfig()
    smtp_from: Str = ""
    smtp_hello: Str = "localhost"
    smtp_smarthost: Str = ""
    smtp_auth_username: Str = ""
    smtp_auth_password: Str = ""
    smtp_auth_password_file: Str = ""
    smtp_auth_secret: Str = ""
    smtp_auth_identity: Str = ""
    smtp_require_tls: Bool = True
    smtp_tls_config: TLSConfig = TLSConfig()
    slack_api_url: OptURL = None
    slack_api_url_file: Str = ""
    pagerduty_url: URL = "https://events.pagerduty.com/v2/enqueue"
    opsgenie_api_url: URL = "https://api.opsgenie.com/"
    opsgenie_api_key: Str = ""
    opsgenie_api_key_file: Str = ""
    wechat_api_url: URL = "https://qyapi.weixin.qq.com/cgi-bin/"
    wechat_api_secret: Str = ""
    wechat_api_corp_id: Str = ""
    victorops_api_url: URL = "https://alert.victorops.com/integrations/generic/20131114/alert/"
    victorops_api_key: Str = ""
    victorops_api_key_file: Str = ""
    telegram_api_url: URL = "https://api.telegram.org"
    webex_api_url: URL = "https://webexapis.com/v1/messages"

    @model_validator(mode="after")
    def _at_most_one(self) -> GlobalConfig:
        for a, b in (
            ("slack_api_url", "slack_api_url_file"),
            ("opsgenie_api_key", "opsgenie_api_key_file"),
            ("victorops_api_key", "victorops_api_key_file"),
            ("smtp_auth_password", "smtp_auth_password_file"),
        ):
            if getattr(self, a) and getattr(self, b):
                raise ValueError(f"expected at most one of {a} and {b}, got both")
        return self


# ---------------------------------------------------------------------------------------------
# Integrations Vigil delivers to. Template fields left "" mean "Vigil's default template".


class _Notifier(_AM):
    send_resolved: OptBool = None
    """Whether resolved alerts are notified; None takes the integration's default."""

    default_send_resolved: ClassVar[bool] = False

    @property
    def sends_resolved(self) -> bool:
        return self.default_send_resolved if self.send_resolved is None else self.send_resolved


def _host_port(value: object) -> str:
    text = _string(value)
    if text == "":
        return text
    host, sep, port = text.rpartition(":")
    if not sep or port == "" or not port.isdigit():
        raise ValueError(f"expected host:port like smtp.example.com:587, got {show(value)}")
    if host.startswith("[") != host.endswith("]"):
        raise ValueError(f"expected host:port like [::1]:25, got {show(value)}")
    return text


HostPort = Annotated[str, BeforeValidator(_host_port)]


class EmailConfig(_Notifier):
    """`email_configs` item: SMTP delivery (STARTTLS unless `require_tls: false`)."""

    to: Str = ""
    from_: Str = Field("", alias="from")
    hello: Str = ""
    smarthost: HostPort = ""
    auth_username: Str = ""
    auth_password: Str = ""
    auth_password_file: Str = ""
    auth_secret: Str = ""
    auth_identity: Str = ""
    headers: StrMap = {}
    html: Str = ""
    text: Str = ""
    require_tls: OptBool = None
    tls_config: TLSConfig = TLSConfig()
    force_implicit_tls: OptBool = None

    @model_validator(mode="after")
    def _check(self) -> EmailConfig:
        if self.to == "":
            raise KeyedError("to", "expected a recipient address, got nothing")
        seen: set[str] = set()
        for h in self.headers:
            canon = "-".join(p[:1].upper() + p[1:].lower() for p in h.split("-"))
            if canon in seen:
                raise KeyedError(
                    "headers", f"expected each header once (names ignore case), got {show(canon)} twice"
                )
            seen.add(canon)
        return self


class SlackField(_AM):
    title: Str = ""
    value: Str = ""
    short: OptBool = None


class SlackConfirm(_AM):
    text: Str = ""
    title: Str = ""
    ok_text: Str = ""
    dismiss_text: Str = ""


class SlackAction(_AM):
    type: Str = ""
    text: Str = ""
    url: Str = ""
    style: Str = ""
    name: Str = ""
    value: Str = ""
    confirm: SlackConfirm | None = None


class SlackConfig(_Notifier):
    """`slack_configs` item: an incoming webhook (`api_url`) or a bot token (`app_token`)."""

    http_config: HTTPConfig | None = None
    api_url: OptURL = None
    api_url_file: Str = ""
    app_token: Str = ""
    app_token_file: Str = ""
    app_url: OptURL = None
    channel: Str = ""
    username: Str = ""
    color: Str = ""
    title: Str = ""
    title_link: Str = ""
    pretext: Str = ""
    text: Str = ""
    message_text: Str = ""
    fields: tuple[SlackField, ...] = ()
    short_fields: Bool = False
    footer: Str = ""
    fallback: Str = ""
    callback_id: Str = ""
    icon_emoji: Str = ""
    icon_url: Str = ""
    image_url: Str = ""
    thumb_url: Str = ""
    link_names: Bool = False
    mrkdwn_in: StrList = ()
    actions: tuple[SlackAction, ...] = ()
    update_message: Bool = False
    timeout: OptDuration = None

    @model_validator(mode="after")
    def _check(self) -> SlackConfig:
        if self.api_url and self.api_url_file:
            raise ValueError("expected at most one of api_url and api_url_file, got both")
        if self.app_token and self.app_token_file:
            raise ValueError("expected at most one of app_token and app_token_file, got both")
        if (self.api_url or self.api_url_file) and (self.app_token or self.app_token_file):
            raise ValueError(
                "expected at most one of api_url/api_url_file and app_token/app_token_file, got both"
            )
        return self


class WebhookConfig(_Notifier):
    """`webhook_configs` item: Alertmanager's version-4 JSON POSTed to `url`."""

    default_send_resolved: ClassVar[bool] = True
    http_config: HTTPConfig | None = None
    url: OptURL = None
    url_file: Str = ""
    max_alerts: Annotated[int, BeforeValidator(lambda v: _non_negative(v))] = 0
    timeout: OptDuration = None

    @model_validator(mode="after")
    def _check(self) -> WebhookConfig:
        if not self.url and not self.url_file:
            raise ValueError("expected one of url and url_file, got neither")
        if self.url and self.url_file:
            raise ValueError("expected at most one of url and url_file, got both")
        return self


def _non_negative(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected an integer >= 0, got {show(value)}")
    return value


class _TeamsBase(_Notifier):
    default_send_resolved: ClassVar[bool] = True
    http_config: HTTPConfig | None = None
    webhook_url: OptURL = None
    webhook_url_file: Str = ""
    title: Str = ""
    text: Str = ""

    @model_validator(mode="after")
    def _check(self) -> _TeamsBase:
        if not self.webhook_url and not self.webhook_url_file:
            raise ValueError("expected one of webhook_url and webhook_url_file, got neither")
        if self.webhook_url and self.webhook_url_file:
            raise ValueError("expected at most one of webhook_url and webhook_url_file, got both")
        return self


class MSTeamsConfig(_TeamsBase):
    """`msteams_configs` item: the O365-connector MessageCard (retired by Microsoft; kept as an option)."""

    summary: Str = ""


class MSTeamsV2Config(_TeamsBase):
    """`msteamsv2_configs` item: a Power Automate Workflows webhook receiving an Adaptive Card."""


class SmsConfig(_Notifier):
    """`sms_configs` item (Vigil's own): a Twilio-style form POST per recipient to `url`, with
    `from_field`=from, `to_field`=recipient, `body_field`=the rendered `text`; credentials in
    `http_config` (Twilio: basic_auth with the account SID and auth token)."""

    http_config: HTTPConfig | None = None
    url: URL = ""
    from_: Str = Field("", alias="from")
    to: StrList = ()
    text: Str = ""
    from_field: Str = "From"
    to_field: Str = "To"
    body_field: Str = "Body"

    @model_validator(mode="before")
    @classmethod
    def _required(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("url"):
            raise KeyedError("url", "expected the SMS gateway's http(s) URL, got nothing")
        return data

    @model_validator(mode="after")
    def _check(self) -> SmsConfig:
        if not self.to:
            raise KeyedError("to", "expected a list of phone numbers, got none")
        return self


class AlertmanagerForwardConfig(_Notifier):
    """`alertmanager_configs` item (Vigil's own): forward the alerts to an external Alertmanager's
    `POST <url>/api/v2/alerts`, so an existing Alertmanager keeps routing them."""

    default_send_resolved: ClassVar[bool] = True
    http_config: HTTPConfig | None = None
    url: URL = ""
    """Base URL of the Alertmanager (e.g. http://alertmanager:9093); `/api/v2/alerts` is appended."""
    timeout: OptDuration = None

    @model_validator(mode="before")
    @classmethod
    def _required(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("url"):
            raise KeyedError("url", "expected the Alertmanager's http(s) base URL, got nothing")
        return data


_SUPPORTED = (
    "email_configs",
    "slack_configs",
    "webhook_configs",
    "msteams_configs",
    "msteamsv2_configs",
    "sms_configs",
    "alertmanager_configs",
)
_KNOWN_UNSUPPORTED = (
    "discord_configs",
    "opsgenie_configs",
    "pagerduty_configs",
    "pushover_configs",
    "sns_configs",
    "telegram_configs",
    "victorops_configs",
    "webex_configs",
    "wechat_configs",
)


def _opaque_list(value: object) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError(f"expected a list of mappings, got {show(value)}")
    return tuple(value)


Opaque = Annotated[tuple[dict[str, Any], ...], BeforeValidator(_opaque_list)]


class ReceiverConfig(_AM):
    """`receivers` item: a named set of integrations."""

    name: Str = ""
    email_configs: tuple[EmailConfig, ...] = ()
    slack_configs: tuple[SlackConfig, ...] = ()
    webhook_configs: tuple[WebhookConfig, ...] = ()
    msteams_configs: tuple[MSTeamsConfig, ...] = ()
    msteamsv2_configs: tuple[MSTeamsV2Config, ...] = ()
    sms_configs: tuple[SmsConfig, ...] = ()
    alertmanager_configs: tuple[AlertmanagerForwardConfig, ...] = ()
    discord_configs: Opaque = ()
    opsgenie_configs: Opaque = ()
    pagerduty_configs: Opaque = ()
    pushover_configs: Opaque = ()
    sns_configs: Opaque = ()
    telegram_configs: Opaque = ()
    victorops_configs: Opaque = ()
    webex_configs: Opaque = ()
    wechat_configs: Opaque = ()

    @model_validator(mode="after")
    def _named(self) -> ReceiverConfig:
        if self.name == "":
            raise KeyedError("name", "expected a receiver name, got nothing")
        return self


# ---------------------------------------------------------------------------------------------
# route, inhibit_rules, time intervals


class RouteConfig(_AM):
    """A node of the routing tree as written; `vigil.notifier.routing.build_routes` applies the
    inheritance. Durations are ms; None means "inherit"."""

    receiver: Str = ""
    group_by: GroupBy | None = None
    match: LabelMap = {}
    match_re: RegexMap = {}
    matchers: MatcherList = Matchers()
    mute_time_intervals: StrList = ()
    active_time_intervals: StrList = ()
    continue_: Bool = Field(False, alias="continue")
    routes: tuple[RouteConfig, ...] = ()
    group_wait: OptDuration = None
    group_interval: OptDuration = None
    repeat_interval: OptDuration = None

    @model_validator(mode="after")
    def _check(self) -> RouteConfig:
        if self.group_interval == 0:
            raise KeyedError("group_interval", "expected a duration greater than zero, got 0")
        if self.repeat_interval == 0:
            raise KeyedError("repeat_interval", "expected a duration greater than zero, got 0")
        return self

    def all_matchers(self) -> Matchers:
        """match, match_re and matchers together, sorted as Alertmanager sorts them."""
        return Matchers.of([*legacy_matchers(self.match, self.match_re), *self.matchers])


class InhibitRuleConfig(_AM):
    """`inhibit_rules` item: while an alert matching the source exists, alerts matching the target
    with the same values of `equal` are not notified."""

    source_match: LabelMap = {}
    source_match_re: RegexMap = {}
    source_matchers: MatcherList = Matchers()
    target_match: LabelMap = {}
    target_match_re: RegexMap = {}
    target_matchers: MatcherList = Matchers()
    equal: LabelNames = ()

    def source(self) -> Matchers:
        return Matchers.of([*legacy_matchers(self.source_match, self.source_match_re), *self.source_matchers])

    def target(self) -> Matchers:
        return Matchers.of([*legacy_matchers(self.target_match, self.target_match_re), *self.target_matchers])


class TimeRangeConfig(_AM):
    start_time: Str = ""
    end_time: Str = ""


class TimeSpecConfig(_AM):
    """One entry of a time interval; checked and compiled by `vigil.notifier.timeintervals`."""

    times: tuple[TimeRangeConfig, ...] | None = None
    weekdays: StrList | None = None
    days_of_month: StrList | None = None
    months: StrList | None = None
    years: StrList | None = None
    location: Str | None = None

    @model_validator(mode="after")
    def _check(self) -> TimeSpecConfig:
        from vigil.notifier.timeintervals import compile_spec

        compile_spec(self)  # raises KeyedError-like ValueErrors naming the key
        return self


class TimeIntervalConfig(_AM):
    """`time_intervals` / `mute_time_intervals` item."""

    name: Str = ""
    time_intervals: tuple[TimeSpecConfig, ...] = ()

    @model_validator(mode="after")
    def _named(self) -> TimeIntervalConfig:
        if self.name == "":
            raise KeyedError("name", "expected a time interval name, got nothing")
        return self


class AlertmanagerConfig(_AM):
    """A whole Alertmanager configuration file."""

    global_: GlobalConfig = Field(GlobalConfig(), alias="global")
    route: RouteConfig | None = None
    inhibit_rules: tuple[InhibitRuleConfig, ...] = ()
    receivers: tuple[ReceiverConfig, ...] = ()
    templates: StrList = ()
    mute_time_intervals: tuple[TimeIntervalConfig, ...] = ()
    time_intervals: tuple[TimeIntervalConfig, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> AlertmanagerConfig:
        g = self.global_
        names: dict[str, int] = {}
        for i, rcv in enumerate(self.receivers):
            if rcv.name in names:
                raise KeyedError(
                    f"receivers[{i}].name",
                    f"expected a unique receiver name, got {show(rcv.name)} "
                    f"(also receivers[{names[rcv.name]}])",
                )
            names[rcv.name] = i
            for j, ec in enumerate(rcv.email_configs):
                if not ec.smarthost and not g.smtp_smarthost:
                    raise KeyedError(
                        f"receivers[{i}].email_configs[{j}].smarthost",
                        "expected host:port here or global.smtp_smarthost, got neither",
                    )
                if not ec.from_ and not g.smtp_from:
                    raise KeyedError(
                        f"receivers[{i}].email_configs[{j}].from",
                        "expected a sender here or global.smtp_from, got neither",
                    )
            for j, sc in enumerate(rcv.slack_configs):
                if not (sc.api_url or sc.api_url_file or sc.app_token or sc.app_token_file) and not (
                    g.slack_api_url or g.slack_api_url_file
                ):
                    raise KeyedError(
                        f"receivers[{i}].slack_configs[{j}].api_url",
                        "expected a Slack webhook URL here or global.slack_api_url, got neither",
                    )
            for j, dc in enumerate(rcv.discord_configs):
                if not dc.get("webhook_url") and not dc.get("webhook_url_file"):
                    raise KeyedError(
                        f"receivers[{i}].discord_configs[{j}].webhook_url",
                        "expected a Discord webhook URL, got nothing",
                    )
            for j, wc in enumerate(rcv.wechat_configs):
                for key, glob in (("api_secret", g.wechat_api_secret), ("corp_id", g.wechat_api_corp_id)):
                    if not wc.get(key) and not glob:
                        raise KeyedError(
                            f"receivers[{i}].wechat_configs[{j}].{key}",
                            f"expected {key} here or in global, got neither",
                        )
            for j, oc in enumerate(rcv.opsgenie_configs):
                if (
                    not oc.get("api_key")
                    and not oc.get("api_key_file")
                    and not (g.opsgenie_api_key or g.opsgenie_api_key_file)
                ):
                    raise KeyedError(
                        f"receivers[{i}].opsgenie_configs[{j}].api_key",
                        "expected api_key here or global.opsgenie_api_key, got neither",
                    )
            for j, vc in enumerate(rcv.victorops_configs):
                if (
                    not vc.get("api_key")
                    and not vc.get("api_key_file")
                    and not (g.victorops_api_key or g.victorops_api_key_file)
                ):
                    raise KeyedError(
                        f"receivers[{i}].victorops_configs[{j}].api_key",
                        "expected api_key here or global.victorops_api_key, got neither",
                    )
        route = self.route
        if route is None:
            raise KeyedError("route", "expected the root route (a mapping with a receiver), got nothing")
        if route.receiver == "":
            raise KeyedError("route.receiver", "expected the default receiver on the root route, got nothing")
        if route.match or route.match_re or route.matchers:
            raise KeyedError(
                "route", "expected no matchers on the root route (it matches every alert), got some"
            )
        if route.mute_time_intervals:
            raise KeyedError("route.mute_time_intervals", "expected none on the root route, got some")
        if route.active_time_intervals:
            raise KeyedError("route.active_time_intervals", "expected none on the root route, got some")
        if route.continue_:
            raise KeyedError("route.continue", "expected false on the root route, got true")
        for path, node in _walk(route, "route"):
            if node.receiver and node.receiver not in names:
                raise KeyedError(
                    f"{path}.receiver",
                    f"expected the name of a receiver, got undefined {show(node.receiver)}",
                )
        intervals: set[str] = set()
        for key in ("mute_time_intervals", "time_intervals"):
            for i, ti in enumerate(getattr(self, key)):
                if ti.name in intervals:
                    raise KeyedError(
                        f"{key}[{i}].name",
                        f"expected a unique time interval name, got {show(ti.name)} twice",
                    )
                intervals.add(ti.name)
        for path, node in _walk(route, "route"):
            for key in ("active_time_intervals", "mute_time_intervals"):
                for i, name in enumerate(getattr(node, key)):
                    if name not in intervals:
                        raise KeyedError(
                            f"{path}.{key}[{i}]",
                            f"expected the name of a time interval, got undefined {show(name)}",
                        )
        return self

    def receiver(self, name: str) -> ReceiverConfig:
        for r in self.receivers:
            if r.name == name:
                return r
        raise KeyError(name)

    def intervals(self) -> dict[str, tuple[TimeSpecConfig, ...]]:
        """Every named time interval, from both lists."""
        return {ti.name: ti.time_intervals for ti in (*self.mute_time_intervals, *self.time_intervals)}


def _walk(route: RouteConfig, path: str) -> Iterator[tuple[str, RouteConfig]]:
    # Children first, as Alertmanager checks them (the first error it reports is the deepest).
    for i, child in enumerate(route.routes):
        yield from _walk(child, f"{path}.routes[{i}]")
    yield path, route


def unsupported_integrations(cfg: AlertmanagerConfig) -> list[str]:
    """`receivers[i].<key>` for every integration Vigil does not deliver to."""
    return [
        f"receivers[{i}].{key}"
        for i, rcv in enumerate(cfg.receivers)
        for key in _KNOWN_UNSUPPORTED
        if getattr(rcv, key)
    ]


def check_supported(cfg: AlertmanagerConfig, source: str, prefix: str = "") -> None:
    """Raise ConfigError naming the first integration Vigil cannot deliver to."""
    bad = unsupported_integrations(cfg)
    if bad:
        raise ConfigError(
            f"expected one of {', '.join(_SUPPORTED)}, got an integration Vigil does not deliver to",
            source=source,
            key=prefix + bad[0],
        )


# ---------------------------------------------------------------------------------------------
# Loading (errors are turned into one line by vigil.config.validate).


def alertmanager_config_from_dict(
    data: object, source: str = "alertmanager.yml", prefix: str = ""
) -> AlertmanagerConfig:
    """Validate a parsed Alertmanager document. `prefix` is prepended to key paths in errors
    (`alerting.` when the document is inline in vigil.yml)."""
    if data is None:
        raise ConfigError(
            "expected an Alertmanager configuration with a route, got an empty document",
            source=source,
            key=prefix.rstrip(".") or None,
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping, got {show(data)}", source=source, key=prefix.rstrip(".") or None
        )
    return validate(AlertmanagerConfig, data, source, from_text=False, key_prefix=prefix)


def alertmanager_config_from_yaml(text: str, source: str = "alertmanager.yml") -> AlertmanagerConfig:
    """Parse and validate Alertmanager configuration text (YAML read as vigil.yml is)."""
    return alertmanager_config_from_dict(load_yaml(text, source), source)


def load_alertmanager_config(path: str | Path) -> AlertmanagerConfig:
    """Load an Alertmanager file; relative `templates` globs are resolved against its directory."""
    source = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", source=source) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"cannot read: not UTF-8 (bad byte at offset {e.start})", source=source) from None
    cfg = alertmanager_config_from_yaml(text, source)
    return resolve_paths(cfg, Path(path).parent)


def resolve_paths(cfg: AlertmanagerConfig, base: Path) -> AlertmanagerConfig:
    """Template globs relative to `base`, as Alertmanager joins them with the file's directory."""
    templates = tuple(t if not t or Path(t).is_absolute() else str(base / t) for t in cfg.templates)
    return cfg.model_copy(update={"templates": templates})


def receivers_by_name(cfg: AlertmanagerConfig) -> Mapping[str, ReceiverConfig]:
    return {r.name: r for r in cfg.receivers}


def load_alerting(
    alerting: AlertingConfig, source: str, base_dir: Path | None = None
) -> AlertmanagerConfig | None:
    """The Alertmanager configuration `vigil.yml`'s `alerting:` section stands for: the file it
    names (relative to `base_dir`, the directory of vigil.yml) or its inline keys; None when the
    section is empty (no notifications). Inline errors are named `alerting.<key>` in `source`."""
    if alerting.config_file is not None:
        path = alerting.config_file
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        return load_alertmanager_config(path)
    if not alerting.inline:
        return None
    cfg = alertmanager_config_from_dict(alerting.inline, source, prefix="alerting.")
    return resolve_paths(cfg, base_dir) if base_dir is not None else cfg


def load_routing_source(path: str | Path) -> AlertmanagerConfig:
    """An Alertmanager file, or a vigil.yml whose `alerting:` section configures one (for
    `vigil routes test --config FILE`)."""
    source = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", source=source) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"cannot read: not UTF-8 (bad byte at offset {e.start})", source=source) from None
    try:
        data = yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError:
        data = None  # reported with its position by the loader below
    if isinstance(data, dict) and "alerting" in data:
        cfg = config_from_yaml(text, source)
        found = load_alerting(cfg.alerting, source, Path(path).parent)
        if found is None:
            raise ConfigError(
                "expected an Alertmanager configuration (inline or config_file), got nothing",
                source=source,
                key="alerting",
            )
        return found
    return load_alertmanager_config(path)
