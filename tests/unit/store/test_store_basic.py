from __future__ import annotations

import asyncio
import os
import struct

from backends.model import GetMessageStatus, PutMessageStatus, decode_offset_msg_id
from backends.store.record import BLANK_MAGIC_CODE, decode_record, tags_code

from .conftest import StoreFactory, commitlog_files, msg


async def test_append_and_read_across_segment_boundaries(make_store: StoreFactory) -> None:
    s = await make_store()
    acks = []
    for i in range(200):  # ~1.1 KiB records over 64 KiB segments -> several files
        r = await s.put_messages([msg(body=bytes([i % 251]) * (900 + i), queue_id=i % 3, TAGS=f"t{i % 2}")])
        assert r.ok, r
        acks.append(r.results[0])
    files = commitlog_files(s.root)
    assert len(files) >= 3
    assert [os.path.basename(f) for f in files][:2] == [f"{0:020d}", f"{65536:020d}"]
    # each record lies inside one file; the end of a full file is a BLANK record
    for a in acks:
        assert a.commitlog_offset // 65536 == (a.commitlog_offset + a.store_size - 1) // 65536
    first_of_second = min(a.commitlog_offset for a in acks if a.commitlog_offset >= 65536)
    assert first_of_second == 65536
    last_in_first = max((a for a in acks if a.commitlog_offset < 65536), key=lambda a: a.commitlog_offset)
    blank_at = last_in_first.commitlog_offset + last_in_first.store_size
    with open(files[0], "rb") as f:
        f.seek(blank_at)
        size, magic = struct.unpack(">ii", f.read(8))
    assert magic == BLANK_MAGIC_CODE and blank_at + size == 65536
    # read back by physical offset and through the consume queues
    for i, a in enumerate(acks):
        m = s.look_message_by_offset(a.commitlog_offset)
        assert m is not None and m.body == bytes([i % 251]) * (900 + i) and m.queue_offset == a.queue_offset
    got = []
    for q in range(3):
        off = 0
        while True:
            g = s.get_messages("TopicA", q, off, 16)
            if g.status is not GetMessageStatus.FOUND:
                assert g.status is GetMessageStatus.OFFSET_OVERFLOW_ONE
                break
            assert g.queue_offsets[0] == off and len(g.records) <= 16
            got += [decode_record(r) for r in g.records]
            off = g.next_begin_offset
    assert sorted(m.commitlog_offset for m in got) == [a.commitlog_offset for a in acks]


async def test_get_messages_statuses_and_filter(make_store: StoreFactory) -> None:
    s = await make_store()
    assert s.get_messages("Nope", 0, 0, 10).status is GetMessageStatus.NO_MATCHED_LOGIC_QUEUE
    for i in range(10):
        assert (await s.put_messages([msg(body=b"x%d" % i, TAGS="A" if i % 2 else "B")])).ok
    assert s.get_min_offset_in_queue("TopicA", 0) == 0 and s.get_max_offset_in_queue("TopicA", 0) == 10
    assert s.get_messages("TopicA", 0, 10, 5).status is GetMessageStatus.OFFSET_OVERFLOW_ONE
    g = s.get_messages("TopicA", 0, 12, 5)
    assert g.status is GetMessageStatus.OFFSET_OVERFLOW_BADLY and g.next_begin_offset == 10
    calls = []

    def only_a(code: int, rec: bytes | None) -> bool:
        calls.append(rec is None)
        return code == tags_code("A")

    g = s.get_messages("TopicA", 0, 0, 32, only_a)
    assert g.status is GetMessageStatus.FOUND and g.queue_offsets == [1, 3, 5, 7, 9]
    assert [decode_record(r).body for r in g.records] == [b"x1", b"x3", b"x5", b"x7", b"x9"]
    assert g.next_begin_offset == 10 and True in calls and False in calls
    g = s.get_messages("TopicA", 0, 0, 2)
    assert g.queue_offsets == [0, 1] and g.next_begin_offset == 2
    calls.clear()
    only_a.needs_properties = False  # type: ignore[attr-defined]
    g = s.get_messages("TopicA", 0, 0, 32, only_a)
    assert g.queue_offsets == [1, 3, 5, 7, 9] and calls == [True] * 10
    g = s.get_messages("TopicA", 0, 0, 32, lambda c, r: False)
    assert g.status is GetMessageStatus.NO_MATCHED_MESSAGE and g.next_begin_offset == 10


