"""One webhook attempt over HTTP(S): the `Sender` port and its stdlib implementation.

`HttpSender.send` asks the guard for the pinned address (checked again at every attempt),
connects to that address only, and speaks to it with the host name from the URL (``Host``
header, TLS SNI and certificate check). Redirects are never followed: a 3xx is just a status.
The whole attempt — connect, TLS, request, response head — is bounded by ``timeout``: a
watchdog shuts the socket down when it expires, so a server dripping bytes cannot hold it.
Only the status line and headers are read. It never raises for a network or HTTP failure:
the result carries ``status`` (None if no answer), ``error``, ``latency_ms`` and the raw
``Retry-After``.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from proveniq.followers.webhooks.guard import Guard, Pinned, TargetRefused
from proveniq.followers.webhooks.signing import USER_AGENT


@dataclass(frozen=True, kw_only=True)
class SendResult:
    status: int | None  # None: no HTTP answer (refused, connection error, timeout)
    latency_ms: int
    error: str | None = None
    retry_after: str | None = None  # the raw Retry-After header
    address: str | None = None  # where the request went


class Sender(Protocol):
    def send(self, *, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult: ...


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP(S) to a pinned address, speaking to it under the URL's host name."""

    def __init__(
        self, pinned: Pinned, *, timeout: float, ssl_context: ssl.SSLContext | None
    ) -> None:
        super().__init__(pinned.target.host, pinned.target.port, timeout=timeout)
        self._pinned = pinned
        self._ssl_context = ssl_context
        self._lock = threading.Lock()
        self.aborted = False

    def connect(self) -> None:
        raw = socket.create_connection((self._pinned.address, self.port), timeout=self.timeout)
        with self._lock:
            self.sock = raw
            if self.aborted:
                raise TimeoutError("timed out")
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._pinned.target.scheme == "https":
            ctx = self._ssl_context or ssl.create_default_context()
            tls = ctx.wrap_socket(raw, server_hostname=self._pinned.target.host)
            with self._lock:
                self.sock = tls

    def abort(self) -> None:
        with self._lock:
            self.aborted = True
            sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class HttpSender:
    def __init__(
        self,
        *,
        guard: Guard,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self._guard = guard
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._monotonic = monotonic

    def send(self, *, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult:
        started = self._monotonic()

        def elapsed() -> int:
            return max(0, round((self._monotonic() - started) * 1000))

        try:
            pinned = self._guard.check(url)
        except TargetRefused as e:
            return SendResult(status=None, latency_ms=elapsed(), error=f"refused: {e.reason}")
        conn = _PinnedConnection(pinned, timeout=self._timeout, ssl_context=self._ssl_context)
        watchdog = threading.Timer(self._timeout, conn.abort)
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.request(
                "POST",
                pinned.target.path,
                body=body,
                headers={
                    **headers,
                    "Content-Type": "application/json",
                    "User-Agent": USER_AGENT,
                    "Connection": "close",
                },
            )
            response = conn.getresponse()
            if conn.aborted:  # a head cut short by the watchdog may still parse: not an answer
                raise TimeoutError("timed out")
            return SendResult(
                status=response.status,
                latency_ms=elapsed(),
                retry_after=response.getheader("Retry-After"),
                address=pinned.address,
            )
        except (OSError, http.client.HTTPException, ValueError) as e:
            if conn.aborted or isinstance(e, TimeoutError):
                error = f"timeout after {self._timeout:g} s"
            elif isinstance(e, ssl.SSLError):
                error = f"tls: {e.reason or e}"
            else:
                error = f"connection: {type(e).__name__}: {e}"
            return SendResult(
                status=None, latency_ms=elapsed(), error=error, address=pinned.address
            )
        finally:
            watchdog.cancel()
            conn.close()
