"""Reading custom request headers (RocketMQ's CommandCustomHeader) out of ``ext_fields``.

A missing or malformed required field raises :class:`RemotingCommandException`; the server answers it
with SYSTEM_ERROR and the message (as RocketMQ does), without logging a stack trace.
"""

from __future__ import annotations

from backends.remoting.command import RemotingCommand


class RemotingCommandException(Exception):
    """A request whose header cannot be decoded."""


def require(cmd: RemotingCommand, name: str) -> str:
    value = cmd.ext_fields.get(name)
    if value is None:
        raise RemotingCommandException(f"the custom field <{name}> is null")
    return value


def require_int(cmd: RemotingCommand, name: str) -> int:
    value = require(cmd, name)
    try:
        return int(value)
    except ValueError:
        raise RemotingCommandException(f"the custom field <{name}> is not a number: {value!r}") from None


def get_int(cmd: RemotingCommand, name: str, default: int) -> int:
    value = cmd.ext_fields.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise RemotingCommandException(f"the custom field <{name}> is not a number: {value!r}") from None


def get_bool(cmd: RemotingCommand, name: str, default: bool) -> bool:
    value = cmd.ext_fields.get(name)
    if value is None or value == "":
        return default
    return value.lower() == "true"
