"""TransactionalMessageService and the END_TRANSACTION processor."""

from __future__ import annotations

from typing import Any

import pytest

from backends.broker.timer import TimerMessageService
from backends.broker.transaction import (
    TRANS_CHECK_MAX_TIME_TOPIC,
    TransactionalMessageService,
    TransactionError,
)
from backends.broker.transaction.processor import register
from backends.model import (
    TIMER_TOPIC,
    TRANS_HALF_TOPIC,
    TRANS_OP_HALF_TOPIC,
    Message,
    MessageConst,
    MessageExt,
    SysFlag,
)
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from tests.unit.timer.fake_broker import FakeClock, StandInBroker, open_store, reopen_store, store_messages

TOPIC = "TxTopic"
GROUP = "PG_tx"

OPEN_STORES: list[Any] = []


class Env:
    def __init__(self, root: str, clock: FakeClock, store: Any) -> None:
        self.root, self.clock, self.store = root, clock, store
        self.broker = StandInBroker(root, store, clock)
        self.tx = TransactionalMessageService(self.broker, clock=clock)
        self.broker.transaction_service = self.tx

    async def send_half(self, uniq: str, **props: str) -> tuple[int, int]:
        p = {
            MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX: uniq,
            MessageConst.TRANSACTION_PREPARED: "true",
            MessageConst.PRODUCER_GROUP: GROUP,
            MessageConst.TAGS: "tx",
        }
        p.update(props)
        m = Message(topic=TOPIC, body=f"body-{uniq}".encode(), properties=p, queue_id=2,
                    born_timestamp=self.clock.now)
        res = await self.broker.put_messages([m])
        assert res.ok
        return res.results[0].commitlog_offset, res.results[0].queue_offset

    def visible(self) -> list[str]:
        return [m.properties[MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX] for m in store_messages(self.store, TOPIC, 2)]

    async def restart(self) -> Env:
        await self.tx.shutdown()
        store = await reopen_store(self.root, self.clock, self.store)
        OPEN_STORES.append(store)
        env = Env(self.root, self.clock, store)
        await env.tx.start(run_loop=False)
        return env


@pytest.fixture
async def env(tmp_path: Any) -> Any:
    clock = FakeClock()
    store = await open_store(str(tmp_path), clock)
    e = Env(str(tmp_path), clock, store)
    await e.tx.start(run_loop=False)
    OPEN_STORES[:] = [store]
    yield e
    await e.tx.shutdown()
    for s in OPEN_STORES:
        try:
            await s.shutdown()
        except Exception:  # already shut down by a restart
            pass


async def test_prepare_makes_half_message(env: Env) -> None:
    m = Message(topic=TOPIC, body=b"x", properties={"TRAN_MSG": "true"}, queue_id=5)
    assert env.tx.prepare(m) is m
    assert m.topic == TRANS_HALF_TOPIC and m.queue_id == 0
    assert m.properties[MessageConst.REAL_TOPIC] == TOPIC and m.properties[MessageConst.REAL_QUEUE_ID] == "5"
    assert m.sys_flag & SysFlag.TRANSACTION_MASK == SysFlag.TRANSACTION_PREPARED_TYPE
    assert env.tx.prepare(m).topic == TRANS_HALF_TOPIC  # idempotent
    plain = Message(topic=TOPIC, body=b"x")
    assert env.tx.prepare(plain).topic == TOPIC


async def test_commit_becomes_visible_once(env: Env) -> None:
    off, qoff = await env.send_half("c1")
    assert env.visible() == []
    await env.tx.end_transaction(GROUP, off, "c1", "c1", commit=True, from_check=False,
                                 topic=TOPIC, tran_state_table_offset=qoff)
    assert env.visible() == ["c1"]
    real = store_messages(env.store, TOPIC, 2)[0]
    assert real.sys_flag & SysFlag.TRANSACTION_MASK == SysFlag.TRANSACTION_COMMIT_TYPE
    assert real.body == b"body-c1" and real.properties[MessageConst.TAGS] == "tx"
    assert real.prepared_transaction_offset == off
    for k in ("TRAN_MSG", "REAL_TOPIC", "REAL_QID"):
        assert k not in real.properties
    ops = store_messages(env.store, TRANS_OP_HALF_TOPIC)
    assert [o.body for o in ops] == [str(qoff).encode()] and ops[0].properties["TAGS"] == "d"
    with pytest.raises(TransactionError, match="already ended"):
        await env.tx.end_transaction(GROUP, off, "c1", "c1", commit=True, from_check=False)
    with pytest.raises(TransactionError, match="already ended"):
        await env.tx.end_transaction(GROUP, off, "c1", "c1", commit=False, from_check=True)
    assert env.visible() == ["c1"]
    assert env.tx.pending == {}


