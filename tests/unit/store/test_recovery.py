from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from backends.model import GetMessageStatus
from backends.store.commitlog import CommitLog
from backends.store.record import decode_record

from .conftest import SMALL, StoreFactory, commitlog_files, msg

CRASHY = dict(power_loss_test_mode=True, flush_interval_consume_queue=10**8)


def _all_bodies(s: Any, topic: str = "TopicA", queue_id: int = 0) -> list[bytes]:
    out, off = [], s.get_min_offset_in_queue(topic, queue_id)
    while True:
        g = s.get_messages(topic, queue_id, off, 32)
        if g.status is not GetMessageStatus.FOUND:
            return out
        out += [decode_record(r).body for r in g.records]
        off = g.next_begin_offset


async def test_clean_restart_is_fast_and_does_not_scan(make_store: StoreFactory, monkeypatch: Any) -> None:
    s = await make_store()
    for i in range(300):
        assert (await s.put_messages([msg(body=b"m%d" % i, KEYS=f"k{i}")])).ok
    root, end = s.root, s.get_max_phy_offset()
    await s.shutdown()
    assert not os.path.exists(os.path.join(root, "abort"))

    def no_scan(*a: Any, **k: Any) -> int:
        raise AssertionError("a clean restart must not scan the commitlog")

    monkeypatch.setattr(CommitLog, "scan", no_scan)
    s2 = await make_store(root)
    assert not s2.recovered_unclean and s2.recovery_scanned_bytes == 0
    assert s2.get_max_phy_offset() == end and len(_all_bodies(s2)) == 300
    r = await s2.put_messages([msg(body=b"next")])
    assert r.results[0].commitlog_offset == end and r.results[0].queue_offset == 300


async def test_power_loss_sync_flush_loses_nothing_acknowledged(make_store: StoreFactory) -> None:
    s = await make_store(flush_disk_type="SYNC_FLUSH", **CRASHY)
    acked = []
    results = await asyncio.gather(*(s.put_messages([msg(body=b"s%d" % i)]) for i in range(200)))
    acked = [r.results[0] for r in results if r.ok]
    assert len(acked) == 200
    root = s.root
    s.simulate_power_loss()
    s2 = await make_store(root)
    assert s2.recovered_unclean
    bodies = _all_bodies(s2)
    assert sorted(bodies) == sorted(b"s%d" % i for i in range(200))
    for a in acked:
        m = s2.look_message_by_offset(a.commitlog_offset)
        assert m is not None and m.queue_offset == a.queue_offset


async def test_power_loss_async_flush_can_lose_acknowledged(make_store: StoreFactory) -> None:
    # the same check as above fails for ASYNC_FLUSH: acknowledged messages were only in the page cache
    s = await make_store(flush_disk_type="ASYNC_FLUSH", flush_interval_commit_log=10**8, **CRASHY)
    for i in range(200):
        assert (await s.put_messages([msg(body=b"a%d" % i)])).ok
    root = s.root
    s.simulate_power_loss()
    s2 = await make_store(root)
    bodies = _all_bodies(s2)
    assert len(bodies) < 200  # lost acknowledged messages
    assert bodies == [b"a%d" % i for i in range(len(bodies))]  # what survives is a clean prefix
    r = await s2.put_messages([msg(body=b"after")])
    assert r.ok and r.results[0].queue_offset == len(bodies)


