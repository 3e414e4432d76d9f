"""Local certificate files: PEM files found by glob, read and reported without any network traffic.

Families (Vigil's own; blackbox has no file prober):

- `vigil_cert_not_after_timestamp_seconds{path,subject,issuer,serial}` and
  `vigil_cert_not_before_timestamp_seconds{...}`: one series per certificate (a bundle has several);
  `subject`/`issuer` are rendered like blackbox's `probe_ssl_last_chain_info` labels, `serial` in hex.
  At most `MAX_CERTS_PER_FILE` certificates per file are reported, so a CA bundle stays bounded.
- `vigil_cert_file_earliest_expiry_timestamp_seconds{path}`: the earliest expiry in the file, the
  file counterpart of `probe_ssl_earliest_cert_expiry` (what expiry alerts use).
- `vigil_cert_file_valid{path}`: 1 when the file was read and held at least one parseable
  certificate, else 0 (unreadable, no PEM certificate, malformed).
- `vigil_cert_files_matched`: how many files the globs matched, before `max_files` capped them.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

from vigil.probe import ProbeResult
from vigil.probe.tls import parse_certificate, pem_certificates

__all__ = ["MAX_CERTS_PER_FILE", "inspect_files", "matching_files"]

MAX_CERTS_PER_FILE = 200  # the Mozilla bundle holds ~150
_NOT_AFTER = "End of the certificate's validity period, in unix seconds."
_NOT_BEFORE = "Start of the certificate's validity period, in unix seconds."
_EARLIEST = "Earliest end of validity among the file's certificates, in unix seconds."
_VALID = "Whether the file was read and held parseable certificates (1) or not (0)."
_MATCHED = "Number of files the certificate globs matched."
_CERT_LABELS = ("path", "subject", "issuer", "serial")


def matching_files(patterns: Sequence[str]) -> list[str]:
    """Regular files matched by the glob patterns (`**` recurses), sorted, without duplicates."""
    found: set[str] = set()
    for pattern in patterns:
        found.update(p for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    return sorted(found)


def inspect_files(patterns: Sequence[str], max_files: int = 1000) -> tuple[ProbeResult, list[str]]:
    """Read every matched file; returns the families and one message per file that failed."""
    result = ProbeResult()
    errors: list[str] = []
    result.declare("vigil_cert_not_after_timestamp_seconds", _NOT_AFTER, _CERT_LABELS)
    result.declare("vigil_cert_not_before_timestamp_seconds", _NOT_BEFORE, _CERT_LABELS)
    result.declare("vigil_cert_file_earliest_expiry_timestamp_seconds", _EARLIEST, ("path",))
    result.declare("vigil_cert_file_valid", _VALID, ("path",))
    files = matching_files(patterns)
    result.set("vigil_cert_files_matched", _MATCHED, len(files))
    if len(files) > max_files:
        errors.append(f"certificate globs matched {len(files)} files; reporting the first {max_files}")
    for path in files[:max_files]:
        try:
            ders = pem_certificates(Path(path).read_bytes())
            certs = [parse_certificate(d) for d in ders[:MAX_CERTS_PER_FILE]]
            if not certs:
                raise ValueError("no PEM certificate in the file")
        except (OSError, ValueError) as e:
            errors.append(f"{path}: {e}")
            result.set("vigil_cert_file_valid", _VALID, 0, path=path)
            continue
        result.set("vigil_cert_file_valid", _VALID, 1, path=path)
        result.set(
            "vigil_cert_file_earliest_expiry_timestamp_seconds",
            _EARLIEST,
            min(c.not_after for c in certs),
            path=path,
        )
        for c in certs:
            labels = {
                "path": path,
                "subject": c.subject_string,
                "issuer": c.issuer_string,
                "serial": format(c.serial, "x"),
            }
            result.set("vigil_cert_not_after_timestamp_seconds", _NOT_AFTER, c.not_after, **labels)
            result.set("vigil_cert_not_before_timestamp_seconds", _NOT_BEFORE, c.not_before, **labels)
    return result, errors
