"""Delay-level and timed messages, RecallMessage (see :mod:`backends.broker.timer.service`)."""

from backends.broker.timer.recall_handle import RecallHandleError, RecallHandleV1, build_handle, decode_handle
from backends.broker.timer.service import (
    RecallError,
    TimerMessageError,
    TimerMessageService,
    build_delete_key,
)

__all__ = [
    "RecallError",
    "RecallHandleError",
    "RecallHandleV1",
    "TimerMessageError",
    "TimerMessageService",
    "build_delete_key",
    "build_handle",
    "decode_handle",
]
