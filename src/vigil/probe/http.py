"""HTTP(S) prober: blackbox_exporter's `http` prober families, measured with httpx.

Families (blackbox 0.23's): probe_http_duration_seconds{phase=resolve|connect|tls|processing|transfer}
(summed over redirects), probe_http_status_code, probe_http_content_length (-1 when unknown or
transparently decompressed, as Go reports), probe_http_uncompressed_body_length, probe_http_redirects,
probe_http_ssl, probe_http_version, probe_failed_due_to_regex, probe_http_last_modified_timestamp_seconds
(only with a parseable Last-Modified), the resolution families of `vigil.probe.resolve`, and after
a TLS handshake the families of `vigil.probe.tls.emit_tls`.

Each hop resolves the host itself and connects to the address with the original Host header and SNI,
as blackbox does, so the resolve phase is measured on its own. The other phases come from httpcore's
trace events: connect = TCP connect, tls = handshake, processing = connection ready until the
response headers were parsed (httpcore does not report the first byte separately), transfer = headers
until the body was read.

The probe's timeout is a deadline for the whole probe, not per read as httpx's: a watchdog shuts the
connection down when it passes, so a server that trickles its headers or body cannot hold the probe
(and its last `probe_success`) past it. The body is decoded (gzip, deflate) a bounded step at a time
and read up to `body_size_limit` decoded bytes; a longer body, or one still arriving at the deadline,
fails the probe with the response's families kept, as blackbox does.
"""

from __future__ import annotations

import contextlib
import email.utils
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpx

from vigil import __version__
from vigil.config.probes import ProbeConfig
from vigil.model.regex import compile_regex
from vigil.probe import ProbeError, ProbeResult, resolve, run_probe_step
from vigil.probe.tls import TLSOptions, TLSState, emit_tls, make_context, tls_state, unverified_state

__all__ = ["probe_http"]

_REDIRECTS = {301, 302, 303, 307, 308}
_MAX_REDIRECTS = 10  # Go's http.Client default
_DURATION = "Duration of the HTTP request by phase, summed over redirects, in seconds."
_STEP = 64 * 1024  # most decoded bytes produced at once from a compressed body


