"""The `vigil.yml` schema, loading, command-line overrides and the network-exposure check.

Every key has a default, so Vigil runs without a file. Durations are held as int milliseconds and
sizes as int bytes. In the file they are written `15d` / `64MiB`; a bare number is accepted for sizes
(bytes) but not for durations other than `0`, because `retention: 30` has no obvious unit. Python
callers constructing the models directly may pass ints (milliseconds / bytes).

Every problem is reported as a `ConfigError` whose text is one line naming the file, the dotted key
and what was expected, e.g. `vigil.yml: storage.retention: expected a duration like 15d, got "forever"`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, ConfigDict, ValidationError, ValidationInfo, model_validator

from vigil.config.probes import CertificatesConfig, Probes
from vigil.config.rules import EventRules, RuleFiles, RulesConfig
from vigil.config.scrape import ScrapeConfigs
from vigil.config.security import (
    FileIntegrityConfig,
    ListeningPortsConfig,
    LogsConfig,
    SyslogConfig,
    UpdatesConfig,
)
from vigil.config.types import (
    DEFAULT_LISTEN,
    Bool,
    ConfigError,
    Duration,
    LabelValue,
    OptionalPath,
    OptionalToken,
    PositiveDuration,
    Section,
    Size,
    TokenList,
    check_data_path,
    check_external_url,
    check_listen,
    check_plain_url,
    integer,
)
from vigil.config.users import SessionConfig, UserConfig
from vigil.config.validate import KeyedError, error_message, key_path, load_yaml, read_yaml, validate
from vigil.model.duration import parse_duration, parse_size
from vigil.model.listen import is_loopback_listen
from vigil.model.show import show


class TenantAuth(Section):
    """One tenant's tokens: `server.auth.tenants.<name>`."""

    write_tokens: TokenList = ()
    """Tokens that write as this tenant: everything written with them gets `tenant=<name>`."""
    read_tokens: TokenList = ()
    """Tokens that read this tenant's data and nothing else (queries, series, labels, metadata, events)."""
    hmac_key: OptionalToken = ""
    """When set, writes with this tenant's tokens must be signed with this key, and with no other one.
    Required when `server.auth.hmac_key` is set, so no tenant can sign as another."""


def _tenants(value: object, info: ValidationInfo) -> object:
    # A mapping in the file; kept as sorted (name, TenantAuth) pairs so the frozen config stays hashable.
    if value in (None, {}):
        return ()
    if isinstance(value, tuple) and all(isinstance(pair, tuple) and len(pair) == 2 for pair in value):
        if all(isinstance(t, TenantAuth) for _, t in value):
            return value  # already normalised (a copy of a validated config)
        value = dict(value)  # (name, tokens) pairs from a Python caller
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of tenant name to its tokens, got {show(value)}")
    out = []
    for name, entry in value.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"expected a tenant name, got {show(name)}")
        if isinstance(entry, list | tuple):  # the shorthand `acme: [tok]`: write tokens
            if not entry:
                raise KeyedError(name, "expected a list of write tokens or a mapping, got an empty list")
            entry = {"write_tokens": list(entry)}
        elif isinstance(entry, TenantAuth):
            entry = entry.model_dump()
        elif not isinstance(entry, dict):
            raise KeyedError(
                name,
                "expected a list of write tokens or a mapping with keys "
                f"{', '.join(TenantAuth.model_fields)}, got {show(entry)}",
            )
        try:
            tenant = TenantAuth.model_validate(entry, context=info.context)
        except ValidationError as e:
            err = e.errors()[0]
            raise KeyedError(key_path((name, *err["loc"])), error_message(err, TenantAuth)) from None
        if not tenant.write_tokens and not tenant.read_tokens:
            raise KeyedError(name, "expected write_tokens or read_tokens, got neither")
        out.append((name, tenant))
    return tuple(sorted(out, key=lambda pair: pair[0]))


