"""HttpSender against real receivers on 127.0.0.1 (allowed by the loopback allow-list)."""

from __future__ import annotations

import datetime as dt
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from proveniq.followers.webhooks.guard import Guard, Policy
from proveniq.followers.webhooks.sender import HttpSender

HOST = "hooks.partner.test"


class Receiver:
    """A threaded http.server recording each request; ``reply`` decides the answer."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.reply: tuple[int, dict[str, str]] = (200, {})
        self.sni: list[str | None] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                owner.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": self.rfile.read(n)}
                )
                status, headers = owner.reply
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:

            def on_sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
                owner.sni.append(name)

            tls.sni_callback = on_sni
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def sender(timeout: float = 2.0, **kw: Any) -> HttpSender:
    guard = Guard(policy=Policy.local(), resolver=lambda h: {HOST: ["127.0.0.1"]}[h])
    return HttpSender(guard=guard, timeout=timeout, **kw)


def test_posts_the_body_to_the_pinned_address_under_the_host_name(receiver: Receiver) -> None:
    url = f"http://{HOST}:{receiver.port}/in?x=1"
    result = sender().send(url=url, body=b'{"a":1}', headers={"webhook-id": "evt_1"})
    assert result.status == 200 and result.error is None
    assert result.address == "127.0.0.1" and result.latency_ms >= 0
    [req] = receiver.requests
    assert req["path"] == "/in?x=1"
    assert req["body"] == b'{"a":1}'
    assert req["headers"]["Host"] == f"{HOST}:{receiver.port}"
    assert req["headers"]["webhook-id"] == "evt_1"
    assert req["headers"]["Content-Type"] == "application/json"


def test_a_redirect_is_a_failure_and_is_not_followed(receiver: Receiver) -> None:
    target = Receiver()
    try:
        receiver.reply = (302, {"Location": f"http://127.0.0.1:{target.port}/elsewhere"})
        result = sender().send(url=f"http://{HOST}:{receiver.port}/", body=b"{}", headers={})
        assert result.status == 302
        receiver.reply = (307, {"Location": "http://169.254.169.254/latest/meta-data/"})
        assert (
            sender().send(url=f"http://{HOST}:{receiver.port}/", body=b"{}", headers={}).status
            == 307
        )
        assert len(receiver.requests) == 2
        assert target.requests == []
    finally:
        target.close()


def test_status_and_retry_after_are_recorded(receiver: Receiver) -> None:
    receiver.reply = (503, {"Retry-After": "120"})
    result = sender().send(url=f"http://{HOST}:{receiver.port}/", body=b"{}", headers={})
    assert (result.status, result.retry_after) == (503, "120")


def test_a_silent_server_times_out_within_the_bound() -> None:
    with socket.socket() as s:  # accepts (kernel backlog) and never answers
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        started = time.monotonic()
        result = sender(timeout=0.5).send(
            url=f"http://{HOST}:{s.getsockname()[1]}/", body=b"{}", headers={}
        )
    assert result.status is None and result.error is not None and "timeout" in result.error
    assert time.monotonic() - started < 2


def test_a_server_dripping_its_answer_is_cut_off_at_the_timeout() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    stop = threading.Event()

    def drip() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.recv(65536)
            for b in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([b]))
                except OSError:
                    return
                time.sleep(0.05)

    t = threading.Thread(target=drip, daemon=True)
    t.start()
    started = time.monotonic()
    try:
        result = sender(timeout=0.6).send(
            url=f"http://{HOST}:{srv.getsockname()[1]}/", body=b"{}", headers={}
        )
    finally:
        stop.set()
        srv.close()
    assert result.status is None and result.error is not None and "timeout" in result.error
    assert time.monotonic() - started < 2


def test_connection_refused_is_a_recorded_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = sender().send(url=f"http://{HOST}:{port}/", body=b"{}", headers={})
    assert result.status is None and result.error is not None
    assert result.error.startswith("connection:")


def test_the_guard_is_asked_again_at_delivery_time() -> None:
    answers = {HOST: ["127.0.0.1"]}
    guard = Guard(policy=Policy.local(), resolver=lambda h: answers[h])
    answers[HOST] = ["10.0.0.7"]  # the name now points somewhere private
    result = HttpSender(guard=guard).send(url=f"http://{HOST}:9/", body=b"{}", headers={})
    assert result.status is None and result.address is None
    assert result.error is not None and result.error.startswith("refused:")
    assert "private" in result.error


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("cert_name", [HOST, "other.partner.test"])
def test_https_uses_the_host_name_for_sni_and_the_certificate_check(
    tmp_path: Path, cert_name: str
) -> None:
    cert, key = _certificate(tmp_path, cert_name)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    receiver = Receiver(tls=server_ctx)
    try:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        guard = Guard(
            policy=Policy(allowed_networks=Policy.local().allowed_networks),
            resolver=lambda h: ["127.0.0.1"],
        )
        result = HttpSender(guard=guard, ssl_context=client_ctx, timeout=3).send(
            url=f"https://{HOST}:{receiver.port}/tls", body=b"{}", headers={}
        )
        assert receiver.sni[:1] == [HOST]
        if cert_name == HOST:
            assert result.status == 200, result.error
            assert receiver.requests[0]["headers"]["Host"] == f"{HOST}:{receiver.port}"
        else:  # the pinned address answered with a certificate for another name
            assert result.status is None and result.error is not None
            assert result.error.startswith("tls:")
            assert receiver.requests == []
    finally:
        receiver.close()
