"""asyncio remoting server (RocketMQ's NettyRemotingServer), and the :class:`Connection` both ends use.

A :class:`Connection` is an ``asyncio.Protocol``: bytes go through the pure
:class:`~backends.remoting.codec.FrameDecoder`; requests are dispatched by code to processors (one task
per request, so requests on one connection run concurrently and are answered in any order); responses
to our own requests are routed to their callers by opaque. Memory per connection is bounded: at most
one frame (16 MiB) is buffered, and reading pauses while ``max_inflight`` requests are running or the
peer does not read what we write.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from backends.remoting.codec import CodecError, FrameDecoder, encode
from backends.remoting.codes import ResponseCode
from backends.remoting.command import FLAG_ONEWAY, FLAG_RESPONSE, RemotingCommand
from backends.remoting.errors import RemotingConnectError, RemotingError, RemotingTimeoutError
from backends.remoting.header import RemotingCommandException

if TYPE_CHECKING:
    from backends.metrics import LatencyHistogram

log = logging.getLogger("RocketmqRemoting")

_opaque_counter = itertools.count(1)

DEFAULT_MAX_INFLIGHT = 1024
DEFAULT_ONEWAY_TIMEOUT = 3.0  # seconds a oneway send may wait for a peer that does not read


def next_opaque() -> int:
    """A request id (RocketMQ keeps one process-wide counter)."""
    return next(_opaque_counter) & 0x7FFFFFFF


def format_addr(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer)


class Connection(asyncio.Protocol):
    """One connection; a processor may keep it to call the peer back."""

    remote_addr: str  # "host:port"

    def __init__(
        self,
        processors: dict[int, Processor],
        close_listeners: list[Callable[[Connection], None]] | None = None,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        max_frame_size: int | None = None,
        rpc_latency: LatencyHistogram | None = None,
        access_check: AccessCheck | None = None,
    ) -> None:
        self._processors = processors
        self._rpc_latency = rpc_latency  # rocketmq_rpc_latency of the requests served (metrics on)
        self._access_check = access_check  # ACL (aclEnable): an answer refuses the request
        self._close_listeners = close_listeners if close_listeners is not None else []
        self._decoder = FrameDecoder() if max_frame_size is None else FrameDecoder(max_frame_size)
        self._pending: dict[int, asyncio.Future[RemotingCommand]] = {}
        self._transport: asyncio.Transport | None = None
        self._closed = False
        self._inflight = 0
        self._max_inflight = max_inflight
        self._reading_paused = False
        self._writing_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._backlog: deque[RemotingCommand] = deque()
        self.remote_addr = ""
        self.local_addr = ""
        # Free for processors: e.g. the client id or broker name this connection speaks for.
        self.attributes: dict[str, Any] = {}
        self._closed_event: asyncio.Event | None = None
        # Frames written in one loop iteration go out in one send (fewer syscalls under load).
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same methods.
        self._transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.remote_addr = format_addr(transport.get_extra_info("peername"))
        self.local_addr = format_addr(transport.get_extra_info("sockname"))

    def data_received(self, data: bytes) -> None:
        try:
            commands = self._decoder.feed(data)
        except CodecError as e:
            log.warning("closing connection %s: malformed frame: %s", self.remote_addr, e)
            self.close()
            return
        for cmd in commands:
            if cmd.flag & FLAG_RESPONSE:
                fut = self._pending.pop(cmd.opaque, None)
                if fut is not None and not fut.done():
                    fut.set_result(cmd)
                elif fut is None:
                    log.debug("response with unknown opaque %d from %s", cmd.opaque, self.remote_addr)
            elif self._inflight >= self._max_inflight:
                self._backlog.append(cmd)  # reading is paused; these few run as others finish
            else:
                self._dispatch(cmd)

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._backlog.clear()
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(RemotingError(f"connection to {self.remote_addr} closed"))
        self._wake_drain_waiters()
        if self._closed_event is not None:
            self._closed_event.set()
        for listener in list(self._close_listeners):
            try:
                listener(self)
            except Exception:
                log.exception("close listener failed for %s", self.remote_addr)

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_drain_waiters()
        self._update_reading()

    # -- requests from the peer ------------------------------------------------------------------

    def _dispatch(self, cmd: RemotingCommand) -> None:
        if self._access_check is not None:
            refused = self._access_check(cmd, self.remote_addr)
            if refused is not None:
                self._reply(cmd, refused)
                return
        processor = self._processors.get(cmd.code)
        if processor is None:
            if not cmd.flag & FLAG_ONEWAY:
                self.write(
                    cmd.response(
                        ResponseCode.REQUEST_CODE_NOT_SUPPORTED,
                        f"request type {cmd.code} not supported",
                    )
                )
            log.debug("request type %d from %s not supported", cmd.code, self.remote_addr)
            return
        self._inflight += 1
        if self._inflight >= self._max_inflight:
            self._update_reading()
        task = asyncio.get_running_loop().create_task(self._run(processor, cmd))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, processor: Processor, cmd: RemotingCommand) -> None:
        t0 = time.perf_counter()
        resp: RemotingCommand | None = None
        try:
            try:
                resp = await processor(cmd, self)
            except RemotingCommandException as e:
                log.warning("bad request code %d from %s: %s", cmd.code, self.remote_addr, e)
                resp = e.response(cmd)
            except Exception as e:
                log.exception("processor for request code %d from %s failed", cmd.code, self.remote_addr)
                resp = cmd.response(ResponseCode.SYSTEM_ERROR, f"{type(e).__name__}: {e}")
            if resp is not None:
                self._reply(cmd, resp)
        finally:
            if self._rpc_latency is not None:
                self._rpc_latency.record("remoting", str(cmd.code), str(resp.code) if resp is not None else "-1",
                                         (time.perf_counter() - t0) * 1000)
            self._inflight -= 1
            while self._backlog and self._inflight < self._max_inflight and not self._closed:
                self._dispatch(self._backlog.popleft())
            if self._reading_paused:
                self._update_reading()

    def _reply(self, cmd: RemotingCommand, resp: RemotingCommand) -> None:
        """Send ``resp`` as the answer to ``cmd`` (nothing for a oneway request)."""
        if cmd.flag & FLAG_ONEWAY:
            return
        resp.opaque = cmd.opaque
        resp.flag = (resp.flag | FLAG_RESPONSE) & ~FLAG_ONEWAY
        resp.serialize_type = cmd.serialize_type  # answer in the request's serialization
        self.write(resp)

    def _update_reading(self) -> None:
        if self._transport is None or self._closed:
            return
        should_pause = self._writing_paused or self._inflight >= self._max_inflight or bool(self._backlog)
        if should_pause and not self._reading_paused:
            self._reading_paused = True
            self._transport.pause_reading()
        elif not should_pause and self._reading_paused:
            self._reading_paused = False
            self._transport.resume_reading()

    # -- writing -----------------------------------------------------------------------------------

    def write(self, cmd: RemotingCommand) -> bool:
        """Queue ``cmd`` for sending; False when the connection is closed."""
        if self._closed or self._transport is None or self._transport.is_closing():
            return False
        try:
            frame = encode(cmd)
        except CodecError as e:
            if not cmd.flag & FLAG_RESPONSE:
                raise RemotingError(str(e)) from e
            log.error("response to %s could not be encoded: %s", self.remote_addr, e)
            frame = encode(
                RemotingCommand(
                    code=ResponseCode.SYSTEM_ERROR,
                    opaque=cmd.opaque,
                    flag=FLAG_RESPONSE,
                    remark=str(e),
                    serialize_type=cmd.serialize_type,
                )
            )
        self._out.append(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)
        return True

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if not out:
            return
        self._out = []
        transport = self._transport
        if transport is None or self._closed or transport.is_closing():
            return
        transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _wake_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    async def _drain(self, timeout: float) -> None:
        """Wait (at most ``timeout``) while the peer does not read what we write."""
        if self._writing_paused and not self._closed:
            w: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(w)
            try:
                await asyncio.wait_for(w, timeout)
            except TimeoutError:
                raise RemotingTimeoutError(
                    f"send request to {self.remote_addr} timeout after {timeout * 1000:.0f} ms: peer is not reading"
                ) from None
            finally:
                if w in self._drain_waiters:
                    self._drain_waiters.remove(w)

    # -- requests to the peer ----------------------------------------------------------------------

    async def invoke(self, request: RemotingCommand, timeout: float) -> RemotingCommand:
        """Send ``request`` and await its response (server -> client too, e.g. CHECK_TRANSACTION_STATE)."""
        if self._closed:
            raise RemotingError(f"connection to {self.remote_addr} closed")
        loop = asyncio.get_running_loop()
        opaque = next_opaque()
        request.opaque = opaque
        request.flag &= ~(FLAG_RESPONSE | FLAG_ONEWAY)
        fut: asyncio.Future[RemotingCommand] = loop.create_future()
        self._pending[opaque] = fut
        handle = loop.call_later(timeout, self._expire, opaque, timeout)
        try:
            await self._drain(timeout)
            if not self.write(request):
                raise RemotingError(f"connection to {self.remote_addr} closed")
            return await fut
        finally:
            handle.cancel()
            self._pending.pop(opaque, None)
            if not fut.done():
                fut.cancel()
            elif not fut.cancelled():
                fut.exception()  # retrieved (it may have expired while we waited to write)

    def _expire(self, opaque: int, timeout: float) -> None:
        fut = self._pending.pop(opaque, None)
        if fut is not None and not fut.done():
            fut.set_exception(
                RemotingTimeoutError(f"wait response from {self.remote_addr} timeout after {timeout * 1000:.0f} ms")
            )

    async def invoke_oneway(self, request: RemotingCommand, timeout: float = DEFAULT_ONEWAY_TIMEOUT) -> None:
        """Send without awaiting an answer; RemotingTimeoutError when the peer has not read for ``timeout``."""
        request.opaque = next_opaque()
        request.flag = (request.flag | FLAG_ONEWAY) & ~FLAG_RESPONSE
        await self._drain(timeout)
        if not self.write(request):
            raise RemotingError(f"connection to {self.remote_addr} closed")

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._flush()
            self._transport.close()

    async def wait_closed(self) -> None:
        if self._closed:
            return
        if self._closed_event is None:
            self._closed_event = asyncio.Event()
        await self._closed_event.wait()

    def __repr__(self) -> str:
        return f"<Connection {self.local_addr} -> {self.remote_addr}{' closed' if self._closed else ''}>"


async def close_all(conns: list[Connection], timeout: float = 2.0) -> None:
    """Close ``conns`` and wait (at most ``timeout`` each) until they are closed."""
    for conn in conns:
        conn.close()
    for conn in conns:
        try:
            await asyncio.wait_for(conn.wait_closed(), timeout)
        except TimeoutError:
            pass


# A processor answers a request with a response, or None for oneway requests.
Processor = Callable[[RemotingCommand, Connection], Awaitable[RemotingCommand | None]]
# (request, "host:port" of the peer) -> None to serve it, or the answer that refuses it
AccessCheck = Callable[[RemotingCommand, str], "RemotingCommand | None"]


class RemotingServer:
    def __init__(
        self,
        host: str,
        port: int,
        max_inflight_per_connection: int = DEFAULT_MAX_INFLIGHT,
        reuse_port: bool = False,
    ) -> None:
        self._host = host
        self._port = port
        self._processors: dict[int, Processor] = {}
        self._close_listeners: list[Callable[[Connection], None]] = [self._on_close]
        self._connections: set[Connection] = set()
        self._server: asyncio.Server | None = None
        self._max_inflight = max_inflight_per_connection
        self._reuse_port = reuse_port
        self.rpc_latency: LatencyHistogram | None = None  # set to record rocketmq_rpc_latency
        self.access_check: AccessCheck | None = None  # set to check each request first (ACL)

    def register_processor(self, code: int, processor: Processor) -> None:
        self._processors[code] = processor

    @property
    def request_codes(self) -> list[int]:
        """The request codes a processor is registered for."""
        return sorted(self._processors)

    def add_close_listener(self, listener: Callable[[Connection], None]) -> None:
        """Called when a connection closes (consumer/producer/broker liveness)."""
        self._close_listeners.append(listener)

    @property
    def connections(self) -> frozenset[Connection]:
        return frozenset(self._connections)

    def _on_close(self, conn: Connection) -> None:
        self._connections.discard(conn)

    def _make_connection(self) -> Connection:
        conn = Connection(self._processors, self._close_listeners, self._max_inflight,
                          rpc_latency=self.rpc_latency, access_check=self.access_check)
        self._connections.add(conn)
        return conn

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                self._make_connection,
                self._host,
                self._port,
                reuse_address=True,
                reuse_port=self._reuse_port or None,
                backlog=1024,
            )
        except OSError as e:
            raise RemotingConnectError(f"cannot listen on {self._host}:{self._port}: {e}") from e

    async def shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await close_all(list(self._connections))
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except TimeoutError:
                pass

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])