class AuthConfig(Section):
    write_tokens: TokenList = ()
    """Bearer tokens accepted on write endpoints; empty means writes are not authenticated. What they
    write has no `tenant` label. They also run admin endpoints when `admin_tokens` is empty."""
    read_tokens: TokenList = ()
    """Global readers: bearer tokens that read everything, every tenant's data included. Reads are not
    authenticated only when no token that can read is configured anywhere; `/metrics` is always open."""
    hmac_key: OptionalToken = ""
    """When set, write requests must carry a valid X-Vigil-Signature (HMAC-SHA256) made with this key;
    a tenant's writes are signed with the tenant's own `hmac_key` instead."""
    tenants: Annotated[tuple[tuple[str, TenantAuth], ...], BeforeValidator(_tenants)] = ()
    """Tenant name -> `{write_tokens, read_tokens, hmac_key}`, or a list as shorthand for write tokens.
    Everything written with a tenant's token gets `tenant=<name>` (a `tenant` label sent by the writer
    is never trusted); a tenant's read token sees only series, metadata and events with that tenant."""
    admin_tokens: TokenList = ()
    """Tokens for admin endpoints (`/api/v1/admin/...`); they also read everything. Empty: admin
    endpoints take `write_tokens` (never a tenant's)."""
    trusted_proxy_tokens: TokenList = ()
    """Tokens of a proxy that authenticates users itself and names their tenant in `X-Scope-OrgID`:
    a read with such a token is scoped to that tenant (which must be configured here), and one without
    the header is refused. `X-Scope-OrgID` is ignored with any other token."""
    users: tuple[UserConfig, ...] = ()
    """Local users of the web UI, `{name, password_hash, role, tenant}` (`vigil users add` prints an
    entry). With any configured, reads, admin endpoints and UI pages need a bearer token or a login
    session, also on loopback; writes are unchanged."""

    @model_validator(mode="after")
    def _unambiguous(self) -> AuthConfig:
        # A token must say who is calling: a tenant's token belongs to it alone, and a proxy token
        # cannot also be a global reader (the one reads everything, the other one tenant).
        owner: dict[str, str] = {}
        for key in ("write_tokens", "read_tokens", "admin_tokens"):
            for token in getattr(self, key):
                owner.setdefault(token, f"server.auth.{key}")
        for token in self.trusted_proxy_tokens:
            if owner.get(token) in ("server.auth.read_tokens", "server.auth.admin_tokens"):
                raise KeyedError(
                    "trusted_proxy_tokens",
                    f"expected tokens not also in {owner[token]}, got one that is (value not shown)",
                )
            owner.setdefault(token, "server.auth.trusted_proxy_tokens")
        for name, tenant in self.tenants:
            for key in ("write_tokens", "read_tokens"):
                for token in getattr(tenant, key):
                    other = owner.get(token)
                    if other is not None and other != f"server.auth.tenants.{name}":
                        raise KeyedError(
                            f"tenants.{name}.{key}",
                            f"expected this tenant's own tokens, got one also in {other} (value not shown)",
                        )
                    owner[token] = f"server.auth.tenants.{name}"
        self._check_hmac_keys()
        self._check_users()
        return self

    def _check_users(self) -> None:
        tenants = {name for name, _ in self.tenants}
        seen: set[str] = set()
        for i, user in enumerate(self.users):
            if user.name in seen:
                raise KeyedError(f"users[{i}].name", f"expected each name once, got {show(user.name)} twice")
            seen.add(user.name)
            if user.tenant and user.tenant not in tenants:
                raise KeyedError(
                    f"users[{i}].tenant",
                    f"expected a tenant of server.auth.tenants, got {show(user.tenant)}",
                )
            if user.tenant and user.role != "viewer":
                raise KeyedError(
                    f"users[{i}].role",
                    "expected viewer for a user with a tenant (silences, templates and admin act on "
                    f"every tenant's data), got {user.role}",
                )

    def _check_hmac_keys(self) -> None:
        # One key per signer: a key two tenants share lets either sign as the other.
        owner = {self.hmac_key: "server.auth.hmac_key"} if self.hmac_key else {}
        for name, tenant in self.tenants:
            where = f"tenants.{name}.hmac_key"
            if not tenant.hmac_key:
                if self.hmac_key and tenant.write_tokens:
                    raise KeyedError(
                        where,
                        "expected this tenant's own key when server.auth.hmac_key is set "
                        "(a shared key lets one tenant sign as another), got none",
                    )
            elif tenant.hmac_key in owner:
                raise KeyedError(
                    where,
                    f"expected a key of this tenant alone, got the same as {owner[tenant.hmac_key]} "
                    "(value not shown)",
                )
            else:
                owner[tenant.hmac_key] = f"server.auth.{where}"

    @property
    def authenticates_writes(self) -> bool:
        return bool(self.write_tokens or any(t.write_tokens for _, t in self.tenants))

    @property
    def authenticates_reads(self) -> bool:
        return bool(
            self.read_tokens
            or self.admin_tokens
            or self.trusted_proxy_tokens
            or any(t.read_tokens for _, t in self.tenants)
            or self.users
        )