async def test_torn_tail_is_cut(make_store: StoreFactory, caplog: Any) -> None:
    s = await make_store(flush_disk_type="SYNC_FLUSH", **CRASHY)
    acks = []
    for i in range(50):
        r = await s.put_messages([msg(body=b"t%d" % i * 40)])
        acks.append(r.results[0])
    root = s.root
    s.simulate_power_loss()
    last = acks[-1]
    path = commitlog_files(root)[-1]
    seg_start = int(os.path.basename(path))
    with open(path, "r+b") as f:  # the last record was only partly written
        f.seek(last.commitlog_offset - seg_start + last.store_size // 2)
        f.write(bytes(last.store_size - last.store_size // 2))
    s2 = await make_store(root)
    assert s2.get_max_phy_offset() == last.commitlog_offset
    assert s2.get_max_offset_in_queue("TopicA", 0) == 49  # the consume queue entry past the end is gone
    assert _all_bodies(s2) == [b"t%d" % i * 40 for i in range(49)]
    assert "invalid record in" in caplog.text and os.path.basename(path) in caplog.text
    r = await s2.put_messages([msg(body=b"new")])
    assert r.results[0].commitlog_offset == last.commitlog_offset and r.results[0].queue_offset == 49
    await s2.shutdown()
    s3 = await make_store(root)  # the cut consume queue loads back with the right end
    assert s3.get_max_offset_in_queue("TopicA", 0) == 50 and _all_bodies(s3)[-1] == b"new"


async def test_flipped_bit_is_detected_and_cut(make_store: StoreFactory, caplog: Any) -> None:
    s = await make_store(flush_disk_type="SYNC_FLUSH", **CRASHY)
    acks = []
    for i in range(120):  # spans two 64 KiB files
        r = await s.put_messages([msg(body=bytes([65 + i % 26]) * 700)])
        acks.append(r.results[0])
    root = s.root
    s.simulate_power_loss()
    victim = acks[30]
    files = commitlog_files(root)
    assert len(files) >= 2
    with open(files[0], "r+b") as f:
        f.seek(victim.commitlog_offset + 88 + 100)  # a body byte
        b = f.read(1)
        f.seek(victim.commitlog_offset + 88 + 100)
        f.write(bytes([b[0] ^ 0x04]))
    # the crash happened before any checkpoint: recovery verifies from the start of the kept files
    s2 = await make_store(root)
    assert s2.get_max_phy_offset() == victim.commitlog_offset
    assert len(_all_bodies(s2)) == 30
    assert len(commitlog_files(root)) == 1  # later files deleted
    assert "CRC" in caplog.text and f"file offset {victim.commitlog_offset}" in caplog.text


async def test_corrupt_record_is_never_served(make_store: StoreFactory, caplog: Any) -> None:
    s = await make_store()
    acks = [(await s.put_messages([msg(body=b"x" * 200)])).results[0] for _ in range(5)]
    path = commitlog_files(s.root)[0]
    with open(path, "r+b") as f:  # the disk flips a bit under a running broker
        f.seek(acks[2].commitlog_offset + 88 + 10)
        f.write(b"y")
    g = s.get_messages("TopicA", 0, 0, 32)
    assert g.queue_offsets == [0, 1, 3, 4]
    assert s.look_message_by_offset(acks[2].commitlog_offset) is None
    assert "invalid record" in caplog.text


async def test_recovery_without_checkpoint_scans_last_files(make_store: StoreFactory) -> None:
    s = await make_store(flush_disk_type="SYNC_FLUSH", **CRASHY)
    for i in range(150):
        assert (await s.put_messages([msg(body=b"c%d" % i * 50, queue_id=i % 2)])).ok
    root = s.root
    s.simulate_power_loss()
    os.unlink(os.path.join(root, "checkpoint"))
    s2 = await make_store(root, recover_last_files=10)
    assert s2.recovered_unclean and len(_all_bodies(s2, queue_id=0)) + len(_all_bodies(s2, queue_id=1)) == 150


CHILD = textwrap.dedent("""
    import asyncio, sys
    from backends.model import Message
    from backends.store.message_store import MessageStore, MessageStoreConfig

    async def main():
        cfg = MessageStoreConfig(sys.argv[1], flush_disk_type="SYNC_FLUSH", **{SMALL!r})
        s = MessageStore(cfg)
        await s.start()
        n = 0

        async def writer(w):
            nonlocal n
            while True:
                n += 1
                body = b"w%d-%d" % (w, n)
                r = await s.put_messages([Message("TopicA", body, queue_id=w % 4)])
                if r.ok:
                    a = r.results[0]
                    print("ACK", a.commitlog_offset, a.queue_offset, w % 4, body.decode(), flush=True)

        await asyncio.gather(*(writer(w) for w in range(8)))

    asyncio.run(main())
""")


async def test_sigkill_during_sync_appends_keeps_every_ack(make_store: StoreFactory, tmp_path: Any) -> None:
    root = str(tmp_path / "killed")
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, "-c", CHILD.replace("{SMALL!r}", repr(SMALL)), root],
                            stdout=subprocess.PIPE, env=env, text=True)
    acks = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("ACK"):
                acks.append(line.split())
            if len(acks) >= 400:
                break
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
        acks += [ln.split() for ln in rest.splitlines() if ln.startswith("ACK ")]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL and len(acks) >= 400
    s = await make_store(root)
    assert s.recovered_unclean
    for _, phy, qoff, qid, body in acks:
        m = s.look_message_by_offset(int(phy))
        assert m is not None and m.body == body.encode() and m.queue_offset == int(qoff)
        g = s.get_messages("TopicA", int(qid), int(qoff), 1)
        assert g.status is GetMessageStatus.FOUND and decode_record(g.records[0]).body == body.encode()


@pytest.mark.parametrize("mode", ["SYNC_FLUSH", "ASYNC_FLUSH"])
async def test_restart_after_unclean_stop_rebuilds_queues_and_index(make_store: StoreFactory, mode: str) -> None:
    s = await make_store(flush_disk_type=mode, **CRASHY)
    for i in range(100):
        assert (await s.put_messages([msg(body=b"r%d" % i, KEYS=f"key{i}")])).ok
    assert await s.flush_now()  # everything durable, checkpoint at the end
    for i in range(100, 150):  # appended after the checkpoint
        assert (await s.put_messages([msg(body=b"r%d" % i, KEYS=f"key{i}")])).ok
    await s._flush.flush()  # type: ignore[union-attr]  # durable, but queues/index not checkpointed
    root = s.root
    s.simulate_power_loss()
    s2 = await make_store(root)
    assert s2.recovered_unclean and 0 < s2.recovery_scanned_bytes < s2.get_max_phy_offset()
    assert _all_bodies(s2) == [b"r%d" % i for i in range(150)]
    await asyncio.wait_for(s2.wait_index_rebuilt(), 10)  # keys are indexed in the background
    assert [m.body for m in s2.query_message("TopicA", "key120", 5)] == [b"r120"]
    assert [m.body for m in s2.query_message("TopicA", "key5", 5)] == [b"r5"]


async def test_power_loss_with_writers_in_flight(make_store: StoreFactory) -> None:
    s = await make_store(flush_disk_type="SYNC_FLUSH", **CRASHY)
    tasks = [asyncio.create_task(s.put_messages([msg(body=b"p%d" % i)])) for i in range(40)]
    await asyncio.sleep(0)  # some are encoded, none acknowledged yet
    root = s.root
    s.simulate_power_loss()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    acked = [r.results[0] for r in results if r.ok]
    assert not acked  # nobody is told "durable" by a store that lost power
    assert all(not r.ok for r in results)
    s2 = await make_store(root)
    r = await s2.put_messages([msg(body=b"after")])
    assert r.ok


async def test_recovery_scan_across_chunk_boundaries(make_store: StoreFactory, monkeypatch: Any) -> None:
    import backends.store.commitlog as commitlog_mod

    monkeypatch.setattr(commitlog_mod, "SCAN_CHUNK", 3000)  # records straddle and exceed read chunks
    s = await make_store(flush_disk_type="SYNC_FLUSH", **CRASHY)
    sizes = [(i * 797) % 6000 + 1 for i in range(120)]
    for i, n in enumerate(sizes):
        assert (await s.put_messages([msg(body=bytes([i % 256]) * n, TAGS="x")])).ok
    root = s.root
    s.simulate_power_loss()
    s2 = await make_store(root)
    assert s2.recovery_scanned_bytes == s2.get_max_phy_offset()
    assert _all_bodies(s2) == [bytes([i % 256]) * n for i, n in enumerate(sizes)]


async def test_ipv6_hosts_round_trip_through_the_store(make_store: StoreFactory) -> None:
    s = await make_store(store_host=("fe80::2", 10911))
    m = msg(body=b"v6")
    m.born_host = ("2001:db8::1", 4242)
    r = await s.put_messages([m])
    assert r.ok
    got = s.look_message_by_offset(r.results[0].commitlog_offset)
    assert got is not None and got.born_host == ("2001:db8::1", 4242) and got.store_host == ("fe80::2", 10911)
    g = s.get_messages("TopicA", 0, 0, 1)
    assert decode_record(g.records[0]).body == b"v6"


async def test_record_claiming_to_run_past_its_file_is_cut(make_store: StoreFactory, caplog: Any) -> None:
    s = await make_store(flush_disk_type="SYNC_FLUSH", **CRASHY)
    acks = [(await s.put_messages([msg(body=b"L%d" % i * 30)])).results[0] for i in range(20)]
    root = s.root
    s.simulate_power_loss()
    victim = acks[12]
    path = commitlog_files(root)[0]
    with open(path, "r+b") as f:  # a size field that points past the end of the 64 KiB file
        f.seek(victim.commitlog_offset)
        f.write((70_000).to_bytes(4, "big"))
    s2 = await make_store(root)
    assert s2.get_max_phy_offset() == victim.commitlog_offset
    assert len(_all_bodies(s2)) == 12
    assert "invalid record" in caplog.text and "past the end" in caplog.text


async def test_index_rebuild_finishes_before_a_clean_checkpoint(make_store: StoreFactory) -> None:
    s = await make_store(flush_disk_type="SYNC_FLUSH", **CRASHY)
    for i in range(60):
        assert (await s.put_messages([msg(body=b"i%d" % i, KEYS=f"key{i}")])).ok
    root = s.root
    s.simulate_power_loss()
    s2 = await make_store(root)
    assert s2._index_rebuild is not None  # start did not wait for the index
    await s2.shutdown()  # before the background rebuild ran: shutdown completes it
    s3 = await make_store(root)
    assert not s3.recovered_unclean
    assert [m.body for m in s3.query_message("TopicA", "key42", 5)] == [b"i42"]


async def test_index_rebuilt_in_recovery_when_not_in_background(make_store: StoreFactory) -> None:
    s = await make_store(flush_disk_type="SYNC_FLUSH", **CRASHY)
    for i in range(30):
        assert (await s.put_messages([msg(body=b"j%d" % i, KEYS=f"key{i}")])).ok
    root = s.root
    s.simulate_power_loss()
    s2 = await make_store(root, rebuild_index_in_background=False)
    assert s2._index_rebuild is None
    assert [m.body for m in s2.query_message("TopicA", "key7", 5)] == [b"j7"]
