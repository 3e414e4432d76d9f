"""The storage interface every engine implements (embedded tsdb today, remote engines later)."""

from vigil.storage.interface import AppendResult, SeriesSet, StaleRefError, Storage, StorageError

__all__ = ["AppendResult", "SeriesSet", "StaleRefError", "Storage", "StorageError"]
