from __future__ import annotations

import asyncio
import errno
import os
import threading

from backends.model import PutMessageStatus

from .conftest import StoreFactory, msg

NO_PERIODIC = dict(flush_interval_consume_queue=10**8, flush_interval_commit_log=10**8)


class GatedFsync:
    """An fdatasync that counts calls and can be held closed by the test."""

    def __init__(self, closed: bool = False) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.gate = threading.Event()
        if not closed:
            self.gate.set()
        self.error: OSError | None = None

    def __call__(self, fd: int) -> None:
        self.calls += 1
        self.entered.set()
        assert self.gate.wait(10), "test never opened the fsync gate"
        if self.error is not None:
            raise self.error
        os.fdatasync(fd)


async def test_async_flush_answers_before_fdatasync(make_store: StoreFactory) -> None:
    fs = GatedFsync(closed=True)
    s = await make_store(flush_disk_type="ASYNC_FLUSH", fsync=fs, **NO_PERIODIC)
    r = await asyncio.wait_for(s.put_messages([msg()]), 5)
    assert r.ok and fs.calls == 0  # acknowledged with no fdatasync at all
    assert s._flush is not None and s._flush.flushed_pos < s.get_max_phy_offset()
    fs.gate.set()
    assert await s.flush_now() is PutMessageStatus.PUT_OK
    assert s._flush.flushed_pos == s.get_max_phy_offset() and fs.calls == 1


async def test_sync_flush_answers_only_after_fdatasync(make_store: StoreFactory) -> None:
    fs = GatedFsync(closed=True)
    s = await make_store(flush_disk_type="SYNC_FLUSH", fsync=fs, **NO_PERIODIC)
    task = asyncio.create_task(s.put_messages([msg()]))
    assert await asyncio.to_thread(fs.entered.wait, 5)
    assert not task.done()  # the fdatasync is running: no answer yet
    fs.gate.set()
    r = await asyncio.wait_for(task, 5)
    assert r.ok and s._flush is not None and s._flush.flushed_pos >= r.results[0].commitlog_offset + 1


async def test_group_commit_shares_fdatasync(make_store: StoreFactory) -> None:
    fs = GatedFsync(closed=True)
    s = await make_store(flush_disk_type="SYNC_FLUSH", fsync=fs, **NO_PERIODIC)
    first = asyncio.create_task(s.put_messages([msg(body=b"first")]))
    assert await asyncio.to_thread(fs.entered.wait, 5)  # round 1 is in fdatasync
    others = [asyncio.create_task(s.put_messages([msg(body=b"%d" % i, queue_id=i % 4)])) for i in range(63)]
    await asyncio.sleep(0)  # let the 63 writers append (no timing involved: one loop turn)
    await asyncio.sleep(0)
    assert not any(t.done() for t in others)
    fs.gate.set()
    results = await asyncio.wait_for(asyncio.gather(first, *others), 5)
    assert all(r.ok for r in results)
    assert fs.calls == 2, fs.calls  # 64 writers, 2 fdatasyncs: round 1 + one shared by the 63 waiting
    assert s._flush is not None and s._flush.rounds == 2
    # 64 writers arriving together: their fdatasyncs start every 16 messages (pipelined with the
    # encoding of the next ones), so at most 4 for 64 writers
    before = fs.calls
    results = await asyncio.wait_for(asyncio.gather(*(s.put_messages([msg()]) for _ in range(64))), 5)
    assert all(r.ok for r in results) and 1 <= fs.calls - before <= 4


async def test_flush_disk_timeout(make_store: StoreFactory) -> None:
    fs = GatedFsync(closed=True)  # a disk that does not answer
    s = await make_store(flush_disk_type="SYNC_FLUSH", fsync=fs, sync_flush_timeout=100, **NO_PERIODIC)
    r = await asyncio.wait_for(s.put_messages([msg()]), 5)
    assert r.status is PutMessageStatus.FLUSH_DISK_TIMEOUT and "fdatasync" in r.error
    fs.gate.set()  # the disk recovers; later writes are acknowledged normally
    r = await asyncio.wait_for(s.put_messages([msg()]), 5)
    assert r.ok


async def test_fdatasync_eio_is_an_error_never_an_ack(make_store: StoreFactory, caplog: object) -> None:
    fs = GatedFsync()
    fs.error = OSError(errno.EIO, "Input/output error")
    s = await make_store(flush_disk_type="SYNC_FLUSH", fsync=fs, **NO_PERIODIC)
    results = await asyncio.wait_for(asyncio.gather(*(s.put_messages([msg()]) for _ in range(5))), 5)
    assert all(r.status is PutMessageStatus.IO_ERROR and not r.results for r in results)
    assert "fdatasync of the commitlog failed" in caplog.text  # type: ignore[attr-defined]
    fs.error = None  # a retried fdatasync may "succeed" after EIO: still no ack until restart
    r = await s.put_messages([msg()])
    assert r.status is PutMessageStatus.IO_ERROR
    root = s.root
    await s.shutdown()
    assert os.path.exists(os.path.join(root, "abort"))  # next start verifies the log


async def test_async_flush_background_fdatasync(make_store: StoreFactory) -> None:
    fs = GatedFsync()
    s = await make_store(flush_disk_type="ASYNC_FLUSH", fsync=fs, flush_interval_commit_log=10)
    r = await s.put_messages([msg()])
    assert r.ok
    end = s.get_max_phy_offset()
    for _ in range(500):  # bounded wait for the periodic flush
        if s._flush is not None and s._flush.flushed_pos >= end:
            break
        await asyncio.sleep(0.01)
    assert s._flush is not None and s._flush.flushed_pos >= end and fs.calls >= 1
