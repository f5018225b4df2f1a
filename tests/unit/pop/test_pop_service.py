from __future__ import annotations

import asyncio
from typing import Any

import pytest

from backends.api import BackendError, PopResult, PopStatus
from backends.broker.pop import extra_info as xi
from backends.model import MessageConst, SubscriptionGroupConfig, TopicConfig, dlq_topic
from backends.remoting.codes import ResponseCode
from tests.harness import apoll_until
from tests.unit.pop.conftest import GROUP, TOPIC, Env, bodies, handles


def earliest(env: Env, group: str = GROUP, **kw: object) -> None:
    cfg = SubscriptionGroupConfig(group, attributes={"consumeFromWhere": "EARLIEST"}, **kw)  # type: ignore[arg-type]
    env.broker.subscription_group_manager.update_subscription_group_config(cfg)


async def test_pop_ack_and_handle_format(env: Env) -> None:
    earliest(env)
    await env.send(3, queue_id=1)
    res = await env.pop(queue_id=1, invisible=20_000)
    assert res.status is PopStatus.FOUND
    assert bodies(res.messages) == ["m0", "m1", "m2"]
    for i, m in enumerate(res.messages):
        parts = m.properties[MessageConst.POP_CK].split(" ")
        assert len(parts) == 8
        assert parts[0] == "0" and parts[1] == str(env.clock.now) and parts[2] == "20000"
        assert parts[4] == "0" and parts[5] == "broker-a" and parts[6] == "1" and parts[7] == str(i)
        assert m.reconsume_times == 0 and m.queue_offset == i
    assert res.pop_time == env.clock.now and res.invisible_time == 20_000
    for h in handles(res.messages):
        await env.service.ack(GROUP, TOPIC, h)
    assert env.broker.consumer_offset_manager.query_offset(GROUP, TOPIC, 1) == 3
    again = await env.pop(queue_id=1)
    assert again.status is PopStatus.NO_NEW_MSG and again.messages == []
    env.clock.advance(60_000)
    await env.service.revive_once()
    assert (await env.pop(queue_id=1)).messages == []


async def test_redelivery_after_invisible_time_with_attempt_plus_one(env: Env) -> None:
    earliest(env)
    await env.send(2)
    first = await env.pop(queue_id=0, invisible=10_000)
    assert bodies(first.messages) == ["m0", "m1"]
    await env.service.ack(GROUP, TOPIC, handles(first.messages)[1])
    env.clock.advance(9_999)
    assert (await env.pop(queue_id=0)).messages == []
    env.clock.advance(2)
    second = await env.pop(queue_id=0, invisible=10_000)
    assert bodies(second.messages) == ["m0"]
    assert second.messages[0].reconsume_times == 1
    # the first handle cannot change the current delivery ...
    with pytest.raises(BackendError) as ei:
        await env.service.change_invisible_time(GROUP, TOPIC, handles(first.messages)[0], 1_000)
    assert ei.value.code == ResponseCode.NO_MESSAGE
    env.clock.advance(10_001)
    await env.service.revive_once()
    third = await env.pop(queue_id=0, invisible=10_000)
    assert bodies(third.messages) == ["m0"] and third.messages[0].reconsume_times == 2
    # ... but it still acks the message: the first consumer did process it
    await env.service.ack(GROUP, TOPIC, handles(first.messages)[0])
    assert env.broker.consumer_offset_manager.query_offset(GROUP, TOPIC, 0) == 2
    await env.service.ack(GROUP, TOPIC, handles(third.messages)[0])  # idempotent
    env.clock.advance(60_000)
    await env.service.revive_once()
    assert (await env.pop(queue_id=0)).messages == []
    # a handle with a pop time no delivery had is refused
    info = xi.parse(handles(third.messages)[0])
    forged = xi.build(info.ck_queue_offset, info.pop_time + 10**6, info.invisible_time, 0, "0", "broker-a", 0, 2)
    await env.send(1)
    assert len((await env.pop(queue_id=0)).messages) == 1  # offset 2 is in flight
    with pytest.raises(BackendError) as ei:
        await env.service.ack(GROUP, TOPIC, forged)
    assert ei.value.code == ResponseCode.NO_MESSAGE


