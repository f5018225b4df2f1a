"""asyncio remoting server (RocketMQ's NettyRemotingServer).

CONTRACT STUB: the remoting work fills these in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from backends.remoting.command import RemotingCommand


class Connection:
    """One client connection; a processor may keep it to call the client back."""

    remote_addr: str  # "host:port"

    async def invoke(self, request: RemotingCommand, timeout: float) -> RemotingCommand:
        """Server -> client request (e.g. CHECK_TRANSACTION_STATE, NOTIFY_CONSUMER_IDS_CHANGED)."""
        raise NotImplementedError

    async def invoke_oneway(self, request: RemotingCommand) -> None:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        raise NotImplementedError


# A processor answers a request with a response, or None for oneway requests.
Processor = Callable[[RemotingCommand, Connection], Awaitable[RemotingCommand | None]]


class RemotingServer:
    def __init__(self, host: str, port: int) -> None:
        raise NotImplementedError

    def register_processor(self, code: int, processor: Processor) -> None:
        raise NotImplementedError

    def add_close_listener(self, listener: Callable[[Connection], None]) -> None:
        """Called when a connection closes (consumer/producer/broker liveness)."""
        raise NotImplementedError

    async def start(self) -> None:
        raise NotImplementedError

    async def shutdown(self) -> None:
        raise NotImplementedError

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        raise NotImplementedError