class ServerConfig(Section):
    listen: Annotated[str, BeforeValidator(check_listen)] = DEFAULT_LISTEN
    insecure: Bool = False
    """Allow a non-loopback `listen` without auth tokens."""
    external_url: Annotated[str, BeforeValidator(check_external_url)] = ""
    auth: AuthConfig = AuthConfig()
    session: SessionConfig = SessionConfig()
    """Web UI login sessions (held in memory: a restart logs everyone out) and login rate limits."""
    syslog: SyslogConfig = SyslogConfig()
    """A syslog receiver in the server (for firewalls and network gear that send to it directly): lines
    go through the same auth parsing, log rules and unknown-line detection as the agent's."""
    keep_alive_timeout: PositiveDuration = parse_duration("2m")
    """How long an idle keep-alive connection stays open. Keep it well above the senders' send interval
    (Prometheus' `batch_send_deadline` is 5s): a server closing just as a sender reuses the connection
    makes the sender fail and retry that batch."""
    read_header_timeout: PositiveDuration = parse_duration("10s")
    """Longest a request's line and headers may take to arrive; slower clients get 408 and are closed."""
    read_timeout: PositiveDuration = parse_duration("1m")
    """Longest a request's body may take to arrive after its headers; slower clients get 408 and are
    closed. Allow for the largest body (`limits.max_request_body_bytes`) over the slowest sender's link."""
    max_connections: Annotated[int, integer(minimum=1)] = 512
    """Open HTTP connections at most; a request on a connection beyond it gets 503 and the connection is
    closed. Vigil raises its open-file limit (`ulimit -n`) to fit, up to the hard limit (`ulimit -Hn`)."""


class StorageConfig(Section):
    path: Annotated[Path, BeforeValidator(check_data_path)] = Path("data")
    """Data directory, relative to the working directory."""
    retention: PositiveDuration = parse_duration("15d")
    """How long data is kept behind the server's clock; older samples are refused."""
    out_of_order_window: Duration = parse_duration("10m")
    """How far behind its tenant's newest sample (or the clock, if that is earlier) a sample may
    arrive; 0 disables."""
    head_flush_interval: PositiveDuration = parse_duration("1h")
    """Sample time, or wall-clock time across restarts, the in-memory head covers before it is
    written out as a block."""
    wal_segment_size: Size = parse_size("64MiB")
    silence_retention: PositiveDuration = parse_duration("120h")
    """How long an expired silence is kept (and shown by `GET /api/v2/silences`) before it is dropped,
    as Alertmanager's `--data.retention`."""


class LimitsConfig(Section):
    max_request_body_bytes: Size = parse_size("32MiB")
    """Largest compressed request body; larger requests get 413."""
    max_decompressed_bytes: Size = parse_size("128MiB")
    """Largest body after decompression; larger requests get 413."""
    max_label_names_per_series: Annotated[int, integer(minimum=1)] = 64
    max_label_name_length: Annotated[int, integer(minimum=1)] = 256
    max_label_value_length: Annotated[int, integer(minimum=1)] = 4096
    max_samples_per_request: Annotated[int, integer(minimum=1)] = 1_000_000
    """Samples (plus histograms and exemplars) one write may hold, and series one remote write may
    hold; more gets 413 before the samples are decoded."""
    max_series: Annotated[int, integer(minimum=0)] = 1_000_000
    """Series the store may hold (0: no limit); a write that would create more gets 429."""
    max_series_per_tenant: Annotated[int, integer(minimum=0)] = 200_000
    """Series written with one tenant's tokens (`server.auth.tenants`) may reach (0: no limit);
    untenanted writes count against `max_series` only."""
    max_series_per_metric: Annotated[int, integer(minimum=0)] = 100_000
    """Series one metric name may have, per tenant (0: no limit); a label carrying ids is caught here."""
    max_event_fields: Annotated[int, integer(minimum=1)] = 256
    """Fields one event may carry; its labels share the series' label limits above, and field names
    are bounded like label names."""
    max_event_field_length: Annotated[int, integer(minimum=1)] = 16384
    """Characters a field value of an event may have."""
    max_json_depth: Annotated[int, integer(minimum=2)] = 8
    """Deepest nesting of objects and arrays in a JSON line (events need 2); deeper lines get 400
    before they are parsed."""
    future_grace: Duration = parse_duration("10m")
    """How far ahead of the server's clock a sample may be; later ones are refused (400) and counted."""
    max_silences: Annotated[int, integer(minimum=0)] = 10_000
    """Silences kept, expired ones included (0: no limit); creating one more is refused with 400, as
    Alertmanager's `--silences.max-silences`."""
    max_silence_size_bytes: Size = parse_size("64KiB")
    """Largest silence (its stored JSON record: matchers, comment, author); larger is refused with 400,
    as Alertmanager's `--silences.max-silence-size-bytes`."""


