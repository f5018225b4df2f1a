"""mqbench store: append messages to a MessageStore directly.

    mqbench store --flush SYNC_FLUSH --writers 64 --size 1024 --batch 1 --seconds 10 [--dir DIR]
    mqbench store --restart --log-mib 256 [--dir DIR]     # unclean-restart (recovery) time

Prints msgs/s, MiB/s and per-call latency p50/p99/p999.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from backends.model import AppendResults, Message, PutMessageResult, PutMessageStatus
from backends.store.message_store import MessageStore, MessageStoreConfig
from backends.tools.bench_stats import percentile, store_dir


class _NoopStore(MessageStore):
    """The harness's ceiling: a put that only awaits one shared future per loop iteration."""

    async def start(self) -> None:
        self._noop_fut: asyncio.Future[PutMessageStatus] | None = None

    async def shutdown(self) -> None:
        pass

    def _noop_drain(self) -> None:
        fut, self._noop_fut = self._noop_fut, None
        if fut is not None:
            fut.set_result(PutMessageStatus.PUT_OK)

    async def put_messages(self, messages: list[Message]) -> PutMessageResult:
        if self._noop_fut is None:
            loop = asyncio.get_running_loop()
            self._noop_fut = loop.create_future()
            loop.call_soon(self._noop_drain)
        status = await self._noop_fut
        return PutMessageResult(status, AppendResults([0, 0, 0] * len(messages), 0, ""))


async def _append(args: argparse.Namespace, directory: str) -> int:
    cfg = MessageStoreConfig(
        store_path_root_dir=directory,
        flush_disk_type=args.flush,
        mapped_file_size_commit_log=args.segment_mib * 1024 * 1024,
        message_index_enable=not args.no_index,
    )
    store: MessageStore = _NoopStore(cfg) if args.noop else MessageStore(cfg)
    await store.start()
    body = os.urandom(args.size)
    stop_at = time.perf_counter() + args.seconds
    lat: list[float] = []
    counts = [0]
    errors = [0]
    seq = [0]

    def batch(wid: int) -> list[Message]:
        msgs = []
        born = int(time.time() * 1000)
        for _ in range(args.batch):
            seq[0] += 1
            props = {"TAGS": "TagA"}
            if args.keys:
                props["UNIQ_KEY"] = f"7F000001{os.getpid():04X}{seq[0]:016X}"
            msgs.append(Message(args.topic, body, props, queue_id=wid % args.queues, born_timestamp=born))
        return msgs

    async def writer(wid: int) -> None:
        perf = time.perf_counter
        local_lat = lat
        # the store copies what it keeps and never changes a Message it is given, so by default each
        # writer appends the same batch again: the figure is the store's, not the cost of building
        # Python objects (``--fresh`` builds a new batch per call, as a caller decoding requests would)
        msgs = batch(wid)
        while perf() < stop_at:
            if args.fresh:
                msgs = batch(wid)
            t0 = perf()
            r = await store.put_messages(msgs)
            local_lat.append(perf() - t0)
            if r.status is PutMessageStatus.PUT_OK:
                counts[0] += len(msgs)
            else:
                errors[0] += 1

    t0 = time.perf_counter()
    cpu0 = os.times()
    loop_cpu0 = time.thread_time()
    await asyncio.gather(*(writer(i) for i in range(args.writers)))
    elapsed = time.perf_counter() - t0
    loop_cpu = (time.thread_time() - loop_cpu0) / elapsed
    cpu1 = os.times()
    cpu = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / elapsed
    fsync_rounds = store._flush.rounds if store._flush else 0
    sync_s = store._flush.sync_seconds if store._flush else 0.0
    await store.shutdown()
    lat.sort()
    n = counts[0]
    print(f"flush={args.flush} writers={args.writers} size={args.size} batch={args.batch} "
          f"index={'off' if args.no_index else 'on'} keys={'on' if args.keys else 'off'} "
          f"messages={'fresh per call' if args.fresh else 'built once per writer'}")
    print(f"messages={n} errors={errors[0]} seconds={elapsed:.2f} fdatasync_rounds={fsync_rounds} "
          f"in_fdatasync={sync_s:.2f}s process_cpu={cpu * 100:.0f}% event_loop_thread_cpu={loop_cpu * 100:.0f}%")
    print(f"throughput: {n / elapsed:,.0f} msg/s  {n * args.size / elapsed / 1048576:,.1f} MiB/s")
    print(f"latency per put_messages call: p50={percentile(lat, .5) * 1e3:.3f} ms  p99={percentile(lat, .99) * 1e3:.3f} ms  "
          f"p999={percentile(lat, .999) * 1e3:.3f} ms")
    import resource

    print(f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB "
          f"(includes the latency samples kept by this tool)")
    return 0 if errors[0] == 0 else 1


