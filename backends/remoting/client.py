"""asyncio remoting client (RocketMQ's NettyRemotingClient): one multiplexed connection per address.

CONTRACT STUB: the remoting work fills these in.
"""

from __future__ import annotations

from backends.remoting.command import RemotingCommand
from backends.remoting.server import Processor


class RemotingError(Exception):
    """Connect failure, timeout or closed connection (not a response code: those come back as commands)."""


class RemotingClient:
    def __init__(self, connect_timeout: float = 3.0) -> None:
        raise NotImplementedError

    async def invoke(self, addr: str, request: RemotingCommand, timeout: float) -> RemotingCommand:
        """Send and await the response with the same opaque; RemotingError on timeout or I/O error."""
        raise NotImplementedError

    async def invoke_oneway(self, addr: str, request: RemotingCommand) -> None:
        raise NotImplementedError

    def register_processor(self, code: int, processor: Processor) -> None:
        """Handle requests the server sends to us (e.g. CHECK_TRANSACTION_STATE)."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError
