"""The `vigil.yml` schema, loading, command-line overrides and the network-exposure check.

Every key has a default, so Vigil runs without a file. Durations are held as int milliseconds and
sizes as int bytes. In the file they are written `15d` / `64MiB`; a bare number is accepted for sizes
(bytes) but not for durations other than `0`, because `retention: 30` has no obvious unit. Python
callers constructing the models directly may pass ints (milliseconds / bytes).

Every problem is reported as a `ConfigError` whose text is one line naming the file, the dotted key
and what was expected, e.g. `vigil.yml: storage.retention: expected a duration like 15d, got "forever"`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo, model_validator

from vigil.model.duration import parse_duration, parse_size

DEFAULT_LISTEN = "127.0.0.1:9400"

# Set by config_from_dict: values then come from YAML text, where a bare number is not a duration.
_FROM_TEXT = "vigil_from_text"


class ConfigError(Exception):
    """A configuration problem, rendered as one line: `<source>: <key>: <message>`.

    `source` is a file name (with `:line:column` for YAML syntax errors) or a flag such as
    `--retention`; `key` is the dotted path inside the file. Either may be absent.
    """

    def __init__(
        self,
        message: str,
        source: str | None = None,
        key: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        # All fields go to Exception.args so the error survives pickling (multiprocessing, logging).
        super().__init__(message, source, key, line, column)
        self.message = message
        self.source = source
        self.key = key
        self.line = line
        self.column = column

    def __str__(self) -> str:
        parts: list[str] = []
        if self.source:
            where = self.source
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            parts.append(where)
        if self.key:
            parts.append(self.key)
        parts.append(self.message)
        return ": ".join(parts)


def _show(value: object) -> str:
    """Render what was found in the file for the "got ..." part of a message."""
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return json.dumps(text, ensure_ascii=False)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return json.dumps(str(value), ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# Field validators. Each one does all the checking itself (type included) so every message has the
# "expected ..., got <what the user wrote>" shape, rather than pydantic's wording.


def _from_text(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get(_FROM_TEXT))


def _duration(*, positive: bool) -> BeforeValidator:
    def validate(value: object, info: ValidationInfo) -> int:
        if isinstance(value, str):
            ms = parse_duration(value)  # its ValueError already reads "expected a duration like 15d, ..."
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            if _from_text(info) and value != 0:
                hint = f" (add a unit, e.g. {value}s or {value}m)"
                raise ValueError(f"expected a duration like 15d, got {_show(value)}{hint}")
            ms = value
        else:
            raise ValueError(f"expected a duration like 15d, got {_show(value)}")
        if positive and ms == 0:
            raise ValueError(f"expected a duration greater than zero like 15d, got {_show(value)}")
        return ms

    return BeforeValidator(validate)


def _size(*, minimum: int = 1) -> BeforeValidator:
    def validate(value: object) -> int:
        # bool checked here so YAML `true` is shown as `true`, not Python's `True`.
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"expected a size like 512MiB, got {_show(value)}")
        n = parse_size(value)  # its ValueError already reads "expected a size like 512MiB, got ..."
        if n < minimum:
            raise ValueError(f"expected a size of at least {minimum} bytes, got {_show(value)}")
        return n

    return BeforeValidator(validate)


def _integer(*, minimum: int) -> BeforeValidator:
    def validate(value: object) -> int:
        # bool is an int subclass; `true` in a count field is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"expected an integer >= {minimum}, got {_show(value)}")
        return value

    return BeforeValidator(validate)


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_show(value)}")
    return value


_TOKEN_RE = re.compile(r"[\x21-\x7e]+")


def _token(value: object) -> str:
    # Never echo the value: it is a secret and error messages end up in logs.
    if isinstance(value, str) and value == "":
        raise ValueError('expected a non-empty token, got ""')
    if not isinstance(value, str):
        kind = _show(value) if value is None or isinstance(value, list | dict) else "a non-string"
        raise ValueError(f"expected a token string, got {kind} (value not shown)")
    if _TOKEN_RE.fullmatch(value) is None:
        raise ValueError(
            "expected a token of printable ASCII characters without spaces, got other characters "
            "(value not shown)"
        )
    return value


def _token_list(value: object) -> object:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise ValueError("expected a list of tokens, got a single value (value not shown)")
    return value


_HOSTNAME_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")
_LISTEN_EXAMPLE = "host:port like 127.0.0.1:9400"


def parse_listen(listen: str) -> tuple[str, int]:
    """Split `host:port` (`[::1]:9400` for IPv6) into host (without brackets) and port.

    Raises ValueError("expected host:port like 127.0.0.1:9400, got ...") style errors.
    """
    if not isinstance(listen, str):
        raise ValueError(f"expected {_LISTEN_EXAMPLE}, got {_show(listen)}")
    got = _show(listen)
    if listen.startswith("["):
        host, sep, port = listen[1:].partition("]:")
        if not sep:
            raise ValueError(f"expected {_LISTEN_EXAMPLE} or [::1]:9400, got {got}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"expected an IPv6 address in [brackets], got {got}") from None
    else:
        host, sep, port = listen.rpartition(":")
        if not sep:
            raise ValueError(f"expected {_LISTEN_EXAMPLE}, got {got}")
        if ":" in host:
            raise ValueError(f"expected IPv6 addresses in brackets like [::1]:9400, got {got}")
        if host == "":
            raise ValueError(f"expected {_LISTEN_EXAMPLE} (0.0.0.0:9400 for all interfaces), got {got}")
        if re.fullmatch(r"[0-9.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise ValueError(f"expected a valid IPv4 address in {_LISTEN_EXAMPLE}, got {got}") from None
        elif len(host) > 253 or _HOSTNAME_RE.fullmatch(host) is None:
            raise ValueError(f"expected a valid host name or IP address in {_LISTEN_EXAMPLE}, got {got}")
    # isdigit() alone would accept non-ASCII digits such as "٩".
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"expected a port from 1 to 65535 in {_LISTEN_EXAMPLE}, got {got}")
    return host, int(port)


def _listen(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected {_LISTEN_EXAMPLE}, got {_show(value)}")
    parse_listen(value)
    return value


def is_loopback_listen(listen: str) -> bool:
    """Whether `listen` binds only to the local machine: 127.0.0.0/8, ::1 or `localhost`.

    Anything unparseable or any other host name counts as exposed, since it may resolve anywhere.
    """
    try:
        host, _ = parse_listen(listen)
    except ValueError:
        return False
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


_URL_RE = re.compile(r"https?://[^/\s?#]+(?:/\S*)?")


def _external_url(value: object) -> str:
    # Empty means "not set"; otherwise it is used to build absolute links, so it needs scheme and host.
    if not isinstance(value, str) or (value and _URL_RE.fullmatch(value) is None):
        raise ValueError(f"expected an http(s) URL like https://vigil.example.com/, got {_show(value)}")
    return value


def _data_path(value: object) -> Path:
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str) or value == "":
        raise ValueError(f"expected a directory path, got {_show(value)}")
    return Path(value)


# ---------------------------------------------------------------------------------------------
# The schema.

Duration = Annotated[int, _duration(positive=False)]
PositiveDuration = Annotated[int, _duration(positive=True)]
Size = Annotated[int, _size()]
Token = Annotated[str, BeforeValidator(_token)]
TokenList = Annotated[tuple[Token, ...], BeforeValidator(_token_list)]


def _optional_token(value: object) -> str:
    return "" if value in ("", None) else _token(value)


def _optional_path(value: object) -> Path | None:
    return None if value in ("", None) else _data_path(value)


def _plain_url(value: object) -> str:
    if not isinstance(value, str) or (value and _URL_RE.fullmatch(value) is None):
        raise ValueError(
            f"expected an http(s) URL like http://127.0.0.1:9400/api/v1/write, got {_show(value)}"
        )
    return value


def _label_value(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a label value (text), got {_show(value)}")
    return value


OptionalToken = Annotated[str, BeforeValidator(_optional_token)]
OptionalPath = Annotated[Path | None, BeforeValidator(_optional_path)]
LabelValue = Annotated[str, BeforeValidator(_label_value)]
Bool = Annotated[bool, BeforeValidator(_boolean)]


class _Section(BaseModel):
    model_config: ClassVar[ConfigDict] = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _prepare(cls, data: Any) -> Any:
        # `storage:` with every sub-key commented out parses as null.
        if data is None:
            return {}
        # YAML keys can be numbers or booleans (`1:`, `yes:`); report them like any unknown key
        # instead of pydantic's "keys should be strings".
        if isinstance(data, dict):
            for key in data:
                if not isinstance(key, str):
                    known = ", ".join(cls.model_fields)
                    raise ValueError(f"unknown key {_show(key)} (expected one of: {known})")
        return data


class AuthConfig(_Section):
    write_tokens: TokenList = ()
    """Bearer tokens accepted on write endpoints; empty means writes are not authenticated."""
    read_tokens: TokenList = ()
    """Bearer tokens accepted on read endpoints (query API); `/metrics` is always open."""
    hmac_key: OptionalToken = ""
    """When set, write requests must carry a valid X-Vigil-Signature (HMAC-SHA256) made with this key."""


class ServerConfig(_Section):
    listen: Annotated[str, BeforeValidator(_listen)] = DEFAULT_LISTEN
    insecure: Bool = False
    """Allow a non-loopback `listen` without auth tokens."""
    external_url: Annotated[str, BeforeValidator(_external_url)] = ""
    auth: AuthConfig = AuthConfig()


class StorageConfig(_Section):
    path: Annotated[Path, BeforeValidator(_data_path)] = Path("data")
    """Data directory, relative to the working directory."""
    retention: PositiveDuration = parse_duration("15d")
    out_of_order_window: Duration = parse_duration("10m")
    """How far behind the newest sample of a series a sample may arrive; 0 disables."""
    head_flush_interval: PositiveDuration = parse_duration("1h")
    """Span of sample time the in-memory head covers before it is written out as a block."""
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
    """Collectors to turn off by name (every collector is on by default), e.g. [pressure, filesystem]."""
    ship: ShipConfig = ShipConfig()


class Config(_Section):
    """The whole `vigil.yml`. `Config()` is the all-defaults configuration."""

    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    limits: LimitsConfig = LimitsConfig()
    query: QueryConfig = QueryConfig()
    agent: AgentConfig = AgentConfig()

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
    """The model class a location inside `root` refers to, if it is a section."""
    model: type[BaseModel] = root
    for part in loc:
        info = model.model_fields.get(part) if isinstance(part, str) else None
        sub = info.annotation if info is not None else None
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return None
        model = sub
    return model


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


def _translate(e: ValidationError, source: str) -> ConfigError:
    err = e.errors()[0]
    loc = tuple(err["loc"])
    return ConfigError(_error_message(err, Config), source=source, key=_key_path(loc) or None)


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
    return config_from_dict(data, source)


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

    Raises ConfigError when `server.listen` is not loopback, either token list is empty and
    `server.insecure` is false.
    """
    server = cfg.server
    if is_loopback_listen(server.listen) or server.insecure:
        return
    if server.auth.write_tokens and server.auth.read_tokens:
        return
    raise ConfigError(
        f"refusing to listen on {server.listen} without server.auth tokens; "
        "set write_tokens and read_tokens or pass --insecure",
        key="server.listen",
    )
