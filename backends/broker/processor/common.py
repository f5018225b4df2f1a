"""Helpers shared by the broker's remoting processors: typed header access and error translation."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from backends.api import BackendError
from backends.remoting.codes import ResponseCode
from backends.remoting.command import RemotingCommand

log = logging.getLogger("rocketmq.broker")


class HeaderError(Exception):
    """A missing or ill-typed request header field."""


class Header:
    """Typed view of a request's extFields; raises :class:`HeaderError` with the field's name."""

    def __init__(self, request: RemotingCommand) -> None:
        self.f = request.ext_fields or {}

    def s(self, name: str, default: str | None = None, *aliases: str) -> str:
        v = self.opt(name, *aliases)
        if v is not None:
            return v
        if default is None:
            raise HeaderError(f"the custom field <{name}> is null")
        return default

    def opt(self, name: str, *aliases: str) -> str | None:
        v = self.f.get(name)
        if v is not None:
            return v if type(v) is str else str(v)
        for n in aliases:
            v = self.f.get(n)
            if v is not None:
                return str(v)
        return None

    def i(self, name: str, default: int | None = None, *aliases: str) -> int:
        raw = self.opt(name, *aliases)
        if raw is None or raw == "":
            if default is None:
                raise HeaderError(f"the custom field <{name}> is null")
            return default
        try:
            return int(raw)
        except ValueError:
            raise HeaderError(f"the custom field <{name}> is not an integer: {raw!r}") from None

    def b(self, name: str, default: bool = False, *aliases: str) -> bool:
        raw = self.opt(name, *aliases)
        if raw is None or raw == "":
            return default
        low = raw.lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise HeaderError(f"the custom field <{name}> is not a boolean: {raw!r}")


Handler = Callable[[RemotingCommand, Any], Awaitable[RemotingCommand | None]]


def guarded(fn: Handler) -> Handler:
    """Turn HeaderError / BackendError / any failure into an error response instead of a crash."""

    @functools.wraps(fn)
    async def wrapper(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        try:
            return await fn(request, conn)
        except HeaderError as e:
            return request.response(ResponseCode.SYSTEM_ERROR, f"bad request header: {e}")
        except BackendError as e:
            return request.response(e.code, e.message)
        except Exception as e:  # noqa: BLE001
            log.exception("processor for request code %s failed", request.code)
            return request.response(ResponseCode.SYSTEM_ERROR, f"{type(e).__name__}: {e}")

    return wrapper


def remote_host(conn: Any) -> str:
    return str(getattr(conn, "remote_addr", "") or "")


def parse_host(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    try:
        return (host.strip("[]") or "127.0.0.1", int(port))
    except ValueError:
        return ("127.0.0.1", 0)
