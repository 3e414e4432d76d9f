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
from typing import Annotated, Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, BeforeValidator, ValidationError, ValidationInfo, model_validator

from vigil.config.probes import CertificatesConfig, Probes
from vigil.config.scrape import ScrapeConfigs
from vigil.config.security import (
    FileIntegrityConfig,
    ListeningPortsConfig,
    LogsConfig,
    SyslogConfig,
    UpdatesConfig,
)
from vigil.config.types import (
    _FROM_TEXT,
    DEFAULT_LISTEN,
    Bool,
    ConfigError,
    Duration,
    LabelValue,
    OptionalPath,
    OptionalToken,
    PositiveDuration,
    Size,
    TokenList,
    _data_path,
    _external_url,
    _integer,
    _listen,
    _plain_url,
    _Section,
    _show,
    is_loopback_listen,
    parse_duration,
    parse_size,
)

M = TypeVar("M", bound=BaseModel)


class _KeyedError(ValueError):
    """A validator's error about a key below the field it validates (`tenants.acme.read_tokens`), so
    the one-line message can name that key rather than only the field."""

    def __init__(self, subkey: str, message: str) -> None:
        super().__init__(message)
        self.subkey = subkey


class TenantAuth(_Section):
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
        raise ValueError(f"expected a mapping of tenant name to its tokens, got {_show(value)}")
    out = []
    for name, entry in value.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"expected a tenant name, got {_show(name)}")
        if isinstance(entry, list | tuple):  # the shorthand `acme: [tok]`: write tokens
            if not entry:
                raise _KeyedError(name, "expected a list of write tokens or a mapping, got an empty list")
            entry = {"write_tokens": list(entry)}
        elif isinstance(entry, TenantAuth):
            entry = entry.model_dump()
        elif not isinstance(entry, dict):
            raise _KeyedError(
                name,
                "expected a list of write tokens or a mapping with keys "
                f"{', '.join(TenantAuth.model_fields)}, got {_show(entry)}",
            )
        try:
            tenant = TenantAuth.model_validate(entry, context=info.context)
        except ValidationError as e:
            err = e.errors()[0]
            raise _KeyedError(_key_path((name, *err["loc"])), _error_message(err, TenantAuth)) from None
        if not tenant.write_tokens and not tenant.read_tokens:
            raise _KeyedError(name, "expected write_tokens or read_tokens, got neither")
        out.append((name, tenant))
    return tuple(sorted(out, key=lambda pair: pair[0]))


class AuthConfig(_Section):
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
                raise _KeyedError(
                    "trusted_proxy_tokens",
                    f"expected tokens not also in {owner[token]}, got one that is (value not shown)",
                )
            owner.setdefault(token, "server.auth.trusted_proxy_tokens")
        for name, tenant in self.tenants:
            for key in ("write_tokens", "read_tokens"):
                for token in getattr(tenant, key):
                    other = owner.get(token)
                    if other is not None and other != f"server.auth.tenants.{name}":
                        raise _KeyedError(
                            f"tenants.{name}.{key}",
                            f"expected this tenant's own tokens, got one also in {other} (value not shown)",
                        )
                    owner[token] = f"server.auth.tenants.{name}"
        self._check_hmac_keys()
        return self

    def _check_hmac_keys(self) -> None:
        # One key per signer: a key two tenants share lets either sign as the other.
        owner = {self.hmac_key: "server.auth.hmac_key"} if self.hmac_key else {}
        for name, tenant in self.tenants:
            where = f"tenants.{name}.hmac_key"
            if not tenant.hmac_key:
                if self.hmac_key and tenant.write_tokens:
                    raise _KeyedError(
                        where,
                        "expected this tenant's own key when server.auth.hmac_key is set "
                        "(a shared key lets one tenant sign as another), got none",
                    )
            elif tenant.hmac_key in owner:
                raise _KeyedError(
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
        )


class ServerConfig(_Section):
    listen: Annotated[str, BeforeValidator(_listen)] = DEFAULT_LISTEN
    insecure: Bool = False
    """Allow a non-loopback `listen` without auth tokens."""
    external_url: Annotated[str, BeforeValidator(_external_url)] = ""
    auth: AuthConfig = AuthConfig()
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
    max_connections: Annotated[int, _integer(minimum=1)] = 512
    """Open HTTP connections at most; a request on a connection beyond it gets 503 and the connection is
    closed. Vigil raises its open-file limit (`ulimit -n`) to fit, up to the hard limit (`ulimit -Hn`)."""


