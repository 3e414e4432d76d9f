"""Security events: the evidence behind a metric ("which IP, which file, which new log line").

An event has the same identity labels as the series of the host it comes from (tenant,
cluster, instance, platform, app, job, ...), a `kind` saying what happened, free-form `fields` with the
detail (user, source address, path, hashes, the log line), and a short human `message`.

`id` makes delivery idempotent: the agent derives it from where the event came from (log file, inode
and byte offset, or the collector's change record), so an event re-sent after a crash, or re-read from
a log after a restart, is stored once. The wire format is one JSON object per line (see `to_json` /
`from_json`), the format of `POST /api/v1/events` and of `GET /api/v1/events` results.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["KINDS", "Event", "EventError", "EventLimits", "FieldValue", "event_id", "json_depth"]

FieldValue = str | int | float | bool | None

# Kinds Vigil's own collectors emit (documented in the README). Others are accepted: a kind is a
# lower-case identifier, so an integration can add its own.
KINDS = {
    "auth": "an authentication attempt (sshd, sudo, su, login, PAM): fields service, result, method, "
    "user, source_address, line, count",
    "listener_new": "a listening socket not in the baseline: fields protocol, address, port, process",
    "listener_gone": "a listening socket closed: fields protocol, address, port, process, expected",
    "file_changed": "a watched file changed: fields path, change, old_sha256, new_sha256, owner, mode",
    "log_unknown": "a log line matching no known template: fields source, line",
    "log_unknown_suppressed": "unknown lines of a source past `events_per_source` are counted, not kept: "
    "fields source, limit, window_start, window_end, and line or suppressed",
    "log_match": "a line matched a log rule with `event: true`: fields source, rule, line and one per "
    "named group",
}

_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_MAX_MESSAGE = 4096
_MIN_MS, _MAX_MS = 0, 253_402_300_799_999  # 9999-12-31T23:59:59.999Z; fits SQLite's int64 too


class EventError(ValueError):
    """An event that cannot be accepted; the text says which part and what was expected."""


@dataclass(frozen=True)
class EventLimits:
    """How large an event may be (the server's `limits:`); labels share the series' label limits."""

    max_labels: int = 64
    max_label_name_length: int = 256
    max_label_value_length: int = 4096
    max_fields: int = 256
    max_field_length: int = 16384  # characters of a field's value; its name is bounded like a label's
    max_depth: int = 8  # nesting of objects and arrays in the JSON text; an event needs 2


_DEFAULT_LIMITS = EventLimits()


def json_depth(text: bytes) -> int:
    """The deepest nesting of objects and arrays in JSON text, brackets inside strings not counted.

    A linear numpy scan, so the depth can be refused before `json.loads` recurses into it (100,000
    levels make it raise RecursionError). A quote is a string delimiter unless an odd number of
    backslashes precedes it; that is exact for valid JSON, and for invalid JSON it agrees with the
    parser up to the point where the parser stops."""
    b = np.frombuffer(text, np.uint8)
    if not b.size:
        return 0
    idx = np.arange(b.size)
    backslash = b == 0x5C
    # For each position, how many backslashes run right up to it.
    last_other = np.maximum.accumulate(np.where(backslash, -1, idx))
    run_before = np.empty(b.size, np.int64)
    run_before[0] = 0
    run_before[1:] = idx[:-1] - last_other[:-1]
    quotes = (b == 0x22) & (run_before % 2 == 0)
    outside = np.cumsum(quotes) % 2 == 0  # a bracket is never a quote, so its own count is settled
    step = ((b == 0x5B) | (b == 0x7B)).astype(np.int64) - ((b == 0x5D) | (b == 0x7D))
    return int(np.cumsum(np.where(outside, step, 0)).max(initial=0))


@dataclass(frozen=True, slots=True)
class Event:
    time_ms: int
    kind: str
    message: str = ""
    fields: dict[str, FieldValue] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    id: str = ""

    def with_identity(self, labels: dict[str, str], id: str) -> Event:
        """A copy with identity labels added (the event's own labels win) and its id set."""
        return Event(self.time_ms, self.kind, self.message, self.fields, {**labels, **self.labels}, id)

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "time_ms": self.time_ms,
                "kind": self.kind,
                "labels": self.labels,
                "fields": self.fields,
                "message": self.message,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str | bytes, limits: EventLimits = _DEFAULT_LIMITS) -> Event:
        data = text.encode(errors="surrogatepass") if isinstance(text, str) else text
        # Counting brackets is cheap and bounds the depth; only lines with many get the scan.
        if data.count(b"[") + data.count(b"{") > limits.max_depth and json_depth(data) > limits.max_depth:
            raise EventError(f"nested deeper than {limits.max_depth} levels of objects and arrays")
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise EventError(f"not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise EventError("expected a JSON object")
        return cls.from_dict(raw, limits)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], limits: EventLimits = _DEFAULT_LIMITS) -> Event:
        """Validates every part; raises EventError naming the key and what was expected."""
        unknown = set(raw) - {"id", "time_ms", "kind", "labels", "fields", "message"}
        if unknown:
            raise EventError(f"{sorted(unknown)[0]}: unknown key")
        ts = raw.get("time_ms")
        if not isinstance(ts, int) or isinstance(ts, bool) or not _MIN_MS <= ts <= _MAX_MS:
            raise EventError(
                f"time_ms: expected milliseconds since the epoch (years 1970 to 9999), got {str(ts)[:40]}"
            )
        kind = raw.get("kind")
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise EventError(f"kind: expected a lower-case identifier like 'auth', got {kind!r}")
        message = raw.get("message", "")
        if not isinstance(message, str):
            raise EventError("message: expected a string")
        labels = raw.get("labels", {})
        if not isinstance(labels, dict):
            raise EventError("labels: expected an object of strings")
        if len(labels) > limits.max_labels:
            raise EventError(f"labels: {len(labels)} labels exceed the limit of {limits.max_labels}")
        for k, v in labels.items():
            if len(k) > limits.max_label_name_length:
                raise EventError(
                    f"labels.{k[:64]}...: name longer than {limits.max_label_name_length} characters"
                )
            if not _LABEL.fullmatch(k) or not isinstance(v, str):
                raise EventError(f"labels.{k}: expected a label name with a string value")
            if len(v) > limits.max_label_value_length:
                raise EventError(f"labels.{k}: value longer than {limits.max_label_value_length} characters")
        fields = raw.get("fields", {})
        if not isinstance(fields, dict):
            raise EventError("fields: expected an object")
        if len(fields) > limits.max_fields:
            raise EventError(f"fields: {len(fields)} fields exceed the limit of {limits.max_fields}")
        for k, v in fields.items():
            if len(k) > limits.max_label_name_length:
                raise EventError(
                    f"fields.{k[:64]}...: name longer than {limits.max_label_name_length} characters"
                )
            if not isinstance(v, str | int | float | bool | None):
                raise EventError(f"fields.{k}: expected a string, number, boolean or null")
            if isinstance(v, float) and not math.isfinite(v):
                # json.loads takes NaN, Infinity and 1e999; JSON itself (and so GET) has no such thing.
                raise EventError(f"fields.{k}: expected a finite number, got {v}")
            if isinstance(v, str) and len(v) > limits.max_field_length:
                raise EventError(f"fields.{k}: longer than {limits.max_field_length} characters")
        ident = raw.get("id", "")
        if not isinstance(ident, str) or len(ident) > 128:
            raise EventError("id: expected a string of at most 128 characters")
        return cls(ts, kind, message[:_MAX_MESSAGE], dict(fields), dict(labels), ident)


def event_id(*parts: object) -> str:
    """A stable id from whatever identifies an event's origin (host, file, inode, offset, ...)."""
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16)
    return h.hexdigest()
