"""backends.tasks: the servers' shared task helpers."""

from __future__ import annotations

import asyncio
import gc

from backends.tasks import serve_until, wait_set_or


async def test_serve_until_takes_start_up_objects_out_of_the_collector() -> None:
    gc.unfreeze()
    built_at_start = [object() for _ in range(1000)]
    stop = asyncio.Event()
    stop.set()
    try:
        await asyncio.wait_for(serve_until(stop), 5)
        assert gc.get_freeze_count() >= len(built_at_start)
    finally:
        gc.unfreeze()


async def test_wait_set_or_returns_on_the_event_or_the_time() -> None:
    ev = asyncio.Event()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await wait_set_or(ev, 0.05)
    assert loop.time() - t0 >= 0.04
    ev.set()
    await asyncio.wait_for(wait_set_or(ev, 30), 5)
    assert not ev.is_set()
