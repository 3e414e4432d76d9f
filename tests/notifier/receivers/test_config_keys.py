"""The configuration keys the receivers add: `alertmanager_configs` (Vigil's own)."""

from __future__ import annotations

import pytest

from vigil.config.types import ConfigError
from vigil.notifier.config import alertmanager_config_from_yaml, check_supported


def test_alertmanager_configs_load_with_defaults() -> None:
    cfg = alertmanager_config_from_yaml(
        "route: {receiver: r}\n"
        "receivers: [{name: r, alertmanager_configs: [{url: 'http://am:9093', timeout: 5s}]}]\n"
    )
    [fwd] = cfg.receivers[0].alertmanager_configs
    assert fwd.url == "http://am:9093" and fwd.timeout == 5_000 and fwd.sends_resolved
    check_supported(cfg, "alertmanager.yml")  # delivered to: not refused


@pytest.mark.parametrize(
    ("item", "key", "expected"),
    [
        ("{}", "alertmanager_configs[0].url", "expected the Alertmanager's http(s) base URL"),
        ("{url: 'ftp://x'}", "alertmanager_configs[0].url", "expected an http(s) URL"),
        ("{url: 'http://x', bogus: 1}", "alertmanager_configs[0]", "bogus"),
    ],
)
def test_alertmanager_configs_errors_name_the_key(item: str, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        alertmanager_config_from_yaml(
            f"route: {{receiver: r}}\nreceivers: [{{name: r, alertmanager_configs: [{item}]}}]\n"
        )
    msg = str(e.value)
    assert f"receivers[0].{key}" in msg and expected in msg, msg
