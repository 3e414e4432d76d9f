"""TCP prober (modules `tcp` and `tls`): connect, optional TLS, optional line dialogue.

Families, as blackbox_exporter 0.23's `tcp` prober: the resolution families of `vigil.probe.resolve`,
probe_failed_due_to_regex, and after a TLS handshake (immediate, or `starttls` in the dialogue) the
families of `vigil.probe.tls.emit_tls`. Module `tls` is `tcp` with `tls: true`.

`query_response` steps read lines until one matches `expect`, then send `send` and a newline;
unlike blackbox, `send` is literal (no `${1}` expansion of the match). The probe's timeout is a
deadline for the whole dialogue, and a line is at most 64 KiB (blackbox's bufio.Scanner limit): a
server streaming bytes without a newline fails the probe rather than filling memory.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable

from vigil.config.probes import ProbeConfig
from vigil.model.regex import compile_regex
from vigil.probe import ProbeError, ProbeResult, resolve, run_probe_step
from vigil.probe.tls import TLSOptions, TLSVerifyError, emit_tls, unverified_state, wrap

__all__ = ["probe_tcp"]

_REGEX_HELP = "Whether an expected line failed to match, failing the probe (1) or not (0)."
_MAX_LINE = 64 * 1024  # Go's bufio.MaxScanTokenSize, where blackbox's line scanner gives up


def probe_tcp(config: ProbeConfig) -> ProbeResult:
    """Run one TCP (or TLS) probe; never raises."""
    return run_probe_step(_probe, config)


def _left(deadline: float, doing: str) -> float:
    """Seconds left before `deadline`; ProbeError once it has passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ProbeError(f"timeout {doing}")
    return remaining


def _connect(ip: str, family: socket.AddressFamily, port: int, timeout: float) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(max(timeout, 0.001))
    try:
        sock.connect((ip, port))
    except OSError as e:
        sock.close()
        raise ProbeError(f"connecting to {ip} port {port}: {e}") from None
    return sock


def _handshake(
    result: ProbeResult,
    sock: socket.socket,
    reconnect: Callable[[], socket.socket] | None,
    opts: TLSOptions,
    host: str,
    remaining: float,
) -> ssl.SSLSocket:
    """TLS on `sock`; on a verification failure, a new connection from `reconnect()` shows the chain."""
    try:
        tls, state = wrap(sock, opts, host, remaining)
    except TLSVerifyError as e:
        if reconnect is None:
            raise
        tls, state = unverified_state(reconnect(), opts, host, remaining, e.code)
        emit_tls(result, state)
        if not opts.insecure_skip_verify:
            tls.close()
            raise
        return tls
    emit_tls(result, state)
    return tls


def _probe(config: ProbeConfig, result: ProbeResult, started: float) -> bool:
    deadline = started + config.timeout_seconds
    result.gauge("probe_failed_due_to_regex", _REGEX_HELP)
    host, _, port_text = config.target.rpartition(":")
    host = host.strip("[]")
    port = int(port_text)
    addr = resolve(result, host, config.ip_protocol, config.ip_protocol_fallback)
    opts = TLSOptions(config.tls.ca_file, config.tls.insecure_skip_verify, config.tls.server_name)

    def reconnect() -> socket.socket:
        return _connect(addr.ip, addr.family, port, deadline - time.monotonic())

    sock: socket.socket = _connect(addr.ip, addr.family, port, deadline - time.monotonic())
    try:
        if config.module == "tls" or config.tcp.tls:
            sock = _handshake(result, sock, reconnect, opts, host, _left(deadline, "before TLS"))
        buffer = b""
        for step in config.tcp.query_response:
            if step.expect:
                pattern = compile_regex(step.expect)
                while True:
                    line, sep, rest = buffer.partition(b"\n")
                    if sep:
                        buffer = rest
                        if pattern.search(line.rstrip(b"\r").decode("utf-8", errors="replace")):
                            break
                        continue
                    if len(buffer) >= _MAX_LINE:
                        raise ProbeError(f"reading: line longer than {_MAX_LINE} bytes")
                    waiting = f"waiting for a line matching {step.expect!r}"
                    sock.settimeout(_left(deadline, waiting))
                    try:
                        chunk = sock.recv(min(4096, _MAX_LINE - len(buffer)))
                    except TimeoutError:
                        raise ProbeError(f"timeout {waiting}") from None
                    except OSError as e:
                        raise ProbeError(f"reading: {e}") from None
                    if not chunk:
                        result.set("probe_failed_due_to_regex", _REGEX_HELP, 1)
                        raise ProbeError(f"connection closed before a line matched {step.expect!r}")
                    buffer += chunk
                result.set("probe_failed_due_to_regex", _REGEX_HELP, 0)
            if step.send:
                sock.settimeout(_left(deadline, "before sending"))
                try:
                    sock.sendall(step.send.encode() + b"\n")
                except OSError as e:
                    raise ProbeError(f"sending: {e}") from None
            if step.starttls:
                # No second connection can reach the same point of the dialogue: no chain on failure.
                sock = _handshake(result, sock, None, opts, host, _left(deadline, "before STARTTLS"))
                buffer = b""
    finally:
        sock.close()
    return True