async def test_rejects_oversized_and_bad_messages_without_writing(make_store: StoreFactory) -> None:
    s = await make_store(max_message_size=1000)
    end = s.get_max_phy_offset()
    r = await s.put_messages([msg(body=b"a"), msg(body=b"x" * 2000)])
    assert r.status is PutMessageStatus.MESSAGE_ILLEGAL and r.error
    r = await s.put_messages([msg(topic="t" * 300)])
    assert r.status is PutMessageStatus.MESSAGE_ILLEGAL
    for bad in ("../../etc", "a/b", ".."):
        r = await s.put_messages([msg(topic=bad)])
        assert r.status is PutMessageStatus.MESSAGE_ILLEGAL, bad
    r = await s.put_messages([msg(big="v" * 40000)])
    assert r.status is PutMessageStatus.PROPERTIES_SIZE_EXCEEDED
    # a value wider than its record field (int32 flag / reconsumeTimes, int64 bornTimestamp), in a queue
    # nothing else opened: refused, and the queue keeps no trace of it
    for field, value in (("flag", 2**31), ("reconsume_times", -(2**31) - 1), ("born_timestamp", 2**63)):
        wide = msg(body=b"z", queue_id=3)
        setattr(wide, field, value)
        r = await s.put_messages([msg(body=b"a"), wide])
        assert r.status is PutMessageStatus.MESSAGE_ILLEGAL and "out of range" in r.error, field
    assert s.get_max_phy_offset() == end and s.get_max_offset_in_queue("TopicA", 0) == 0
    assert s.get_max_offset_in_queue("TopicA", 3) == 0
    r = await s.put_messages([msg(body=b"ok")])
    assert r.ok and r.results[0].queue_offset == 0 and r.results[0].commitlog_offset == end
    r = await s.put_messages([msg(body=b"ok3", queue_id=3)])
    assert r.ok and r.results[0].queue_offset == 0


async def test_batch_put_is_one_append(make_store: StoreFactory) -> None:
    s = await make_store()
    r = await s.put_messages([msg(body=b"%d" % i, queue_id=i % 2) for i in range(100)])
    assert r.ok and len(r.results) == 100
    assert [a.queue_offset for a in r.results[:4]] == [0, 0, 1, 1]
    offs = [a.commitlog_offset for a in r.results]
    assert offs == sorted(offs)
    assert s.get_max_offset_in_queue("TopicA", 0) == 50