async def test_ack_of_expired_but_not_yet_redelivered_message_is_accepted(env: Env) -> None:
    earliest(env)
    await env.send(1)
    first = await env.pop(queue_id=0, invisible=10_000)
    env.clock.advance(20_000)
    await env.service.revive_once()
    await env.service.ack(GROUP, TOPIC, handles(first.messages)[0])
    assert (await env.pop(queue_id=0)).messages == []


async def test_change_invisible_time_old_and_new_handle(env: Env) -> None:
    earliest(env)
    await env.send(1)
    first = await env.pop(queue_id=0, invisible=10_000)
    old = handles(first.messages)[0]
    env.clock.advance(5_000)
    new = await env.service.change_invisible_time(GROUP, TOPIC, old, 60_000)
    assert new != old
    info = xi.parse(new)
    assert info.pop_time == env.clock.now and info.invisible_time == 60_000 and info.queue_offset == 0
    env.clock.advance(20_000)  # past the original deadline, not the new one
    await env.service.revive_once()
    assert (await env.pop(queue_id=0)).messages == []
    with pytest.raises(BackendError) as ei:
        await env.service.change_invisible_time(GROUP, TOPIC, old, 1_000)
    assert ei.value.code == ResponseCode.NO_MESSAGE
    await env.service.ack(GROUP, TOPIC, old)  # the old handle still acks the message
    await env.service.ack(GROUP, TOPIC, new)  # and the new one then answers OK (already acked)
    env.clock.advance(120_000)
    await env.service.revive_once()
    assert (await env.pop(queue_id=0)).messages == []


async def test_change_invisible_time_zero_makes_message_visible_now(env: Env) -> None:
    earliest(env)
    await env.send(1)
    first = await env.pop(queue_id=0, invisible=60_000)
    await env.service.change_invisible_time(GROUP, TOPIC, handles(first.messages)[0], 0)
    again = await env.pop(queue_id=0)
    assert bodies(again.messages) == ["m0"] and again.messages[0].reconsume_times == 1


async def test_dead_letter_after_max_attempts(env: Env) -> None:
    earliest(env, retry_max_times=2)  # 3 deliveries
    await env.send(1)
    for attempt in range(3):
        res = await env.pop(queue_id=0, invisible=10_000)
        assert bodies(res.messages) == ["m0"]
        assert res.messages[0].reconsume_times == attempt
        env.clock.advance(10_001)
    await env.service.revive_once()
    dlq = dlq_topic(GROUP)
    tc = env.broker.topic_config_manager.select_topic_config(dlq)
    assert tc is not None and tc.read_queue_nums == 1
    store = env.broker.message_store
    got = store.get_messages(dlq, 0, 0, 10)
    assert len(got.records) == 1
    from backends.store.record import decode_record

    m = decode_record(got.records[0])
    assert m.body == b"m0"
    assert m.properties[MessageConst.DLQ_ORIGIN_TOPIC] == TOPIC
    assert m.properties[MessageConst.DLQ_ORIGIN_MESSAGE_ID] == "m-0-0"
    assert MessageConst.POP_CK not in m.properties
    assert (await env.pop(queue_id=0)).messages == []
    assert env.broker.consumer_offset_manager.query_offset(GROUP, TOPIC, 0) == 1
    assert env.service.inflight_count(GROUP) == 0


async def test_forward_to_dlq_moves_and_acks(env: Env) -> None:
    earliest(env)
    await env.send(2)
    res = await env.pop(queue_id=0, n=1)
    await env.service.forward_to_dlq(GROUP, TOPIC, handles(res.messages)[0], 16)
    got = env.broker.message_store.get_messages(dlq_topic(GROUP), 0, 0, 10)
    assert len(got.records) == 1
    env.clock.advance(3_600_000)
    await env.service.revive_once()
    nxt = await env.pop(queue_id=0)
    assert bodies(nxt.messages) == ["m1"]
    with pytest.raises(BackendError):
        await env.service.forward_to_dlq(GROUP, TOPIC, "1 2 3", 16)