class StorageConfig(_Section):
    path: Annotated[Path, BeforeValidator(_data_path)] = Path("data")
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


class LimitsConfig(_Section):
    max_request_body_bytes: Size = parse_size("32MiB")
    """Largest compressed request body; larger requests get 413."""
    max_decompressed_bytes: Size = parse_size("128MiB")
    """Largest body after decompression; larger requests get 413."""
    max_label_names_per_series: Annotated[int, _integer(minimum=1)] = 64
    max_label_name_length: Annotated[int, _integer(minimum=1)] = 256
    max_label_value_length: Annotated[int, _integer(minimum=1)] = 4096
    max_samples_per_request: Annotated[int, _integer(minimum=1)] = 1_000_000
    """Samples (plus histograms and exemplars) one write may hold, and series one remote write may
    hold; more gets 413 before the samples are decoded."""
    max_series: Annotated[int, _integer(minimum=0)] = 1_000_000
    """Series the store may hold (0: no limit); a write that would create more gets 429."""
    max_series_per_tenant: Annotated[int, _integer(minimum=0)] = 200_000
    """Series written with one tenant's tokens (`server.auth.tenants`) may reach (0: no limit);
    untenanted writes count against `max_series` only."""
    max_series_per_metric: Annotated[int, _integer(minimum=0)] = 100_000
    """Series one metric name may have, per tenant (0: no limit); a label carrying ids is caught here."""
    max_event_fields: Annotated[int, _integer(minimum=1)] = 256
    """Fields one event may carry; its labels share the series' label limits above, and field names
    are bounded like label names."""
    max_event_field_length: Annotated[int, _integer(minimum=1)] = 16384
    """Characters a field value of an event may have."""
    max_json_depth: Annotated[int, _integer(minimum=2)] = 8
    """Deepest nesting of objects and arrays in a JSON line (events need 2); deeper lines get 400
    before they are parsed."""
    future_grace: Duration = parse_duration("10m")
    """How far ahead of the server's clock a sample may be; later ones are refused (400) and counted."""


class QueryConfig(_Section):
    timeout: PositiveDuration = parse_duration("2m")
    """Longest a PromQL query may run; longer ones get Prometheus' `timeout` error (503)."""
    max_samples: Annotated[int, _integer(minimum=1)] = 50_000_000
    """Most samples one query may load; more gets an `execution` error (422)."""
    lookback_delta: PositiveDuration = parse_duration("5m")
    """How far back an instant selector looks for the latest sample."""


class ShipConfig(_Section):
    url: Annotated[str, BeforeValidator(_plain_url)] = ""
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
    max_samples_per_send: Annotated[int, _integer(minimum=1)] = 2000
    events: Bool = True
    """Also ship security events, to the events endpoint beside `url` (`…/api/v1/events`). Turn off when
    shipping to a plain Prometheus-compatible store that has no events API."""
    connections: Annotated[int, _integer(minimum=1)] = 2
    """Parallel connections; each series always travels on the same one, so its samples stay in order."""


def _optional_listen(value: object) -> str:
    return "" if value in ("", None) else _listen(value)


class StatsdConfig(_Section):
    udp_listen: Annotated[str, BeforeValidator(_optional_listen)] = "127.0.0.1:8125"
    """UDP address of the StatsD receiver; empty turns it off."""
    tcp_listen: Annotated[str, BeforeValidator(_optional_listen)] = ""
    prefix: LabelValue = ""
    max_series: Annotated[int, _integer(minimum=1)] = 10_000
    """Series the receiver keeps at most; lines for new series beyond it are dropped and counted."""
    histogram_buckets: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
    """Buckets (seconds) for timers and histograms."""
    max_packet_bytes: Size = 65535


class AgentConfig(_Section):
    listen: Annotated[str, BeforeValidator(_listen)] = "127.0.0.1:9401"
    """Where the agent serves its own /metrics."""
    interval: PositiveDuration = parse_duration("10s")
    data_dir: Annotated[Path, BeforeValidator(_data_path)] = Path("data/agent")
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


class Config(_Section):
    """The whole `vigil.yml`. `Config()` is the all-defaults configuration."""

    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    limits: LimitsConfig = LimitsConfig()
    query: QueryConfig = QueryConfig()
    agent: AgentConfig = AgentConfig()
    scrape_configs: ScrapeConfigs = ()
    """Prometheus-style scrape jobs the agent runs (exporters, applications' /metrics)."""

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


