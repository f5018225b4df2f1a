from __future__ import annotations

import errno
import os
import time
import tracemalloc
from typing import Any

from backends.model import GetMessageStatus, PutMessageStatus
from backends.store.commitlog import CommitLog

from .conftest import StoreFactory, commitlog_files, msg

HOUR = 3600 * 1000


def _at_hour(hour: int, days_later: int = 0) -> int:
    """A local-time timestamp (ms) at ``hour`` o'clock, ``days_later`` days from today."""
    t = time.localtime()
    base = time.mktime((t.tm_year, t.tm_mon, t.tm_mday + days_later, hour, 30, 0, 0, 0, -1))
    return int(base * 1000)


async def test_retention_deletes_expired_files_and_fixes_min_offsets(make_store: StoreFactory) -> None:
    s = await make_store(file_reserved_time=48, delete_when="04;16")
    for i in range(300):
        assert (await s.put_messages([msg(body=b"%d" % i * 300, queue_id=i % 2, KEYS=f"k{i}")])).ok
    await s.flush_now()
    files = commitlog_files(s.root)
    assert len(files) >= 3
    # not yet expired, even at 4 o'clock
    assert s.clean_expired_files(_at_hour(4)) == 0
    # expired but not a delete_when hour (and the disk is fine): nothing happens
    assert s.clean_expired_files(_at_hour(10, days_later=3)) == 0
    n = s.clean_expired_files(_at_hour(16, days_later=3))
    assert n == len(files) - 1  # every file but the one being written
    assert commitlog_files(s.root) == files[-1:]
    min_phy = s.get_min_phy_offset()
    assert min_phy == int(os.path.basename(files[-1]))
    for q in (0, 1):
        mn = s.get_min_offset_in_queue("TopicA", q)
        assert mn > 0
        g = s.get_messages("TopicA", q, 0, 8)
        assert g.status is GetMessageStatus.OFFSET_TOO_SMALL and g.next_begin_offset == mn
        g = s.get_messages("TopicA", q, mn, 8)
        assert g.status is GetMessageStatus.FOUND
        cq_dir = os.path.join(s.root, "consumequeue", "TopicA", str(q))
        assert min(int(n) for n in os.listdir(cq_dir)) > 0  # early consume-queue files deleted
    assert s.look_message_by_offset(0) is None
    assert s.query_message("TopicA", "k0", 5) == []
    assert s.query_message("TopicA", "k299", 5)
    # the corrected min offsets survive a restart
    root, mins = s.root, [s.get_min_offset_in_queue("TopicA", q) for q in (0, 1)]
    await s.shutdown()
    s2 = await make_store(root)
    assert [s2.get_min_offset_in_queue("TopicA", q) for q in (0, 1)] == mins
    assert s2.get_min_phy_offset() == min_phy


async def test_disk_full_rejects_writes(make_store: StoreFactory) -> None:
    usage = [50.0]
    s = await make_store(disk_usage=lambda: usage[0], disk_max_used_space_ratio=75)
    assert (await s.put_messages([msg()])).ok
    end = s.get_max_phy_offset()
    usage[0] = 91.0
    s.clean_expired_files(_at_hour(12))  # the periodic check (injectable trigger)
    r = await s.put_messages([msg()])
    assert r.status is PutMessageStatus.DISK_FULL and "disk" in r.error
    assert s.get_max_phy_offset() == end and s.get_max_offset_in_queue("TopicA", 0) == 1
    usage[0] = 40.0
    s.clean_expired_files(_at_hour(12))
    r = await s.put_messages([msg()])
    assert r.ok and r.results[0].queue_offset == 1 and r.results[0].commitlog_offset == end


async def test_enospc_leaves_nothing_half_written(make_store: StoreFactory, monkeypatch: Any) -> None:
    s = await make_store()
    assert (await s.put_messages([msg(body=b"a")])).ok
    end = s.get_max_phy_offset()
    real = CommitLog.write

    def full(self: CommitLog, data: bytes, pos: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(CommitLog, "write", full)
    r = await s.put_messages([msg(body=b"b"), msg(body=b"c")])
    assert r.status is PutMessageStatus.DISK_FULL and not r.results
    assert s.get_max_phy_offset() == end and s.get_max_offset_in_queue("TopicA", 0) == 1
    monkeypatch.setattr(CommitLog, "write", real)
    s._disk_full = False  # space was freed (the periodic check would notice)
    r = await s.put_messages([msg(body=b"d")])
    assert r.ok and r.results[0].queue_offset == 1 and r.results[0].commitlog_offset == end


async def test_memory_does_not_grow_with_stored_messages(make_store: StoreFactory) -> None:
    s = await make_store(mapped_file_size_commit_log=1024 * 1024, mapped_file_size_consume_queue=20 * 5000,
                         max_hash_slot_num=4096, max_index_num=40000)
    body = b"m" * 200
    async def put(start: int) -> None:
        r = await s.put_messages([msg(body=body, queue_id=i % 4, UNIQ_KEY=f"U{i}", TAGS="t")
                                  for i in range(start, start + 20)])
        assert r.ok

    for i in range(0, 2000, 20):
        await put(i)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(2000, 12000, 20):
            await put(i)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    # one small Python object per message (~100 B) would already be ~1 MB here
    grown = sum(st.size_diff for st in after.compare_to(before, "filename"))
    assert grown < 256 * 1024, f"{grown} bytes kept for 10,000 more messages"
    assert s.get_max_offset_in_queue("TopicA", 0) == 3000


async def test_preallocated_mapped_files(make_store: StoreFactory) -> None:
    s = await make_store(preallocate_mapped_files=True)
    assert (await s.put_messages([msg(KEYS="k")])).ok
    cq_dir = os.path.join(s.root, "consumequeue", "TopicA", "0")
    (cq_file,) = os.listdir(cq_dir)
    st = os.stat(os.path.join(cq_dir, cq_file))
    assert st.st_blocks * 512 >= st.st_size  # blocks reserved, not a sparse file
    (idx,) = os.listdir(os.path.join(s.root, "index"))
    st = os.stat(os.path.join(s.root, "index", idx))
    assert st.st_blocks * 512 >= st.st_size