async def test_tag_filter(env: Env) -> None:
    earliest(env)
    await env.send(2, tag="a", prefix="a")
    await env.send(2, tag="b", prefix="b")
    await env.send(2, tag="c", prefix="c")
    res = await env.pop(queue_id=0, expression="a || c")
    assert bodies(res.messages) == ["a0", "a1", "c0", "c1"]
    for h in handles(res.messages):
        await env.service.ack(GROUP, TOPIC, h)
    assert env.broker.consumer_offset_manager.query_offset(GROUP, TOPIC, 0) == 6
    env.broker.config.enable_property_filter = True
    with pytest.raises(BackendError) as ei:
        await env.pop(queue_id=0, expression_type="SQL92", expression="a >")
    assert ei.value.code == ResponseCode.SUBSCRIPTION_PARSE_FAILED


async def test_sql92_filter(env: Env) -> None:
    earliest(env)
    await env.send(2, tag="x", prefix="x")
    await env.send(1, tag="y", prefix="y")
    with pytest.raises(BackendError) as ei:  # RocketMQ's default: enablePropertyFilter=false
        await env.pop(queue_id=0, expression_type="SQL92", expression="TAGS = 'y'")
    assert ei.value.code == ResponseCode.SYSTEM_ERROR
    env.broker.config.enable_property_filter = True
    res = await env.pop(queue_id=0, expression_type="SQL92", expression="TAGS = 'y'")
    assert bodies(res.messages) == ["y0"]


async def test_fifo_blocks_queue_and_redelivers_unacked_first(env: Env) -> None:
    earliest(env)
    await env.send(3, queue_id=2)
    first = await env.pop(queue_id=2, n=1, order=True, invisible=10_000)
    assert bodies(first.messages) == ["m0"]
    # while m0 is in flight the queue gives nothing to the FIFO group, even with -1
    assert (await env.pop(queue_id=2, order=True)).messages == []
    assert (await env.pop(queue_id=-1, order=True)).messages == []
    env.clock.advance(10_001)
    again = await env.pop(queue_id=2, n=2, order=True)
    assert bodies(again.messages) == ["m0", "m1"]
    assert again.messages[0].reconsume_times == 1 and again.messages[1].reconsume_times == 0
    for h in handles(again.messages):
        await env.service.ack(GROUP, TOPIC, h)
    last = await env.pop(queue_id=2, order=True)
    assert bodies(last.messages) == ["m2"]


async def test_long_polling_is_woken_by_append(env: Env) -> None:
    earliest(env)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    task = asyncio.create_task(env.pop(queue_id=-1, poll_time_ms=8_000))
    await asyncio.sleep(0.05)
    assert not task.done()
    await env.send(1, queue_id=3)
    res = await asyncio.wait_for(task, 5)
    assert bodies(res.messages) == ["m0"]
    assert loop.time() - t0 < 4


