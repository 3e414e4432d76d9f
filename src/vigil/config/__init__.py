"""Configuration: the `vigil.yml` schema, loading, command-line overrides and safety checks."""

from vigil.config.config import (
    AgentConfig,
    AuthConfig,
    Config,
    LimitsConfig,
    QueryConfig,
    ServerConfig,
    ShipConfig,
    StatsdConfig,
    StorageConfig,
    check_exposure,
    config_from_dict,
    config_from_yaml,
    load_config,
    model_from_dict,
    parse_yaml,
)
from vigil.config.types import DEFAULT_LISTEN, ConfigError, is_loopback_listen, parse_listen

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
    "StatsdConfig",
    "StorageConfig",
    "check_exposure",
    "config_from_dict",
    "config_from_yaml",
    "is_loopback_listen",
    "load_config",
    "model_from_dict",
    "parse_listen",
    "parse_yaml",
]
