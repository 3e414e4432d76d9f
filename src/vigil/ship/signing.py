"""HMAC-SHA256 request signing between the agent and the server.

The signature covers the exact bytes on the wire (the snappy-compressed body) and the timestamp that
travels with it, so neither can be changed in transit without the shared key::

    X-Vigil-Timestamp: <unix seconds>
    X-Vigil-Signature: sha256=<hex HMAC-SHA256(key, timestamp + "\\n" + body)>

The timestamp bounds replays to a window around the receiver's clock. A replay inside the window is
harmless for remote write: re-storing the same samples resolves as "last write wins" with equal values.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "sign", "verify"]

TIMESTAMP_HEADER = "X-Vigil-Timestamp"
SIGNATURE_HEADER = "X-Vigil-Signature"
_PREFIX = "sha256="
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_HEX_RE = re.compile(r"[0-9a-f]{64}")


def _key_bytes(key: str | bytes) -> bytes:
    raw = key.encode() if isinstance(key, str) else bytes(key)
    if not raw:
        raise ValueError("the HMAC key must not be empty")
    return raw


def _digest(key: bytes, timestamp: str, body: bytes) -> str:
    mac = hmac.new(key, timestamp.encode("ascii") + b"\n", hashlib.sha256)
    mac.update(body)
    return mac.hexdigest()


def sign(key: str | bytes, body: bytes, now: float) -> dict[str, str]:
    """The headers that sign `body` at unix time `now`."""
    timestamp = str(int(now))
    signature = _PREFIX + _digest(_key_bytes(key), timestamp, body)
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature}


def verify(
    key: str | bytes, body: bytes, headers: Mapping[str, str], now: float, window_s: float = 300
) -> str | None:
    """None if `headers` carry a valid, fresh signature of `body`; otherwise the reason it is refused.

    Header names are matched case-insensitively (HTTP semantics), so a plain dict works as well as
    Starlette's `Headers`. "Fresh" means within `window_s` of `now` in either direction: a timestamp
    too far in the future is refused too, or a captured request could be replayed for longer.
    """
    secret = _key_bytes(key)
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower())
    signature = lowered.get(SIGNATURE_HEADER.lower())
    if timestamp is None or signature is None:
        missing = TIMESTAMP_HEADER if timestamp is None else SIGNATURE_HEADER
        return f"missing {missing} header"
    timestamp = timestamp.strip()
    if not _TIMESTAMP_RE.fullmatch(timestamp):
        return f"malformed {TIMESTAMP_HEADER} header (expected unix seconds)"
    signature = signature.strip()
    if not signature.startswith(_PREFIX) or not _HEX_RE.fullmatch(signature[len(_PREFIX) :].lower()):
        return f"malformed {SIGNATURE_HEADER} header (expected sha256=<64 hex digits>)"
    skew = int(timestamp) - now
    if skew < -window_s:
        return f"stale signature (timestamp {-skew:.0f}s old, window {window_s:g}s)"
    if skew > window_s:
        return f"signature timestamp {skew:.0f}s in the future (window {window_s:g}s)"
    expected = _digest(secret, timestamp, body)
    # Constant time, so response timing does not leak how much of a forged signature was right.
    if not hmac.compare_digest(expected.encode(), signature[len(_PREFIX) :].lower().encode()):
        return "signature mismatch"
    return None
