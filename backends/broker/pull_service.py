"""PULL consumption: store read + status mapping, and long polling (RocketMQ's PullRequestHoldService).

A pull that finds nothing waits on a future registered for its (topic, queue); the store's arrival
listener resolves the futures whose offset is now below the queue's max offset. There is no polling
timer: the only timer is each request's own deadline.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from backends.broker.pull_filter import MessageFilterFn
from backends.model import GetMessageResult, GetMessageStatus
from backends.remoting.codes import ResponseCode

if TYPE_CHECKING:
    from backends.store.message_store import MessageStore


@dataclass(slots=True)
class PullOutcome:
    code: int  # SUCCESS, PULL_NOT_FOUND, PULL_RETRY_IMMEDIATELY, PULL_OFFSET_MOVED
    next_begin_offset: int
    min_offset: int
    max_offset: int
    records: list[bytes] = field(default_factory=list)
    queue_offsets: list[int] = field(default_factory=list)
    suggest_which_broker_id: int = 0
    remark: str = ""


def map_get_result(r: GetMessageResult, offset: int) -> PullOutcome:
    s = r.status
    if s is GetMessageStatus.FOUND and r.records:
        code = ResponseCode.SUCCESS
    elif s in (GetMessageStatus.NO_MATCHED_MESSAGE, GetMessageStatus.MESSAGE_WAS_REMOVING):
        code = ResponseCode.PULL_RETRY_IMMEDIATELY
    elif s in (GetMessageStatus.NO_MATCHED_LOGIC_QUEUE, GetMessageStatus.NO_MESSAGE_IN_QUEUE):
        code = ResponseCode.PULL_OFFSET_MOVED if offset != 0 else ResponseCode.PULL_NOT_FOUND
    elif s is GetMessageStatus.OFFSET_OVERFLOW_BADLY:
        code = ResponseCode.PULL_NOT_FOUND if r.min_offset == 0 and offset < 0 else ResponseCode.PULL_OFFSET_MOVED
    elif s is GetMessageStatus.OFFSET_TOO_SMALL:
        code = ResponseCode.PULL_OFFSET_MOVED
    else:  # OFFSET_FOUND_NULL, OFFSET_OVERFLOW_ONE, FOUND with nothing
        code = ResponseCode.PULL_NOT_FOUND
    return PullOutcome(code, r.next_begin_offset, r.min_offset, r.max_offset, list(r.records),
                       list(r.queue_offsets))


class PullRequestHoldService:
    def __init__(self, store: MessageStore) -> None:
        self.store = store
        # (topic, queue id) -> list of (offset, future)
        self._waiters: dict[tuple[str, int], list[tuple[int, asyncio.Future[None]]]] = {}

    def notify_message_arriving(self, topic: str, queue_id: int, max_offset: int) -> None:
        """The store's arrival listener (may be called from the event loop only)."""
        waiters = self._waiters.get((topic, queue_id))
        if not waiters:
            return
        keep = []
        for off, fut in waiters:
            if fut.done():
                continue
            if off < max_offset:
                fut.set_result(None)
            else:
                keep.append((off, fut))
        if keep:
            self._waiters[(topic, queue_id)] = keep
        else:
            self._waiters.pop((topic, queue_id), None)

    def wake_all(self) -> None:
        for waiters in self._waiters.values():
            for _, fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        self._waiters.clear()

    def read(self, topic: str, queue_id: int, offset: int, max_nums: int,
             message_filter: MessageFilterFn | None) -> PullOutcome:
        r = self.store.get_messages(topic, queue_id, offset, max_nums, message_filter)
        return map_get_result(r, offset)

    async def pull(self, topic: str, queue_id: int, offset: int, max_nums: int,
                   message_filter: MessageFilterFn | None, suspend_ms: int) -> PullOutcome:
        out = self.read(topic, queue_id, offset, max_nums, message_filter)
        if out.code != ResponseCode.PULL_NOT_FOUND or suspend_ms <= 0:
            return out
        deadline = time.monotonic() + suspend_ms / 1000.0
        loop = asyncio.get_running_loop()
        key = (topic, queue_id)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return out
            fut: asyncio.Future[None] = loop.create_future()
            entry = (offset, fut)
            self._waiters.setdefault(key, []).append(entry)
            # A message may have arrived between the read and the registration.
            if self.store.get_max_offset_in_queue(topic, queue_id) > offset:
                fut.set_result(None)
            try:
                # asyncio.wait: no wrapper and no cancellation of ``fut`` on a timeout (wait_for has both)
                await asyncio.wait((fut,), timeout=remaining)
                if not fut.done():
                    return self.read(topic, queue_id, offset, max_nums, message_filter)
            finally:
                lst = self._waiters.get(key)
                if lst is not None:
                    try:
                        lst.remove(entry)
                    except ValueError:
                        pass
                    if not lst:
                        self._waiters.pop(key, None)
            out = self.read(topic, queue_id, offset, max_nums, message_filter)
            if out.code != ResponseCode.PULL_NOT_FOUND:
                return out