async def _restart(args: argparse.Namespace, directory: str) -> int:
    # worst case (default): no checkpoint after start, so recovery verifies the whole log;
    # --checkpointed: the default 1 s checkpoint runs, recovery verifies only what follows it
    cfg = MessageStoreConfig(store_path_root_dir=directory, flush_disk_type="ASYNC_FLUSH",
                             mapped_file_size_commit_log=args.segment_mib * 1024 * 1024,
                             flush_interval_consume_queue=1000 if args.checkpointed else 10**9,
                             recover_last_files=10**6)
    store = MessageStore(cfg)
    await store.start()
    body = os.urandom(args.size)
    target = args.log_mib * 1024 * 1024
    i = 0
    while store.get_max_phy_offset() < target:
        batch = [Message(args.topic, body, {"TAGS": "TagA", "UNIQ_KEY": f"K{i + j:024d}"}, queue_id=(i + j) % 8)
                 for j in range(64)]
        i += 64
        await store.put_messages(batch)
        await asyncio.sleep(0)  # let the periodic flush / checkpoint run
    size = store.get_max_phy_offset()
    await store._flush.flush()  # type: ignore[union-attr]
    # an unclean stop: no checkpoint past the start, abort file left behind
    store._running = False
    for t in store._tasks:
        t.cancel()
    store._close_files()
    store._release_lock()
    if store._flush:
        store._flush.close()
    for mode in ("unclean", "clean"):
        s2 = MessageStore(cfg)
        t0 = time.perf_counter()
        await s2.start()
        el = time.perf_counter() - t0
        await s2.wait_index_rebuilt()
        el_index = time.perf_counter() - t0
        print(f"{mode} restart with a {size / 1048576:.0f} MiB log ({i} messages): {el:.2f} s to start "
              f"(log verified, consume queues rebuilt), {el_index:.2f} s until the key index is rebuilt; "
              f"scanned {s2.recovery_scanned_bytes / 1048576:.0f} MiB, max offset {s2.get_max_phy_offset()}")
        await s2.shutdown()
    return 0


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mqbench store", description=__doc__.split("\n")[0])
    p.add_argument("--flush", choices=["SYNC_FLUSH", "ASYNC_FLUSH"], default="SYNC_FLUSH")
    p.add_argument("--writers", type=int, default=64)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--queues", type=int, default=8)
    p.add_argument("--topic", default="BenchmarkTest")
    p.add_argument("--keys", action="store_true", help="give every message a UNIQ_KEY (indexed)")
    p.add_argument("--no-index", action="store_true", help="message_index_enable=false")
    p.add_argument("--fresh", action="store_true",
                   help="build new Message objects for every call (default: each writer re-appends its batch)")
    p.add_argument("--segment-mib", type=int, default=1024)
    p.add_argument("--dir", default=None, help="store directory (default: a new temporary one, removed)")
    p.add_argument("--uvloop", action="store_true")
    p.add_argument("--switch-interval", type=float, default=None, help="sys.setswitchinterval (seconds)")
    p.add_argument("--noop", action="store_true", help="a store that does nothing: the harness's ceiling")
    p.add_argument("--restart", action="store_true", help="measure restart time after an unclean stop")
    p.add_argument("--log-mib", type=int, default=256)
    p.add_argument("--checkpointed", action="store_true",
                   help="with --restart: keep the 1 s checkpoint (typical) instead of none (worst case)")
    args = p.parse_args(argv[1:] if argv and argv[0] == "store" else argv)
    if args.switch_interval:
        import sys

        sys.setswitchinterval(args.switch_interval)
    if args.uvloop:
        import uvloop

        uvloop.install()
    with store_dir(args.dir, "bench-store-") as directory:
        return asyncio.run(_restart(args, directory) if args.restart else _append(args, directory))


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