async def test_batch_mixing_topics_queues_and_born_hosts_reads_back_exactly(make_store: StoreFactory) -> None:
    # what messages of one call share is looked up once per change: every change must be honoured
    s = await make_store()
    hosts = [("10.0.0.7", 40000), ("10.0.0.7", 40000), ("::1", 5), ("192.168.1.2", 7), ("192.168.1.2", 7)]
    batch = []
    for i in range(20):
        m = msg(topic="TopicA" if i % 7 < 4 else "TopicB", body=b"b%d" % i, queue_id=(i // 3) % 3, TAGS=f"t{i % 2}")
        m.born_host = hosts[i % len(hosts)]
        batch.append(m)
    r = await s.put_messages(batch)
    assert r.ok
    expect_qoff: dict[tuple[str, int], int] = {}
    for m, a in zip(batch, r.results, strict=True):
        key = (m.topic, m.queue_id)
        assert a.queue_offset == expect_qoff.get(key, 0)
        expect_qoff[key] = a.queue_offset + 1
        got = s.look_message_by_offset(a.commitlog_offset)
        assert got is not None and got.store_size == a.store_size
        assert (got.topic, got.queue_id, got.queue_offset, got.body) == (m.topic, m.queue_id, a.queue_offset, m.body)
        assert got.born_host == m.born_host and got.store_timestamp == a.store_timestamp
    for (topic, qid), n in expect_qoff.items():
        assert s.get_max_offset_in_queue(topic, qid) == n


async def test_writers_of_one_turn_share_a_write_and_a_rejected_batch_leaves_no_trace(
        make_store: StoreFactory) -> None:
    # consume-queue files of 100 entries: one turn's entries for a queue cross a file boundary
    s = await make_store(max_message_size=1000)
    await s.put_messages([msg(body=b"p%d" % i, TAGS="pre") for i in range(95)])
    good = [[msg(body=b"g%d-%d" % (w, i), queue_id=w % 2, TAGS=f"t{w}") for i in range(3)] for w in range(4)]
    bad = [msg(body=b"ok", queue_id=0), msg(body=b"ok", queue_id=1), msg(body=b"x" * 2000, queue_id=0)]
    rs = await asyncio.gather(*(s.put_messages(b) for b in good[:2]), s.put_messages(bad),
                              *(s.put_messages(b) for b in good[2:]))
    assert rs[2].status is PutMessageStatus.MESSAGE_ILLEGAL and not rs[2].results
    oks = rs[:2] + rs[3:]
    assert all(r.ok for r in oks)
    q0 = sorted(a.queue_offset for r, b in zip(oks, good, strict=True)
                for a, m in zip(r.results, b, strict=True) if m.queue_id == 0)
    assert q0 == list(range(95, 101)) and s.get_max_offset_in_queue("TopicA", 0) == 101
    assert s.get_max_offset_in_queue("TopicA", 1) == 6
    got = s.get_messages("TopicA", 0, 94, 32)
    bodies = [decode_record(r).body for r in got.records]
    assert bodies[0] == b"p94" and sorted(bodies[1:]) == sorted(m.body for b in good for m in b if m.queue_id == 0)
    for r, b in zip(oks, good, strict=True):
        for a, m in zip(r.results, b, strict=True):
            e = s._cqs[("TopicA", m.queue_id)].get(a.queue_offset)
            assert e == (a.commitlog_offset, a.store_size, tags_code(m.properties["TAGS"]))


async def test_search_offset_by_time_and_store_times(make_store: StoreFactory) -> None:
    now = [1_000_000]
    s = await make_store(clock=lambda: now[0])
    for i in range(30):
        now[0] = 1_000_000 + i * 1000  # message i stored at 1000 s + i
        assert (await s.put_messages([msg(body=b"%d" % i)])).ok
    assert s.get_offset_in_queue_by_time("TopicA", 0, 0) == 0
    assert s.get_offset_in_queue_by_time("TopicA", 0, 1_000_000 + 7000) == 7
    assert s.get_offset_in_queue_by_time("TopicA", 0, 1_000_000 + 7001) == 8
    assert s.get_offset_in_queue_by_time("TopicA", 0, 10**12) == 30
    assert s.get_earliest_message_time("TopicA", 0) == 1_000_000
    assert s.get_message_store_timestamp("TopicA", 0, 12) == 1_012_000
    assert s.get_message_store_timestamp("TopicA", 0, 99) == -1


async def test_index_by_key_uniq_key_and_offset_msg_id(make_store: StoreFactory, tmp_path: object) -> None:
    now = [5_000_000]
    s = await make_store(clock=lambda: now[0])
    ids = []
    for i in range(300):  # more entries than the small index holds per file? 2048 -> one file; fine
        now[0] += 1000
        r = await s.put_messages([msg(KEYS=f"order-{i % 50} common", UNIQ_KEY=f"U{i:05d}")])
        ids.append(r.results[0].msg_id)
    await s.put_messages([msg(topic="Other", KEYS="order-1")])
    found = s.query_message("TopicA", "order-7", 100)
    assert sorted(m.queue_offset for m in found) == [7, 57, 107, 157, 207, 257]
    assert all("order-7" in m.keys for m in found)
    assert [m.queue_offset for m in s.query_message("TopicA", "U00123", 10)] == [123]
    assert len(s.query_message("TopicA", "common", 1000)) == 300
    assert len(s.query_message("TopicA", "common", 5)) == 5
    assert [m.topic for m in s.query_message("Other", "order-1", 10)] == ["Other"]
    assert s.query_message("TopicA", "missing", 10) == []
    # time range: messages i in [100, 109] were stored at 5_000_000 + (i + 1) * 1000
    ranged = s.query_message("TopicA", "common", 1000, 5_000_000 + 101_000, 5_000_000 + 110_000)
    assert sorted(m.queue_offset for m in ranged) == list(range(100, 110))
    # offset message id = store host + commitlog offset
    (host, off) = decode_offset_msg_id(ids[42])
    assert host == ("127.0.0.1", 10911)
    m = s.look_message_by_id(ids[42])
    assert m is not None and m.queue_offset == 42 and m.offset_msg_id == ids[42]
    # the index survives a restart
    root = s.root
    await s.shutdown()
    s2 = await make_store(root)
    assert sorted(m.queue_offset for m in s2.query_message("TopicA", "order-7", 100)) == [
        7, 57, 107, 157, 207, 257]


async def test_index_rolls_to_new_files(make_store: StoreFactory) -> None:
    s = await make_store(max_index_num=64)
    for i in range(200):
        assert (await s.put_messages([msg(KEYS=f"k{i}")])).ok
    assert len(s.index.files) >= 3
    assert [m.queue_offset for m in s.query_message("TopicA", "k5", 5)] == [5]
    assert [m.queue_offset for m in s.query_message("TopicA", "k199", 5)] == [199]


async def test_arrival_listener_after_dispatch(make_store: StoreFactory) -> None:
    s = await make_store()
    seen: list[tuple[str, int, int, int]] = []
    s.add_arrival_listener(lambda t, q, n: seen.append((t, q, n, s.get_max_offset_in_queue(t, q))))
    await s.put_messages([msg(queue_id=1), msg(queue_id=1), msg(queue_id=2)])
    assert sorted(seen) == [("TopicA", 1, 2, 2), ("TopicA", 2, 1, 1)]


async def test_delete_topics(make_store: StoreFactory) -> None:
    s = await make_store()
    await s.put_messages([msg(topic="Gone"), msg(topic="Kept")])
    s.delete_topics({"Gone"})
    assert s.get_messages("Gone", 0, 0, 1).status is GetMessageStatus.NO_MATCHED_LOGIC_QUEUE
    assert not os.path.exists(os.path.join(s.root, "consumequeue", "Gone"))
    assert s.get_max_offset_in_queue("Kept", 0) == 1
    r = await s.put_messages([msg(topic="Gone")])
    assert r.results[0].queue_offset == 0


def test_append_results_sequence() -> None:
    import pytest

    from backends.model import AppendResult, AppendResults

    r = AppendResults([100, 10, 5, 110, 20, 6], 1234, "7F00000100002A9F")
    assert len(r) == 2 and bool(r)
    assert r[0] == AppendResult(100, 10, 5, 1234, "7F00000100002A9F0000000000000064")
    assert r[-1].queue_offset == 6 and r[1].commitlog_offset == 110 and r[1].store_size == 20
    assert [a.queue_offset for a in r] == [5, 6] and r[1:] == [r[1]]
    with pytest.raises(IndexError):
        r[2]
    assert not AppendResults([], 0, "")


async def test_store_path_commit_log_holds_the_segments_and_survives_restart(
        make_store: StoreFactory, tmp_path: object) -> None:
    root, cl_dir = os.path.join(str(tmp_path), "root"), os.path.join(str(tmp_path), "other-disk", "commitlog")
    s = await make_store(root, store_path_commit_log=cl_dir, flush_disk_type="SYNC_FLUSH")
    acks = []
    for i in range(100):  # over two 64 KiB segments
        r = await s.put_messages([msg(body=bytes([i]) * 1000)])
        assert r.ok, r
        acks.append(r.results[0])
    assert not os.path.exists(os.path.join(root, "commitlog"))
    assert sorted(os.listdir(cl_dir))[:2] == [f"{0:020d}", f"{65536:020d}"]
    await s.shutdown()
    s2 = await make_store(root, store_path_commit_log=cl_dir)
    assert s2.get_max_phy_offset() == acks[-1].commitlog_offset + acks[-1].store_size
    m = s2.look_message_by_offset(acks[57].commitlog_offset)
    assert m is not None and m.body == bytes([57]) * 1000


async def test_a_new_commitlog_segment_makes_its_directory_entry_durable(
        make_store: StoreFactory, monkeypatch: object) -> None:
    import backends.store.commitlog as commitlog_module

    synced: list[str] = []
    real = commitlog_module.fsync_dir

    def recording(directory: str, best_effort: bool = True) -> None:
        synced.append(directory)
        real(directory, best_effort)

    monkeypatch.setattr(commitlog_module, "fsync_dir", recording)  # type: ignore[attr-defined]
    s = await make_store()
    for _ in range(80):  # ~80 KiB: a second segment
        assert (await s.put_messages([msg(body=b"x" * 1000)])).ok
    assert len(commitlog_files(s.root)) == 2
    assert synced.count(s.commitlog.dir) == 2  # once per segment file created


async def test_a_checkpoint_makes_new_consume_queue_and_index_file_names_durable(
        make_store: StoreFactory, monkeypatch: object) -> None:
    import backends.store.mapped_file as mapped_file_module

    synced: list[str] = []
    real = mapped_file_module.fsync_dir

    def recording(directory: str, best_effort: bool = True) -> None:
        synced.append(os.path.abspath(directory))
        real(directory, best_effort)

    monkeypatch.setattr(mapped_file_module, "fsync_dir", recording)  # type: ignore[attr-defined]
    s = await make_store()
    assert (await s.put_messages([msg(topic="TopicNew", queue_id=3)])).ok
    await s.flush_now()  # the checkpoint
    root = os.path.abspath(s.root)
    cq = os.path.join(root, "consumequeue")
    for d in (os.path.join(cq, "TopicNew", "3"), os.path.join(cq, "TopicNew"), cq, root,
              os.path.join(root, "index")):
        assert d in synced, (d, synced)
    synced.clear()
    assert (await s.put_messages([msg(topic="TopicNew", queue_id=3)])).ok
    await s.flush_now()
    assert synced == []  # no new file: no directory to sync


def test_a_unique_key_is_not_taken_for_an_offset_message_id() -> None:
    import pytest

    from backends.model import offset_msg_id

    assert decode_offset_msg_id(offset_msg_id(("127.0.0.1", 10911), 4096)) == (("127.0.0.1", 10911), 4096)
    # RocketMQ's unique key layout: ip, pid (2 bytes), class loader hash, time, counter -- 16 bytes too
    with pytest.raises(ValueError, match="not an offset message id"):
        decode_offset_msg_id("7F00000118320000000118DB89AE0000")
