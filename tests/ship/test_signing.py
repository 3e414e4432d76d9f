"""HMAC request signing: a table of good, tampered, stale, future and missing signatures."""

from __future__ import annotations

import pytest

from vigil.ship.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify

KEY = "shared-secret"
BODY = b"\x00snappy bytes\xff"
NOW = 1_700_000_000.0


def signed(**override: str) -> dict[str, str]:
    return sign(KEY, BODY, NOW) | override


def resigned_at(t: float) -> dict[str, str]:
    return sign(KEY, BODY, t)


CASES = [
    # (id, key, body, headers, now, expected reason fragment or None)
    ("good", KEY, BODY, signed(), NOW, None),
    ("good, key as bytes", KEY.encode(), BODY, signed(), NOW, None),
    ("good, header names lowercased", KEY, BODY, {k.lower(): v for k, v in signed().items()}, NOW, None),
    (
        "good, uppercase hex",
        KEY,
        BODY,
        signed(**{SIGNATURE_HEADER: signed()[SIGNATURE_HEADER].upper().replace("SHA256=", "sha256=")}),
        NOW,
        None,
    ),
    ("good, 299 s old", KEY, BODY, resigned_at(NOW - 299), NOW, None),
    ("good, 299 s ahead", KEY, BODY, resigned_at(NOW + 299), NOW, None),
    ("tampered body", KEY, BODY + b"!", signed(), NOW, "mismatch"),
    ("empty body instead", KEY, b"", signed(), NOW, "mismatch"),
    ("wrong key", "other-secret", BODY, signed(), NOW, "mismatch"),
    ("timestamp changed", KEY, BODY, signed(**{TIMESTAMP_HEADER: str(int(NOW) - 1)}), NOW, "mismatch"),
    ("signature of another body", KEY, BODY, sign(KEY, b"other", NOW), NOW, "mismatch"),
    ("stale", KEY, BODY, resigned_at(NOW - 301), NOW, "stale"),
    ("far future", KEY, BODY, resigned_at(NOW + 301), NOW, "future"),
    ("missing signature", KEY, BODY, {TIMESTAMP_HEADER: str(int(NOW))}, NOW, "missing X-Vigil-Signature"),
    (
        "missing timestamp",
        KEY,
        BODY,
        {SIGNATURE_HEADER: signed()[SIGNATURE_HEADER]},
        NOW,
        "missing X-Vigil-Timestamp",
    ),
    ("no headers", KEY, BODY, {}, NOW, "missing"),
    ("timestamp not a number", KEY, BODY, signed(**{TIMESTAMP_HEADER: "1e9"}), NOW, "malformed"),
    ("negative timestamp", KEY, BODY, signed(**{TIMESTAMP_HEADER: "-5"}), NOW, "malformed"),
    (
        "no sha256= prefix",
        KEY,
        BODY,
        signed(**{SIGNATURE_HEADER: signed()[SIGNATURE_HEADER][7:]}),
        NOW,
        "malformed",
    ),
    ("md5 instead", KEY, BODY, signed(**{SIGNATURE_HEADER: "md5=" + "0" * 32}), NOW, "malformed"),
    (
        "truncated hex",
        KEY,
        BODY,
        signed(**{SIGNATURE_HEADER: signed()[SIGNATURE_HEADER][:-2]}),
        NOW,
        "malformed",
    ),
]


@pytest.mark.parametrize(
    ("key", "body", "headers", "now", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_verify(
    key: str | bytes, body: bytes, headers: dict[str, str], now: float, fragment: str | None
) -> None:
    problem = verify(key, body, headers, now)
    if fragment is None:
        assert problem is None
    else:
        assert problem is not None and fragment in problem, problem


def test_sign_format_and_window() -> None:
    headers = sign(KEY, BODY, NOW + 0.9)
    assert headers[TIMESTAMP_HEADER] == "1700000000"  # whole seconds
    assert headers[SIGNATURE_HEADER].startswith("sha256=") and len(headers[SIGNATURE_HEADER]) == 7 + 64
    assert verify(KEY, BODY, headers, NOW + 60, window_s=30) is not None
    assert verify(KEY, BODY, headers, NOW + 60, window_s=90) is None


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        sign("", BODY, NOW)
    with pytest.raises(ValueError, match="empty"):
        verify(b"", BODY, signed(), NOW)
