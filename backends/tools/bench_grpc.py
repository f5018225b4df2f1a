"""mqbench producer|consumer|e2e: gRPC load against a proxy with the project's own generated stubs.

    mqbench producer --endpoint 127.0.0.1:8081 --topic BenchTopic --size 1024 --batch 1 --concurrency 64
    mqbench consumer --endpoint 127.0.0.1:8081 --topic BenchTopic --group BenchGroup
    mqbench e2e      --endpoint 127.0.0.1:8081 --topic BenchTopic --group BenchGroup
    mqbench producer --compare-bare ...   also run the same load against a no-op grpc.aio server
    mqbench producer --bare ...           only the no-op server (the ceiling for this request shape)

A progress line every second, then a summary: msgs/s, RPC/s and latency p50/p99/p999 (ms): of each
SendMessage (producer), of each ReceiveMessage that returned messages (consumer), from send to receipt
per message (e2e, with the SendMessage latency on its own line). The topic
(and for consumer/e2e the group) must exist: ``mqadmin updateTopic -n NS -c DefaultCluster -t T``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import ssl
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc

from backends.tools.bench_stats import percentile
from protos.apache.rocketmq.v2 import definition_pb2 as pb
from protos.apache.rocketmq.v2 import service_pb2 as spb
from protos.apache.rocketmq.v2 import service_pb2_grpc

C = pb.Code


@dataclass
class Stats:
    msgs: int = 0
    rpcs: int = 0
    errors: int = 0
    lat_ms: list[float] = field(default_factory=list)
    last_error: str = ""

    def pct(self, q: float) -> float:
        return percentile(sorted(self.lat_ms), q)


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=f"mqbench {argv[0]}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoint", default="127.0.0.1:8081")
    p.add_argument("--topic", default="BenchmarkTopic")
    p.add_argument("--group", default="BenchmarkGroup")
    p.add_argument("--size", type=int, default=1024, help="message body bytes")
    p.add_argument("--batch", type=int, default=1, help="messages per SendMessage / max per ReceiveMessage")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    p.add_argument("--channels", type=int, default=2, help="gRPC connections (one per proxy process)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.0, help="seconds not counted at the start")
    p.add_argument("--tag", default="bench")
    p.add_argument("--rate", type=float, default=0.0,
                   help="producer: total messages/s to send, paced (0: as fast as possible)")
    p.add_argument("--consumers", type=int, default=0,
                   help="e2e: consumer loops (default max(4, concurrency/4))")
    p.add_argument("--bare", action="store_true", help="run against a no-op grpc.aio server only")
    p.add_argument("--compare-bare", action="store_true", help="also run against a no-op server; print the ratio")
    p.add_argument("--tls", action="store_true",
                   help="connect with TLS, trusting the certificate the proxy shows (as the Java and Go SDKs do)")
    return p.parse_args(argv[1:])


def _md() -> tuple[tuple[str, str], ...]:
    return (("x-mq-client-id", f"mqbench-{os.getpid()}-{uuid.uuid4().hex[:8]}"), ("x-mq-language", "PYTHON"))


def _channels(endpoint: str, n: int, tls: bool = False) -> list[grpc.aio.Channel]:
    opts = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 64 << 20)]
    if not tls:
        return [grpc.aio.insecure_channel(endpoint, options=opts) for _ in range(max(1, n))]
    host, _, port = endpoint.rpartition(":")
    shown = ssl.get_server_certificate((host.strip("[]"), int(port)), timeout=10).encode()
    creds = grpc.ssl_channel_credentials(root_certificates=shown)
    return [grpc.aio.secure_channel(endpoint, creds, options=opts) for _ in range(max(1, n))]


async def _route(stub: Any, md: Any, topic: str) -> list[pb.MessageQueue]:
    req = spb.QueryRouteRequest()
    req.topic.name = topic
    r = await stub.QueryRoute(req, metadata=md, timeout=10)
    if r.status.code != C.OK:
        raise SystemExit(f"QueryRoute {topic}: {r.status.code} {r.status.message}")
    return list(r.message_queues)


_SEND_METHOD = "/apache.rocketmq.v2.MessagingService/SendMessage"
_ID_HOLE = b"Z" * 16  # not a hex digit: cannot occur in the random id prefix or the hex body
_STAMP_HOLE = b"T" + b"0" * 16
STAMP_MIN_SIZE = len(_STAMP_HOLE)


class SendTemplate:
    """A SendMessageRequest serialized once; per send only each message's id suffix and the send time at
    the head of its body are written into the bytes. Building 32 protobuf messages per RPC in Python
    costs the load client about as much CPU as the proxy spends on them, on the same two cores; the
    template keeps the client's share small. The template (and so each message's born timestamp) is
    rebuilt once a second."""

    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.prefix = uuid.uuid4().hex[:16].upper()
        rest = os.urandom(a.size // 2 + 1).hex().encode()
        self.body = (_STAMP_HOLE + rest)[: a.size] if a.size >= STAMP_MIN_SIZE else rest[: a.size]
        self.seq = 0
        self.built_at = -1.0
        self.data = bytearray()
        self.ids: list[int] = []
        self.stamps: list[int] = []

    def _build(self, now: float) -> None:
        a = self.a
        now_ms = int(now * 1000)
        req = spb.SendMessageRequest()
        for _ in range(a.batch):
            m = req.messages.add(body=self.body)
            m.topic.name = a.topic
            sp = m.system_properties
            sp.message_id = self.prefix + _ID_HOLE.decode()
            sp.tag = a.tag
            sp.message_type = pb.MessageType.NORMAL
            sp.body_encoding = pb.Encoding.IDENTITY
            sp.born_host = "mqbench"
            sp.born_timestamp.seconds = now_ms // 1000
            sp.born_timestamp.nanos = (now_ms % 1000) * 1_000_000
        self.data = data = bytearray(req.SerializeToString())
        self.ids = _find_all(data, _ID_HOLE)
        self.stamps = [i + 1 for i in _find_all(data, _STAMP_HOLE)] if self.body.startswith(_STAMP_HOLE) else []
        assert len(self.ids) == a.batch and len(self.stamps) in (0, a.batch)
        self.built_at = now

    def next(self) -> bytes:
        """The serialized request of the next send: fresh message ids, send time in microseconds."""
        now = time.time()
        if now - self.built_at >= 1.0:
            self._build(now)
        data, seq = self.data, self.seq
        for off in self.ids:
            data[off:off + 16] = b"%016X" % seq
            seq += 1
        self.seq = seq
        stamp = b"%016d" % int(now * 1e6)
        for off in self.stamps:
            data[off:off + 16] = stamp
        return bytes(data)


def sent_at_ms(body: bytes) -> float | None:
    """The send time a :class:`SendTemplate` wrote at the head of a body (None for another body)."""
    if len(body) < STAMP_MIN_SIZE or body[0] != 0x54:  # "T"
        return None
    try:
        return int(body[1:STAMP_MIN_SIZE]) / 1000
    except ValueError:
        return None


def _find_all(data: bytearray, needle: bytes) -> list[int]:
    out, i = [], data.find(needle)
    while i >= 0:
        out.append(i)
        i = data.find(needle, i + len(needle))
    return out


async def _produce(chan: grpc.aio.Channel, md: Any, a: argparse.Namespace, tmpl: SendTemplate, stats: Stats,
                   stop: float, counting: list[bool]) -> None:
    send = chan.unary_unary(_SEND_METHOD, request_serializer=None,
                            response_deserializer=spb.SendMessageResponse.FromString)
    # --rate: each of the producer loops sends its share of the rate on a fixed schedule
    interval = a.batch * a.concurrency / a.rate if a.rate > 0 else 0.0
    next_at = time.monotonic() + (interval * random.random() if interval else 0.0)
    while time.monotonic() < stop:
        if interval:
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at += interval
        req = tmpl.next()
        t0 = time.perf_counter()
        try:
            r = await send(req, metadata=md, timeout=10)
            ok = r.status.code == C.OK
            if not ok:
                stats.last_error = f"{r.status.code} {r.status.message}"
        except grpc.aio.AioRpcError as e:
            ok = False
            stats.last_error = str(e.code())
        if counting[0]:
            stats.rpcs += 1
            if ok:
                stats.msgs += a.batch
                stats.lat_ms.append((time.perf_counter() - t0) * 1000)
            else:
                stats.errors += 1


async def _consume(stub: Any, md: Any, a: argparse.Namespace, mq: pb.MessageQueue, stats: Stats, stop: float,
                   counting: list[bool], e2e: bool) -> None:
    req = spb.ReceiveMessageRequest(batch_size=max(a.batch, 1) if not e2e else 32)
    req.group.name = a.group
    req.message_queue.CopyFrom(mq)
    req.filter_expression.type = pb.FilterType.TAG
    req.filter_expression.expression = "*"
    req.invisible_duration.seconds = 30
    req.long_polling_timeout.seconds = 5
    since_ms = time.time() * 1000
    pending: asyncio.Future[None] | None = None
    while time.monotonic() < stop:
        ack = spb.AckMessageRequest()
        ack.group.name = a.group
        ack.topic.name = a.topic
        n = 0
        t0 = time.perf_counter()
        try:
            async for r in stub.ReceiveMessage(req, metadata=md, timeout=10):
                if r.HasField("message"):
                    sp = r.message.system_properties
                    ack.entries.add(message_id=sp.message_id, receipt_handle=sp.receipt_handle)
                    n += 1
                    if e2e and counting[0]:
                        now = time.time() * 1000  # when this message arrived, not when the poll began
                        sent = sent_at_ms(r.message.body)
                        if sent is not None and sent >= since_ms:  # messages of this run, not a backlog
                            stats.lat_ms.append(now - sent)
            if n and not e2e and counting[0]:  # consumer: how long a receive that got messages took
                stats.lat_ms.append((time.perf_counter() - t0) * 1000)
            if n:
                # the ack travels while the next receive long-polls (one ack in flight per loop, as a
                # push consumer acks apart from its receive loop)
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(_ack(stub, md, ack, stats))
        except grpc.aio.AioRpcError as e:
            stats.last_error = str(e.code())
            if counting[0]:
                stats.errors += 1
            await asyncio.sleep(0.1)
            continue
        if counting[0]:
            stats.rpcs += 1
            stats.msgs += n
    if pending is not None:
        await pending


async def _ack(stub: Any, md: Any, ack: Any, stats: Stats) -> None:
    try:
        r = await stub.AckMessage(ack, metadata=md, timeout=10)
        if r.status.code != C.OK:
            stats.last_error = f"ack {r.status.code} {r.status.message}"
    except grpc.aio.AioRpcError as e:
        stats.last_error = f"ack {e.code()}"


async def run(a: argparse.Namespace, mode: str, endpoint: str, label: str) -> Stats:
    chans = _channels(endpoint, a.channels, a.tls and label != "bare")  # the no-op server is plaintext
    stubs = [service_pb2_grpc.MessagingServiceStub(c) for c in chans]
    md = _md()
    stats = Stats()
    cons_stats = Stats()
    counting = [False]
    start = time.monotonic()
    stop = start + a.warmup + a.seconds
    tasks: list[asyncio.Task[None]] = []
    if mode in ("producer", "e2e"):
        tmpl = SendTemplate(a)
        tasks += [asyncio.create_task(_produce(chans[i % len(chans)], md, a, tmpl, stats, stop, counting))
                  for i in range(a.concurrency)]
    if mode in ("consumer", "e2e"):
        mqs = await _route(stubs[0], md, a.topic)
        brokers = {q.broker.name: q for q in mqs}
        sel = list(brokers.values())
        n = a.concurrency if mode == "consumer" else (a.consumers or max(4, a.concurrency // 4))
        tasks += [asyncio.create_task(_consume(stubs[i % len(stubs)], md, a, sel[i % len(sel)], cons_stats, stop,
                                               counting, mode == "e2e")) for i in range(n)]
    await asyncio.sleep(a.warmup)
    counting[0] = True
    t0 = time.monotonic()
    last = (0, 0)
    main_stats = cons_stats if mode == "consumer" else stats
    while time.monotonic() < stop:
        await asyncio.sleep(1.0)
        cur = (main_stats.msgs, cons_stats.msgs)
        line = f"[{label}] {time.monotonic() - t0:5.1f}s {cur[0] - last[0]:>8} msgs/s"
        if mode == "e2e":
            line += f"  consumed {cur[1] - last[1]:>8} msgs/s"
        if main_stats.errors:
            line += f"  errors {main_stats.errors} (last: {main_stats.last_error})"
        print(line, flush=True)
        last = cur
    elapsed = time.monotonic() - t0
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in chans:
        await c.close()
    main_stats.rpcs = main_stats.rpcs or 1
    rate = main_stats.msgs / elapsed
    s = main_stats
    print(f"[{label}] SUMMARY {mode}: {rate:,.0f} msgs/s, {s.rpcs / elapsed:,.0f} RPC/s, errors {s.errors}, "
          f"latency ms p50 {s.pct(0.5):.2f} p99 {s.pct(0.99):.2f} p999 {s.pct(0.999):.2f}"
          f"  (size {a.size}, batch {a.batch}, concurrency {a.concurrency}, channels {a.channels})", flush=True)
    if mode == "e2e":
        cs = cons_stats
        print(f"[{label}] SUMMARY consumed: {cs.msgs / elapsed:,.0f} msgs/s, end-to-end latency ms "
              f"p50 {cs.pct(0.5):.1f} p99 {cs.pct(0.99):.1f} p999 {cs.pct(0.999):.1f}", flush=True)
    s.lat_ms = [rate]  # keep the rate for comparisons
    return s


# -- the bare server: answers with OK and does nothing else -----------------------------------------


class BareService(service_pb2_grpc.MessagingServiceServicer):
    def __init__(self, port: int) -> None:
        self.port = port
        m = pb.Message(body=b"x" * 1024)
        m.topic.name = "BenchmarkTopic"
        m.system_properties.message_id = "0" * 34
        m.system_properties.receipt_handle = "0 0 30000 0 0 bare 0 0 0"
        self.msg = m

    async def QueryRoute(self, request: Any, context: Any) -> Any:
        r = spb.QueryRouteResponse(status=pb.Status(code=C.OK, message="OK"))
        q = r.message_queues.add(topic=request.topic, id=0, permission=pb.Permission.READ_WRITE)
        q.broker.name = "bare"
        q.broker.endpoints.addresses.add(host="127.0.0.1", port=self.port)
        return r

    async def SendMessage(self, request: Any, context: Any) -> Any:
        r = spb.SendMessageResponse(status=pb.Status(code=C.OK, message="OK"))
        for i, m in enumerate(request.messages):
            r.entries.add(status=pb.Status(code=C.OK, message="OK"), message_id=m.system_properties.message_id,
                          offset=i)
        return r

    async def ReceiveMessage(self, request: Any, context: Any) -> Any:
        yield spb.ReceiveMessageResponse(status=pb.Status(code=C.OK, message="OK"))
        for _ in range(request.batch_size or 32):
            yield spb.ReceiveMessageResponse(message=self.msg)

    async def AckMessage(self, request: Any, context: Any) -> Any:
        r = spb.AckMessageResponse(status=pb.Status(code=C.OK, message="OK"))
        for e in request.entries:
            r.entries.add(status=pb.Status(code=C.OK, message="OK"), message_id=e.message_id)
        return r


async def serve_bare(port: int) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    service_pb2_grpc.add_MessagingServiceServicer_to_server(BareService(port), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"bare server listening on {bound}", flush=True)
    await server.wait_for_termination()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_bare() -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    p = subprocess.Popen([sys.executable, "-m", "backends.tools.bench_grpc", "bare-server", str(port)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    p.stdout.readline()
    return p, f"127.0.0.1:{port}"


def _loop_run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bare-server":
        _loop_run(serve_bare(int(argv[1])))
        return 0
    if not argv or argv[0] not in ("producer", "consumer", "e2e"):
        print(__doc__)
        return 2
    mode = argv[0]
    a = _args(argv)
    if mode == "e2e" and a.size < STAMP_MIN_SIZE:
        print(f"mqbench e2e: --size must be at least {STAMP_MIN_SIZE} (the send time is written at the head "
              "of each body)", file=sys.stderr)
        return 2
    results: dict[str, float] = {}
    if not a.bare:
        results["proxy"] = _loop_run(run(a, mode, a.endpoint, "proxy")).lat_ms[0]
    if a.bare or a.compare_bare:
        if mode == "e2e":
            print("the bare server has no e2e shape; compare producer and consumer separately")
        else:
            proc, ep = _start_bare()
            try:
                results["bare"] = _loop_run(run(a, mode, ep, "bare")).lat_ms[0]
            finally:
                proc.terminate()
                proc.wait(10)
    if "proxy" in results and "bare" in results and results["bare"] > 0:
        print(f"RATIO proxy/bare = {results['proxy'] / results['bare']:.2f} "
              f"({results['proxy']:,.0f} / {results['bare']:,.0f} msgs/s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
