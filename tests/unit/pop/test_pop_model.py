"""Randomised operation sequences checked against a simple model of at-least-once POP:
an in-flight message is never handed out twice, an acked message never comes back, a change of
invisible time is honoured, and in the end every message that was not acked is delivered again --
across restarts of the POP service over the same store."""

from __future__ import annotations

import random

import pytest

from backends.broker.pop import extra_info as xi
from backends.model import MessageConst, SubscriptionGroupConfig
from tests.unit.pop.conftest import GROUP, TOPIC, Env


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_operations_keep_at_least_once(env: Env, seed: int) -> None:
    await run_model(env, seed, crash=False)


@pytest.mark.parametrize("seed", [4, 5])
async def test_random_operations_with_power_losses(sync_env: Env, seed: int) -> None:
    """Restarts are power losses of a SYNC_FLUSH store: nothing shut down, no config file persisted."""
    await run_model(sync_env, seed, crash=True)


async def run_model(env: Env, seed: int, crash: bool) -> None:
    rnd = random.Random(seed)
    env.broker.subscription_group_manager.update_subscription_group_config(
        SubscriptionGroupConfig(GROUP, retry_max_times=1000, attributes={"consumeFromWhere": "EARLIEST"}))
    sent: set[str] = set()
    acked: set[str] = set()
    handle: dict[str, str] = {}  # newest handle of each message handed out
    history: dict[str, list[str]] = {}  # every handle of each message
    deadline: dict[str, int] = {}  # visibility deadline of that handle
    counter = 0
    for _step in range(120):
        op = rnd.random()
        if op < 0.2:
            n = rnd.randint(1, 5)
            q = rnd.randrange(4)
            await env.send(n, queue_id=q, prefix=f"s{counter}-")
            sent.update(f"s{counter}-{i}" for i in range(n))
            counter += 1
        elif op < 0.45:
            res = await env.pop(n=rnd.randint(1, 8), invisible=rnd.choice([1_000, 5_000, 20_000]),
                                order=rnd.random() < 0.2)
            for m in res.messages:
                body = m.body.decode()
                assert body in sent
                assert body not in acked, f"acked message {body} delivered again"
                if body in deadline:
                    assert deadline[body] <= env.clock.now, f"{body} delivered while still invisible"
                h = m.properties[MessageConst.POP_CK]
                info = xi.parse(h)
                handle[body], deadline[body] = h, info.pop_time + info.invisible_time
                history.setdefault(body, []).append(h)
        elif op < 0.65 and handle:
            body = rnd.choice(sorted(handle))
            # any handle the message was handed out with acks it (the consumer processed it)
            await env.service.ack(GROUP, TOPIC, rnd.choice(history[body]))
            acked.add(body)
        elif op < 0.72 and handle:
            body = rnd.choice(sorted(handle))
            if body not in acked and deadline[body] > env.clock.now:
                new = await env.service.change_invisible_time(GROUP, TOPIC, handle[body], rnd.choice([0, 3_000]))
                info = xi.parse(new)
                handle[body], deadline[body] = new, info.pop_time + info.invisible_time
                history[body].append(new)
        elif op < 0.9:
            env.clock.advance(rnd.choice([1, 500, 2_000, 6_000]))
            if rnd.random() < 0.5:
                await env.service.revive_once()
        elif crash:
            await env.power_loss_restart()
        else:
            await env.restart()
    # liveness: everything not acked comes back (at least once), nothing acked does
    env.clock.advance(60_000)
    await env.service.revive_once()
    seen: set[str] = set()
    for _ in range(200):
        res = await env.pop(n=32, invisible=600_000)
        if not res.messages:
            break
        seen.update(m.body.decode() for m in res.messages)
    assert seen == sent - acked
    for q in range(4):
        committed = env.broker.consumer_offset_manager.query_offset(GROUP, TOPIC, q)
        total = env.broker.message_store.get_max_offset_in_queue(TOPIC, q)  # type: ignore[attr-defined]
        assert committed <= total
