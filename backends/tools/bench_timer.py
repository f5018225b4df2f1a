"""mqbench timer: many pending timed messages, delivered on time? (in-process broker, POP consumers)

    mqbench timer --messages 100000 --spread-seconds 30 --lead-seconds 15 --consumers 4
    mqbench timer --burst ...            every message due at the same moment
    mqbench timer --flush SYNC_FLUSH ...
    mqbench timer --load-rate 2000 ...   normal messages sent and consumed alongside (timers under load)

A BrokerController runs in this process on a temporary store (no remoting). N messages with
TIMER_DELIVER_MS spread evenly over ``--spread-seconds`` (starting ``--lead-seconds`` from the start of
sending) are sent through LocalBackend, then consumed by POP (LocalBackend.pop_message, several
concurrent consumers, one batched ack per pop). The body carries the due time; lateness = arrival at
the consumer - due time. A progress line per second, then a summary; exit 1 when a message arrived
early, was lost (not delivered within ``--bound-seconds`` after the last due time) or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import time

from backends.api import PopRequest, PopStatus
from backends.broker.broker_config import BrokerConfig
from backends.broker.controller import BrokerController
from backends.local import LocalBackend
from backends.model import Message, MessageConst, SubscriptionGroupConfig, TopicConfig
from backends.tools.bench_stats import percentile, store_dir


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_broker(directory: str, flush: str, enable_property_filter: bool = False,
                segment_mib: int = 256) -> BrokerController:
    cfg = BrokerConfig(store_path_root_dir=directory, listen_port=0, flush_disk_type=flush,
                       mapped_file_size_commit_log=segment_mib * 1024 * 1024,
                       enable_property_filter=enable_property_filter)
    return BrokerController(cfg, enable_remoting=False)


async def _run(args: argparse.Namespace, directory: str) -> int:
    broker = make_broker(directory, args.flush)
    await broker.start()
    be = LocalBackend(broker)
    broker.create_topic(TopicConfig(args.topic, args.queues, args.queues))
    broker.update_subscription_group(SubscriptionGroupConfig(args.group, attributes={"consumeFromWhere": "EARLIEST"}))
    n = args.messages
    pad = b"x" * max(0, args.size - 32)
    t_start_ms = int(time.time() * 1000)
    first_due = t_start_ms + int(args.lead_seconds * 1000)
    spread_ms = 0 if args.burst else int(args.spread_seconds * 1000)

    def due_of(i: int) -> int:
        return first_due + (spread_ms * i // max(1, n - 1) if n > 1 else 0)

    last_due = due_of(n - 1)
    seen = bytearray(n)
    lateness: list[float] = []
    state = {"sent": 0, "sent_after_due": 0, "delivered": 0, "early": 0, "dup": 0, "acks_failed": 0,
             "send_done_ms": 0.0, "max_late": 0.0}
    stop = asyncio.Event()
    load = {"sent": 0, "received": 0}
    load_topic, load_group = args.topic + "Load", args.group + "Load"
    if args.load_rate:
        broker.create_topic(TopicConfig(load_topic, args.queues, args.queues))
        broker.update_subscription_group(SubscriptionGroupConfig(load_group))

    async def load_producer() -> None:
        # --load-rate normal messages/s in batches of 16, paced against the clock (no drift)
        body = b"L" * args.size
        t0 = time.monotonic()
        k = 0
        while not stop.is_set():
            msgs = [Message(load_topic, body, {MessageConst.TAGS: "L"}, queue_id=(k + j) % args.queues)
                    for j in range(16)]
            await be.send_message(broker.broker_name, msgs, 30)
            k += 16
            load["sent"] += 16
            ahead = t0 + k / args.load_rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)

    async def load_consumer() -> None:
        req = PopRequest(load_group, load_topic, -1, 32, invisible_time_ms=60_000, poll_time_ms=500)
        while not stop.is_set():
            res = await be.pop_message(broker.broker_name, req, 5)
            if res.status is not PopStatus.FOUND:
                continue
            load["received"] += len(res.messages)
            await be.ack_messages(broker.broker_name, load_group, load_topic,
                                  [m.properties[MessageConst.POP_CK] for m in res.messages])

    async def producer(pid: int) -> None:
        # queue pid's messages: i = pid, pid + P, ... sent in batches of args.batch
        idx = list(range(pid, n, args.producers))
        qid = pid % args.queues
        for s in range(0, len(idx), args.batch):
            now = int(time.time() * 1000)
            msgs = []
            for i in idx[s:s + args.batch]:
                due = due_of(i)
                if due <= now:
                    state["sent_after_due"] += 1
                msgs.append(Message(args.topic, b"%d|%d|" % (i, due) + pad,
                                    {MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX: f"TIMERBENCH{i:012d}",
                                     MessageConst.TAGS: "T", MessageConst.TIMER_DELIVER_MS: str(due)},
                                    queue_id=qid))
            await be.send_message(broker.broker_name, msgs, 30)
            state["sent"] += len(msgs)

    async def consumer() -> None:
        req = PopRequest(args.group, args.topic, -1, 32, invisible_time_ms=args.invisible_seconds * 1000,
                         poll_time_ms=500)
        while not stop.is_set():
            res = await be.pop_message(broker.broker_name, req, 5)
            if res.status is not PopStatus.FOUND:
                continue
            arrive = time.time() * 1000
            handles = []
            for m in res.messages:
                handles.append(m.properties[MessageConst.POP_CK])
                i_s, due_s, _ = m.body.split(b"|", 2)
                i, due = int(i_s), int(due_s)
                late = arrive - due
                if seen[i]:
                    state["dup"] += 1
                    continue
                seen[i] = 1
                state["delivered"] += 1
                if late < 0:
                    state["early"] += 1
                lateness.append(late)
                if late > state["max_late"]:
                    state["max_late"] = late
            errs = await be.ack_messages(broker.broker_name, args.group, args.topic, handles)
            state["acks_failed"] += sum(1 for e in errs if e is not None)
            if state["delivered"] >= n:
                stop.set()

    async def reporter() -> None:
        t0 = time.monotonic()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass
            now = time.time() * 1000
            due_by_now = (0 if now < first_due else n if now >= last_due or spread_ms == 0
                          else int((now - first_due) * (n - 1) / spread_ms) + 1)
            extra = f" load sent {load['sent']:,} received {load['received']:,}" if args.load_rate else ""
            print(f"[{time.monotonic() - t0:6.1f}s] sent {state['sent']:,} due {due_by_now:,} "
                  f"delivered {state['delivered']:,} early {state['early']} max lateness "
                  f"{state['max_late']:.0f} ms rss {rss_mib():.0f} MiB{extra}", flush=True)
            if now > last_due + args.bound_seconds * 1000:
                stop.set()

    c0 = time.process_time()
    w0 = time.perf_counter()
    consumers = [asyncio.create_task(consumer()) for _ in range(args.consumers)]
    rep = asyncio.create_task(reporter())
    loaders = ([asyncio.create_task(load_producer()), asyncio.create_task(load_consumer()),
                asyncio.create_task(load_consumer())] if args.load_rate else [])
    t_send = time.perf_counter()
    await asyncio.gather(*(producer(p) for p in range(args.producers)))
    send_s = time.perf_counter() - t_send
    state["send_done_ms"] = time.time() * 1000
    print(f"sent {n:,} timed messages in {send_s:.2f} s ({n / send_s:,.0f} msgs/s); first due "
          f"{(first_due - state['send_done_ms']) / 1000:+.2f} s from now, last due "
          f"{(last_due - state['send_done_ms']) / 1000:+.2f} s", flush=True)
    await stop.wait()
    cpu_share = (time.process_time() - c0) / (time.perf_counter() - w0)
    elapsed = time.perf_counter() - w0
    for t in consumers + loaders:
        t.cancel()
    await asyncio.gather(*consumers, *loaders, rep, return_exceptions=True)
    await broker.shutdown()
    lateness.sort()
    lost = n - state["delivered"]
    mode = "burst" if args.burst else f"spread {args.spread_seconds:g}s"
    print(f"SUMMARY timer: messages={n} mode={mode} lead={args.lead_seconds:g}s flush={args.flush} "
          f"consumers={args.consumers} send_seconds={send_s:.2f} sent_after_due={state['sent_after_due']}")
    if args.load_rate:
        print(f"SUMMARY load: {load['sent']:,} normal messages sent ({load['sent'] / elapsed:,.0f}/s of "
              f"--load-rate {args.load_rate:g}), {load['received']:,} consumed")
    print(f"SUMMARY delivered={state['delivered']} lost={lost} duplicates={state['dup']} early={state['early']} "
          f"acks_failed={state['acks_failed']}")
    print(f"SUMMARY lateness_ms p50={percentile(lateness, .5):.1f} p99={percentile(lateness, .99):.1f} "
          f"p999={percentile(lateness, .999):.1f} max={lateness[-1] if lateness else 0.0:.1f} "
          f"min={lateness[0] if lateness else 0.0:.1f}")
    print(f"SUMMARY peak_rss_mib={rss_mib():.0f} process_cpu={cpu_share * 100:.0f}% "
          f"loadavg_1m={os.getloadavg()[0]:.1f} (2 cores here: other load delays delivery)")
    ok = state["early"] == 0 and lost == 0 and state["dup"] == 0
    print(f"SUMMARY result={'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mqbench timer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", "-n", type=int, default=100_000)
    p.add_argument("--spread-seconds", type=float, default=30.0, help="due times spread evenly over this window")
    p.add_argument("--burst", action="store_true", help="every message due at the same moment")
    p.add_argument("--lead-seconds", type=float, default=15.0,
                   help="the first due time, from the start of sending (sending must finish before)")
    p.add_argument("--bound-seconds", type=float, default=30.0,
                   help="give up this long after the last due time (what has not arrived is lost)")
    p.add_argument("--consumers", type=int, default=4, help="concurrent POP consumers (32 per pop)")
    p.add_argument("--producers", type=int, default=8, help="concurrent senders")
    p.add_argument("--batch", type=int, default=32, help="messages per send")
    p.add_argument("--size", type=int, default=256, help="body bytes")
    p.add_argument("--queues", type=int, default=8)
    p.add_argument("--load-rate", type=float, default=0.0,
                   help="also send and consume this many normal messages/s on another topic (timers under load)")
    p.add_argument("--invisible-seconds", type=int, default=60)
    p.add_argument("--flush", choices=["SYNC_FLUSH", "ASYNC_FLUSH"], default="ASYNC_FLUSH")
    p.add_argument("--topic", default="BenchTimerTopic")
    p.add_argument("--group", default="BenchTimerGroup")
    p.add_argument("--dir", default=None, help="store directory (default: a new temporary one, removed)")
    args = p.parse_args(argv[1:] if argv and argv[0] == "timer" else argv)
    if args.messages <= 0:
        p.error("--messages must be positive")
    logging.basicConfig(level=logging.WARNING)
    with store_dir(args.dir, "bench-timer-") as directory:
        return asyncio.run(_run(args, directory))


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
