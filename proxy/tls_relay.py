"""TLS and plaintext on one port (``tls.server.mode=permissive``).

grpc.aio cannot tell a TLS connection from a plaintext one on the same listener, so in permissive mode
the public port is this module's: each accepted connection's first byte picks the loopback listener it
is relayed to -- the gRPC server's TLS one for a TLS record (0x16), its plaintext one for anything else
(an HTTP/2 connection starts with ``PRI *``). Bytes then flow both ways unchanged, with back-pressure.

The gRPC server sees each relayed connection as coming from 127.0.0.1; :meth:`ProtocolDetector.client_of`
gives the client's own address back (for ACL white addresses and a message's born host).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import cast

from proxy.tls import TLS_RECORD_HANDSHAKE

log = logging.getLogger("proxy")

LOOPBACK = "127.0.0.1"
FIRST_BYTE_TIMEOUT_S = 120.0  # as gRPC's server handshake timeout: a silent connection is closed


class ProtocolDetector:
    """Listens on the public port and relays each connection to ``plain_port`` or ``tls_port`` on
    127.0.0.1 by its first byte."""

    def __init__(self, plain_port: int, tls_port: int, first_byte_timeout: float = FIRST_BYTE_TIMEOUT_S) -> None:
        self.plain_port = plain_port
        self.first_byte_timeout = first_byte_timeout
        self.tls_port = tls_port
        # local port of a relayed connection to the gRPC server -> the client's (host, port)
        self.peers: dict[int, tuple[str, int]] = {}
        self._server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (SO_REUSEPORT, as the gRPC server does); returns the bound port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ClientSide(self), host or None, port, reuse_port=True,
                                                backlog=1024)
        return int(self._server.sockets[0].getsockname()[1])

    def client_of(self, host: str, port: int) -> tuple[str, int]:
        """The client behind a connection the gRPC server sees from (host, port); itself if not relayed."""
        if host == LOOPBACK:
            return self.peers.get(port, (host, port))
        return (host, port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


class _ClientSide(asyncio.Protocol):
    """A client's connection to the public port."""

    def __init__(self, detector: ProtocolDetector) -> None:
        self.detector = detector
        self.transport: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.pending = bytearray()
        self.client: tuple[str, int] = ("", 0)
        self.local_port = 0
        self.closed = False
        self.silence: asyncio.TimerHandle | None = None
        self.connecting: asyncio.Task[None] | None = None  # held: the loop keeps only weak references

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are no subclasses
        peer = transport.get_extra_info("peername") or ("", 0)
        self.client = (str(peer[0]), int(peer[1]))
        self.silence = asyncio.get_running_loop().call_later(self.detector.first_byte_timeout, self._close)

    def data_received(self, data: bytes) -> None:
        if self.upstream is not None:
            self.upstream.write(data)
            return
        # the first bytes: reading pauses until the connection to the gRPC server is made
        assert self.transport is not None and self.silence is not None and self.connecting is None
        self.silence.cancel()
        self.transport.pause_reading()
        self.pending += data
        port = self.detector.tls_port if data[0] == TLS_RECORD_HANDSHAKE else self.detector.plain_port
        self.connecting = asyncio.get_running_loop().create_task(self._connect(port))

    async def _connect(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            connected, _ = await loop.create_connection(lambda: _ServerSide(self), LOOPBACK, port)
        except OSError as e:
            log.warning("connection from %s:%d: cannot reach the gRPC server on port %d: %s",
                        self.client[0], self.client[1], port, e)
            self._close()
            return
        upstream = cast(asyncio.Transport, connected)
        if self.closed:
            upstream.close()
            return
        sock = upstream.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.local_port = int(upstream.get_extra_info("sockname")[1])
        self.detector.peers[self.local_port] = self.client  # before any byte reaches the gRPC server
        self.upstream = upstream
        upstream.write(bytes(self.pending))
        self.pending.clear()
        assert self.transport is not None
        self.transport.resume_reading()

    def pause_writing(self) -> None:  # the client reads slower than the server answers
        if self.upstream is not None:
            self.upstream.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.silence is not None:
            self.silence.cancel()
        if self.transport is not None:
            self.transport.close()
        if self.upstream is not None:
            self.upstream.close()
        if self.local_port:
            self.detector.peers.pop(self.local_port, None)


class _ServerSide(asyncio.Protocol):
    """The relay's connection to the gRPC server, for one client connection."""

    def __init__(self, client: _ClientSide) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are no subclasses

    def data_received(self, data: bytes) -> None:
        t = self.client.transport
        if t is not None:
            t.write(data)

    def pause_writing(self) -> None:  # the server reads slower than the client sends
        if self.client.transport is not None:
            self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.client.transport is not None:
            self.client.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._close()