class _Watchdog:
    """Shuts the connection's socket down at `deadline`, ending whatever read or write is under way.

    httpx's timeout applies to each read, so a server sending a byte now and then would never hit
    it. `watch` is given each stream as httpcore makes it (the TLS one replaces the TCP one).
    """

    def __init__(self, deadline: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._stopped = False
        self._timer = threading.Timer(max(deadline - time.monotonic(), 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, stream: object) -> None:
        get = getattr(stream, "get_extra_info", None)
        sock = get("socket") if callable(get) else None
        if isinstance(sock, socket.socket):
            with self._lock:
                self._sock = sock
                if self.fired and not self._stopped:
                    self._shutdown()

    def _fire(self) -> None:
        with self._lock:
            if not self._stopped:
                self.fired = True
                self._shutdown()

    def _shutdown(self) -> None:
        if self._sock is not None:
            # socket.socket's own shutdown, also for an SSLSocket: the reader sees the end of the
            # stream, and the TLS state is left to the thread using it. OSError: already closed.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def stop(self) -> None:
        """Called before the connection is closed, so a late timer never touches a reused descriptor."""
        with self._lock:
            self._stopped = True
        self._timer.cancel()


class _Trace:
    """httpcore trace callback: monotonic time of each event of one request; streams to `watchdog`."""

    def __init__(self, watchdog: _Watchdog | None = None) -> None:
        self.at: dict[str, float] = {}
        self.watchdog = watchdog

    def __call__(self, event: str, info: dict[str, Any]) -> None:
        name = event.split(".", 1)[-1]
        self.at.setdefault(name, time.monotonic())
        if self.watchdog is not None and name in ("connect_tcp.complete", "start_tls.complete"):
            self.watchdog.watch(info.get("return_value"))


def _inflate(chunks: Iterator[bytes], wbits: int | None) -> Iterator[bytes]:
    """zlib-decode `chunks` at most `_STEP` bytes at a time, so a small compressed body cannot expand
    in memory past what the caller reads of it. `wbits` None is deflate: zlib-wrapped, or raw when
    the first chunk is not (as httpx decodes it)."""
    dec = zlib.decompressobj(zlib.MAX_WBITS if wbits is None else wbits)
    retry_raw = wbits is None
    for data in chunks:
        while True:
            try:
                out = dec.decompress(data, _STEP)
            except zlib.error:
                if not retry_raw:
                    raise
                dec, retry_raw = zlib.decompressobj(-zlib.MAX_WBITS), False
                continue
            retry_raw = False
            data = dec.unconsumed_tail
            if out:
                yield out
            if not data and len(out) < _STEP:
                break
    if tail := dec.flush():
        yield tail


def _decoded(resp: httpx.Response) -> Iterator[bytes]:
    """The body as httpx would decode it (gzip, deflate; other codings are passed through)."""
    chunks: Iterator[bytes] = resp.iter_raw()
    codings = [c.strip().lower() for c in resp.headers.get_list("content-encoding", split_commas=True)]
    for coding in reversed(codings):  # listed in the order they were applied
        if coding == "gzip":
            chunks = _inflate(chunks, 16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            chunks = _inflate(chunks, None)
    return chunks


def _read_body(
    resp: httpx.Response, deadline: float, limit: int, keep: bool, watchdog: _Watchdog, timeout: float
) -> tuple[bytes, int, str]:
    """Read the decoded body: (the body if `keep`, its length, why reading it failed or "").

    Stops at the deadline and past `limit` decoded bytes (blackbox's body_size_limit: a body of
    exactly `limit` bytes passes); the length then counts what was read, as blackbox's does.
    """
    kept: list[bytes] = []
    size = 0
    late = False
    try:
        for chunk in _decoded(resp):
            if size + len(chunk) > limit:
                if keep:
                    kept.append(chunk[: limit - size])
                return b"".join(kept), limit, f"body larger than body_size_limit ({limit} bytes)"
            size += len(chunk)
            if keep:
                kept.append(chunk)
            if time.monotonic() >= deadline:
                late = True
                break
    except httpx.HTTPError as e:
        late = watchdog.fired or time.monotonic() >= deadline
        problem = "" if late else f"reading the body: {e}"
    except zlib.error as e:
        problem = f"decoding the body: {e}"
    else:
        problem = ""
    if late or watchdog.fired:  # a shut-down connection also reads as the end of a close-delimited body
        problem = f"timeout: body still arriving after {timeout:g}s"
    return b"".join(kept), size, problem


def _verify_failure(e: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _bare_state(
    ip: str, family: socket.AddressFamily, port: int, opts: TLSOptions, host: str, timeout: float, code: int
) -> TLSState:
    """The presented chain of a server that failed verification, from a handshake of its own."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((ip, port))
        tls, state = unverified_state(sock, opts, host, timeout, code)
        tls.close()
        return state
    except OSError as e:
        raise ProbeError(f"TLS handshake: {e}") from None
    finally:
        sock.close()


def _phases(result: ProbeResult, tr: _Trace, end: float | None) -> None:
    at = tr.at
    conn_start, conn_done = at.get("connect_tcp.started"), at.get("connect_tcp.complete")
    tls_start, tls_done = at.get("start_tls.started"), at.get("start_tls.complete")
    if conn_start is not None and conn_done is not None:
        result.add("probe_http_duration_seconds", _DURATION, conn_done - conn_start, phase="connect")
    if tls_start is not None and tls_done is not None:
        result.add("probe_http_duration_seconds", _DURATION, tls_done - tls_start, phase="tls")
    got_conn = tls_done or conn_done or at.get("send_request_headers.started")
    first = at.get("receive_response_headers.complete")
    if got_conn is None or first is None:
        return
    result.add("probe_http_duration_seconds", _DURATION, first - got_conn, phase="processing")
    if end is not None:
        result.add("probe_http_duration_seconds", _DURATION, end - first, phase="transfer")


def probe_http(config: ProbeConfig) -> ProbeResult:
    """Run one HTTP probe; never raises (failures read probe_success 0, reason in `.error`)."""
    return run_probe_step(_probe, config)


def _probe(config: ProbeConfig, result: ProbeResult, started: float) -> bool:
    hc = config.http
    deadline = started + config.timeout_seconds
    result.declare("probe_http_duration_seconds", _DURATION, ("phase",))
    gauges = {
        "probe_http_content_length": "Length of the response body as announced (-1: unknown).",
        "probe_http_uncompressed_body_length": "Length of the response body after decompression, in bytes.",
        "probe_http_redirects": "How many redirects were followed.",
        "probe_http_ssl": "Whether the final request used TLS (1) or not (0).",
        "probe_http_status_code": "Status code of the final response (0: no response).",
        "probe_http_version": "HTTP version of the final response, e.g. 1.1.",
        "probe_failed_due_to_regex": "Whether a body regular expression failed the probe (1) or not (0).",
    }
    for name, help in gauges.items():
        result.gauge(name, help)
    opts = TLSOptions(config.tls.ca_file, config.tls.insecure_skip_verify, config.tls.server_name)
    target = config.target if "://" in config.target else "http://" + config.target
    url = httpx.URL(target)
    method = hc.method
    body: bytes | None = hc.body.encode() if hc.body else None
    headers = {"User-Agent": f"Vigil/{__version__}", "Accept-Encoding": "gzip", **hc.headers}
    keep = bool(hc.fail_if_body_matches_regexp or hc.fail_if_body_not_matches_regexp)
    redirects = 0
    for hop in range(_MAX_REDIRECTS + 1):
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        scratch = result if hop == 0 else ProbeResult()  # blackbox's IP families describe the first hop
        try:
            addr = resolve(scratch, host, config.ip_protocol, config.ip_protocol_fallback)
        finally:
            result.add(
                "probe_http_duration_seconds",
                _DURATION,
                scratch.families["probe_dns_lookup_time_seconds"].samples[()],
                phase="resolve",
            )
        if hop == 0:
            for phase in ("connect", "tls", "processing", "transfer"):
                result.add("probe_http_duration_seconds", _DURATION, 0, phase=phase)
        sni = opts.server_name or host
        verified = True
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProbeError("timeout")
            watchdog = _Watchdog(deadline)
            tr = _Trace(watchdog)
            ip_url = url.copy_with(host=addr.ip, port=port)
            host_header = url.netloc.decode("ascii")
            ctx = make_context(opts, verify=verified)
            try:
                with httpx.Client(verify=ctx, trust_env=False, timeout=remaining) as client:
                    try:
                        with client.stream(
                            method,
                            ip_url,
                            headers={**headers, "Host": host_header},
                            content=body,
                            extensions={"sni_hostname": sni, "trace": tr},
                        ) as resp:
                            state: TLSState | None = None
                            ssl_obj = resp.extensions["network_stream"].get_extra_info("ssl_object")
                            if ssl_obj is not None:
                                state = tls_state(ssl_obj, sni, verified)
                                if not verified:
                                    state = TLSState(
                                        state.peer, (), state.version, False, state.hostname_valid
                                    )
                            location = resp.headers.get("location")
                            follow = (
                                resp.status_code in _REDIRECTS
                                and hc.follow_redirects
                                and bool(location)
                                and hop < _MAX_REDIRECTS
                            )
                            # Go's client closes a redirect's body unread, followed or not (blackbox
                            # then reports a body length of 0).
                            content, body_length, body_error = (
                                (b"", 0, "")
                                if resp.status_code in _REDIRECTS and location
                                else _read_body(
                                    resp, deadline, hc.body_size_limit, keep, watchdog, config.timeout_seconds
                                )
                            )
                            end = time.monotonic()
                            watchdog.stop()
                    finally:
                        watchdog.stop()
            except httpx.HTTPError as e:
                _phases(result, tr, None)
                if watchdog.fired:
                    raise ProbeError(f"HTTP request: timeout after {config.timeout_seconds:g}s") from None
                failure = _verify_failure(e)
                if failure is None or not verified:
                    raise ProbeError(f"HTTP request: {e}") from None
                code = int(failure.verify_code or 0)
                if opts.insecure_skip_verify:
                    verified = False  # report, but go on without verification
                    continue
                bare = _bare_state(
                    addr.ip, addr.family, port, opts, host, max(deadline - time.monotonic(), 0.1), code
                )
                emit_tls(result, bare)
                raise ProbeError(f"TLS verification: {failure.verify_message}") from None
            break
        _phases(result, tr, end)
        if follow and location:
            redirects += 1
            url = url.join(location)
            if resp.status_code == 303 or (resp.status_code in (301, 302) and method == "POST"):
                method, body = "GET", None  # as browsers and Go's client do
            continue
        break
    else:  # pragma: no cover - the loop always breaks
        raise ProbeError("too many redirects")

    if body_error:
        success, error = False, body_error
        if keep:  # blackbox's body regexps fail on a body that could not be read
            result.set("probe_failed_due_to_regex", gauges["probe_failed_due_to_regex"], 1)
    elif resp.status_code in _REDIRECTS and hc.follow_redirects and redirects >= _MAX_REDIRECTS:
        success = False
        error = "stopped after 10 redirects"
    elif hc.valid_status_codes:
        success = resp.status_code in hc.valid_status_codes
        error = "" if success else f"status {resp.status_code} not in valid_status_codes"
    else:
        success = 200 <= resp.status_code < 300
        error = "" if success else f"status {resp.status_code}, wanted 2xx"
    if success and (hc.fail_if_body_matches_regexp or hc.fail_if_body_not_matches_regexp):
        text = content.decode(resp.encoding or "utf-8", errors="replace")
        bad = [p for p in hc.fail_if_body_matches_regexp if compile_regex(p).search(text)]
        missing = [p for p in hc.fail_if_body_not_matches_regexp if not compile_regex(p).search(text)]
        success = not bad and not missing
        error = "" if success else f"body regexp failed: {(bad + missing)[0]!r}"
        result.set("probe_failed_due_to_regex", gauges["probe_failed_due_to_regex"], 0 if success else 1)

    if modified := resp.headers.get("last-modified"):
        try:
            when = email.utils.parsedate_to_datetime(modified)
            result.set(
                "probe_http_last_modified_timestamp_seconds",
                "The Last-Modified response header, in unix seconds.",
                int(when.timestamp()),
            )
        except (TypeError, ValueError):
            pass
    version = resp.http_version.removeprefix("HTTP/")
    result.set("probe_http_version", gauges["probe_http_version"], float(version) if version else 0)
    if state is not None:
        result.set("probe_http_ssl", gauges["probe_http_ssl"], 1)
        emit_tls(result, state)
        if hc.fail_if_ssl:
            success, error = False, "final request used TLS (fail_if_ssl)"
    elif hc.fail_if_not_ssl:
        success, error = False, "final request did not use TLS (fail_if_not_ssl)"
    if state is not None and not state.chain_valid and error == "":
        error = "certificate not verified (insecure_skip_verify)"
    result.set("probe_http_status_code", gauges["probe_http_status_code"], resp.status_code)
    announced = resp.headers.get("content-length")
    decoded = resp.headers.get("content-encoding", "identity").lower() != "identity"
    length = int(announced) if announced and announced.isdigit() and not decoded else -1
    result.set("probe_http_content_length", gauges["probe_http_content_length"], length)
    result.set(
        "probe_http_uncompressed_body_length", gauges["probe_http_uncompressed_body_length"], body_length
    )
    result.set("probe_http_redirects", gauges["probe_http_redirects"], redirects)
    if not success and error:
        raise _Failed(error)
    return success


class _Failed(ProbeError):
    """The request went through but a check failed: metrics stay, the probe reads 0."""
