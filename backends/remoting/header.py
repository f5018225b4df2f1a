"""Reading custom request headers (RocketMQ's CommandCustomHeader) out of ``ext_fields``.

The one header reader every remoting processor (NameServer and broker) uses::

    h = Header(request)
    topic = h.s("topic")                  # required string
    qid = h.i("e", None, "queueId")       # required int; SEND_MESSAGE_V2's short name, then the long one
    order = h.b("order", False)           # optional bool

A missing or malformed required field raises :class:`RemotingCommandException`, which carries the
response code (SYSTEM_ERROR, as RocketMQ answers a header it cannot decode) and a one-line message such
as ``the custom field <topic> is null``. The server (and the broker's ``guarded`` wrapper) answers it
with that code and message as the remark, without logging a stack trace. Pure: no I/O.
"""

from __future__ import annotations

from backends.remoting.codes import ResponseCode
from backends.remoting.command import RemotingCommand

_LONG_MIN = -(1 << 63)
_LONG_MAX = (1 << 63) - 1
_TRUE = ("true", "1")
_FALSE = ("false", "0")


class RemotingCommandException(Exception):
    """A request that cannot be served as sent (RocketMQ's RemotingCommandException): answered with
    ``code`` and the message as the remark."""

    def __init__(self, message: str, code: int = ResponseCode.SYSTEM_ERROR) -> None:
        super().__init__(message)
        self.code = code

    def response(self, request: RemotingCommand) -> RemotingCommand:
        return request.response(self.code, str(self))


def _shown(raw: str) -> str:
    """The offending value for an error message: quoted (so one line) and cut to 40 characters."""
    return repr(raw if len(raw) <= 40 else raw[:40] + "...")


class Header:
    """Typed view of a request's extFields. Each getter takes the field's name, a default (``None``:
    the field is required) and alias names tried in order when the field itself is absent."""

    __slots__ = ("fields",)

    def __init__(self, request: RemotingCommand) -> None:
        self.fields = request.ext_fields or {}

    def opt(self, name: str, *aliases: str) -> str | None:
        """The field as sent (``None`` when absent)."""
        v = self.fields.get(name)
        if v is None:
            for n in aliases:
                v = self.fields.get(n)
                if v is not None:
                    break
            else:
                return None
        return v if type(v) is str else str(v)

    def s(self, name: str, default: str | None = None, *aliases: str) -> str:
        """A string field; an empty string is a value (as in RocketMQ)."""
        v = self.opt(name, *aliases)
        if v is not None:
            return v
        if default is None:
            raise RemotingCommandException(f"the custom field <{name}> is null")
        return default

    def i(self, name: str, default: int | None = None, *aliases: str) -> int:
        """An int/long field; an empty optional field takes the default. A value that is not a decimal
        number or does not fit a Java long is an error, as Long.parseLong would make it."""
        raw = self.opt(name, *aliases)
        if raw is None:
            if default is None:
                raise RemotingCommandException(f"the custom field <{name}> is null")
            return default
        if raw == "" and default is not None:
            return default
        try:
            v = int(raw)
        except ValueError:
            raise RemotingCommandException(f"the custom field <{name}> is not a number: {_shown(raw)}") from None
        if _LONG_MIN <= v <= _LONG_MAX:
            return v
        raise RemotingCommandException(f"the custom field <{name}> is out of range: {_shown(raw)}")

    def b(self, name: str, default: bool = False, *aliases: str) -> bool:
        """A boolean field: true/false in any case (what Boolean.toString sends) or 1/0; an absent or
        empty field takes the default, anything else is an error rather than a silent false."""
        raw = self.opt(name, *aliases)
        if raw is None or raw == "":
            return default
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise RemotingCommandException(f"the custom field <{name}> is not a boolean: {_shown(raw)}")
