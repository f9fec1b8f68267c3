"""A delay line in front of a TCP server: every chunk read from one side is written to the other
at (arrival time + delay), in order per direction, so pipelined and concurrent connections are
delayed, never serialised (the network between Cloud Functions and Cloud SQL, simulated).

    with DelayLine(upstream_port, rtt_ms=1.0) as line:   # 0.5 ms each way
        connect to 127.0.0.1:line.port ...; line.pid is the proxy process

The proxy runs in its own process (`python bench/_proxy.py --upstream HOST:PORT --delay-ms D`,
which prints the port it listens on), so it takes no GIL from the benchmark or the server under
test. One asyncio loop on a `select()` selector: epoll's timeout has millisecond granularity and
would round a 0.25 ms delay up to 1 ms; select's is in microseconds (the timer slack is set to
1 ns for the same reason). TCP_NODELAY on both sockets of every connection. Backpressure: a side
whose write buffer is full pauses reading from the other side. The process exits on SIGTERM,
SIGINT or the death of its parent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import selectors
import signal
import socket
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG, PR_SET_TIMERSLACK = 1, 29
EARLY = 5e-6  # a timer may fire this much before its due time and still flush


class Side(asyncio.Protocol):
    """One socket of a proxied connection; what it reads goes into its peer's delay line."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self.loop, self.delay = loop, delay
        self.transport: asyncio.Transport | None = None
        self.peer: Side | None = None
        self.queue: deque[tuple[float, bytes | None]] = deque()  # (due, data); None = close

    # -- as a reader: delay what arrives, toward the peer --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None:
            self.peer.send_later(data)

    def eof_received(self) -> bool:
        return False  # close this side; connection_lost tells the peer

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.clear()  # nothing more can be written here
        if self.peer is not None:
            self.peer.send_later(None)
            self.peer.peer = None
            self.peer = None

    # -- as a writer: the delay line toward this side's socket --
    def send_later(self, data: bytes | None) -> None:
        if self.delay <= 0:
            self.queue.append((0.0, data))
            self.flush()
            return
        self.queue.append((self.loop.time() + self.delay, data))
        if len(self.queue) == 1:
            self.loop.call_at(self.queue[0][0], self.flush)

    def flush(self) -> None:
        now, queue, transport = self.loop.time() + EARLY, self.queue, self.transport
        while queue and queue[0][0] <= now:
            data = queue.popleft()[1]
            if transport is None or transport.is_closing():
                queue.clear()
                return
            if data is None:
                transport.close()
            else:
                transport.write(data)
        if queue:
            self.loop.call_at(queue[0][0], self.flush)

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class Accepted(Side):
    """The client's socket: reading waits until the upstream connection is made."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, upstream: Upstream) -> None:
        super().__init__(loop, delay)
        self.upstream = upstream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self.transport is not None
        self.transport.pause_reading()
        task = self.loop.create_task(self.link())
        self.upstream.tasks.add(task)
        task.add_done_callback(self.upstream.tasks.discard)

    async def link(self) -> None:
        assert self.transport is not None
        try:
            transport, server = await self.loop.create_connection(
                lambda: Side(self.loop, self.delay), self.upstream.host, self.upstream.port
            )
        except OSError:
            self.transport.close()
            return
        if self.transport.is_closing():
            transport.close()
            return
        self.peer, server.peer = server, self
        self.transport.resume_reading()


@dataclass
class Upstream:
    host: str
    port: int
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


async def serve(upstream: Upstream, delay: float) -> None:
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: Accepted(loop, delay, upstream), "127.0.0.1", 0, backlog=512
    )
    print(listener.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    listener.close()


def _prctl(option: int, value: int) -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description="TCP delay line on 127.0.0.1")
    parser.add_argument("--upstream", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay")
    args = parser.parse_args()
    host, _, port = args.upstream.rpartition(":")
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    _prctl(PR_SET_TIMERSLACK, 1)
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        loop.run_until_complete(serve(Upstream(host, int(port)), args.delay_ms / 1000))
    finally:
        loop.close()


# ---- the launcher, for the benchmark ----------------------------------------------------------


class DelayLine:
    """The proxy process in front of 127.0.0.1:`upstream_port`, `rtt_ms` / 2 each way (or
    `one_way_ms`: a correction for the proxy's own cost)."""

    def __init__(self, upstream_port: int, *, rtt_ms: float, one_way_ms: float | None = None):
        self.rtt_ms = rtt_ms
        self.one_way_ms = rtt_ms / 2 if one_way_ms is None else one_way_ms
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--upstream",
                f"127.0.0.1:{upstream_port}",
                "--delay-ms",
                repr(self.one_way_ms),
            ],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise RuntimeError(f"the delay line did not start (said {line!r})")
        self.port = int(line)
        self.pid = self.proc.pid

    def __enter__(self) -> DelayLine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


if __name__ == "__main__":
    main()