class QueryConfig(Section):
    timeout: PositiveDuration = parse_duration("2m")
    """Longest a PromQL query may run; longer ones get Prometheus' `timeout` error (503)."""
    max_samples: Annotated[int, integer(minimum=1)] = 50_000_000
    """Most samples one query may load; more gets an `execution` error (422)."""
    lookback_delta: PositiveDuration = parse_duration("5m")
    """How far back an instant selector looks for the latest sample."""


class ShipConfig(Section):
    url: Annotated[str, BeforeValidator(check_plain_url)] = ""
    """Remote-write URL to ship to (Vigil, Prometheus, VictoriaMetrics, Mimir). Empty: `vigil up` ships to
    its own server; `vigil agent` does not ship."""
    token: OptionalToken = ""
    """Bearer token sent with every request."""
    hmac_key: OptionalToken = ""
    """Shared key for the X-Vigil-Signature header (the server checks it when it has the same key)."""
    ca_file: OptionalPath = None
    cert_file: OptionalPath = None
    key_file: OptionalPath = None
    queue_max_size: Size = parse_size("512MiB")
    """On-disk queue size; past it the oldest data is dropped (and counted)."""
    queue_max_age: PositiveDuration = parse_duration("24h")
    max_samples_per_send: Annotated[int, integer(minimum=1)] = 2000
    events: Bool = True
    """Also ship security events, to the events endpoint beside `url` (`…/api/v1/events`). Turn off when
    shipping to a plain Prometheus-compatible store that has no events API."""
    connections: Annotated[int, integer(minimum=1)] = 2
    """Parallel connections; each series always travels on the same one, so its samples stay in order."""


def _optional_listen(value: object) -> str:
    return "" if value in ("", None) else check_listen(value)


class StatsdConfig(Section):
    udp_listen: Annotated[str, BeforeValidator(_optional_listen)] = "127.0.0.1:8125"
    """UDP address of the StatsD receiver; empty turns it off."""
    tcp_listen: Annotated[str, BeforeValidator(_optional_listen)] = ""
    prefix: LabelValue = ""
    max_series: Annotated[int, integer(minimum=1)] = 10_000
    """Series the receiver keeps at most; lines for new series beyond it are dropped and counted."""
    histogram_buckets: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
    """Buckets (seconds) for timers and histograms."""
    max_packet_bytes: Size = 65535


class AgentConfig(Section):
    listen: Annotated[str, BeforeValidator(check_listen)] = "127.0.0.1:9401"
    """Where the agent serves its own /metrics."""
    interval: PositiveDuration = parse_duration("10s")
    data_dir: Annotated[Path, BeforeValidator(check_data_path)] = Path("data/agent")
    """The shipping queue lives here."""
    job: LabelValue = "vigil-agent"
    instance: LabelValue = ""
    """Defaults to the host name."""
    cluster: LabelValue = ""
    app: LabelValue = ""
    disable: tuple[LabelValue, ...] = ()
    """Collectors to turn off by name (every default collector is on), e.g. [pressure, filesystem]."""
    enable: tuple[LabelValue, ...] = ()
    """Optional collectors to turn on (off by default, as in node_exporter), e.g. [processes]."""
    statsd: StatsdConfig = StatsdConfig()
    ship: ShipConfig = ShipConfig()
    logs: LogsConfig = LogsConfig()
    listening_ports: ListeningPortsConfig = ListeningPortsConfig()
    file_integrity: FileIntegrityConfig = FileIntegrityConfig()
    updates: UpdatesConfig = UpdatesConfig()
    probes: Probes = ()
    """blackbox_exporter-style probes (http, tcp, tls, dns, icmp) the agent runs on their own intervals."""
    certificates: CertificatesConfig = CertificatesConfig()
    """Local certificate files (globs) whose expiry and validity are measured."""


class AlertingConfig(Section):
    """`alerting:`: where alerts go, in Alertmanager's configuration format. Either
    `config_file: alertmanager.yml` (an existing Alertmanager file, used unchanged; relative to the
    directory of vigil.yml) or Alertmanager's schema inline (`route`, `receivers`, `inhibit_rules`,
    `time_intervals`, `templates`, `global`, ...). The inline keys are validated by
    `vigil.notifier.config.load_alerting`, which names them `alerting.<key>` in errors."""

    model_config: ClassVar[ConfigDict] = ConfigDict(extra="allow", frozen=True)
    config_file: OptionalPath = None
    """Path of an Alertmanager configuration file; not together with inline keys."""

    @model_validator(mode="after")
    def _one_source(self) -> AlertingConfig:
        if self.config_file is not None and self.model_extra:
            inline = ", ".join(sorted(self.model_extra))
            raise ValueError(f"expected either config_file or inline Alertmanager keys, got both ({inline})")
        return self

    @property
    def inline(self) -> dict[str, Any]:
        """The inline Alertmanager document (empty when not configured inline)."""
        return dict(self.model_extra or {})