async def test_an_arrival_wakes_one_long_poll_per_subscription(env: Env) -> None:
    # two consumers of one group wait, a second group waits too: one message wakes one pop of the
    # first group (the other keeps waiting instead of racing for nothing) and the second group's pop
    earliest(env)
    earliest(env, group="OtherGroup")
    a = asyncio.create_task(env.pop(queue_id=-1, poll_time_ms=1_500))
    b = asyncio.create_task(env.pop(queue_id=-1, poll_time_ms=1_500))
    other = asyncio.create_task(env.pop(queue_id=-1, poll_time_ms=8_000, group="OtherGroup"))
    await apoll_until(lambda: env.service._waiter_count == 3, timeout=5.0)
    pops = 0
    real_pop_once = env.service._pop_once

    async def counting_pop_once(*a: Any, **kw: Any) -> PopResult:
        nonlocal pops
        pops += 1
        return await real_pop_once(*a, **kw)

    env.service._pop_once = counting_pop_once  # type: ignore[method-assign]
    await env.send(1, queue_id=3)
    done, pending = await asyncio.wait({a, b}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1 and len(pending) == 1
    assert bodies(done.pop().result().messages) == ["m0"]
    assert bodies((await asyncio.wait_for(other, 5)).messages) == ["m0"]
    assert pops == 2  # the waiting consumer of the first group was not woken to find nothing
    # the pop left waiting times out empty (nothing was lost to it)
    res = await asyncio.wait_for(pending.pop(), 5)
    assert res.status is PopStatus.POLLING_NOT_FOUND


async def test_a_full_batch_passes_the_wake_on(env: Env) -> None:
    # 3 messages, pops of at most 2: the pop woken first takes 2 and wakes the next waiter for the rest
    earliest(env)
    a = asyncio.create_task(env.pop(2, queue_id=-1, poll_time_ms=8_000))
    b = asyncio.create_task(env.pop(2, queue_id=-1, poll_time_ms=8_000))
    await apoll_until(lambda: env.service._waiter_count == 2, timeout=5.0)
    await env.send(3, queue_id=3)
    got = [await asyncio.wait_for(t, 5) for t in (a, b)]
    assert sorted(len(r.messages) for r in got) == [1, 2]


async def test_long_polling_times_out(env: Env) -> None:
    earliest(env)
    res = await asyncio.wait_for(env.pop(queue_id=0, poll_time_ms=100), 5)
    assert res.status is PopStatus.POLLING_NOT_FOUND
    res = await env.pop(queue_id=0)
    assert res.status is PopStatus.NO_NEW_MSG


async def test_concurrent_consumers_never_share_in_flight_messages(env: Env) -> None:
    earliest(env)
    for q in range(4):
        await env.send(25, queue_id=q)

    async def consumer() -> list[tuple[int, int]]:
        got: list[tuple[int, int]] = []
        for _ in range(10):
            res = await env.pop(n=7)
            got.extend((m.queue_id, m.queue_offset) for m in res.messages)
        return got

    results = await asyncio.gather(*(consumer() for _ in range(4)))
    allm = [x for r in results for x in r]
    assert len(allm) == 100 and len(set(allm)) == 100


async def test_restart_redelivers_unacked_and_not_acked(env: Env) -> None:
    earliest(env)
    await env.send(5)
    res = await env.pop(queue_id=0, invisible=10_000)
    hs = handles(res.messages)
    for i in (0, 2, 4):
        await env.service.ack(GROUP, TOPIC, hs[i])
    await env.restart()  # no clean shutdown of the POP service
    # still invisible right after the restart
    assert (await env.pop(queue_id=0)).messages == []
    # the old handles of in-flight messages still work after the restart ...
    await env.service.ack(GROUP, TOPIC, hs[3])
    env.clock.advance(10_001)
    await env.service.revive_once()
    again = await env.pop(queue_id=0)
    assert bodies(again.messages) == ["m1"]
    assert again.messages[0].reconsume_times == 1
    await env.service.ack(GROUP, TOPIC, handles(again.messages)[0])
    await env.restart()
    env.clock.advance(100_000)
    await env.service.revive_once()
    assert (await env.pop(queue_id=0)).messages == []
    await env.send(1)
    assert bodies((await env.pop(queue_id=0)).messages) == ["m0"]  # the new message (offset 5)


async def test_restart_after_snapshot_replays_from_snapshot(env: Env) -> None:
    earliest(env)
    await env.send(3)
    res = await env.pop(queue_id=0, invisible=10_000)
    await env.service.ack(GROUP, TOPIC, handles(res.messages)[1])
    await env.service.snapshot()
    await env.service.ack(GROUP, TOPIC, handles(res.messages)[2])
    await env.restart()
    env.clock.advance(10_001)
    again = await env.pop(queue_id=0)
    assert bodies(again.messages) == ["m0"]


async def test_new_group_starts_at_latest_and_start_position_attributes(env: Env) -> None:
    await env.send(3)
    res = await env.pop(queue_id=0, group="G-new")
    assert res.messages == []
    await env.send(1, prefix="late")
    assert bodies((await env.pop(queue_id=0, group="G-new")).messages) == ["late0"]
    env.broker.subscription_group_manager.update_subscription_group_config(
        SubscriptionGroupConfig("G-first", attributes={"consumeFromWhere": "EARLIEST"}))
    assert len((await env.pop(queue_id=0, group="G-first")).messages) == 4
    env.broker.subscription_group_manager.update_subscription_group_config(
        SubscriptionGroupConfig("G-ts", attributes={"consumeFromWhere": "TIMESTAMP",
                                                     "consumeTimestamp": str(2**50)}))
    assert (await env.pop(queue_id=0, group="G-ts")).messages == []


async def test_malformed_and_unknown_handles(env: Env) -> None:
    earliest(env)
    await env.send(2)
    for bad in ("", "garbage", "1 2 3 4 0 broker-a 0", "a b c d 0 broker-a 0 0", "0 1 2 0 9 broker-a 0 0",
                "0 1 2 0 0 broker-a -1 0"):
        with pytest.raises(BackendError) as ei:
            await env.service.ack(GROUP, TOPIC, bad)
        assert ei.value.code in (ResponseCode.INVALID_PARAMETER, ResponseCode.MESSAGE_ILLEGAL)
    with pytest.raises(BackendError) as ei:
        await env.service.ack(GROUP, TOPIC, "0 1 2 0 0 broker-a 0 99")
    assert ei.value.code == ResponseCode.NO_MESSAGE
    with pytest.raises(BackendError) as ei:
        await env.service.ack(GROUP, TOPIC, "0 1 2 0 0 broker-a 0 1")  # never popped
    assert ei.value.code == ResponseCode.NO_MESSAGE
    with pytest.raises(BackendError) as ei:
        await env.service.ack(GROUP, "NoSuchTopic", "0 1 2 0 0 broker-a 0 0")
    assert ei.value.code == ResponseCode.TOPIC_NOT_EXIST


async def test_batch_ack_reports_per_entry(env: Env) -> None:
    earliest(env)
    await env.send(3)
    res = await env.pop(queue_id=0)
    hs = handles(res.messages)
    out = await env.service.batch_ack(GROUP, TOPIC, [hs[0], "bad", hs[2]])
    assert out[0] is None and out[2] is None
    assert isinstance(out[1], BackendError) and out[1].code == ResponseCode.INVALID_PARAMETER
    assert env.service.inflight_count(GROUP) == 1


async def test_attempt_id_returns_same_messages(env: Env) -> None:
    earliest(env)
    await env.send(4)
    a = await env.pop(queue_id=0, n=2, attempt_id="att-1")
    b = await env.pop(queue_id=0, n=2, attempt_id="att-1")
    assert handles(a.messages) == handles(b.messages)
    c = await env.pop(queue_id=0, n=2, attempt_id="att-2")
    assert bodies(c.messages) == ["m2", "m3"]


async def test_bad_requests(env: Env) -> None:
    with pytest.raises(BackendError) as ei:
        await env.pop(topic="Nope")
    assert ei.value.code == ResponseCode.TOPIC_NOT_EXIST
    with pytest.raises(BackendError):
        await env.pop(n=33)
    with pytest.raises(BackendError):
        await env.pop(queue_id=9)
    env.broker.topic_config_manager.update_topic_config(TopicConfig("WriteOnly", 1, 1, perm=2))
    with pytest.raises(BackendError) as ei:
        await env.pop(topic="WriteOnly")
    assert ei.value.code == ResponseCode.NO_PERMISSION


async def test_shutdown_is_prompt_while_deadlines_are_due(env: Env) -> None:
    earliest(env)
    await env.send(2)
    await env.pop(queue_id=0, invisible=1)  # due in 1 ms of the manual clock: the revive task spins
    await asyncio.sleep(0.05)
    await asyncio.wait_for(env.service.shutdown(), 3)
    assert env.service._revive_task is None


async def test_state_log_write_failure_fails_the_pop(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from backends.model import PutMessageResult, PutMessageStatus

    earliest(env)
    await env.send(1)

    async def failing_put(messages: list[object]) -> PutMessageResult:
        return PutMessageResult(PutMessageStatus.OS_PAGE_CACHE_BUSY, error="injected")

    monkeypatch.setattr(env.broker.message_store, "put_messages", failing_put)
    with pytest.raises(BackendError) as ei:
        await env.pop(queue_id=0)
    assert ei.value.code == ResponseCode.SYSTEM_ERROR
    monkeypatch.undo()
    # the handed-out message was never confirmed: it comes back after its invisible time
    env.clock.advance(30_001)
    again = await env.pop(queue_id=0)
    assert bodies(again.messages) == ["m0"]


async def test_power_loss_keeps_pop_state(sync_env: Env) -> None:
    env = sync_env
    earliest(env)
    await env.send(6)
    first = await env.pop(queue_id=0, n=4, invisible=10_000)
    hs = handles(first.messages)
    await env.service.ack(GROUP, TOPIC, hs[1])
    await env.service.batch_ack(GROUP, TOPIC, [hs[3]])
    changed = await env.service.change_invisible_time(GROUP, TOPIC, hs[2], 100_000)
    assert not (env.root / "config" / "consumerOffset.json").exists()  # nothing but the log survives
    await env.power_loss_restart()
    # right after the crash: m0 and m2 are still invisible, m4 and m5 were never handed out
    assert bodies((await env.pop(queue_id=0)).messages) == ["m4", "m5"]
    env.clock.advance(10_001)
    await env.service.revive_once()
    again = await env.pop(queue_id=0)
    assert bodies(again.messages) == ["m0"] and again.messages[0].reconsume_times == 1
    await env.service.ack(GROUP, TOPIC, changed)  # a handle from before the crash still acks
    env.clock.advance(200_000)
    await env.service.revive_once()
    assert sorted(bodies((await env.pop(queue_id=0)).messages)) == ["m0", "m4", "m5"]


async def test_offset_reset_by_admin_restarts_the_queue(env: Env) -> None:
    earliest(env)
    await env.send(3)
    res = await env.pop(queue_id=0, invisible=10_000)
    await env.service.ack(GROUP, TOPIC, handles(res.messages)[0])
    assert env.broker.consumer_offset_manager.query_offset(GROUP, TOPIC, 0) == 1
    env.broker.consumer_offset_manager.commit_offset("RESET", GROUP, TOPIC, 0, 0)  # mqadmin resetOffsetByTime
    env.clock.advance(1)  # handles of one message differ by pop time (ms)
    again = await env.pop(queue_id=0, invisible=10_000)
    assert bodies(again.messages) == ["m0", "m1", "m2"]
    assert env.service.inflight_count(GROUP) == 3
    await env.restart()
    env.clock.advance(10_001)
    assert bodies((await env.pop(queue_id=0)).messages) == ["m0", "m1", "m2"]


async def test_memory_follows_what_is_in_flight(env: Env) -> None:
    earliest(env)
    await env.send(32)
    await env.send(32)
    for _ in range(2):
        res = await env.pop(queue_id=0, invisible=12 * 3600 * 1000)
        hs = handles(res.messages)
        for h in hs[1:]:  # the first one stays unacked, the rest acked out of order
            await env.service.ack(GROUP, TOPIC, h)
    qs = next(iter(env.service.queue_states(GROUP, TOPIC)))
    assert len(qs.inflight) == 2
    from backends.broker.pop.service import QueueState

    # compaction bounds the lazily cleaned heaps
    for _ in range(3000):
        qs.expiry.append((2**60, 10**9, 0))
        qs.outstanding.append(10**9)
    qs._compact()
    assert isinstance(qs, QueueState) and len(qs.expiry) == 2 and len(qs.outstanding) == 2
    assert qs.lowest_unacked() == 0


async def test_shutdown_ends_long_polls(env: Env) -> None:
    earliest(env)
    task = asyncio.create_task(env.pop(queue_id=0, poll_time_ms=8_000))
    await asyncio.sleep(0.05)
    await env.service.shutdown()
    res = await asyncio.wait_for(task, 2)
    assert res.status is PopStatus.POLLING_NOT_FOUND


async def test_replay_position_past_the_log_replays_everything(env: Env) -> None:
    from backends.broker.pop.state_log import POP_STATE_GROUP

    earliest(env)
    await env.send(3)
    res = await env.pop(queue_id=0, invisible=10_000)
    await env.service.ack(GROUP, TOPIC, handles(res.messages)[0])
    # as if a crash had cut the log after the position of a newer snapshot was saved
    env.broker.consumer_offset_manager.commit_offset("POP", POP_STATE_GROUP, env.service.revive_topic, 0, 10**6)
    env.broker.consumer_offset_manager.persist()
    await env.restart()
    assert (await env.pop(queue_id=0)).messages == []  # m1, m2 still in flight
    env.clock.advance(10_001)
    again = await env.pop(queue_id=0, invisible=10_000)
    assert bodies(again.messages) == ["m1", "m2"]
    await env.service.ack(GROUP, TOPIC, handles(again.messages)[0])
    # a position in range that does not name a snapshot is not trusted either
    env.broker.consumer_offset_manager.commit_offset("POP", POP_STATE_GROUP, env.service.revive_topic, 0, 2)
    env.broker.consumer_offset_manager.persist()
    await env.restart()
    env.clock.advance(10_001)
    assert bodies((await env.pop(queue_id=0)).messages) == ["m2"]


async def test_snapshot_in_many_chunks_survives_restart(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    import backends.broker.pop.service as svc_mod

    monkeypatch.setattr(svc_mod, "SNAPSHOT_CHUNK_BYTES", 10)  # one queue per chunk
    earliest(env)
    for q in range(4):
        await env.send(2, queue_id=q)
    res = await env.pop(invisible=10_000)
    assert len(res.messages) == 8
    acked = res.messages[::2]
    for m in acked:
        await env.service.ack(GROUP, TOPIC, m.properties[MessageConst.POP_CK])
    await env.service.snapshot()
    await env.restart()  # replays from the chunked snapshot
    env.clock.advance(10_001)
    again = await env.pop()
    assert sorted(bodies(again.messages)) == sorted(bodies(res.messages[1::2]))


def test_snapshot_cut_short_is_ignored() -> None:
    from backends.broker.pop.state_log import PopStateLog

    applied: list[dict[str, object]] = []
    seq = [
        {"k": "S", "first": True, "n": 3, "qs": [["g", "t", 0, 5, []]]},
        {"k": "S", "part": True, "qs": [["g", "t", 1, 6, []]]},
        {"k": "S", "part": True, "qs": [["g", "t", 2, 7, []]]},
        {"k": "S", "first": True, "n": 2, "qs": [["g", "t", 0, 9, []]]},  # cut short by a crash
        {"k": "C", "g": "g", "t": "t", "q": 0, "n": 9, "e": []},
    ]
    snap = None
    for obj in seq:
        snap = PopStateLog._collect(obj, snap, applied.append)
    assert applied[0] == {"k": "S", "first": True,
                          "qs": [["g", "t", 0, 5, []], ["g", "t", 1, 6, []], ["g", "t", 2, 7, []]]}
    assert applied[1]["k"] == "C" and len(applied) == 2


async def test_long_polling_is_woken_by_expiry(env: Env) -> None:
    earliest(env)
    await env.send(1)
    await env.pop(queue_id=0, invisible=10_000)
    task = asyncio.create_task(env.pop(queue_id=0, poll_time_ms=8_000))
    await asyncio.sleep(0.05)
    assert not task.done()
    env.clock.advance(10_001)
    await env.service.revive_once()
    res = await asyncio.wait_for(task, 3)
    assert bodies(res.messages) == ["m0"] and res.messages[0].reconsume_times == 1


async def test_state_of_deleted_topics_is_dropped(env: Env) -> None:
    earliest(env)
    env.broker.topic_config_manager.update_topic_config(TopicConfig("Gone", 1, 1))
    await env.pop(topic="Gone", queue_id=0)
    assert any(k[1] == "Gone" for k in env.service.states)
    env.broker.topic_config_manager.delete_topic("Gone")
    env.service._last_cleanup = -1e9
    await env.service.revive_once()
    assert not any(k[1] == "Gone" for k in env.service.states)


async def test_fifo_long_poll_is_woken_by_the_ack_that_unblocks_the_queue(env: Env) -> None:
    earliest(env)
    await env.send(2, queue_id=0)
    first = await env.pop(queue_id=0, n=1, order=True)
    assert bodies(first.messages) == ["m0"]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    task = asyncio.create_task(env.pop(queue_id=0, order=True, poll_time_ms=8_000))
    await asyncio.sleep(0.05)
    assert not task.done()
    await env.service.ack(GROUP, TOPIC, handles(first.messages)[0])
    res = await asyncio.wait_for(task, 5)
    assert bodies(res.messages) == ["m1"] and loop.time() - t0 < 4
