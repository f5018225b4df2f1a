"""mqbench remoting: SEND_MESSAGE_V2 / PULL_MESSAGE throughput against a broker over remoting.

    mqbench remoting -a 127.0.0.1:10911 --mode send --topic BenchmarkTest --size 1024 --concurrency 64 --seconds 10
    mqbench remoting -a 127.0.0.1:10911 --mode pull --topic BenchmarkTest --concurrency 8 --seconds 10

Send: ``--concurrency`` requests in flight on one multiplexed connection (``--connections`` to spread
them), queues round robin. Pull: workers read the topic's queues from their min offset in batches of
``--batch`` (32) and start over at the end, so send first to have something to read. A line per
second, then msgs/s and p50/p99/p999 request latency.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import struct
import sys
import time

from backends.model import properties_to_string
from backends.remoting.client import RemotingClient, RemotingError
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import SERIALIZE_JSON, SERIALIZE_ROCKETMQ, RemotingCommand
from backends.tools.bench_stats import percentile

_SIZE = struct.Struct(">i")


def count_records(body: bytes) -> int:
    """Records in a PULL body (concatenated commitlog records, each starting with its total size)."""
    n = pos = 0
    end = len(body)
    while pos + 4 <= end:
        (size,) = _SIZE.unpack_from(body, pos)
        if size <= 0:
            break
        pos += size
        n += 1
    return n


class Stats:
    def __init__(self) -> None:
        self.msgs = 0
        self.requests = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.last_error = ""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mqbench remoting", description=__doc__.splitlines()[0])
    p.add_argument("-a", "--addr", default="127.0.0.1:10911", help="broker address host:port")
    p.add_argument("--mode", choices=("send", "pull"), default="send")
    p.add_argument("--topic", default="BenchmarkTest")
    p.add_argument("--size", type=int, default=1024, help="message body bytes")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--queues", type=int, default=8, help="queues of the topic (created with this many)")
    p.add_argument("--no-create", action="store_true", help="do not create the topic first")
    p.add_argument("--group", default="benchmark_consumer")
    p.add_argument("--batch", type=int, default=32, help="pull: messages per request")
    p.add_argument("--producer-group", default="benchmark_producer")
    p.add_argument("--serialize", choices=("json", "rocketmq"), default="json", help="header serialization")
    p.add_argument("--timeout", type=float, default=5.0, help="per request (s)")
    p.add_argument("--quiet", action="store_true", help="no per-second lines")
    return p


async def create_topic(client: RemotingClient, a: argparse.Namespace) -> None:
    req = RemotingCommand.request(RequestCode.UPDATE_AND_CREATE_TOPIC, {
        "topic": a.topic, "defaultTopic": "TBW102", "readQueueNums": str(a.queues),
        "writeQueueNums": str(a.queues), "perm": "6", "topicFilterType": "SINGLE_TAG", "topicSysFlag": "0",
        "order": "false", "force": "false",
    })
    resp = await client.invoke(a.addr, req, a.timeout)
    if resp.code != ResponseCode.SUCCESS:  # e.g. a system topic the broker made itself: use it as it is
        print(f"mqbench remoting: create topic {a.topic}: CODE: {resp.code} DESC: {resp.remark} "
              "(continuing)", file=sys.stderr)


async def send_worker(client: RemotingClient, a: argparse.Namespace, stats: Stats, stop: asyncio.Event,
                      queue_ids: itertools.cycle[int], seq: itertools.count[int]) -> None:
    body = os.urandom(a.size // 2 + 1).hex()[: a.size].encode()
    prefix = f"{os.getpid():08X}{int(time.time()):08X}"
    serialize = SERIALIZE_ROCKETMQ if a.serialize == "rocketmq" else SERIALIZE_JSON
    base = {"a": a.producer_group, "b": a.topic, "c": "TBW102", "d": str(a.queues), "f": "0", "h": "0",
            "j": "0", "k": "false", "m": "false"}
    perf = time.perf_counter
    while not stop.is_set():
        ext = dict(base)
        ext["e"] = str(next(queue_ids))
        ext["g"] = str(int(time.time() * 1000))
        ext["i"] = properties_to_string({"UNIQ_KEY": f"{prefix}{next(seq):016X}", "WAIT": "true"})
        req = RemotingCommand(code=RequestCode.SEND_MESSAGE_V2, ext_fields=ext, body=body, serialize_type=serialize)
        t0 = perf()
        try:
            resp = await client.invoke(a.addr, req, a.timeout)
        except RemotingError as e:
            stats.errors += 1
            stats.last_error = str(e)
            await asyncio.sleep(0.05)
            continue
        if resp.code == ResponseCode.SUCCESS:
            stats.latencies.append(perf() - t0)
            stats.msgs += 1
            stats.requests += 1
        else:
            stats.errors += 1
            stats.last_error = f"CODE: {resp.code} DESC: {resp.remark}"


async def pull_worker(client: RemotingClient, a: argparse.Namespace, stats: Stats, stop: asyncio.Event,
                      queues: list[int]) -> None:
    if not queues:
        return
    offsets: dict[int, int] = {}
    serialize = SERIALIZE_ROCKETMQ if a.serialize == "rocketmq" else SERIALIZE_JSON
    for q in queues:
        resp = await client.invoke(a.addr, RemotingCommand.request(
            RequestCode.GET_MIN_OFFSET, {"topic": a.topic, "queueId": str(q)}), a.timeout)
        offsets[q] = int(resp.ext_fields.get("offset", "0")) if resp.code == ResponseCode.SUCCESS else 0
    start = dict(offsets)
    perf = time.perf_counter
    idle_rounds = 0
    while not stop.is_set():
        progressed = False
        for q in queues:
            if stop.is_set():
                break
            req = RemotingCommand(code=RequestCode.PULL_MESSAGE, ext_fields={
                "consumerGroup": a.group, "topic": a.topic, "queueId": str(q), "queueOffset": str(offsets[q]),
                "maxMsgNums": str(a.batch), "sysFlag": "0", "commitOffset": "0", "suspendTimeoutMillis": "0",
                "subscription": "*", "subVersion": "0", "expressionType": "TAG",
            }, serialize_type=serialize)
            t0 = perf()
            try:
                resp = await client.invoke(a.addr, req, a.timeout)
            except RemotingError as e:
                stats.errors += 1
                stats.last_error = str(e)
                await asyncio.sleep(0.05)
                continue
            stats.latencies.append(perf() - t0)
            stats.requests += 1
            if resp.code == ResponseCode.SUCCESS:
                n = count_records(resp.body)
                stats.msgs += n
                offsets[q] = int(resp.ext_fields.get("nextBeginOffset", offsets[q] + n))
                progressed = progressed or n > 0
            elif resp.code in (ResponseCode.PULL_NOT_FOUND, ResponseCode.PULL_OFFSET_MOVED,
                               ResponseCode.PULL_RETRY_IMMEDIATELY):
                offsets[q] = start[q]  # at the end: read the queue again
                if resp.code == ResponseCode.PULL_OFFSET_MOVED:
                    offsets[q] = int(resp.ext_fields.get("nextBeginOffset", start[q]))
            else:
                stats.errors += 1
                stats.last_error = f"CODE: {resp.code} DESC: {resp.remark}"
        if not progressed:
            idle_rounds += 1
            if idle_rounds >= 3:
                await asyncio.sleep(0.01)  # empty topic: do not spin
        else:
            idle_rounds = 0


async def run(a: argparse.Namespace) -> int:
    clients = [RemotingClient() for _ in range(max(1, a.connections))]
    stats = Stats()
    stop = asyncio.Event()
    try:
        if not a.no_create:
            await create_topic(clients[0], a)
    except RemotingError as e:
        print(f"mqbench remoting: {e}", file=sys.stderr)
        for c in clients:
            await c.close()
        return 1
    workers: list[asyncio.Task[None]] = []
    if a.mode == "send":
        queue_ids = itertools.cycle(range(a.queues))
        seq = itertools.count()
        for i in range(a.concurrency):
            workers.append(asyncio.ensure_future(send_worker(clients[i % len(clients)], a, stats, stop, queue_ids, seq)))
    else:
        n = max(1, min(a.concurrency, a.queues))
        for i in range(n):
            mine = [q for q in range(a.queues) if q % n == i]
            workers.append(asyncio.ensure_future(pull_worker(clients[i % len(clients)], a, stats, stop, mine)))
    t_start = time.perf_counter()
    last_msgs, last_t, second = 0, t_start, 0
    print(f"mqbench remoting: {a.mode} {a.topic} at {a.addr}, size={a.size} concurrency={a.concurrency} "
          f"seconds={a.seconds}", flush=True)
    deadline = t_start + a.seconds
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0.001 or all(w.done() for w in workers):
            break
        await asyncio.sleep(min(1.0, remaining))
        now = time.perf_counter()
        second += 1
        if not a.quiet:
            rate = (stats.msgs - last_msgs) / max(now - last_t, 1e-9)
            err = f" errors={stats.errors} ({stats.last_error})" if stats.errors else ""
            print(f"[{second:>3}s] {a.mode} {rate:>10.0f} msg/s  total={stats.msgs}{err}", flush=True)
        last_msgs, last_t = stats.msgs, now
    stop.set()
    elapsed = time.perf_counter() - t_start
    done, pending = await asyncio.wait(workers, timeout=a.timeout + 1)
    for w in pending:
        w.cancel()
    for w in done:
        if w.exception() is not None:
            print(f"mqbench remoting: worker failed: {w.exception()}", file=sys.stderr)
    for c in clients:
        await c.close()
    lat = sorted(stats.latencies)
    ms = 1000.0
    print(f"Summary: mode={a.mode} msgs={stats.msgs} requests={stats.requests} errors={stats.errors} "
          f"elapsed={elapsed:.2f}s")
    print(f"Throughput: {stats.msgs / elapsed:.0f} msgs/s ({stats.msgs * a.size / elapsed / 1048576:.2f} MiB/s)"
          if a.mode == "send" else f"Throughput: {stats.msgs / elapsed:.0f} msgs/s "
          f"({stats.requests / elapsed:.0f} requests/s)")
    print(f"Latency (ms per request): p50={percentile(lat, 0.5) * ms:.3f} p99={percentile(lat, 0.99) * ms:.3f} "
          f"p999={percentile(lat, 0.999) * ms:.3f} max={(lat[-1] if lat else 0) * ms:.3f}")
    if stats.errors:
        print(f"Last error: {stats.last_error}")
    return 0 if stats.msgs > 0 else 1


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "remoting":
        args = args[1:]
    a = build_parser().parse_args(args)
    if a.size < 1 or a.concurrency < 1 or a.seconds <= 0 or a.queues < 1:
        print("mqbench remoting: --size, --concurrency, --queues and --seconds must be positive", file=sys.stderr)
        return 2
    try:
        import uvloop

        return int(uvloop.run(run(a)))
    except ImportError:
        return asyncio.run(run(a))


if __name__ == "__main__":
    raise SystemExit(main())
