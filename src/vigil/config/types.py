"""Building blocks of the configuration schema: the section base class, value types and validators.

Shared by `vigil.config.config` (the top-level `vigil.yml` schema) and the sections other packages
own (`vigil.config.scrape`), so those can define their models without importing the whole schema.
Every problem surfaces as a one-line `ConfigError` (see `vigil.config.config`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo, model_validator

from vigil.model.duration import parse_duration, parse_size
from vigil.model.listen import LISTEN_EXAMPLE, parse_listen
from vigil.model.regex import RegexSyntaxError, compile_regex
from vigil.model.show import show

DEFAULT_LISTEN = "127.0.0.1:9400"

# The validation-context flag `vigil.config.validate.validate` sets: values then come from YAML text,
# where a bare number is not a duration.
FROM_TEXT = "vigil_from_text"


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


# ---------------------------------------------------------------------------------------------
# Field validators. Each one does all the checking itself (type included) so every message has the
# "expected ..., got <what the user wrote>" shape, rather than pydantic's wording.


def _from_text(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get(FROM_TEXT))


def _duration(*, positive: bool) -> BeforeValidator:
    def validate(value: object, info: ValidationInfo) -> int:
        if isinstance(value, str):
            ms = parse_duration(value)  # its ValueError already reads "expected a duration like 15d, ..."
        elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            if _from_text(info) and value != 0:
                hint = f" (add a unit, e.g. {value}s or {value}m)"
                raise ValueError(f"expected a duration like 15d, got {show(value)}{hint}")
            ms = value
        else:
            raise ValueError(f"expected a duration like 15d, got {show(value)}")
        if positive and ms == 0:
            raise ValueError(f"expected a duration greater than zero like 15d, got {show(value)}")
        return ms

    return BeforeValidator(validate)


def _size(*, minimum: int = 1) -> BeforeValidator:
    def validate(value: object) -> int:
        # bool checked here so YAML `true` is shown as `true`, not Python's `True`.
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"expected a size like 512MiB, got {show(value)}")
        n = parse_size(value)  # its ValueError already reads "expected a size like 512MiB, got ..."
        if n < minimum:
            raise ValueError(f"expected a size of at least {minimum} bytes, got {show(value)}")
        return n

    return BeforeValidator(validate)


def integer(*, minimum: int) -> BeforeValidator:
    """An integer field of at least `minimum` (YAML `true` is not 1): `Annotated[int, integer(minimum=1)]`."""

    def validate(value: object) -> int:
        # bool is an int subclass; `true` in a count field is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"expected an integer >= {minimum}, got {show(value)}")
        return value

    return BeforeValidator(validate)


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {show(value)}")
    return value


_TOKEN_RE = re.compile(r"[\x21-\x7e]+")


def _token(value: object) -> str:
    # Never echo the value: it is a secret and error messages end up in logs.
    if isinstance(value, str) and value == "":
        raise ValueError('expected a non-empty token, got ""')
    if not isinstance(value, str):
        kind = show(value) if value is None or isinstance(value, list | dict) else "a non-string"
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


def check_listen(value: object) -> str:
    """Validator of a `host:port` field (see `parse_listen`); returns the text unchanged."""
    if not isinstance(value, str):
        raise ValueError(f"expected {LISTEN_EXAMPLE}, got {show(value)}")
    parse_listen(value)
    return value


_URL_RE = re.compile(r"https?://[^/\s?#]+(?:/\S*)?")


def check_external_url(value: object) -> str:
    """Validator of `server.external_url`: empty, or an http(s) URL with a host."""
    # Empty means "not set"; otherwise it is used to build absolute links, so it needs scheme and host.
    if not isinstance(value, str) or (value and _URL_RE.fullmatch(value) is None):
        raise ValueError(f"expected an http(s) URL like https://vigil.example.com/, got {show(value)}")
    return value


def check_data_path(value: object) -> Path:
    """Validator of a directory path field: a non-empty string."""
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str) or value == "":
        raise ValueError(f"expected a directory path, got {show(value)}")
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
    return None if value in ("", None) else check_data_path(value)


def check_plain_url(value: object) -> str:
    """Validator of a URL field (empty: not set), such as `agent.ship.url`."""
    if not isinstance(value, str) or (value and _URL_RE.fullmatch(value) is None):
        raise ValueError(
            f"expected an http(s) URL like http://127.0.0.1:9400/api/v1/write, got {show(value)}"
        )
    return value


def _label_value(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a label value (text), got {show(value)}")
    return value


def check_re2_regex(value: object) -> str:
    """Validator of an RE2 regex field (compiled once here, so a bad one is a config error)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a regular expression, got {show(value)}")
    try:
        compile_regex(value)
    except RegexSyntaxError as e:
        raise ValueError(f"expected a valid RE2 regular expression, got {show(value)} ({e})") from None
    return value


RE2Regex = Annotated[str, BeforeValidator(check_re2_regex)]
OptionalToken = Annotated[str, BeforeValidator(_optional_token)]
OptionalPath = Annotated[Path | None, BeforeValidator(_optional_path)]
LabelValue = Annotated[str, BeforeValidator(_label_value)]
Bool = Annotated[bool, BeforeValidator(_boolean)]


class Section(BaseModel):
    """Base of every configuration section: unknown keys are errors, values frozen, `key:` with
    everything below it commented out means the defaults."""

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
                    raise ValueError(f"unknown key {show(key)} (expected one of: {known})")
        return data