def _check_flag(flag: str, section: type[_Section], field: str, value: object) -> Any:
    """Validate one flag value with the field's own validators, reporting errors against the flag."""
    try:
        validated = section.model_validate({field: value})
    except ValidationError as e:
        raise ConfigError(_error_message(e.errors()[0], section), source=flag) from None
    return getattr(validated, field)


# ---------------------------------------------------------------------------------------------
# Turning pydantic's errors into one line.


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class a location inside `root` refers to, if it is a section (list items too)."""
    at: Any = root
    for part in loc:
        if isinstance(part, int):  # an item of a tuple[Section, ...] / list[Section] field
            args = get_args(at)
            at = args[0] if args else None
        elif isinstance(at, type) and issubclass(at, BaseModel) and part in at.model_fields:
            at = at.model_fields[part].annotation
        else:
            return None
    return at if isinstance(at, type) and issubclass(at, BaseModel) else None


def _error_message(err: Any, root: type[BaseModel]) -> str:
    """Render one pydantic error as "<what was expected>, got <what was there>"."""
    kind: str = err["type"]
    loc: tuple[int | str, ...] = tuple(err["loc"])
    if kind == "value_error":
        # Our validators write complete "expected ..., got ..." messages.
        return str(err["ctx"]["error"])
    if kind == "extra_forbidden":
        parent = _model_at(root, loc[:-1])
        known = ", ".join(parent.model_fields) if parent is not None else "?"
        return f"unknown key (expected one of: {known})"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        section = _model_at(root, loc)
        keys = f" with keys {', '.join(section.model_fields)}" if section is not None else ""
        return f"expected a mapping{keys}, got {_show(err['input'])}"
    # Not produced by this schema as far as we know; keep pydantic's wording rather than lose it.
    return f"{err['msg'][:1].lower()}{err['msg'][1:]}, got {_show(err.get('input'))}"


def _translate(e: ValidationError, source: str, root: type[BaseModel] | None = None) -> ConfigError:
    err = e.errors()[0]
    key = _key_path(tuple(err["loc"]))
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, _KeyedError):  # about a key below the field the validator checks
        key = f"{key}.{cause.subkey}" if key else cause.subkey
    return ConfigError(_error_message(err, root or Config), source=source, key=key or None)


# ---------------------------------------------------------------------------------------------
# Loading.


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys: a second `auth:` silently replacing the first is
    exactly the kind of mistake that turns authentication off."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key; SafeLoader reports that itself below
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_show(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def config_from_dict(data: Any, source: str = "<config>") -> Config:
    """Validate an already-parsed `vigil.yml` document (None means empty) into a Config."""
    if data is None:
        data = {}
    try:
        return Config.model_validate(data, context={_FROM_TEXT: True})
    except ValidationError as e:
        raise _translate(e, source) from None


def config_from_yaml(text: str, source: str = "<config>") -> Config:
    """Parse and validate `vigil.yml` text."""
    return config_from_dict(parse_yaml(text, source), source)


def parse_yaml(text: str, source: str) -> Any:
    """YAML text as plain data (duplicate keys rejected); syntax errors as a one-line ConfigError."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass, so no arbitrary objects
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "syntax error"
        if mark is None:
            raise ConfigError(f"invalid YAML: {problem}", source=source) from None
        raise ConfigError(
            f"invalid YAML: {problem}", source=source, line=mark.line + 1, column=mark.column + 1
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {e}".splitlines()[0], source=source) from None
    return data


def model_from_dict(model: type[M], data: Any, source: str) -> M:
    """Validate a parsed document of another file format (e.g. a rule unit-test file) into `model`,
    with the same one-line errors as `vigil.yml` (`file: key.path: expected ..., got ...`)."""
    try:
        return model.model_validate({} if data is None else data, context={_FROM_TEXT: True})
    except ValidationError as e:
        raise _translate(e, source, model) from None


def load_config(path: Path | str | None) -> Config:
    """Load `vigil.yml` from `path`; None gives the all-defaults configuration."""
    if path is None:
        return Config()
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", source=source) from None
    try:
        text = raw.decode("utf-8-sig")  # tolerate a BOM from Windows editors
    except UnicodeDecodeError as e:
        raise ConfigError(f"cannot read: not UTF-8 (bad byte at offset {e.start})", source=source) from None
    return config_from_yaml(text, source)


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