async def test_rollback_is_never_visible(env: Env) -> None:
    off, _ = await env.send_half("r1")
    await env.tx.end_transaction(GROUP, off, "r1", "r1", commit=False, from_check=False)
    env.clock.advance(3_600_000)
    assert await env.tx.check_once() == 0
    assert env.visible() == []
    assert env.broker.check_calls == []
    assert len(store_messages(env.store, TRANS_OP_HALF_TOPIC)) == 1


async def test_end_by_message_id_and_validation(env: Env) -> None:
    await env.send_half("m0")
    await env.tx.end_transaction(GROUP, -1, "m0", "m0", commit=True, from_check=False)  # not scanned yet
    assert env.visible() == ["m0"]
    off, qoff = await env.send_half("m1")
    with pytest.raises(TransactionError, match="producer group"):
        await env.tx.end_transaction("other", off, "m1", "m1", commit=True, from_check=False)
    with pytest.raises(TransactionError, match="state table offset"):
        await env.tx.end_transaction(GROUP, off, "m1", "m1", True, False, tran_state_table_offset=qoff + 7)
    with pytest.raises(TransactionError, match="Find prepared"):
        await env.tx.end_transaction(GROUP, -1, "unknown", "x", commit=True, from_check=False)
    with pytest.raises(TransactionError, match="Find prepared"):
        await env.tx.end_transaction(GROUP, 10**9, "m1", "x", commit=True, from_check=False)
    await env.tx.end_transaction(GROUP, -1, "m1", "m1", commit=True, from_check=False)
    assert env.visible() == ["m0", "m1"]


async def test_check_back_asks_and_resolves(env: Env) -> None:
    off, qoff = await env.send_half("k1")
    await env.send_half("k2", CHECK_IMMUNITY_TIME_IN_SECONDS="60")

    async def answer(group: str, msg: MessageExt, tid: str) -> bool:
        await env.tx.end_transaction(group, msg.commitlog_offset, msg.uniq_key or "", tid,
                                     commit=True, from_check=True, topic=msg.topic,
                                     tran_state_table_offset=msg.queue_offset)
        return True

    env.broker.check_handler = answer
    env.clock.advance(5999)  # transaction_time_out is 6000 ms
    assert await env.tx.check_once() == 0
    env.clock.advance(1)
    assert await env.tx.check_once() == 1
    group, msg, tid = env.broker.check_calls[0]
    assert group == GROUP and tid == "k1"
    assert msg.topic == TOPIC and msg.queue_id == 2
    assert msg.commitlog_offset == off and msg.queue_offset == qoff
    assert msg.properties[MessageConst.TRANSACTION_CHECK_TIMES] == "1"
    assert env.visible() == ["k1"]
    assert await env.tx.check_once() == 0  # k2 is immune for 60 s
    env.clock.advance(60_000)
    assert await env.tx.check_once() == 1
    assert env.visible() == ["k1", "k2"]
    assert await env.tx.check_once() == 0


async def test_max_checks_discards(env: Env) -> None:
    env.broker.config.transaction_check_max = 3
    off, _ = await env.send_half("x1")
    env.clock.advance(10_000)
    for i in range(3):
        assert await env.tx.check_once() == 1, i  # no producer answers
    assert len(env.broker.check_calls) == 3
    assert [c[1].properties[MessageConst.TRANSACTION_CHECK_TIMES] for c in env.broker.check_calls] == ["1", "2", "3"]
    assert await env.tx.check_once() == 0
    assert env.tx.pending == {} and env.tx.discarded_count == 1
    dropped = store_messages(env.store, TRANS_CHECK_MAX_TIME_TOPIC)
    assert [m.properties[MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX] for m in dropped] == ["x1"]
    assert env.visible() == []
    with pytest.raises(TransactionError):
        await env.tx.end_transaction(GROUP, off, "x1", "x1", commit=True, from_check=True)
    assert env.visible() == []