class UIConfig(Section):
    dashboards_dir: OptionalPath = None
    """A directory of dashboard YAML files listed next to the built-in ones (relative to vigil.yml's
    directory; empty: the built-in dashboards only)."""


class Config(Section):
    """The whole `vigil.yml`. `Config()` is the all-defaults configuration."""

    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    limits: LimitsConfig = LimitsConfig()
    query: QueryConfig = QueryConfig()
    agent: AgentConfig = AgentConfig()
    scrape_configs: ScrapeConfigs = ()
    """Prometheus-style scrape jobs the agent runs (exporters, applications' /metrics)."""
    alerting: AlertingConfig = AlertingConfig()
    """Routing and receivers of notifications, in Alertmanager's format (inline or a file)."""
    rule_files: RuleFiles = ()
    """Prometheus rule files (globs, relative to the directory of vigil.yml) the server evaluates."""
    rules: RulesConfig = RulesConfig()
    """How rules are evaluated and alerts re-sent (Prometheus' flags, with its defaults)."""
    event_rules: EventRules = ()
    """Alerts raised by security events as they are stored (a new listening port, N failed logins)."""
    ui: UIConfig = UIConfig()
    """The web UI: where user dashboards are."""

    @model_validator(mode="after")
    def _scrape_timing(self) -> Config:
        # A job without its own interval scrapes at the agent's; its timeout must still fit in it.
        for job in self.scrape_configs:
            job.timing(self.agent.interval)  # raises ValueError naming the job
        return self

    def with_overrides(
        self,
        *,
        listen: str | None = None,
        data_dir: str | Path | None = None,
        retention: str | int | None = None,
        insecure: bool | None = None,
    ) -> Config:
        """A copy with command-line flags applied; `None` leaves a setting alone.

        Raises ConfigError naming the flag, e.g. `--retention: expected a duration like 15d, ...`.
        """
        server: dict[str, Any] = {}
        storage: dict[str, Any] = {}
        if listen is not None:
            server["listen"] = _check_flag("--listen", ServerConfig, "listen", listen)
        if insecure is not None:
            server["insecure"] = _check_flag("--insecure", ServerConfig, "insecure", insecure)
        if data_dir is not None:
            storage["path"] = _check_flag("--data-dir", StorageConfig, "path", data_dir)
        if retention is not None:
            # Flags are text like the file, but a Python caller passing an int means milliseconds.
            storage["retention"] = _check_flag("--retention", StorageConfig, "retention", retention)
        return self.model_copy(
            update={
                "server": self.server.model_copy(update=server),
                "storage": self.storage.model_copy(update=storage),
            }
        )


def _check_flag(flag: str, section: type[Section], field: str, value: object) -> Any:
    """Validate one flag value with the field's own validators, reporting errors against the flag."""
    try:
        validated = section.model_validate({field: value})
    except ValidationError as e:
        raise ConfigError(error_message(e.errors()[0], section), source=flag) from None
    return getattr(validated, field)


def config_from_dict(data: Any, source: str = "<config>") -> Config:
    """Validate an already-parsed `vigil.yml` document (None means empty) into a Config."""
    return validate(Config, data, source)


def config_from_yaml(text: str, source: str = "<config>") -> Config:
    """Parse and validate `vigil.yml` text."""
    return config_from_dict(load_yaml(text, source), source)


def load_config(path: Path | str | None) -> Config:
    """Load `vigil.yml` from `path`; None gives the all-defaults configuration."""
    if path is None:
        return Config()
    return config_from_dict(read_yaml(path), str(path))


def check_exposure(cfg: Config) -> None:
    """Refuse to serve beyond the local machine without authentication, unless told to.

    Raises ConfigError when `server.listen` is not loopback, writes or reads would be
    unauthenticated (no token of any kind that may do them) and `server.insecure` is false.
    """
    server = cfg.server
    if is_loopback_listen(server.listen) or server.insecure:
        return
    if server.auth.authenticates_writes and server.auth.authenticates_reads:
        return
    raise ConfigError(
        f"refusing to listen on {server.listen} without server.auth tokens; "
        "set write_tokens and read_tokens or pass --insecure",
        key="server.listen",
    )
