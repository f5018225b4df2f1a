"""TimerMessageService: interception, on-time delivery, restart rebuild, recall."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest

from backends.broker.timer import (
    RecallError,
    TimerMessageError,
    TimerMessageService,
    build_handle,
    decode_handle,
)
from backends.model import TIMER_TOPIC, Message, MessageConst, SysFlag
from tests.unit.timer.fake_broker import FakeClock, StandInBroker, open_store, reopen_store, store_messages

TOPIC = "TopicTest"


def msg(uniq: str, **props: str) -> Message:
    p = {MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX: uniq, MessageConst.TAGS: "t"}
    p.update(props)
    return Message(topic=TOPIC, body=f"body-{uniq}".encode(), properties=p, queue_id=3)

OPEN_STORES: list[Any] = []


class Env:
    def __init__(self, root: str, clock: FakeClock, store: Any) -> None:
        self.root, self.clock, self.store = root, clock, store
        self.broker = StandInBroker(root, store, clock)
        self.timer = TimerMessageService(self.broker, clock=clock, persist_interval_ms=0)
        self.broker.timer_service = self.timer

    def delivered(self) -> list[str]:
        return [m.properties[MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX] for m in store_messages(self.store, TOPIC, 3)]

    async def restart(self) -> Env:
        await self.timer.shutdown()
        store = await reopen_store(self.root, self.clock, self.store)
        OPEN_STORES.append(store)
        env = Env(self.root, self.clock, store)
        await env.timer.start(run_loop=False)
        return env


@pytest.fixture
async def env(tmp_path: Any) -> Any:
    clock = FakeClock()
    store = await open_store(str(tmp_path), clock)
    e = Env(str(tmp_path), clock, store)
    await e.timer.start(run_loop=False)
    OPEN_STORES[:] = [store]
    yield e
    await e.timer.shutdown()
    for s in OPEN_STORES:
        try:
            await s.shutdown()
        except Exception:  # already shut down by a restart
            pass


# --- interception ----------------------------------------------------------------------------------


async def test_intercept_rewrites_future_message(env: Env) -> None:
    due = env.clock.now + 5000
    m = env.timer.intercept(msg("u1", TIMER_DELIVER_MS=str(due)))
    assert m.topic == TIMER_TOPIC and m.queue_id == 0
    assert m.properties[MessageConst.REAL_TOPIC] == TOPIC
    assert m.properties[MessageConst.REAL_QUEUE_ID] == "3"
    assert m.properties[MessageConst.TIMER_OUT_MS] == str(due)
    # intercepting again does nothing
    assert env.timer.intercept(m).topic == TIMER_TOPIC


@pytest.mark.parametrize("deliver_offset", [0, -1, -100000])
async def test_intercept_leaves_due_message_alone(env: Env, deliver_offset: int) -> None:
    m = env.timer.intercept(msg("u1", TIMER_DELIVER_MS=str(env.clock.now + deliver_offset)))
    assert m.topic == TOPIC and MessageConst.REAL_TOPIC not in m.properties


async def test_intercept_relative_delays(env: Env) -> None:
    m = env.timer.intercept(msg("u1", TIMER_DELAY_SEC="7"))
    assert m.properties[MessageConst.TIMER_OUT_MS] == str(env.clock.now + 7000)
    m = env.timer.intercept(msg("u2", TIMER_DELAY_MS="1500"))
    assert m.properties[MessageConst.TIMER_OUT_MS] == str(env.clock.now + 1500)


@pytest.mark.parametrize(("level", "delay_ms"), [("1", 1000), ("3", 10000), ("5", 60000), ("18", 7200000), ("99", 7200000)])
async def test_intercept_delay_levels(env: Env, level: str, delay_ms: int) -> None:
    m = env.timer.intercept(msg("u1", DELAY=level, TIMER_DELIVER_MS=str(env.clock.now + 10**9)))
    assert m.topic == TIMER_TOPIC
    assert m.properties[MessageConst.TIMER_OUT_MS] == str(env.clock.now + delay_ms)
    assert MessageConst.TIMER_DELIVER_MS not in m.properties  # a level wins, as in RocketMQ


async def test_intercept_level_zero_is_not_delayed(env: Env) -> None:
    assert env.timer.intercept(msg("u1", DELAY="0")).topic == TOPIC


async def test_too_far_is_rejected(env: Env) -> None:
    limit = env.broker.config.timer_max_delay_sec * 1000
    env.timer.intercept(msg("ok", TIMER_DELIVER_MS=str(env.clock.now + limit)))
    with pytest.raises(TimerMessageError, match="timerMaxDelaySec") as ei:
        env.timer.intercept(msg("u1", TIMER_DELIVER_MS=str(env.clock.now + limit + 1)))
    assert ei.value.code == 13
    with pytest.raises(TimerMessageError):
        env.timer.intercept(msg("u2", TIMER_DELAY_SEC=str(limit // 1000 + 1)))
    with pytest.raises(TimerMessageError):
        env.timer.intercept(msg("u3", TIMER_DELIVER_MS="soon"))
    with pytest.raises(TimerMessageError):
        env.timer.intercept(msg("u4", DELAY="x"))


async def test_half_messages_are_not_intercepted(env: Env) -> None:
    m = msg("u1", TRAN_MSG="true", TIMER_DELIVER_MS=str(env.clock.now + 5000))
    assert env.timer.intercept(m).topic == TOPIC
    m2 = msg("u2", TIMER_DELIVER_MS=str(env.clock.now + 5000))
    m2.sys_flag = SysFlag.TRANSACTION_PREPARED_TYPE
    assert env.timer.intercept(m2).topic == TOPIC
    with pytest.raises(TimerMessageError):  # but a bad delivery time is refused at send
        env.timer.intercept(msg("u4", TRAN_MSG="true", TIMER_DELAY_SEC=str(10**9)))
    m3 = msg("u3", TIMER_DELIVER_MS=str(env.clock.now + 5000))
    m3.sys_flag = SysFlag.TRANSACTION_COMMIT_TYPE  # a committed transaction message can be timed
    assert env.timer.intercept(m3).topic == TIMER_TOPIC


# --- delivery ----------------------------------------------------------------------------------------


async def test_never_early_and_due_delivery_keeps_uniq_key(env: Env) -> None:
    t0 = env.clock.now
    await env.broker.put_messages([msg("late", TIMER_DELIVER_MS=str(t0 + 3000))])
    await env.broker.put_messages([msg("early", TIMER_DELAY_SEC="1")])
    await env.broker.put_messages([msg("lvl", DELAY="2")])  # 5 s
    await env.broker.put_messages([msg("now", TIMER_DELIVER_MS=str(t0))])  # due: stored directly
    assert env.delivered() == ["now"]
    await env.timer.run_once()
    assert env.timer.pending_count == 3
    for t, expected in [
        (999, ["now"]),
        (1000, ["now", "early"]),
        (2999, ["now", "early"]),
        (3000, ["now", "early", "late"]),
        (4999, ["now", "early", "late"]),
        (5000, ["now", "early", "late", "lvl"]),
        (60000, ["now", "early", "late", "lvl"]),
    ]:
        env.clock.now = t0 + t
        await env.timer.run_once()
        assert env.delivered() == expected, t
    assert env.timer.pending_count == 0
    out = {m.properties[MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX]: m for m in store_messages(env.store, TOPIC, 3)}
    late = out["late"]
    assert late.topic == TOPIC and late.queue_id == 3
    assert late.body == b"body-late"
    assert late.properties[MessageConst.TAGS] == "t"
    assert late.properties[MessageConst.TIMER_DELIVER_MS] == str(t0 + 3000)
    assert late.store_timestamp >= t0 + 3000
    for m in out.values():
        for k in ("REAL_TOPIC", "REAL_QID", "TIMER_OUT_MS", "TIMER_DELAY_SEC", "DELAY"):
            assert k not in m.properties, (k, m.properties)


async def test_failed_reput_is_retried(env: Env) -> None:
    await env.broker.put_messages([msg("a", TIMER_DELAY_MS="100")])
    env.clock.advance(100)
    env.broker.fail_puts = 1
    assert await env.timer.run_once() == 0
    assert env.delivered() == []
    env.clock.advance(1000)
    assert await env.timer.run_once() == 1
    assert env.delivered() == ["a"]


async def test_restart_rebuilds_pending_without_duplicates(env: Env) -> None:
    t0 = env.clock.now
    # a long delay first, so that progress cannot pass it while later entries are delivered
    await env.broker.put_messages([msg("m0", TIMER_DELAY_SEC="100")])
    for i in range(1, 6):
        await env.broker.put_messages([msg(f"m{i}", TIMER_DELAY_SEC=str(i))])
    env.clock.now = t0 + 3000
    await env.timer.run_once()
    assert env.delivered() == ["m1", "m2", "m3"]
    env2 = await env.restart()
    assert env2.timer.pending_count == 3
    await env2.timer.run_once()
    assert env2.delivered() == ["m1", "m2", "m3"]  # nothing delivered twice
    env2.clock.now = t0 + 5000
    await env2.timer.run_once()
    assert env2.delivered() == ["m1", "m2", "m3", "m4", "m5"]
    env3 = await env2.restart()
    assert env3.timer.pending_count == 1
    env3.clock.now = t0 + 100_000
    await env3.timer.run_once()
    assert env3.delivered() == ["m1", "m2", "m3", "m4", "m5", "m0"]
    assert env3.timer.progress.offset == 6 and not env3.timer.progress.done
    await env3.timer.shutdown()


async def test_restart_before_anything_was_processed(env: Env) -> None:
    await env.broker.put_messages([msg("a", TIMER_DELAY_SEC="2")])
    env2 = Env(env.root, env.clock, env.store)  # no shutdown: as after a crash
    await env2.timer.start(run_loop=False)
    assert env2.timer.pending_count == 1
    env2.clock.advance(2000)
    await env2.timer.run_once()
    assert env2.delivered() == ["a"]
    await env2.timer.shutdown()


async def test_background_loop_delivers_on_time(tmp_path: Any) -> None:
    clock = lambda: int(time.time() * 1000)  # noqa: E731
    store = await open_store(str(tmp_path), clock)
    broker = StandInBroker(str(tmp_path), store, clock)
    timer = TimerMessageService(broker)
    broker.timer_service = timer
    await timer.start()
    try:
        puts = []
        for i, delay in enumerate([300, 150, 450]):
            due = clock() + delay
            puts.append((f"b{i}", due))
            await broker.put_messages([msg(f"b{i}", TIMER_DELIVER_MS=str(due))])
        deadline = time.monotonic() + 10
        while len(store_messages(store, TOPIC, 3)) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        got = {m.properties[MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX]: m for m in store_messages(store, TOPIC, 3)}
        assert set(got) == {"b0", "b1", "b2"}
        for uniq, due in puts:
            assert got[uniq].store_timestamp >= due  # never early
            # on time: well under a second when idle; the bound leaves room for a loaded CI machine
            assert got[uniq].store_timestamp - due < 2000
    finally:
        await timer.shutdown()
        if hasattr(store, "shutdown"):
            await store.shutdown()


# --- recall ----------------------------------------------------------------------------------------


def test_recall_handle_format_matches_rocketmq() -> None:
    h = build_handle("T", "broker-a", "1700000000000", "ID1")
    assert base64.urlsafe_b64decode(h).decode() == "v1 T broker-a 1700000000000 ID1"
    d = decode_handle(h)
    assert (d.topic, d.broker_name, d.timestamp_str, d.message_id) == ("T", "broker-a", "1700000000000", "ID1")
    assert decode_handle(h.rstrip("=")) == d


async def test_recall_cancels_and_survives_restart(env: Env) -> None:
    t0 = env.clock.now
    m = msg("r1", TIMER_DELAY_SEC="10")
    await env.broker.put_messages([m])
    handle = env.timer.recall_handle_for(m)
    assert handle and decode_handle(handle).timestamp_str == str(t0 + 10000)
    await env.broker.put_messages([msg("keep", TIMER_DELAY_SEC="10")])
    assert await env.timer.recall(TOPIC, handle) == "r1"
    with pytest.raises(RecallError, match="already recalled"):
        await env.timer.recall(TOPIC, handle)
    env2 = await env.restart()  # the cancel is durable
    env2.clock.now = t0 + 20000
    await env2.timer.run_once()
    assert env2.delivered() == ["keep"]
    assert env2.timer.cancelled_count == 1
    await env2.timer.shutdown()


async def test_recall_errors(env: Env) -> None:
    t0 = env.clock.now
    m = msg("r1", TIMER_DELAY_SEC="10")
    await env.broker.put_messages([m])
    handle = env.timer.recall_handle_for(m)
    with pytest.raises(RecallError, match="invalid"):
        await env.timer.recall(TOPIC, "not base64 !!")
    with pytest.raises(RecallError, match="invalid"):
        await env.timer.recall(TOPIC, base64.urlsafe_b64encode(b"v2 a b c d").decode())
    with pytest.raises(RecallError, match="topic not match"):
        await env.timer.recall("Other", handle)
    with pytest.raises(RecallError, match="broker"):
        await env.timer.recall(TOPIC, build_handle(TOPIC, "broker-x", str(t0 + 10000), "r1"))
    with pytest.raises(RecallError, match="not found"):
        await env.timer.recall(TOPIC, build_handle(TOPIC, "broker-a", str(t0 + 10000), "unknown"))
    with pytest.raises(RecallError, match="not found"):
        await env.timer.recall(TOPIC, build_handle(TOPIC, "broker-a", str(t0 + 9999), "r1"))
    env.clock.now = t0 + 10000
    await env.timer.run_once()
    assert env.delivered() == ["r1"]
    with pytest.raises(RecallError) as ei:
        await env.timer.recall(TOPIC, handle)  # already delivered
    assert ei.value.code == 604
    assert env.timer.recall_handle_for(msg("plain")) == ""


async def test_recall_honoured_after_a_long_outage(env: Env) -> None:
    t0 = env.clock.now
    m = msg("r1", TIMER_DELAY_SEC="10")
    await env.broker.put_messages([m, msg("keep", TIMER_DELAY_SEC="10")])
    assert await env.timer.recall(TOPIC, env.timer.recall_handle_for(m)) == "r1"
    env.clock.now = t0 + 3_600_000  # the broker was down for an hour
    env2 = await env.restart()
    await env2.timer.run_once()
    assert env2.delivered() == ["keep"]
    assert env2.timer._cancelled == {}  # the marker is forgotten once nothing can match it
    await env2.timer.shutdown()


async def test_timer_wheel_disabled_rejects_timed_but_not_levels(env: Env) -> None:
    env.broker.config.timer_wheel_enable = False  # type: ignore[attr-defined]
    with pytest.raises(TimerMessageError, match="timerWheelEnable"):
        env.timer.intercept(msg("u1", TIMER_DELAY_SEC="5"))
    assert env.timer.intercept(msg("u2", DELAY="1")).topic == TIMER_TOPIC
