"""vigil.yml: defaults, validation, one-line error messages, flag overrides and the exposure check."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from vigil.config import (
    Config,
    ConfigError,
    check_exposure,
    config_from_dict,
    config_from_yaml,
    load_config,
)
from vigil.config.types import PositiveDuration, Section
from vigil.config.validate import read_yaml, validate
from vigil.model.duration import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS
from vigil.model.listen import is_loopback_listen, parse_listen

SECTIONS = (
    "server, storage, limits, query, agent, scrape_configs, alerting, rule_files, rules, event_rules, ui"
)

MiB = 2**20


def test_defaults() -> None:
    cfg = load_config(None)
    assert cfg == Config() == config_from_dict({}) == config_from_yaml("")
    assert cfg.server.listen == "127.0.0.1:9400"
    assert cfg.server.insecure is False
    assert cfg.server.external_url == ""
    assert cfg.server.auth.write_tokens == ()
    assert cfg.server.auth.read_tokens == ()
    assert cfg.storage.path == Path("data")
    assert cfg.storage.retention == 15 * DAY_MS
    assert cfg.storage.out_of_order_window == 10 * MINUTE_MS
    assert cfg.storage.head_flush_interval == HOUR_MS
    assert cfg.storage.wal_segment_size == 64 * MiB
    assert cfg.limits.max_request_body_bytes == 32 * MiB
    assert cfg.limits.max_decompressed_bytes == 128 * MiB
    assert cfg.limits.max_label_names_per_series == 64
    assert cfg.limits.max_label_name_length == 256
    assert cfg.limits.max_label_value_length == 4096
    assert cfg.limits.max_samples_per_request == 1_000_000
    assert cfg.limits.future_grace == 10 * MINUTE_MS


FULL = """\
server:
  listen: "[::1]:9401"
  insecure: true
  external_url: https://vigil.example.com/
  auth:
    write_tokens: [w1, "w2~+/="]
    read_tokens:
      - r1
storage:
  path: /var/lib/vigil
  retention: 30d
  out_of_order_window: 0s
  head_flush_interval: 2h
  wal_segment_size: 128MiB
limits:
  max_request_body_bytes: 1048576
  max_decompressed_bytes: 1GiB
  max_label_names_per_series: 32
  max_label_name_length: 128
  max_label_value_length: 2048
  max_samples_per_request: 50000
  future_grace: 30s
