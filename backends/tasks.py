"""asyncio task helpers shared by the servers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel each task (None skipped) and wait for it to end, whatever it ends with."""
    live = [t for t in tasks if t is not None]
    for t in live:
        t.cancel()
    for t in live:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t


def stop_signal() -> asyncio.Event:
    """An event set when the process gets SIGTERM or SIGINT (the servers' clean stop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve_until(stop: asyncio.Event) -> None:
    """A started server's wait for ``stop``. What start-up built lives as long as the process:
    ``gc.freeze()`` takes it out of the collector's generations first, so a full collection walks only
    what came later (measured on a broker under load: the event loop stalled 39 ms, then 2 ms)."""
    gc.freeze()
    await stop.wait()


async def wait_set_or(event: asyncio.Event, seconds: float) -> None:
    """Return when ``event`` is set or ``seconds`` have passed (a periodic loop that can be woken), and
    clear it."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
    event.clear()
