"""mqbench filter: POP consume throughput with TAG and SQL92 subscriptions (in-process broker).

    mqbench filter --messages 200000 --size 1024 --consumers 4
    mqbench filter --only tag_all,sql_all --repeat 2
    mqbench filter --micro-only

A BrokerController runs in this process on a temporary store (no remoting, enablePropertyFilter=true).
M messages are preloaded with tags TagA/TagB (alternating) and user properties ``a`` (i % 100) and
``b`` ("even"/"odd"); then, for each scenario, a new consumer group (starting at the earliest offset)
consumes the whole topic through LocalBackend.pop_message (batch 32, several concurrent consumers,
one batched ack per pop) until it has every matching message. Scenarios:

    tag_all    TAG   *                         100%
    tag_one    TAG   TagA                       50%
    sql_half   SQL92 a < 50                     50%
    sql_all    SQL92 a >= 0 AND b IS NOT NULL  100%

Reported per scenario: msgs/s delivered and msgs/s scanned (the M messages examined / elapsed); then
the cost of SQL92 = 1 - sql_all / tag_all (same messages, all delivered; the target is < 30%), and a
micro figure: evaluations/s of the compiled SQL92 filter on a property dict.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from backends.api import PopRequest, PopStatus
from backends.broker.filter import build_filter
from backends.local import LocalBackend
from backends.model import Message, MessageConst, SubscriptionGroupConfig, TopicConfig
from backends.tools.bench_stats import store_dir
from backends.tools.bench_timer import make_broker, rss_mib


@dataclass(frozen=True)
class Scenario:
    name: str
    expression_type: str
    expression: str
    predicate: Callable[[int], bool]  # message index -> matches


SCENARIOS = [
    Scenario("tag_all", "TAG", "*", lambda i: True),
    Scenario("tag_one", "TAG", "TagA", lambda i: i % 2 == 0),
    Scenario("sql_half", "SQL92", "a < 50", lambda i: i % 100 < 50),
    Scenario("sql_all", "SQL92", "a >= 0 AND b IS NOT NULL", lambda i: True),
]


def props_of(i: int) -> dict[str, str]:
    return {MessageConst.TAGS: "TagA" if i % 2 == 0 else "TagB", "a": str(i % 100),
            "b": "even" if i % 2 == 0 else "odd",
            MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX: f"FILTERBENCH{i:012d}"}


def micro(expression: str, seconds: float) -> float:
    """Evaluations/s of the compiled SQL92 filter on a property dict."""
    flt = build_filter("SQL92", expression)
    samples = [props_of(i) for i in range(100)]
    fn = flt.is_matched_by_properties
    count = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        for p in samples:
            fn(p)
        count += len(samples)
    return count / (time.perf_counter() - t0)


async def _consume(be: LocalBackend, broker_name: str, topic: str, group: str, sc: Scenario, expected: int,
                   consumers: int, timeout_s: float) -> tuple[int, float, float, int]:
    """(delivered, seconds, process CPU seconds, pops)"""
    state = {"delivered": 0, "pops": 0}
    done = asyncio.Event()
    req = PopRequest(group, topic, -1, 32, invisible_time_ms=300_000, poll_time_ms=200,
                     expression_type=sc.expression_type, expression=sc.expression)

    async def consumer() -> None:
        while not done.is_set():
            res = await be.pop_message(broker_name, req, 5)
            state["pops"] += 1
            if res.status is not PopStatus.FOUND:
                continue
            state["delivered"] += len(res.messages)
            await be.ack_messages(broker_name, group, topic, [m.properties[MessageConst.POP_CK] for m in res.messages])
            if state["delivered"] >= expected:
                done.set()

    async def progress() -> None:
        t0 = time.perf_counter()
        while not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), 1.0)
            except TimeoutError:
                pass
            el = time.perf_counter() - t0
            print(f"  [{sc.name} {el:5.1f}s] delivered {state['delivered']:,}/{expected:,} "
                  f"({state['delivered'] / el:,.0f} msgs/s)", flush=True)
            if el > timeout_s:
                done.set()

    t0 = time.perf_counter()
    c0 = time.process_time()
    tasks = [asyncio.create_task(consumer()) for _ in range(consumers)]
    prog = asyncio.create_task(progress())
    await done.wait()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, prog, return_exceptions=True)
    return state["delivered"], elapsed, cpu, state["pops"]


async def _run(args: argparse.Namespace, directory: str) -> int:
    broker = make_broker(directory, args.flush, enable_property_filter=True)
    await broker.start()
    be = LocalBackend(broker)
    broker.create_topic(TopicConfig(args.topic, args.queues, args.queues))
    m = args.messages
    pad = b"x" * args.size
    t0 = time.perf_counter()

    async def producer(q: int) -> None:
        idx = list(range(q, m, args.queues))
        for s in range(0, len(idx), 64):
            await be.send_message(broker.broker_name,
                                  [Message(args.topic, pad, props_of(i), queue_id=q) for i in idx[s:s + 64]], 30)

    await asyncio.gather(*(producer(q) for q in range(args.queues)))
    load_s = time.perf_counter() - t0
    print(f"preloaded {m:,} messages of {args.size} B in {load_s:.2f} s ({m / load_s:,.0f} msgs/s)", flush=True)
    wanted = [s for s in SCENARIOS if not args.only or s.name in args.only.split(",")]
    rates: dict[str, list[float]] = {}
    cpu_rates: dict[str, list[float]] = {}
    failed = False
    for r in range(args.repeat):
        for sc in wanted:
            group = f"BenchFilter_{sc.name}_{r}"
            broker.update_subscription_group(SubscriptionGroupConfig(group, attributes={"consumeFromWhere": "EARLIEST"}))
            expected = sum(1 for i in range(m) if sc.predicate(i))
            delivered, el, cpu, pops = await _consume(be, broker.broker_name, args.topic, group, sc, expected,
                                                 args.consumers, args.timeout_seconds)
            if delivered != expected:
                failed = True
            rates.setdefault(sc.name, []).append(delivered / el)
            cpu_rates.setdefault(sc.name, []).append(delivered / max(cpu, 1e-9))
            print(f"SUMMARY filter {sc.name:8s} {sc.expression_type:5s} {sc.expression!r:28s} round={r} "
                  f"delivered={delivered} expected={expected} seconds={el:.2f} "
                  f"delivered_per_s={delivered / el:.0f} scanned_per_s={m / el:.0f} pops={pops} "
                  f"cpu_seconds={cpu:.2f} delivered_per_cpu_s={delivered / max(cpu, 1e-9):.0f} "
                  f"loadavg={os.getloadavg()[0]:.1f}", flush=True)
    await broker.shutdown()
    best = {k: max(v) for k, v in rates.items()}
    best_cpu = {k: max(v) for k, v in cpu_rates.items()}
    if "tag_all" in best and "sql_all" in best:
        ratio = best["sql_all"] / best["tag_all"]
        cpu_ratio = best_cpu["sql_all"] / best_cpu["tag_all"]
        print(f"SUMMARY sql92_cost={(1 - ratio) * 100:.1f}% (sql_all/tag_all={ratio:.2f}, best of {args.repeat}; "
              f"target cost < 30%: {'MET' if ratio >= 0.7 else 'NOT MET'}) "
              f"sql92_cost_cpu={(1 - cpu_ratio) * 100:.1f}% (per process-CPU second, robust to other load)")
    if "tag_all" in best and "tag_one" in best:
        print(f"SUMMARY tag_filter_scan_ratio={best['tag_one'] * 2 / best['tag_all']:.2f} "
              f"(tag_one scanned/s vs tag_all)")
    if args.micro_seconds > 0:
        _micro_report(args.micro_seconds)
    print(f"SUMMARY peak_rss_mib={rss_mib():.0f}")
    return 1 if failed else 0


def _micro_report(seconds: float) -> None:
    for sc in SCENARIOS:
        if sc.expression_type == "SQL92":
            print(f"SUMMARY micro {sc.name} {sc.expression!r}: {micro(sc.expression, seconds):.0f} evaluations/s")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="mqbench filter", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", "-n", type=int, default=200_000)
    p.add_argument("--size", type=int, default=1024, help="body bytes")
    p.add_argument("--consumers", type=int, default=4, help="concurrent POP consumers (32 per pop)")
    p.add_argument("--queues", type=int, default=8)
    p.add_argument("--only", default="", help="comma-separated scenario names (tag_all,tag_one,sql_half,sql_all)")
    p.add_argument("--repeat", type=int, default=1, help="rounds over the scenarios (a new group each)")
    p.add_argument("--timeout-seconds", type=float, default=300.0, help="per scenario")
    p.add_argument("--micro-seconds", type=float, default=1.0, help="per micro figure (0: skip)")
    p.add_argument("--micro-only", action="store_true", help="only the evaluator micro figures")
    p.add_argument("--flush", choices=["SYNC_FLUSH", "ASYNC_FLUSH"], default="ASYNC_FLUSH")
    p.add_argument("--topic", default="BenchFilterTopic")
    p.add_argument("--dir", default=None, help="store directory (default: a new temporary one, removed)")
    args = p.parse_args(argv[1:] if argv and argv[0] == "filter" else argv)
    if args.micro_only:
        _micro_report(args.micro_seconds or 1.0)
        return 0
    logging.basicConfig(level=logging.WARNING)
    with store_dir(args.dir, "bench-filter-") as directory:
        return asyncio.run(_run(args, directory))


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
