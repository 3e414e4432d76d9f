"""The remote-write client against a real Vigil server (success, refused credentials, bad data) and
against a small local receiver for what Vigil cannot do (yet): TLS, and scripted 5xx/429 answers."""

from __future__ import annotations

import http.server
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

import cramjam
import pytest
import trustme

from tests.conftest import VigilProcess, free_port
from vigil import __version__
from vigil.model.matcher import Matcher
from vigil.prompb import WriteRequest
from vigil.prompb.encode import encode_write_request
from vigil.ship.client import Outcome, RemoteWriteClient, parse_retry_after
from vigil.tsdb.db import DB, MAX_TIME, MIN_TIME

NOW_MS = int(time.time() * 1000)


def payload(name: str = "ship_test", ts: int = NOW_MS, value: float = 1.0) -> bytes:
    body = encode_write_request([[("__name__", name), ("job", "agent")]], [[(ts, value)]])
    return bytes(cramjam.snappy.compress_raw(body))


@dataclass
class Receiver:
    """A minimal remote-write receiver on 127.0.0.1, optionally over TLS.

    It checks what a real receiver relies on (headers, snappy, protobuf) and records the decoded
    requests; `script` holds (status, headers) answers to give before answering 204.
    """

    tls: ssl.SSLContext | None = None
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[WriteRequest] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/api/v1/write"

    def __enter__(self) -> Receiver:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.headers.append(dict(self.headers.items()))
                if outer.script:
                    status, extra = outer.script.pop(0)
                    return self.answer(status, extra)
                ok = (
                    self.headers["Content-Encoding"] == "snappy"
                    and self.headers["Content-Type"] == "application/x-protobuf"
                    and self.headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
                )
                if not ok:
                    return self.answer(400, {})
                req = WriteRequest()
                try:
                    req.ParseFromString(bytes(cramjam.snappy.decompress_raw(body)))
                except Exception:
                    return self.answer(400, {})
                outer.received.append(req)
                self.answer(204, {})

            def answer(self, status: int, extra: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "3" if status != 204 else "0")
                self.end_headers()
                if status != 204:
                    self.wfile.write(b"no\n")

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


# -- against a real Vigil server ---------------------------------------------------------------


@pytest.fixture
def vigil_with_token(tmp_path: Path) -> Iterator[VigilProcess]:
    cfg = tmp_path / "vigil.yml"
    cfg.write_text("server:\n  auth:\n    write_tokens: [s3cret]\n")
    v = VigilProcess(tmp_path / "data", extra_args=["--config", str(cfg)]).start()
    yield v
    v.stop()


def test_vigil_accepts_and_refuses(vigil_with_token: VigilProcess, caplog: pytest.LogCaptureFixture) -> None:
    url = vigil_with_token.url + "/api/v1/write"
    with RemoteWriteClient(url, bearer_token="s3cret") as good:
        r = good.send(payload(value=42.0))
        assert r.outcome is Outcome.OK and r.status == 204
        # Bad data is permanent too: the same bytes can never succeed.
        bad = bytes(
            cramjam.snappy.compress_raw(encode_write_request([[("job", "nameless")]], [[(NOW_MS, 1)]]))
        )
        r = good.send(bad)
        assert (r.outcome, r.status, r.reason) == (Outcome.PERMANENT, 400, "http_400")
        assert "missing metric name" in r.message
    with RemoteWriteClient(url, bearer_token="wrong") as wrong, caplog.at_level(logging.ERROR):
        for _ in range(3):
            r = wrong.send(payload())
            assert (r.outcome, r.status, r.reason) == (Outcome.PERMANENT, 401, "http_401")
            assert "invalid bearer token" in r.message
    logged = [rec for rec in caplog.records if "HTTP 401" in rec.getMessage()]
    assert len(logged) == 1  # once per distinct status and message
    with RemoteWriteClient(url) as anonymous:
        assert anonymous.send(payload()).status == 401

    vigil_with_token.stop()
    with DB(vigil_with_token.data_dir) as db:
        ((labels, ts, values),) = db.select([Matcher.eq("__name__", "ship_test")], MIN_TIME, MAX_TIME)
    assert labels.to_dict() == {"__name__": "ship_test", "job": "agent"}
    assert ts.tolist() == [NOW_MS] and values.tolist() == [42.0]  # only the accepted request was stored


