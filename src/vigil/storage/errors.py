"""Storage errors, importable without the storage stack (the CLI catches them)."""

from __future__ import annotations


class StorageError(Exception):
    """The store could not do what was asked (disk trouble, corrupt file); callers may retry."""


class StaleRefError(StorageError):
    """An append used a series ref whose series was deleted; resolve its labels again."""
