"""How a bad value is shown in an error message: the "got ..." of "expected ..., got ...".

Configuration files, log rule files and command-line values all report what they found the same
way, as the user wrote it in YAML: strings quoted (and cut at 60 characters), `null`, `true`, numbers
as written, and "a list" / "a mapping" rather than a dump of the whole thing.
"""

from __future__ import annotations

import json

__all__ = ["show"]


def show(value: object) -> str:
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