def test_nothing_listening_is_retryable() -> None:
    with RemoteWriteClient(f"http://127.0.0.1:{free_port()}/api/v1/write", timeout_s=5) as c:
        r = c.send(payload())
    assert (r.outcome, r.status, r.reason) == (Outcome.RETRY, None, "network")


# -- against the local receiver -------------------------------------------------------------------


def test_headers_signature_and_retryable_statuses() -> None:
    date = formatdate(time.time() + 90, usegmt=True)
    script = [(503, {"Retry-After": "7"}), (429, {"Retry-After": date}), (500, {}), (413, {})]
    with Receiver(script=list(script)) as rx, RemoteWriteClient(rx.url, hmac_key="k") as c:
        results = [c.send(payload()) for _ in range(5)]
    assert [(r.outcome, r.status) for r in results] == [
        (Outcome.RETRY, 503),
        (Outcome.RETRY, 429),
        (Outcome.RETRY, 500),
        (Outcome.PERMANENT, 413),
        (Outcome.OK, 204),
    ]
    assert results[0].retry_after_s == 7.0
    assert results[1].retry_after_s is not None and 80 < results[1].retry_after_s <= 90
    assert results[2].retry_after_s is None
    sent = rx.headers[-1]
    assert sent["User-Agent"] == f"vigil-agent/{__version__}"
    assert sent["X-Vigil-Signature"].startswith("sha256=") and sent["X-Vigil-Timestamp"].isdigit()
    assert "Authorization" not in sent
    assert len(rx.received) == 1


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now) == pytest.approx(30, abs=1)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now) == 0.0  # in the past: now
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("-5", now) is None


# Vigil does not terminate TLS itself (it runs behind a TLS proxy for now), so this receiver stands in
# for "a remote-write endpoint over HTTPS": what is tested is the client's side of TLS.
@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, require_client_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(ctx)
    return ctx


def test_tls_trusted_ca_works_and_untrusted_cert_is_refused(tmp_path: Path, ca: trustme.CA) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    with Receiver(tls=server_context(ca)) as rx:
        with RemoteWriteClient(rx.url, ca_file=ca_file) as c:
            assert c.send(payload(value=3.0)).outcome is Outcome.OK
        with RemoteWriteClient(rx.url, ca_file=other_ca, timeout_s=5) as c:
            r = c.send(payload())
        assert (r.outcome, r.reason) == (Outcome.RETRY, "tls")
        assert "CERTIFICATE_VERIFY_FAILED" in r.message
        with RemoteWriteClient(rx.url, timeout_s=5) as c:  # system trust store: does not know this CA
            assert c.send(payload()).reason == "tls"
    assert len(rx.received) == 1
    (series,) = rx.received[0].timeseries
    assert {(lb.name, lb.value) for lb in series.labels} == {("__name__", "ship_test"), ("job", "agent")}
    assert [(s.timestamp, s.value) for s in series.samples] == [(NOW_MS, 3.0)]


def test_tls_client_certificate(tmp_path: Path, ca: trustme.CA) -> None:
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "agent.pem", tmp_path / "agent.key"
    ca.cert_pem.write_to_path(str(ca_file))
    agent = ca.issue_cert("agent.example")
    agent.cert_chain_pems[0].write_to_path(str(cert_file))
    agent.private_key_pem.write_to_path(str(key_file))
    with Receiver(tls=server_context(ca, require_client_cert=True)) as rx:
        with RemoteWriteClient(rx.url, ca_file=ca_file, cert_file=cert_file, key_file=key_file) as c:
            assert c.send(payload()).outcome is Outcome.OK
        with RemoteWriteClient(rx.url, ca_file=ca_file, timeout_s=5) as c:
            r = c.send(payload())
        assert r.outcome is Outcome.RETRY and r.status is None  # the server hung up on the handshake
    assert len(rx.received) == 1
