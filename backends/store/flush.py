"""Flush service: group commit for SYNC_FLUSH and the periodic flush for ASYNC_FLUSH
(RocketMQ's GroupCommitService / FlushRealTimeService).

One flush thread runs fdatasync back to back while there is something to make durable: each round
syncs up to the commitlog write position at the moment it starts, so every writer waiting at that moment
shares ONE fdatasync (group commit), and the next round starts at once in the thread, without waiting for
the event loop to come round (a busy loop would otherwise leave the disk idle). Writers wait on a future
resolved from the loop when a round covering their bytes completes. fdatasync never runs on the event
loop. A writer not answered within ``sync_flush_timeout`` gets FLUSH_DISK_TIMEOUT; an fdatasync error
answers IO_ERROR and marks the service failed: after a failed fdatasync the state of the page cache is
unknown, so no later write is acknowledged as durable until restart.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable

from backends.model import PutMessageStatus

log = logging.getLogger("rocketmq.store")

_Waiter = tuple[int, "asyncio.Future[PutMessageStatus]", float]


class FlushService:
    def __init__(
        self,
        sync_to: Callable[[int, int], None],
        write_pos: Callable[[], int],
        flushed_pos: int,
        timeout_ms: int,
    ) -> None:
        """``sync_to(from_pos, to_pos)`` makes bytes [from, to) durable (blocking, run in the flush thread)."""
        self._sync_to = sync_to
        self._write_pos = write_pos
        self.flushed_pos = flushed_pos  # loop side: acknowledged durable up to here
        self._synced = flushed_pos  # thread side
        self._want = flushed_pos
        self._timeout = timeout_ms / 1000.0
        self._waiters: collections.deque[_Waiter] = collections.deque()  # in order of end and deadline
        self._untimed: list[tuple[int, asyncio.Future[PutMessageStatus]]] = []  # flush() callers
        self._timer: asyncio.TimerHandle | None = None
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = False
        self._busy = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="store-checkpoint")
        self.failed: BaseException | None = None
        self.rounds = 0  # completed fdatasync rounds (observability and tests)
        self.sync_seconds = 0.0  # time spent in fdatasync rounds

    # --- the flush thread ----------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._run, name="store-flush", daemon=True)
            self._thread.start()

    def _request(self, end: int) -> None:
        with self._cv:
            if end > self._want:
                self._want = end
                if not self._busy:
                    self._cv.notify()

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            with self._cv:
                self._busy = False
                while self._want <= self._synced and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return  # close() comes after the last flush() was answered
                self._busy = True
            start, target = self._synced, self._write_pos()
            if target <= start:  # nothing new is written (the log was cut): drop the request
                with self._cv:
                    self._want = self._synced
                continue
            t0 = time.perf_counter()
            try:
                self._sync_to(start, target)
            except BaseException as e:  # noqa: BLE001 - any failure means "not durable"
                already = self.failed is not None
                self.failed = e
                self.rounds += 1
                if not already:
                    try:
                        loop.call_soon_threadsafe(self._on_error, e)
                    except RuntimeError:  # the loop is closed
                        pass
                with self._cv:
                    self._busy = False
                return
            self.sync_seconds += time.perf_counter() - t0
            self.rounds += 1
            self._synced = max(self._synced, target)
            try:
                loop.call_soon_threadsafe(self._on_synced, target)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return

    # --- loop side ---------------------------------------------------------------------------
    def reset(self, pos: int) -> None:
        """The log was cut back to ``pos`` (a slave truncating to its master): nothing past it is durable."""
        with self._cv:
            self._synced = self._want = pos
        self.flushed_pos = pos

    def wait_durable(self, end_pos: int, timeout: bool = True,
                     fut: asyncio.Future[PutMessageStatus] | None = None) -> asyncio.Future[PutMessageStatus]:
        """A future answering when every byte before ``end_pos`` is durable (or timeout / error).
        ``fut``: answer this future (the one all writers of a drained turn await) instead of a new one,
        so that the writers wake in the loop iteration after the fdatasync round is reported."""
        loop = asyncio.get_running_loop()
        if fut is None:
            fut = loop.create_future()
        if self.failed is not None:
            fut.set_result(PutMessageStatus.IO_ERROR)
            return fut
        if self.flushed_pos >= end_pos:
            fut.set_result(PutMessageStatus.PUT_OK)
            return fut
        self._ensure_thread()
        if timeout:
            self._waiters.append((end_pos, fut, loop.time() + self._timeout))
            if self._timer is None:
                self._timer = loop.call_at(self._waiters[0][2], self._expire)
        else:
            self._untimed.append((end_pos, fut))
        self._request(end_pos)
        return fut

    def _expire(self) -> None:
        self._timer = None
        loop = self._loop
        assert loop is not None
        now = loop.time()
        w = self._waiters
        n = 0
        while w and w[0][2] <= now:
            _, fut, _ = w.popleft()
            if not fut.done():
                fut.set_result(PutMessageStatus.FLUSH_DISK_TIMEOUT)
                n += 1
        if n:
            log.warning("flush: fdatasync did not finish within %.0f ms; answered FLUSH_DISK_TIMEOUT to %d "
                        "waiting writer(s)", self._timeout * 1000, n)
        if w:
            self._timer = loop.call_at(w[0][2], self._expire)

    def _on_synced(self, target: int) -> None:
        if self.failed is not None:
            return  # _on_error answers everyone
        if target > self.flushed_pos:
            self.flushed_pos = target
        w = self._waiters
        while w and w[0][0] <= target:
            _, fut, _ = w.popleft()
            if not fut.done():
                fut.set_result(PutMessageStatus.PUT_OK)
        if self._untimed:
            keep = []
            for end, fut in self._untimed:
                if end <= target:
                    if not fut.done():
                        fut.set_result(PutMessageStatus.PUT_OK)
                else:
                    keep.append((end, fut))
            self._untimed = keep
        if not w and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def fail(self, exc: BaseException) -> None:
        """Answer IO_ERROR to every waiter and refuse further acknowledgements (loop side)."""
        self.failed = exc
        self._answer_all_failed()

    def _on_error(self, exc: BaseException) -> None:
        log.error("flush: fdatasync of the commitlog failed: %r; answering IO_ERROR and refusing further "
                  "writes until restart", exc)
        self.failed = exc
        self._answer_all_failed()

    def _answer_all_failed(self) -> None:
        for _, fut, _ in self._waiters:
            if not fut.done():
                fut.set_result(PutMessageStatus.IO_ERROR)
        for _, fut in self._untimed:
            if not fut.done():
                fut.set_result(PutMessageStatus.IO_ERROR)
        self._waiters.clear()
        self._untimed.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def flush(self) -> PutMessageStatus:
        """Make everything written so far durable (periodic flush, checkpoint, shutdown); no timeout."""
        if self.failed is not None:
            return PutMessageStatus.IO_ERROR
        return await self.wait_durable(self._write_pos(), timeout=False)

    def run_blocking(self, fn: Callable[[], None]) -> asyncio.Future[None]:
        """Run ``fn`` on the checkpoint thread (consume queue / index msync, checkpoint write)."""
        return asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        self._executor.shutdown(wait=True)
