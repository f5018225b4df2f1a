"""Pure codec of the remoting frame (no I/O).

CONTRACT STUB: the remoting work fills these in.
Frame: int32 totalLen (excluding itself) | int32 (serializeType<<24 | headerLen) | header | body.
"""

from __future__ import annotations

from backends.remoting.command import RemotingCommand

MAX_FRAME_SIZE = 16 * 1024 * 1024


class CodecError(Exception):
    """A malformed frame: the connection that sent it is closed."""


def encode(cmd: RemotingCommand) -> bytes:
    """The whole frame, length prefix included, in ``cmd.serialize_type``."""
    raise NotImplementedError


def decode(frame: bytes) -> RemotingCommand:
    """One frame without its 4-byte length prefix."""
    raise NotImplementedError


class FrameDecoder:
    """Incremental decoder: ``feed(data)`` returns the complete commands so far."""

    def feed(self, data: bytes) -> list[RemotingCommand]:
        raise NotImplementedError