async def test_restart_keeps_pending_half_messages(env: Env) -> None:
    offs = {}
    for u in ("a", "b", "c", "d"):
        offs[u] = (await env.send_half(u))[0]
    await env.tx.end_transaction(GROUP, offs["b"], "b", "b", commit=True, from_check=False)
    await env.tx.end_transaction(GROUP, offs["a"], "a", "a", commit=False, from_check=False)
    env.clock.advance(10_000)
    await env.tx.check_once()  # asks c and d once
    assert sorted(c[2] for c in env.broker.check_calls) == ["c", "d"]
    env2 = await env.restart()
    assert sorted(i.uniq_key for i in env2.tx.pending.values()) == ["c", "d"]
    with pytest.raises(TransactionError, match="already ended"):
        await env2.tx.end_transaction(GROUP, offs["b"], "b", "b", commit=True, from_check=False)
    await env2.tx.check_once()
    assert [c[1].properties[MessageConst.TRANSACTION_CHECK_TIMES] for c in env2.broker.check_calls] == ["2", "2"]
    await env2.tx.end_transaction(GROUP, offs["d"], "d", "d", commit=True, from_check=True)
    env3 = Env(env2.root, env2.clock, env2.store)  # no shutdown: as after a crash
    await env3.tx.start(run_loop=False)
    assert [i.uniq_key for i in env3.tx.pending.values()] == ["c"]
    await env3.tx.end_transaction(GROUP, offs["c"], "c", "c", commit=True, from_check=True)
    assert env3.visible() == ["b", "d", "c"]
    env4 = await env3.restart()
    assert env4.tx.pending == {}
    await env4.tx.shutdown()


async def test_committed_timed_transaction_goes_through_the_timer(env: Env) -> None:
    timer = TimerMessageService(env.broker, clock=env.clock)
    env.broker.timer_service = timer
    await timer.start(run_loop=False)
    off, _ = await env.send_half("t1", TIMER_DELIVER_MS=str(env.clock.now + 5000))
    assert store_messages(env.store, TIMER_TOPIC) == []  # the half is not timed
    await env.tx.end_transaction(GROUP, off, "t1", "t1", commit=True, from_check=False)
    assert env.visible() == []
    env.clock.advance(5000)
    await timer.run_once()
    assert env.visible() == ["t1"]
    await timer.shutdown()


class RecordingServer:
    def __init__(self) -> None:
        self.processors: dict[int, Any] = {}

    def register_processor(self, code: int, processor: Any) -> None:
        self.processors[code] = processor


async def test_end_transaction_processor(env: Env) -> None:
    server = RecordingServer()
    register(server, env.broker)
    proc = server.processors[RequestCode.END_TRANSACTION]
    off, qoff = await env.send_half("p1")

    def req(kind: int, **extra: str) -> RemotingCommand:
        fields = {
            "producerGroup": GROUP, "tranStateTableOffset": str(qoff), "commitLogOffset": str(off),
            "commitOrRollback": str(kind), "fromTransactionCheck": "false", "msgId": "p1",
            "transactionId": "p1", "topic": TOPIC,
        }
        fields.update(extra)
        return RemotingCommand.request(RequestCode.END_TRANSACTION, fields)

    assert await proc(req(0), None) is None  # unknown: nothing to do
    assert env.visible() == []
    resp = await proc(req(8), None)
    assert resp.code == ResponseCode.SUCCESS
    assert env.visible() == ["p1"]
    resp = await proc(req(12), None)
    assert resp.code == ResponseCode.SYSTEM_ERROR and "already ended" in (resp.remark or "")
    resp = await proc(req(8, commitLogOffset="123456789"), None)
    assert resp.code == ResponseCode.SYSTEM_ERROR
    resp = await proc(req(5), None)
    assert resp.code == ResponseCode.SYSTEM_ERROR
    resp = await proc(RemotingCommand.request(RequestCode.END_TRANSACTION, {}), None)
    assert resp.code == ResponseCode.SYSTEM_ERROR


async def test_check_loop_runs_every_interval(tmp_path: Any) -> None:
    import asyncio
    import time

    clock = FakeClock()
    store = await open_store(str(tmp_path / "loop"), clock)
    broker = StandInBroker(str(tmp_path / "loop"), store, clock)
    tx = TransactionalMessageService(broker, clock=clock, check_interval_ms=20)
    broker.transaction_service = tx
    await tx.start()
    try:
        m = Message(topic=TOPIC, body=b"x", properties={"TRAN_MSG": "true", "PGROUP": GROUP, "UNIQ_KEY": "L1"},
                    born_timestamp=clock.now)
        await broker.put_messages([m])
        clock.advance(6000)
        deadline = time.monotonic() + 5
        while not broker.check_calls and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert [c[2] for c in broker.check_calls][:1] == ["L1"]
    finally:
        await tx.shutdown()
        await store.shutdown()