"""


def test_full_file(tmp_path: Path) -> None:
    path = tmp_path / "vigil.yml"
    path.write_text(FULL)
    cfg = load_config(path)
    assert cfg.server.listen == "[::1]:9401"
    assert cfg.server.insecure is True
    assert cfg.server.external_url == "https://vigil.example.com/"
    assert cfg.server.auth.write_tokens == ("w1", "w2~+/=")
    assert cfg.server.auth.read_tokens == ("r1",)
    assert cfg.storage.path == Path("/var/lib/vigil")
    assert cfg.storage.retention == 30 * DAY_MS
    assert cfg.storage.out_of_order_window == 0
    assert cfg.storage.head_flush_interval == 2 * HOUR_MS
    assert cfg.storage.wal_segment_size == 128 * MiB
    assert cfg.limits.max_request_body_bytes == MiB
    assert cfg.limits.max_decompressed_bytes == 1024 * MiB
    assert cfg.limits.max_label_names_per_series == 32
    assert cfg.limits.max_label_name_length == 128
    assert cfg.limits.max_label_value_length == 2048
    assert cfg.limits.max_samples_per_request == 50000
    assert cfg.limits.future_grace == 30_000
    # A dump validates back to the same configuration (ints are milliseconds / bytes from Python).
    assert Config.model_validate(cfg.model_dump()) == cfg


# (yaml text, a getter, the value it should yield)
GOOD: list[tuple[str, Any, Any]] = [
    ("storage:\n", lambda c: c.storage, Config().storage),  # an emptied-out section means defaults
    ("storage:\n  out_of_order_window: 0\n", lambda c: c.storage.out_of_order_window, 0),
    ("storage:\n  retention: 1y\n", lambda c: c.storage.retention, 365 * DAY_MS),
    ("storage:\n  retention: 1h30m\n", lambda c: c.storage.retention, 90 * MINUTE_MS),
    ("storage:\n  head_flush_interval: 500ms\n", lambda c: c.storage.head_flush_interval, 500),
    ("storage:\n  path: ./d\n", lambda c: c.storage.path, Path("d")),
    ("storage:\n  wal_segment_size: 1024\n", lambda c: c.storage.wal_segment_size, 1024),
    ("storage:\n  wal_segment_size: 16MB\n", lambda c: c.storage.wal_segment_size, 16_000_000),
    ("server:\n  listen: 0.0.0.0:9400\n", lambda c: c.server.listen, "0.0.0.0:9400"),
    ("server:\n  listen: localhost:1\n", lambda c: c.server.listen, "localhost:1"),
    ("server:\n  listen: vigil.internal.:65535\n", lambda c: c.server.listen, "vigil.internal.:65535"),
    ("server:\n  listen: '[::]:9400'\n", lambda c: c.server.listen, "[::]:9400"),
    ("server:\n  insecure: yes\n", lambda c: c.server.insecure, True),  # YAML 1.1 boolean
    ("server:\n  auth:\n", lambda c: c.server.auth.write_tokens, ()),
    ("server:\n  auth:\n    read_tokens:\n", lambda c: c.server.auth.read_tokens, ()),
    (
        "server:\n  external_url: http://h:9400/vigil\n",
        lambda c: c.server.external_url,
        "http://h:9400/vigil",
    ),
    ("\ufeffserver: {}\n", lambda c: c.server.listen, "127.0.0.1:9400"),
    ("# nothing but a comment\n", lambda c: c, Config()),
]


@pytest.mark.parametrize(("text", "get", "expected"), GOOD)
def test_good_configs(text: str, get: Any, expected: Any) -> None:
    assert get(config_from_yaml(text, "vigil.yml")) == expected


BAD: list[tuple[str, str]] = [
    (
        "storage:\n  retention: forever\n",
        'vigil.yml: storage.retention: expected a duration like 15d, got "forever"',
    ),
    (
        "storage:\n  retention: 30\n",
        "vigil.yml: storage.retention: expected a duration like 15d, got 30 (add a unit, e.g. 30s or 30m)",
    ),
    (
        "storage:\n  retention: 0s\n",
        'vigil.yml: storage.retention: expected a duration greater than zero like 15d, got "0s"',
    ),
    (
        "storage:\n  retention: 0\n",
        "vigil.yml: storage.retention: expected a duration greater than zero like 15d, got 0",
    ),
    ("storage:\n  retention: 1.5\n", "vigil.yml: storage.retention: expected a duration like 15d, got 1.5"),
    ("storage:\n  retention:\n", "vigil.yml: storage.retention: expected a duration like 15d, got null"),
    (
        "storage:\n  out_of_order_window: -5m\n",
        'vigil.yml: storage.out_of_order_window: expected a duration like 15d, got "-5m"',
    ),
    (
        "storage:\n  retentoin: 15d\n",
        "vigil.yml: storage.retentoin: unknown key (expected one of: path, retention, out_of_order_window, "
        "head_flush_interval, wal_segment_size, silence_retention)",
    ),
    (
        "storge:\n  retention: 15d\n",
        f"vigil.yml: storge: unknown key (expected one of: {SECTIONS})",
    ),
    (
        "server:\n  auth:\n    tokens: [a]\n",
        "vigil.yml: server.auth.tokens: unknown key "
        "(expected one of: write_tokens, read_tokens, hmac_key, tenants, admin_tokens, trusted_proxy_tokens, "
        "users)",
    ),
    (
        "1: x\n",
        f"vigil.yml: unknown key 1 (expected one of: {SECTIONS})",
    ),
    (
        "storage: 15d\n",
        "vigil.yml: storage: expected a mapping with keys path, retention, out_of_order_window, "
        'head_flush_interval, wal_segment_size, silence_retention, got "15d"',
    ),
    (
        "- a\n",
        f"vigil.yml: expected a mapping with keys {SECTIONS}, got a list",
    ),
    (
        "just text\n",
        f'vigil.yml: expected a mapping with keys {SECTIONS}, got "just text"',
    ),
    (
        "storage:\n  wal_segment_size: lots\n",
        'vigil.yml: storage.wal_segment_size: expected a size like 512MiB, got "lots"',
    ),
    (
        "storage:\n  wal_segment_size: 0\n",
        "vigil.yml: storage.wal_segment_size: expected a size of at least 1 bytes, got 0",
    ),
    ("storage:\n  path: ''\n", 'vigil.yml: storage.path: expected a directory path, got ""'),
    ("storage:\n  path: [a]\n", "vigil.yml: storage.path: expected a directory path, got a list"),
    (
        "limits:\n  max_request_body_bytes: true\n",
        "vigil.yml: limits.max_request_body_bytes: expected a size like 512MiB, got true",
    ),
    (
        "limits:\n  max_request_body_bytes: -1\n",
        "vigil.yml: limits.max_request_body_bytes: expected a size like 512MiB, got -1",
    ),
    (
        "limits:\n  max_decompressed_bytes: 1.5B\n",
        'vigil.yml: limits.max_decompressed_bytes: expected a size like 512MiB, got "1.5B" '
        "(not a whole number of bytes)",
    ),
    (
        "limits:\n  max_label_names_per_series: '64'\n",
        'vigil.yml: limits.max_label_names_per_series: expected an integer >= 1, got "64"',
    ),
    (
        "limits:\n  max_samples_per_request: 0\n",
        "vigil.yml: limits.max_samples_per_request: expected an integer >= 1, got 0",
    ),
    (
        "limits:\n  max_label_value_length: true\n",
        "vigil.yml: limits.max_label_value_length: expected an integer >= 1, got true",
    ),
    ("server:\n  insecure: 'yes'\n", 'vigil.yml: server.insecure: expected true or false, got "yes"'),
    ("server:\n  insecure: 1\n", "vigil.yml: server.insecure: expected true or false, got 1"),
    (
        "server:\n  listen: 9400\n",
        "vigil.yml: server.listen: expected host:port like 127.0.0.1:9400, got 9400",
    ),
    (
        "server:\n  listen: localhost\n",
        'vigil.yml: server.listen: expected host:port like 127.0.0.1:9400, got "localhost"',
    ),
    (
        "server:\n  listen: ':9400'\n",
        "vigil.yml: server.listen: expected host:port like 127.0.0.1:9400 (0.0.0.0:9400 for all "
        'interfaces), got ":9400"',
    ),
    (
        "server:\n  listen: '::1:9400'\n",
        'vigil.yml: server.listen: expected IPv6 addresses in brackets like [::1]:9400, got "::1:9400"',
    ),
    (
        "server:\n  listen: '[::1]'\n",
        'vigil.yml: server.listen: expected host:port like 127.0.0.1:9400 or [::1]:9400, got "[::1]"',
    ),
    (
        "server:\n  listen: '[nope]:9400'\n",
        'vigil.yml: server.listen: expected an IPv6 address in [brackets], got "[nope]:9400"',
    ),
    (
        "server:\n  listen: 127.0.0.1:0\n",
        "vigil.yml: server.listen: expected a port from 1 to 65535 in host:port like 127.0.0.1:9400, "
        'got "127.0.0.1:0"',
    ),
    (
        "server:\n  listen: 127.0.0.1:65536\n",
        "vigil.yml: server.listen: expected a port from 1 to 65535 in host:port like 127.0.0.1:9400, "
        'got "127.0.0.1:65536"',
    ),
    (
        "server:\n  listen: 127.0.0.1:http\n",
        "vigil.yml: server.listen: expected a port from 1 to 65535 in host:port like 127.0.0.1:9400, "
        'got "127.0.0.1:http"',
    ),
    (
        "server:\n  listen: 256.0.0.1:9400\n",
        "vigil.yml: server.listen: expected a valid IPv4 address in host:port like 127.0.0.1:9400, "
        'got "256.0.0.1:9400"',
    ),
    (
        "server:\n  listen: bad_host:9400\n",
        "vigil.yml: server.listen: expected a valid host name or IP address in host:port like "
        '127.0.0.1:9400, got "bad_host:9400"',
    ),
    (
        "server:\n  external_url: vigil.example.com\n",
        "vigil.yml: server.external_url: expected an http(s) URL like https://vigil.example.com/, "
        'got "vigil.example.com"',
    ),
    # Tokens are secrets: the messages must never repeat them.
    (
        "server:\n  auth:\n    write_tokens: [12345]\n",
        "vigil.yml: server.auth.write_tokens[0]: expected a token string, got a non-string (value not shown)",
    ),
    (
        "server:\n  auth:\n    read_tokens: [ok, '']\n",
        'vigil.yml: server.auth.read_tokens[1]: expected a non-empty token, got ""',
    ),
    (
        "server:\n  auth:\n    write_tokens: ['secret with space']\n",
        "vigil.yml: server.auth.write_tokens[0]: expected a token of printable ASCII characters without "
        "spaces, got other characters (value not shown)",
    ),
    (
        "server:\n  auth:\n    write_tokens: hunter2\n",
        "vigil.yml: server.auth.write_tokens: expected a list of tokens, got a single value "
        "(value not shown)",
    ),
    ("ui:\n  dashboards_dir: [a]\n", "vigil.yml: ui.dashboards_dir: expected a directory path, got a list"),
    (
        "ui:\n  dashboard_dir: d\n",
        "vigil.yml: ui.dashboard_dir: unknown key (expected one of: dashboards_dir)",
    ),
    # YAML problems carry line:column.
    ("server:\n  listen: [a\n", "vigil.yml:3:1: invalid YAML: expected ',' or ']', but got '<stream end>'"),
    (
        "server:\n\tlisten: a\n",
        "vigil.yml:2:1: invalid YAML: found character '\\t' that cannot start any token",
    ),
    ("server:\n  listen: a:1\n  listen: b:1\n", 'vigil.yml:3:3: invalid YAML: duplicate key "listen"'),
    (
        "server:\n  auth:\n    write_tokens: [a]\n  auth: {}\n",
        'vigil.yml:4:3: invalid YAML: duplicate key "auth"',
    ),
    (
        "!!python/object/apply:os.system [true]\n",
        "vigil.yml:1:1: invalid YAML: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_configs(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_yaml(text, "vigil.yml")
    assert str(exc.value) == message
    assert "\n" not in str(exc.value)


def test_bad_config_from_file(tmp_path: Path) -> None:
    path = tmp_path / "vigil.yml"
    path.write_text("storage:\n  retention: forever\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value) == f'{path}: storage.retention: expected a duration like 15d, got "forever"'
    assert exc.value.source == str(path)
    assert exc.value.key == "storage.retention"


def test_token_values_never_shown() -> None:
    for tokens in (["hunter2 x"], [987654321], "hunter2", ["ok", "hunter2\n"]):
        with pytest.raises(ConfigError) as exc:
            config_from_dict({"server": {"auth": {"write_tokens": tokens}}}, "vigil.yml")
        assert "hunter2" not in str(exc.value) and "987654321" not in str(exc.value)


def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as exc:
        load_config(Path("vigil.yml"))
    assert str(exc.value) == "vigil.yml: cannot read: No such file or directory"


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path)
    assert str(exc.value) == f"{tmp_path}: cannot read: Is a directory"
    bad = tmp_path / "vigil.yml"
    bad.write_bytes(b"server:\n  listen: \xff\n")
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    assert str(exc.value) == f"{bad}: cannot read: not UTF-8 (bad byte at offset 18)"


class _Group(Section):
    name: str = "g"
    interval: PositiveDuration = 60_000


class _RuleFile(Section):
    """A stand-in for the next file types (alerting rules, dashboards): a schema of its own."""

    groups: tuple[_Group, ...] = ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "groups:\n  - interval: 5\n",
            "alerts.yml: groups[0].interval: expected a duration like 15d, got 5 (add a unit, e.g. 5s or 5m)",
        ),
        (
            "groups:\n  - intervall: 5m\n",
            "alerts.yml: groups[0].intervall: unknown key (expected one of: name, interval)",
        ),
        ("groups: 3\n", "alerts.yml: groups: input should be a valid tuple, got 3"),
        ("groups: []\ngroups: []\n", 'alerts.yml:2:1: invalid YAML: duplicate key "groups"'),
        ("groups: [\n", "alerts.yml:2:1: invalid YAML: expected the node content, but found '<stream end>'"),
    ],
)
def test_other_files_validate_like_vigil_yml(tmp_path: Path, text: str, message: str) -> None:
    # The one way to read a configuration-like file: its errors name that file, the key, what was expected.
    path = tmp_path / "alerts.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        validate(_RuleFile, read_yaml(path), str(path))
    assert str(exc.value).replace(str(path), "alerts.yml") == message


def test_unknown_key_in_a_list_of_sections_names_the_allowed_keys() -> None:
    # Was "unknown key (expected one of: ?)": the translation did not look into list items.
    with pytest.raises(ConfigError) as exc:
        config_from_yaml("scrape_configs: [{job_name: a, bogus: 1}]\n", "vigil.yml")
    assert str(exc.value).startswith(
        "vigil.yml: scrape_configs[0].bogus: unknown key (expected one of: job_name, scrape_interval,"
    )
    with pytest.raises(ConfigError) as exc:
        config_from_yaml("agent:\n  logs:\n    sources: [{name: a, paths: [/x], bogus: 1}]\n", "vigil.yml")
    assert str(exc.value) == (
        "vigil.yml: agent.logs.sources[0].bogus: unknown key "
        "(expected one of: name, paths, format, unknown_lines, from_beginning)"
    )


def test_validate_returns_the_model() -> None:
    assert validate(_RuleFile, {"groups": [{"interval": "1m"}]}, "x.yml") == _RuleFile(groups=(_Group(),))
    assert validate(_RuleFile, None, "x.yml") == _RuleFile()
    # Python callers hold milliseconds: a bare number is a duration when the value is not from text.
    assert validate(_RuleFile, {"groups": [{"interval": 5}]}, "x", from_text=False).groups[0].interval == 5


def test_config_from_dict_default_source() -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"limits": {"max_label_name_length": 0}})
    assert str(exc.value) == "<config>: limits.max_label_name_length: expected an integer >= 1, got 0"
    assert config_from_dict(None) == Config()


def test_python_construction_takes_milliseconds_and_bytes() -> None:
    cfg = Config.model_validate({"storage": {"retention": 5000, "wal_segment_size": 4096}})
    assert cfg.storage.retention == 5000
    assert cfg.storage.wal_segment_size == 4096


def test_frozen() -> None:
    cfg = Config()
    with pytest.raises(ValueError):
        cfg.storage.retention = 1  # type: ignore[misc]
    assert hash(cfg) == hash(Config())


def test_overrides() -> None:
    base = config_from_yaml("storage:\n  retention: 30d\n  path: /srv\nlimits:\n  max_label_name_length: 9\n")
    cfg = base.with_overrides(listen="0.0.0.0:9400", data_dir="/tmp/v", retention="2h", insecure=True)
    assert cfg.server.listen == "0.0.0.0:9400"
    assert cfg.server.insecure is True
    assert cfg.storage.path == Path("/tmp/v")
    assert cfg.storage.retention == 2 * HOUR_MS
    # Untouched settings keep the file's values.
    assert cfg.limits.max_label_name_length == 9
    assert cfg.storage.out_of_order_window == base.storage.out_of_order_window
    # No flags: same configuration; the original is not modified.
    assert base.with_overrides() == base
    assert base.storage.retention == 30 * DAY_MS
    assert base.with_overrides(data_dir=Path("rel")).storage.path == Path("rel")
    assert base.with_overrides(retention=90 * SECOND_MS).storage.retention == 90 * SECOND_MS


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"retention": "forever"}, '--retention: expected a duration like 15d, got "forever"'),
        ({"retention": "0s"}, '--retention: expected a duration greater than zero like 15d, got "0s"'),
        ({"listen": "0.0.0.0"}, '--listen: expected host:port like 127.0.0.1:9400, got "0.0.0.0"'),
        ({"data_dir": ""}, '--data-dir: expected a directory path, got ""'),
        ({"insecure": "true"}, '--insecure: expected true or false, got "true"'),
    ],
)
def test_bad_overrides(flags: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        Config().with_overrides(**flags)
    assert str(exc.value) == message
    assert exc.value.source == "--" + next(iter(flags)).replace("data_dir", "data-dir")


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("127.0.0.1:9400", "127.0.0.1", 9400),
        ("[::1]:9400", "::1", 9400),
        ("[fe80::1%eth0]:1", "fe80::1%eth0", 1),
        ("localhost:65535", "localhost", 65535),
        ("0.0.0.0:80", "0.0.0.0", 80),
    ],
)
def test_parse_listen(listen: str, host: str, port: int) -> None:
    assert parse_listen(listen) == (host, port)


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:9400", True),
        ("127.1.2.3:9400", True),
        ("[::1]:9400", True),
        ("localhost:9400", True),
        ("LocalHost.:9400", True),
        ("[::ffff:127.0.0.1]:9400", True),
        ("0.0.0.0:9400", False),
        ("[::]:9400", False),
        ("10.0.0.1:9400", False),
        ("128.0.0.1:9400", False),
        ("myhost:9400", False),
        ("localhost.example.com:9400", False),
        ("not a listen address", False),
    ],
)
def test_is_loopback_listen(listen: str, loopback: bool) -> None:
    assert is_loopback_listen(listen) is loopback


EXPOSED = (
    "server.listen: refusing to listen on 0.0.0.0:9400 without server.auth tokens; "
    "set write_tokens and read_tokens or pass --insecure"
)


@pytest.mark.parametrize(
    ("server", "refused"),
    [
        ({}, False),
        ({"listen": "[::1]:9400"}, False),
        ({"listen": "0.0.0.0:9400"}, True),
        ({"listen": "0.0.0.0:9400", "auth": {"write_tokens": ["w"]}}, True),
        ({"listen": "0.0.0.0:9400", "auth": {"read_tokens": ["r"]}}, True),
        ({"listen": "0.0.0.0:9400", "auth": {"write_tokens": ["w"], "read_tokens": ["r"]}}, False),
        ({"listen": "0.0.0.0:9400", "insecure": True}, False),
        # Tenants: writes by tenant tokens count, and so do reads by tenant, admin or proxy tokens.
        ({"listen": "0.0.0.0:9400", "auth": {"tenants": {"acme": ["w"]}}}, True),
        ({"listen": "0.0.0.0:9400", "auth": {"tenants": {"acme": ["w"]}, "read_tokens": ["r"]}}, False),
        (
            {
                "listen": "0.0.0.0:9400",
                "auth": {"tenants": {"acme": {"write_tokens": ["w"], "read_tokens": ["r"]}}},
            },
            False,
        ),
        ({"listen": "0.0.0.0:9400", "auth": {"tenants": {"acme": {"read_tokens": ["r"]}}}}, True),
        ({"listen": "0.0.0.0:9400", "auth": {"write_tokens": ["w"], "admin_tokens": ["a"]}}, False),
        ({"listen": "0.0.0.0:9400", "auth": {"write_tokens": ["w"], "trusted_proxy_tokens": ["p"]}}, False),
    ],
)
def test_check_exposure(server: dict[str, Any], refused: bool) -> None:
    cfg = config_from_dict({"server": server})
    if refused:
        with pytest.raises(ConfigError) as exc:
            check_exposure(cfg)
        assert str(exc.value) == EXPOSED
    else:
        check_exposure(cfg)


def test_check_exposure_after_flags() -> None:
    cfg = Config().with_overrides(listen="0.0.0.0:9400")
    with pytest.raises(ConfigError):
        check_exposure(cfg)
    check_exposure(cfg.with_overrides(insecure=True))


def test_config_error_pickles() -> None:
    err = ConfigError("invalid YAML: oops", source="vigil.yml", line=3, column=5)
    assert str(err) == "vigil.yml:3:5: invalid YAML: oops"
    assert str(pickle.loads(pickle.dumps(err))) == str(err)


# -- server.auth.tenants ------------------------------------------------------------------------------


def test_tenants_shorthand_and_full_form() -> None:
    auth = config_from_yaml(
        "server:\n  auth:\n    admin_tokens: [adm]\n    trusted_proxy_tokens: [px]\n    tenants:\n"
        "      zeta: [z1, z2]\n"
        "      acme: {write_tokens: [aw], read_tokens: [ar], hmac_key: ak}\n"
        "      ro: {read_tokens: [rr]}\n"
    ).server.auth
    assert [name for name, _ in auth.tenants] == ["acme", "ro", "zeta"]  # sorted
    tenants = dict(auth.tenants)
    assert tenants["zeta"].write_tokens == ("z1", "z2") and tenants["zeta"].read_tokens == ()  # shorthand
    assert (tenants["acme"].write_tokens, tenants["acme"].read_tokens) == (("aw",), ("ar",))
    assert tenants["acme"].hmac_key == "ak" and tenants["zeta"].hmac_key == ""
    assert tenants["ro"].write_tokens == ()
    assert auth.admin_tokens == ("adm",) and auth.trusted_proxy_tokens == ("px",)
    cfg = config_from_yaml("server:\n  auth:\n    tenants:\n      acme: [a]\n")
    assert hash(cfg) == hash(config_from_yaml("server:\n  auth:\n    tenants: {acme: {write_tokens: [a]}}\n"))
    assert cfg.model_copy() == cfg
    # Python callers may pass (name, tokens) pairs: the shorthand again.
    assert Config.model_validate({"server": {"auth": {"tenants": (("acme", ("a",)),)}}}) == cfg


T = "server:\n  auth:\n    "
TENANT_ERRORS = [
    (
        T + "tenants: [a]\n",
        "server.auth.tenants: expected a mapping of tenant name to its tokens, got a list",
    ),
    (
        T + "tenants:\n      acme: []\n",
        "server.auth.tenants.acme: expected a list of write tokens or a mapping, got an empty list",
    ),
    (
        T + "tenants:\n      acme: {}\n",
        "server.auth.tenants.acme: expected write_tokens or read_tokens, got neither",
    ),
    (
        T + "tenants:\n      acme: 5\n",
        "server.auth.tenants.acme: expected a list of write tokens or a mapping with keys "
        "write_tokens, read_tokens, hmac_key, got 5",
    ),
    (
        T + "tenants:\n      acme: {write_token: [a]}\n",
        "server.auth.tenants.acme.write_token: unknown key "
        "(expected one of: write_tokens, read_tokens, hmac_key)",
    ),
    (
        T + "tenants:\n      acme: {read_tokens: secret1}\n",
        "server.auth.tenants.acme.read_tokens: expected a list of tokens, "
        "got a single value (value not shown)",
    ),
    (
        T + "tenants:\n      acme: {read_tokens: ['']}\n",
        'server.auth.tenants.acme.read_tokens[0]: expected a non-empty token, got ""',
    ),
    (T + "tenants:\n      '': [a]\n", 'server.auth.tenants: expected a tenant name, got ""'),
    (
        T + "tenants:\n      acme: [secret1]\n      beta: {read_tokens: [secret1]}\n",
        "server.auth.tenants.beta.read_tokens: expected this tenant's own tokens, "
        "got one also in server.auth.tenants.acme (value not shown)",
    ),
    (
        T + "read_tokens: [secret1]\n    tenants:\n      acme: [secret1]\n",
        "server.auth.tenants.acme.write_tokens: expected this tenant's own tokens, "
        "got one also in server.auth.read_tokens (value not shown)",
    ),
    (
        T + "read_tokens: [secret1]\n    trusted_proxy_tokens: [secret1]\n",
        "server.auth.trusted_proxy_tokens: expected tokens not also in server.auth.read_tokens, "
        "got one that is (value not shown)",
    ),
    (
        T + "hmac_key: secret1\n    tenants:\n      acme: [a]\n",
        "server.auth.tenants.acme.hmac_key: expected this tenant's own key when server.auth.hmac_key is set "
        "(a shared key lets one tenant sign as another), got none",
    ),
    (
        T + "hmac_key: secret1\n    tenants:\n      acme: {write_tokens: [a], hmac_key: secret1}\n",
        "server.auth.tenants.acme.hmac_key: expected a key of this tenant alone, "
        "got the same as server.auth.hmac_key (value not shown)",
    ),
    (
        T + "tenants:\n      a: {write_tokens: [a], hmac_key: secret1}\n"
        "      b: {write_tokens: [b], hmac_key: secret1}\n",
        "server.auth.tenants.b.hmac_key: expected a key of this tenant alone, "
        "got the same as server.auth.tenants.a.hmac_key (value not shown)",
    ),
    (
        T + "admin_tokens: secret1\n",
        "server.auth.admin_tokens: expected a list of tokens, got a single value (value not shown)",
    ),
]


@pytest.mark.parametrize(("text", "message"), TENANT_ERRORS)
def test_tenant_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_yaml(text, "vigil.yml")
    assert str(exc.value) == "vigil.yml: " + message
    assert exc.value.key == message.partition(":")[0]
    assert "secret1" not in str(exc.value)
