"""Persistence helpers for the broker's JSON config files (RocketMQ's ConfigManager + DataVersion).

:class:`CoalescingPersister` keeps the fsync of those files off the asyncio event loop: a change made
while a loop runs (a topic or group auto-created in request handling) only *requests* a write; the table
is encoded on the loop thread and written by one worker thread, one write of a file at a time, and any
number of requests made while a write runs end in exactly one more write with the newest table.
Without a running loop (startup, tools, synchronous unit tests) a request writes at once, as before.
``await flush()`` (broker shutdown) writes the current table and returns once it is on disk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any

from backends.model import DataVersion
from backends.remoting import json_body
from backends.store import config_file as store_config_file

log = logging.getLogger("rocketmq.broker")

__all__ = ["CoalescedPersistence", "CoalescingPersister", "DataVersion", "persist_json", "read_json"]


def persist_json(path: str, obj: Any) -> bool:
    """Crash-safe write (temp file, fsync, .bak of the previous version, rename, directory fsync); an I/O
    error is logged (the in-memory table stays authoritative) and returns False."""
    try:
        store_config_file.atomic_write_json(path, obj)
    except OSError as e:
        log.error("persist %s failed: %s", path, e)
        return False
    return True


def read_json(path: str) -> Any | None:
    """The parsed file, else its .bak, else None; an unreadable, empty or corrupt file is logged and its
    backup tried (RocketMQ's ConfigManager.load / loadBak). Lenient: accepts fastjson's bare integer keys,
    as in a consumerOffset.json written by a Java broker."""
    return store_config_file.read_json(path, None, json_body.loads)


_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _write_executor() -> concurrent.futures.ThreadPoolExecutor:
    """The one worker thread every off-loop config write runs on (so they also queue behind each other)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="config-persist")
        return _executor


class CoalescingPersister:
    """Writes of one JSON file, coalesced and off the event loop (see the module docstring).

    ``path`` and ``encode`` are called on the caller's (loop) thread for every write; ``write(path, obj)``
    runs on the worker thread (default :func:`persist_json`, looked up at call time) and returns False
    after a logged failure. Writes are numbered when encoded; a write never replaces a newer one already
    on disk (a synchronous :meth:`persist_now` may overtake a queued background write)."""

    def __init__(
        self,
        path: Callable[[], str],
        encode: Callable[[], Any],
        write: Callable[[str, Any], bool] | None = None,
        name: str = "config",
    ) -> None:
        self._path = path
        self._encode = encode
        self._write_fn = write
        self._name = name
        self._lock = threading.Lock()  # one write of this file at a time, whichever thread does it
        self._seq = 0  # number of the newest snapshot taken
        self._written = 0  # number of the newest snapshot written successfully
        self._pending = False  # a change not yet snapshotted for writing
        self._task: asyncio.Task[None] | None = None

    def _snapshot(self) -> tuple[int, str, Any]:
        self._seq += 1
        return self._seq, self._path(), self._encode()

    def _write(self, seq: int, path: str, obj: Any) -> bool:
        with self._lock:
            if seq <= self._written:
                return True  # a newer table is already on disk
            ok = (self._write_fn or persist_json)(path, obj)
            if ok:
                self._written = seq
            return ok

    def persist_now(self) -> bool:
        """Write the current table on this thread (waits for a write of the file in progress)."""
        self._pending = False
        return self._write(*self._snapshot())

    def request(self) -> None:
        """The table changed: write it off the loop soon (at once when no event loop runs here)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.persist_now()
            return
        self._pending = True
        task = self._task
        if task is None or task.done() or task.get_loop() is not loop:
            self._task = loop.create_task(self._run(), name=f"persist-{self._name}")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            self._pending = False
            try:
                snap = self._snapshot()  # on the loop thread: the table is never read from the worker
                await loop.run_in_executor(_write_executor(), self._write, *snap)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("persist %s failed", self._name)

    @property
    def busy(self) -> bool:
        """A write requested and not yet finished."""
        task = self._task
        return self._pending or (task is not None and not task.done())

    async def wait_persisted(self, timeout: float | None = None) -> None:
        """Until every write requested so far has been done (the newest table is on disk, unless the
        write failed and was logged). Raises TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            loop = asyncio.get_running_loop()
            while True:
                task = self._task
                if task is not None and not task.done() and task.get_loop() is loop:
                    await asyncio.wait({task})  # not cancelled when the waiter is
                    continue
                if self._pending:  # requested from another loop, or its writer was cancelled
                    self.request()
                    continue
                break
            # a write handed to the worker by a writer cancelled meanwhile: the worker runs jobs in order
            await loop.run_in_executor(_write_executor(), _noop)

    async def flush(self, timeout: float | None = None) -> None:
        """Write the current table (off the loop) and wait until it is on disk."""
        self.request()
        await self.wait_persisted(timeout)


def _noop() -> None:
    return None


class CoalescedPersistence:
    """The persistence methods of a config manager whose ``_persister`` writes its file."""

    _persister: CoalescingPersister

    def persist(self) -> None:
        """Write the file now, on this thread (startup; explicit admin updates, durable before the reply)."""
        self._persister.persist_now()

    def request_persist(self) -> None:
        """Write the file soon, off the event loop (coalesced); at once when no loop runs."""
        self._persister.request()

    async def wait_persisted(self, timeout: float | None = None) -> None:
        """Until every requested write is done."""
        await self._persister.wait_persisted(timeout)

    async def flush(self, timeout: float | None = None) -> None:
        """Write the current table off the loop and wait for it (broker shutdown)."""
        await self._persister.flush(timeout)
