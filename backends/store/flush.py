"""Flush services: group commit for SYNC_FLUSH and the periodic flush for ASYNC_FLUSH
(RocketMQ's GroupCommitService / FlushRealTimeService).

Every writer that waits at the same moment shares ONE fdatasync: writers await the future of the *next*
round; a round captures the write position when it starts, so it covers every write made before.
The fdatasync runs in a worker thread (never on the event loop). A round that does not finish within
``sync_flush_timeout`` answers its writers FLUSH_DISK_TIMEOUT; an fdatasync error answers IO_ERROR and
marks the service failed (after a failed fdatasync the page cache state is unknown, so no later write is
acknowledged as durable until restart).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable

from backends.model import PutMessageStatus

log = logging.getLogger("rocketmq.store")


class FlushService:
    def __init__(
        self,
        sync_to: Callable[[int, int], None],
        write_pos: Callable[[], int],
        flushed_pos: int,
        timeout_ms: int,
    ) -> None:
        """``sync_to(from_pos, to_pos)`` makes bytes [from, to) durable (blocking, run in a thread)."""
        self._sync_to = sync_to
        self._write_pos = write_pos
        self.flushed_pos = flushed_pos
        self._timeout = timeout_ms / 1000.0
        self._next: asyncio.Future[PutMessageStatus] | None = None
        self._next_timer: asyncio.TimerHandle | None = None
        self._in_flight = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store-flush")
        self.failed: BaseException | None = None
        self.rounds = 0  # completed fdatasync rounds (observability and tests)
        self.sync_seconds = 0.0  # time spent in fdatasync
        self._idle: asyncio.Event | None = None

    # --- SYNC_FLUSH waiters ------------------------------------------------------------------
    def wait_durable(self, end_pos: int) -> asyncio.Future[PutMessageStatus]:
        """A future answering when every byte before ``end_pos`` is durable (or timeout / error)."""
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        if self.failed is not None:
            f: asyncio.Future[PutMessageStatus] = loop.create_future()
            f.set_result(PutMessageStatus.IO_ERROR)
            return f
        if self.flushed_pos >= end_pos:
            f = loop.create_future()
            f.set_result(PutMessageStatus.PUT_OK)
            return f
        fut = self._next
        if fut is None:
            fut = self._next = loop.create_future()
            self._next_timer = loop.call_later(self._timeout, self._expire, fut)
        if not self._in_flight:
            self._start_round()
        return fut

    def _expire(self, fut: asyncio.Future[PutMessageStatus]) -> None:
        if not fut.done():
            log.warning("flush: fdatasync did not finish within %.0f ms; answering FLUSH_DISK_TIMEOUT",
                        self._timeout * 1000)
            fut.set_result(PutMessageStatus.FLUSH_DISK_TIMEOUT)

    def _start_round(self) -> None:
        loop = self._loop
        assert loop is not None
        fut, timer = self._next, self._next_timer
        self._next = self._next_timer = None
        start, target = self.flushed_pos, self._write_pos()
        self._in_flight = True
        cf = loop.run_in_executor(self._executor, self._timed_sync, start, target)
        cf.add_done_callback(lambda f: self._round_done(f, target, fut, timer))

    def _timed_sync(self, start: int, target: int) -> None:
        t0 = time.perf_counter()
        try:
            self._sync_to(start, target)
        finally:
            self.sync_seconds += time.perf_counter() - t0

    def _round_done(
        self,
        done: asyncio.Future[None],
        target: int,
        fut: asyncio.Future[PutMessageStatus] | None,
        timer: asyncio.TimerHandle | None,
    ) -> None:
        self._in_flight = False
        self.rounds += 1
        if timer is not None:
            timer.cancel()
        exc = done.exception()
        if exc is not None:
            if self.failed is None:
                log.error("flush: fdatasync of the commitlog failed: %r; answering IO_ERROR and refusing "
                          "further writes until restart", exc)
            self.failed = exc
            for f in (fut, self._next):
                if f is not None and not f.done():
                    f.set_result(PutMessageStatus.IO_ERROR)
            if self._next_timer is not None:
                self._next_timer.cancel()
            self._next = self._next_timer = None
        else:
            if target > self.flushed_pos:
                self.flushed_pos = target
            if fut is not None and not fut.done():
                fut.set_result(PutMessageStatus.PUT_OK)
            if self._next is not None:
                self._start_round()
        if not self._in_flight and self._idle is not None:
            self._idle.set()

    # --- ASYNC_FLUSH / explicit flush ---------------------------------------------------------
    async def flush(self) -> PutMessageStatus:
        """Make everything written so far durable (used by the periodic flush and shutdown)."""
        if self.failed is not None:
            return PutMessageStatus.IO_ERROR
        end = self._write_pos()
        if end <= self.flushed_pos:
            return PutMessageStatus.PUT_OK
        self._loop = asyncio.get_running_loop()
        fut = self.wait_durable(end)
        # a periodic flush must not give up on the round: wait for it even past the timeout
        while True:
            status = await asyncio.shield(fut)
            if status is not PutMessageStatus.FLUSH_DISK_TIMEOUT or self.failed is not None:
                break
            await self.wait_idle()
            if self.flushed_pos >= end:
                return PutMessageStatus.PUT_OK
            fut = self.wait_durable(end)
        return status

    async def wait_idle(self) -> None:
        while self._in_flight:
            self._idle = asyncio.Event()
            await self._idle.wait()

    def run_blocking(self, fn: Callable[[], None]) -> asyncio.Future[None]:
        """Run ``fn`` on the flush thread (CQ / index msync, checkpoint write)."""
        loop = self._loop or asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, fn)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
