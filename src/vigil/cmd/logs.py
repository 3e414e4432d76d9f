"""Logging set-up shared by every command (kept free of heavy imports)."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per remote-write request is noise; failures are reported by the shipper itself.
    logging.getLogger("httpx").setLevel(logging.WARNING)
