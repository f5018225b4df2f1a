"""Helpers shared by the broker's remoting processors: error translation and peer addresses.

Request headers are read with :class:`backends.remoting.header.Header`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from backends.api import BackendError
from backends.remoting.codes import ResponseCode
from backends.remoting.command import RemotingCommand
from backends.remoting.header import RemotingCommandException

__all__ = ["Handler", "guarded", "parse_host", "remote_host"]

log = logging.getLogger("rocketmq.broker")

Handler = Callable[[RemotingCommand, Any], Awaitable[RemotingCommand | None]]


def guarded(fn: Handler) -> Handler:
    """Turn RemotingCommandException / BackendError / any failure into an error response instead of a crash."""

    @functools.wraps(fn)
    async def wrapper(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
        try:
            return await fn(request, conn)
        except RemotingCommandException as e:
            return e.response(request)
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
