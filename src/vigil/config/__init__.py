"""Configuration: the `vigil.yml` schema, loading, command-line overrides and safety checks."""

from vigil.config.config import (
    DEFAULT_LISTEN,
    AgentConfig,
    AuthConfig,
    Config,
    ConfigError,
    LimitsConfig,
    QueryConfig,
    ServerConfig,
    ShipConfig,
    StorageConfig,
    check_exposure,
    config_from_dict,
    config_from_yaml,
    is_loopback_listen,
    load_config,
    parse_listen,
)

__all__ = [
    "DEFAULT_LISTEN",
    "AgentConfig",
    "AuthConfig",
    "Config",
    "ConfigError",
    "LimitsConfig",
    "QueryConfig",
    "ServerConfig",
    "ShipConfig",
    "StorageConfig",
    "check_exposure",
    "config_from_dict",
    "config_from_yaml",
    "is_loopback_listen",
    "load_config",
    "parse_listen",
]
