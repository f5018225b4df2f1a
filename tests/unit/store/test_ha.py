"""Master/slave replication: the store's read_commitlog/append_replica and the HA service over loopback."""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import pytest

from backends.model import GetMessageStatus
from backends.store.ha import (
    HAClient,
    HAService,
    decode_report,
    decode_transfer_header,
    encode_report,
    encode_transfer,
)
from backends.store.message_store import MessageStore, ReplicaError
from backends.store.record import decode_record
from tests.harness import apoll_until

from .conftest import StoreFactory, msg


def queue_bodies(s: MessageStore, topic: str, queues: int) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    for q in range(queues):
        off, got = s.get_min_offset_in_queue(topic, q), []
        while True:
            g = s.get_messages(topic, q, off, 32)
            if g.status is not GetMessageStatus.FOUND:
                break
            got += [decode_record(r).body for r in g.records]
            off = g.next_begin_offset
        out[q] = got
    return out


async def fill(s: MessageStore, n: int, seed: int = 1) -> None:
    rnd = random.Random(seed)
    for i in range(n):
        body = bytes([i % 251]) * rnd.randint(1, 3000)
        r = await s.put_messages([msg(body=body, queue_id=i % 3, TAGS=f"t{i % 2}", KEYS=f"k{i}")])
        assert r.ok, r


def pump(master: MessageStore, slave: MessageStore, chunk: int, start: int | None = None) -> None:
    pos = slave.get_max_phy_offset() if start is None else start
    while True:
        data = master.read_commitlog(pos, chunk)
        if not data:
            break
        slave.append_replica(pos, data)
        pos += len(data)


@pytest.mark.parametrize("chunk", [7, 1000, 32 * 1024])
async def test_replica_matches_master_across_files_and_split_records(make_store: StoreFactory, tmp_path: Any,
                                                                     chunk: int) -> None:
    master = await make_store(str(tmp_path / "m"))
    slave = await make_store(str(tmp_path / "s"))
    await fill(master, 150)  # ~225 KiB over 64 KiB files: BLANK ends, records split by every chunk size
    pump(master, slave, chunk)
    assert slave.get_max_phy_offset() == master.get_max_phy_offset()
    assert sum(map(len, queue_bodies(slave, "TopicA", 3).values())) == 150
    assert queue_bodies(slave, "TopicA", 3) == queue_bodies(master, "TopicA", 3)
    by_key = [m.body for m in slave.query_message("TopicA", "k77", 5)]
    assert len(by_key) == 1 and by_key == [m.body for m in master.query_message("TopicA", "k77", 5)]
    # the slave's log is the master's, byte for byte
    for name in sorted(os.listdir(tmp_path / "m" / "commitlog")):
        assert (tmp_path / "s" / "commitlog" / name).read_bytes()[:master.get_max_phy_offset()] == \
            (tmp_path / "m" / "commitlog" / name).read_bytes()[:master.get_max_phy_offset()]


async def test_replica_survives_restart_and_continues(make_store: StoreFactory, tmp_path: Any) -> None:
    master = await make_store(str(tmp_path / "m"))
    slave = await make_store(str(tmp_path / "s"))
    await fill(master, 60)
    pump(master, slave, 5000)
    await slave.shutdown()
    slave = await make_store(str(tmp_path / "s"))
    await fill(master, 60, seed=2)
    pump(master, slave, 5000)
    assert queue_bodies(slave, "TopicA", 3) == queue_bodies(master, "TopicA", 3)


async def test_replica_refuses_a_gap_and_garbage(make_store: StoreFactory, tmp_path: Any) -> None:
    master = await make_store(str(tmp_path / "m"))
    slave = await make_store(str(tmp_path / "s"))
    await fill(master, 10)
    data = master.read_commitlog(0, 1 << 20)
    with pytest.raises(ReplicaError, match="continues at 0"):
        slave.append_replica(100, data)
    with pytest.raises(ReplicaError, match="no commitlog record"):
        slave.append_replica(0, b"\x00\x00\x01\x00garbage!" * 4)
    bad = bytearray(data)
    bad[200] ^= 0xFF  # inside the first record's body: the CRC check fails
    with pytest.raises(ReplicaError, match="invalid record"):
        slave.append_replica(0, bytes(bad))
    assert slave.get_max_phy_offset() == 0
    slave.drop_replica_tail()
    slave.append_replica(0, data)  # the good bytes are taken after the bad ones were refused
    assert queue_bodies(slave, "TopicA", 3) == queue_bodies(master, "TopicA", 3)


