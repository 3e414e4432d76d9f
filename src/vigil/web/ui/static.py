"""The UI's static files (CSS, JS, vendored uPlot), read once and served with content-hashed URLs.

`url(path)` is `/static/<path>?v=<hash>`: a response for the current hash may be cached for a year
(`immutable`), since a changed file has a new URL; any other request is answered with `no-cache`.
Only files found under the package's `static/` directory at start are served (no path from a
request touches the file system).
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

__all__ = ["StaticFiles"]

_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".md": "text/plain"}
LONG_CACHE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    media_type: str
    version: str


class StaticFiles:
    def __init__(self, root: Path) -> None:
        self._files: dict[str, StaticFile] = {}
        for p in sorted(root.rglob("*")):
            if p.is_file():
                body = p.read_bytes()
                rel = p.relative_to(root).as_posix()
                kind = _TYPES.get(p.suffix) or mimetypes.guess_type(p.name)[0] or "application/octet-stream"
                self._files[rel] = StaticFile(body, kind, hashlib.sha256(body).hexdigest()[:12])

    def get(self, path: str) -> StaticFile | None:
        return self._files.get(path)

    def url(self, path: str) -> str:
        """The URL of `path` with its content hash; KeyError for a file that does not exist."""
        return f"/static/{path}?v={self._files[path].version}"

    def size(self, path: str) -> int:
        return len(self._files[path].body)
