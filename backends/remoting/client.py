"""asyncio remoting client (RocketMQ's NettyRemotingClient): one multiplexed connection per address.

Calls on one address share a connection and are matched to their responses by opaque. A closed
connection is replaced on the next call. Requests the server sends us (e.g. CHECK_TRANSACTION_STATE)
go to the processors registered here.
"""

from __future__ import annotations

import asyncio
import logging

from backends.acl import SessionCredentials, sign_request
from backends.remoting.command import RemotingCommand
from backends.remoting.errors import RemotingConnectError, RemotingError, RemotingTimeoutError
from backends.remoting.server import DEFAULT_ONEWAY_TIMEOUT, Connection, Processor, close_all

__all__ = [
    "RemotingClient",
    "RemotingConnectError",
    "RemotingError",
    "RemotingTimeoutError",
    "parse_addr",
]

log = logging.getLogger("RocketmqRemoting")


def parse_addr(addr: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) -> (host, port); RemotingConnectError when malformed."""
    host, sep, port = addr.strip().rpartition(":")
    if not sep or not host:
        raise RemotingConnectError(f"bad address {addr!r}: expected host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        p = int(port)
    except ValueError:
        raise RemotingConnectError(f"bad address {addr!r}: port is not a number") from None
    if not 0 < p < 65536:
        raise RemotingConnectError(f"bad address {addr!r}: port out of range")
    return host, p


class RemotingClient:
    def __init__(self, connect_timeout: float = 3.0, credentials: SessionCredentials | None = None) -> None:
        """``credentials``: sign every request (AccessKey and Signature ext fields) for brokers with ACL."""
        self._connect_timeout = connect_timeout
        self.credentials = credentials
        self._processors: dict[int, Processor] = {}
        self._connections: dict[str, Connection] = {}
        self._connecting: dict[str, asyncio.Future[Connection]] = {}
        self._closed = False

    async def _connection(self, addr: str, timeout: float | None = None) -> Connection:
        conn = self._connections.get(addr)
        if conn is not None and not conn.closed:
            return conn
        if self._closed:
            raise RemotingError("client closed")
        pending = self._connecting.get(addr)
        if pending is not None:
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Connection] = loop.create_future()
        self._connecting[addr] = fut
        try:
            host, port = parse_addr(addr)
            budget = self._connect_timeout if timeout is None else min(self._connect_timeout, timeout)
            try:
                _, proto = await asyncio.wait_for(
                    loop.create_connection(lambda: Connection(self._processors), host, port), budget
                )
            except TimeoutError:
                raise RemotingConnectError(f"connect to {addr} timed out after {budget:.1f}s") from None
            except OSError as e:
                raise RemotingConnectError(f"connect to {addr} failed: {e.strerror or e}") from None
            assert isinstance(proto, Connection)
            self._connections[addr] = proto
            fut.set_result(proto)
            return proto
        except BaseException as e:
            if not fut.done():
                if isinstance(e, Exception):
                    fut.set_exception(e)
                else:
                    fut.set_exception(RemotingConnectError(f"connect to {addr} cancelled"))
                fut.exception()  # mark retrieved
            raise
        finally:
            self._connecting.pop(addr, None)

    async def connection(self, addr: str) -> Connection:
        """The (possibly new) connection to ``addr``."""
        return await self._connection(addr)

    async def invoke(self, addr: str, request: RemotingCommand, timeout: float) -> RemotingCommand:
        """Send and await the response with the same opaque; RemotingError on timeout or I/O error."""
        if self.credentials is not None:
            sign_request(request.ext_fields, request.body, self.credentials)
        conn = self._connections.get(addr)
        if conn is None or conn.closed:
            conn = await self._connection(addr, timeout)
        return await conn.invoke(request, timeout)

    async def invoke_oneway(self, addr: str, request: RemotingCommand, timeout: float = DEFAULT_ONEWAY_TIMEOUT) -> None:
        if self.credentials is not None:
            sign_request(request.ext_fields, request.body, self.credentials)
        conn = await self._connection(addr, timeout)
        await conn.invoke_oneway(request, timeout)

    def register_processor(self, code: int, processor: Processor) -> None:
        """Handle requests the server sends to us (e.g. CHECK_TRANSACTION_STATE)."""
        self._processors[code] = processor

    def close_connection(self, addr: str) -> None:
        conn = self._connections.pop(addr, None)
        if conn is not None:
            conn.close()

    async def close(self) -> None:
        self._closed = True
        conns = list(self._connections.values())
        self._connections.clear()
        await close_all(conns)
