"""The Alertmanager configuration in force as YAML, secrets hidden: what `GET /api/v2/status` shows as
`config.original` and `amtool config show` prints.

As Alertmanager marshals its loaded configuration: keys under their YAML names, durations in Go's
form (`5m`), matchers as strings, empty values left out (Go's `omitempty`), booleans always shown,
and every secret replaced by `<secret>` (Alertmanager's `Secret`/`SecretURL` fields: passwords,
tokens, keys, and the URLs that carry a credential in themselves: Slack, Teams and webhook URLs). A
key is judged secret by its name, so an integration added later is hidden by default when it names
its credential like the others do.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from vigil.model.duration import format_duration
from vigil.notifier.config import AlertmanagerConfig
from vigil.notifier.matchers import Matchers

__all__ = ["SECRET", "is_secret_key", "render_config"]

SECRET = "<secret>"
_SECRET_WORDS = ("password", "secret", "token", "credentials", "api_key", "routing_key", "service_key")
_SECRET_URLS = frozenset({"api_url", "slack_api_url", "webhook_url", "url"})
_DURATION_VALIDATORS = frozenset({"_duration", "_opt_duration"})


def is_secret_key(key: str, parent: str = "") -> bool:
    """Whether the value under `key` (in a section named `parent`) is a credential. `*_file` keys are
    paths to one, not one. A `url` is secret in webhook and Slack action sections only where it is
    the endpoint (`webhook_configs`), not a link shown to people (`actions`)."""
    if key.endswith("_file"):
        return False
    if any(w in key for w in _SECRET_WORDS):
        return True
    if key == "url":
        return parent == "webhook_configs"
    return key in _SECRET_URLS


def _is_duration(model: type[BaseModel], name: str) -> bool:
    for meta in model.model_fields[name].metadata:
        func = getattr(meta, "func", None)
        if getattr(func, "__name__", "") in _DURATION_VALIDATORS:
            return True
    return False


def _value(v: Any, parent: str) -> Any:
    if isinstance(v, BaseModel):
        return _model(v, parent)
    if isinstance(v, Matchers):
        return [str(m) for m in v]
    if isinstance(v, tuple | list):
        return [_value(x, parent) for x in v]
    if isinstance(v, dict):
        return {str(k): _value(x, parent) for k, x in v.items()}
    return v


def _empty(v: Any) -> bool:
    return v is None or v == "" or (isinstance(v, tuple | list | dict) and len(v) == 0)


def _model(m: BaseModel, parent: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cls = type(m)
    for name, info in cls.model_fields.items():
        v = getattr(m, name)
        if _empty(v):
            continue
        key = info.alias or name
        if is_secret_key(key, parent):
            out[key] = SECRET
        elif isinstance(v, int) and not isinstance(v, bool) and _is_duration(cls, name):
            out[key] = format_duration(v)
        else:
            rendered = _value(v, key)
            if not _empty(rendered):
                out[key] = rendered
    for key, v in (m.model_extra or {}).items():
        out[key] = SECRET if is_secret_key(key, parent) else _value(v, key)
    return out


def render_config(cfg: AlertmanagerConfig | None) -> str:
    """YAML of `cfg` (empty text when there is no configuration)."""
    if cfg is None:
        return ""
    text: str = yaml.safe_dump(_model(cfg, ""), sort_keys=False, allow_unicode=True, default_flow_style=False)
    return text
