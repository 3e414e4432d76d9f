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
from typing import Any, TypeVar, get_args

import yaml
from pydantic import BaseModel, ValidationError

from vigil.config.types import FROM_TEXT, ConfigError
from vigil.model.show import show

__all__ = [
    "KeyedError",
    "StrictLoader",
    "error_message",
    "key_path",
    "load_yaml",
    "read_yaml",
    "section_keys",
    "validate",
]

ModelT = TypeVar("ModelT", bound=BaseModel)


class KeyedError(ValueError):
    """A validator's error about a key below the field it validates (`tenants.acme.read_tokens`), so
    the one-line message can name that key rather than only the field."""

    def __init__(self, subkey: str, message: str) -> None:
        super().__init__(message)
        self.subkey = subkey


def key_path(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as the user reads it: `rules[3].match`, `server.auth.tenants`.
    Parts pydantic adds that are no keys (`tuple[str, ...]`, `function-after[...]`) are left
    out; a part that is already an index (`[2]`, from a KeyedError) is appended as is."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("["):
            out += part
        elif part.startswith("function-") or "[" in part:
            continue
        else:
            out += f".{part}" if out else part
    return out


def section_keys(model: type[BaseModel]) -> list[str]:
    """The keys a section accepts as the user writes them (a field's alias where it has one:
    Alertmanager's `global`)."""
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class a location inside `root` refers to, if it is a section (also an item of a
    list of sections, `scrape_configs[0]`, or an optional section)."""
    current: type[BaseModel] | None = root
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            continue  # an item of a list: _section_in already looked through the list type
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        current = _section_in(field.annotation) if field is not None else None
    return current


def _section_in(tp: Any) -> type[BaseModel] | None:
    """The section model a field's type holds: itself, or inside Annotated/Optional/tuple/list."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in get_args(tp):
        found = _section_in(arg)
        if found is not None:
            return found
    return None


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
        known = ", ".join(section_keys(parent)) if parent is not None else "?"
        return f"unknown key (expected one of: {known})"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        section = _model_at(root, loc)
        keys = f" with keys {', '.join(section_keys(section))}" if section is not None else ""
        return f"expected a mapping{keys}, got {show(err['input'])}"
    # Not produced by our schemas as far as we know; keep pydantic's wording rather than lose it.
    return f"{err['msg'][:1].lower()}{err['msg'][1:]}, got {show(err.get('input'))}"


def validate(
    model: type[ModelT], data: Any, source: str, *, from_text: bool = True, key_prefix: str = ""
) -> ModelT:
    """Validate a parsed document (None: empty) against `model`; raise ConfigError `source: key: ...`.

    The one entry point for configuration-like files: `vigil.yml` (`config_from_dict`) uses it, and
    so should alerting/recording rule files and dashboard files, so that every file a user writes
    reports its mistakes the same way. `from_text` says the values come from YAML text, where a bare
    number is not a duration (`retention: 30`); Python callers passing milliseconds set it False.
    `key_prefix` is prepended to key paths (`alerting.` for an Alertmanager document inline in
    vigil.yml).
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
            sub = cause.subkey
            key = key + sub if sub.startswith("[") else f"{key}.{sub}" if key else sub
        if key_prefix:
            key = key_prefix + key if key and not key.startswith("[") else key_prefix.rstrip(".") + key
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