def test_codec_round_trip_and_bounds() -> None:
    assert decode_transfer_header(encode_transfer(123, b"abc")[:12]) == (123, 3)
    assert decode_report(encode_report(1 << 40)) == 1 << 40
    with pytest.raises(ValueError):
        decode_transfer_header(encode_transfer(-1, b""))
    with pytest.raises(ValueError):
        decode_transfer_header((5).to_bytes(8, "big") + (1 << 30).to_bytes(4, "big"))
    with pytest.raises(ValueError):
        decode_report((-5).to_bytes(8, "big", signed=True))


async def test_ha_service_streams_and_acks_sync_waiters(make_store: StoreFactory, tmp_path: Any) -> None:
    master = await make_store(str(tmp_path / "m"))
    slave = await make_store(str(tmp_path / "s"))
    await fill(master, 20)  # before the slave connects: it catches up from the master's first file
    ha = HAService(master, "127.0.0.1", 0, heartbeat_interval=0.2)
    await ha.start()
    client = HAClient(slave, heartbeat_interval=0.2, reconnect_interval=0.05)
    client.start()
    try:
        assert not ha.is_slave_ok(master.get_max_phy_offset())
        assert not await ha.wait_for_slave(master.get_max_phy_offset() + 1, 0.05)  # no slave: times out
        client.update_master(f"127.0.0.1:{ha.port}")
        await apoll_until(lambda: slave.get_max_phy_offset() == master.get_max_phy_offset())
        for i in range(30):  # each write is acknowledged by the slave (SYNC_MASTER's wait)
            r = await master.put_messages([msg(body=b"x" * (100 + i), queue_id=i % 3)])
            assert r.ok
            assert ha.is_slave_ok(master.get_max_phy_offset())
            assert await ha.wait_for_slave(master.get_max_phy_offset(), 5.0)
        assert queue_bodies(slave, "TopicA", 3) == queue_bodies(master, "TopicA", 3)
        # the master goes away: the slave keeps what it has and reconnects when it is back
        port = ha.port
        await ha.shutdown()
        await apoll_until(lambda: not client.connected)
        await fill(master, 5, seed=3)
        ha = HAService(master, "127.0.0.1", port, heartbeat_interval=0.2)
        await ha.start()
        await apoll_until(lambda: slave.get_max_phy_offset() == master.get_max_phy_offset())
        assert queue_bodies(slave, "TopicA", 3) == queue_bodies(master, "TopicA", 3)
    finally:
        await client.shutdown()
        await ha.shutdown()


async def test_ha_service_drops_a_bad_peer_and_keeps_serving(make_store: StoreFactory, tmp_path: Any) -> None:
    master = await make_store(str(tmp_path / "m"))
    await fill(master, 5)
    ha = HAService(master, "127.0.0.1", 0)
    await ha.start()
    try:
        r, w = await asyncio.open_connection("127.0.0.1", ha.port)
        w.write((-1).to_bytes(8, "big", signed=True))  # no slave reports a negative offset
        await w.drain()
        assert await asyncio.wait_for(r.read(), 5) == b""  # closed
        w.close()
        r, w = await asyncio.open_connection("127.0.0.1", ha.port)
        w.write(encode_report(0))
        await w.drain()
        offset, size = decode_transfer_header(await asyncio.wait_for(r.readexactly(12), 5))
        assert offset == 0 and size == min(32 * 1024, master.get_max_phy_offset())
        w.close()
    finally:
        await ha.shutdown()


async def test_a_deposed_master_cuts_what_it_wrote_alone_and_follows(make_store: StoreFactory, tmp_path: Any) -> None:
    a = await make_store(str(tmp_path / "a"))
    b = await make_store(str(tmp_path / "b"), power_loss_test_mode=True)
    await fill(a, 30)
    pump(a, b, 4096)
    common = a.get_max_phy_offset()
    await fill(b, 10, seed=5)  # b took writes of its own (it was master; a was elected meanwhile)
    assert b.get_max_phy_offset() > common
    await b.flush_now()  # a checkpoint past the cut; then the cut, then (below) a crash
    b.truncate_replica(common)
    assert b.get_max_phy_offset() == common
    assert [b.get_max_offset_in_queue("TopicA", q) for q in range(3)] == \
        [a.get_max_offset_in_queue("TopicA", q) for q in range(3)]
    assert queue_bodies(b, "TopicA", 3) == queue_bodies(a, "TopicA", 3)
    b.simulate_power_loss()  # a crash right after the cut: recovery must not start past the new end
    b = await make_store(str(tmp_path / "b"))
    assert b.recovered_unclean and b.get_max_phy_offset() == common
    await fill(a, 10, seed=6)
    pump(a, b, 4096)
    assert queue_bodies(b, "TopicA", 3) == queue_bodies(a, "TopicA", 3)
    assert sum(map(len, queue_bodies(b, "TopicA", 3).values())) == 40
