"""One way to read and validate a configuration-like file: YAML loading and pydantic's errors as one line.

`vigil.yml` goes through here, and so do the other files Vigil reads: log line rule files and
template baselines today, alerting/recording rule files and dashboard files next. Each problem is one
`ConfigError` naming the file, the dotted key and what was expected, e.g.
`vigil.yml: storage.retention: expected a duration like 15d, got "forever"`; YAML syntax errors name
`file:line:column`.

A file's schema is a pydantic model built from `vigil.config.types` (`Section` and the value types,
whose validators write complete "expected ..., got ..." messages); `validate` runs it and translates
the first error. Rather than pydantic's wording, the translation names unknown keys with the keys
that are allowed and wrong shapes with the keys a section has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from vigil.config.types import FROM_TEXT, ConfigError
from vigil.model.show import show

__all__ = ["KeyedError", "StrictLoader", "error_message", "key_path", "load_yaml", "read_yaml", "validate"]

ModelT = TypeVar("ModelT", bound=BaseModel)


class KeyedError(ValueError):
    """A validator's error about a key below the field it validates (`tenants.acme.read_tokens`), so
    the one-line message can name that key rather than only the field."""

    def __init__(self, subkey: str, message: str) -> None:
        super().__init__(message)
        self.subkey = subkey


def key_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as the user reads it: `rules[3].match`, `server.auth.tenants`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class a location inside `root` refers to, if it is a section (also an item of a
    list of sections: `scrape_configs[0]`)."""
    current: Any = root
    for part in loc:
        while get_origin(current) is Annotated:
            current = get_args(current)[0]
        if isinstance(part, int):
            args = get_args(current) if get_origin(current) in (tuple, list) else ()
            current = args[0] if args else None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(part)
            current = info.annotation if info is not None else None
        else:
            return None
    while get_origin(current) is Annotated:
        current = get_args(current)[0]
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def error_message(err: Any, root: type[BaseModel]) -> str:
    """Render one pydantic error (an item of `ValidationError.errors()` while validating `root`) as
    "<what was expected>, got <what was there>", without the key."""
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
        return f"expected a mapping{keys}, got {show(err['input'])}"
    # Not produced by our schemas as far as we know; keep pydantic's wording rather than lose it.
    return f"{err['msg'][:1].lower()}{err['msg'][1:]}, got {show(err.get('input'))}"


def validate(model: type[ModelT], data: Any, source: str, *, from_text: bool = True) -> ModelT:
    """Validate a parsed document (None: empty) against `model`; raise ConfigError `source: key: ...`.

    The one entry point for configuration-like files: `vigil.yml` (`config_from_dict`) uses it, and
    so should alerting/recording rule files and dashboard files, so that every file a user writes
    reports its mistakes the same way. `from_text` says the values come from YAML text, where a bare
    number is not a duration (`retention: 30`); Python callers passing milliseconds set it False.
    """
    if data is None:
        data = {}
    try:
        return model.model_validate(data, context={FROM_TEXT: True} if from_text else None)
    except ValidationError as e:
        err = e.errors()[0]
        key = key_path(tuple(err["loc"]))
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, KeyedError):  # about a key below the field the validator checks
            key = f"{key}.{cause.subkey}" if key else cause.subkey
        raise ConfigError(error_message(err, model), source=source, key=key or None) from None


class StrictLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML has no type stubs here
    """SafeLoader that rejects duplicate keys: a second `auth:` silently replacing the first is
    exactly the kind of mistake that turns authentication off."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key; SafeLoader reports that itself below
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {show(key)}", key_node.start_mark
                )
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML text (no arbitrary objects, no duplicate keys); errors are `source:line:column: ...`."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # a SafeLoader subclass, so no arbitrary objects
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


def read_yaml(path: Path | str) -> Any:
    """Read and parse a YAML file (UTF-8, a BOM from Windows editors tolerated); every problem is a
    ConfigError naming the file."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read: {e.strerror or e}", source=source) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"cannot read: not UTF-8 (bad byte at offset {e.start})", source=source) from None
    return load_yaml(text, source)
