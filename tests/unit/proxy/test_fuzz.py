"""Bad input never crashes the proxy: every MessagingService RPC gets random requests (and raw garbage)
over a real gRPC channel, against a real broker in Local mode.

Each request is filled field by field from the message descriptor with seeded random values: names
the broker knows and names it does not, empty, blank, overlong and control-character strings, integer
extremes, unknown enum numbers, negative and huge durations, large bodies. An answer must carry a
``status`` (a streaming answer at least once); an exception escaping a handler (gRPC UNKNOWN) or a call
that outlives its deadline fails the test, as does any error the proxy logs (an unexpected exception is
answered INTERNAL_SERVER_ERROR and logged). Afterwards the proxy must still route a normal request.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message as PbMessage

from backends.broker.controller import BrokerController
from backends.local import LocalBackend
from backends.model import SubscriptionGroupConfig, TopicConfig
from protos.apache.rocketmq.v2 import definition_pb2 as pb
from protos.apache.rocketmq.v2 import service_pb2 as spb
from proxy.config import ProxyConfig
from proxy.server import ProxyServer

pytestmark = pytest.mark.timeout(300)

SERVICE = spb.DESCRIPTOR.services_by_name["MessagingService"]
PER_METHOD = int(os.environ.get("FUZZ_PER_METHOD", "40"))  # more, and other seeds, when hunting
SEED = int(os.environ.get("FUZZ_SEED", "20261126"))
DEADLINE_S = 4.0
STRINGS = ["", " ", "TopicF", "TopicFifo", "GroupF", "TagA", "*", "TagA||TagB", "(a > 1", "a > 1 AND b = 'x'",
           "%RETRY%GroupF", "%DLQ%GroupF", "TBW102", "RMQ_SYS_TRANS_HALF_TOPIC", "broker-a", "broker-x",
           "127.0.0.1", "\x00\x01\x7f", "ü✓ 中文", "1 2 3 4 5 6 7 8 9", "x" * 300, "k" * 70000,
           "0 0 30000 0 0 broker-a 0 0 0", "MsgId", "client-1", "UNIQ_KEY", "__KEY"]
NAMES = ["TopicF", "TopicFifo", "GroupF", "broker-a"]
INTS32 = [0, 1, -1, 7, 2**31 - 1, -(2**31)]
INTS64 = INTS32 + [2**63 - 1, -(2**63), 10**15]
_INT_TYPES = {
    FieldDescriptor.TYPE_INT32: INTS32, FieldDescriptor.TYPE_SINT32: INTS32, FieldDescriptor.TYPE_SFIXED32: INTS32,
    FieldDescriptor.TYPE_INT64: INTS64, FieldDescriptor.TYPE_SINT64: INTS64, FieldDescriptor.TYPE_SFIXED64: INTS64,
    FieldDescriptor.TYPE_UINT32: [0, 1, 2**32 - 1], FieldDescriptor.TYPE_FIXED32: [0, 1, 2**32 - 1],
    FieldDescriptor.TYPE_UINT64: [0, 1, 2**64 - 1], FieldDescriptor.TYPE_FIXED64: [0, 1, 2**64 - 1],
}


def _scalar(f: FieldDescriptor, rnd: random.Random) -> Any:
    t = f.type
    if t == FieldDescriptor.TYPE_STRING:
        if f.name == "name" and rnd.random() < 0.7:  # Resource.name / Broker.name: mostly ones that exist
            return rnd.choice(NAMES)
        if rnd.random() < 0.7:
            return rnd.choice(STRINGS)
        return "".join(chr(rnd.choice((rnd.randrange(32, 127), rnd.randrange(0x80, 0xD7FF))))
                       for _ in range(rnd.randrange(1, 40)))
    if t == FieldDescriptor.TYPE_BYTES:
        return rnd.choice((b"", b"x", rnd.randbytes(rnd.randrange(1, 3000)), b"\x00" * 100))
    if t == FieldDescriptor.TYPE_BOOL:
        return rnd.random() < 0.5
    if t == FieldDescriptor.TYPE_ENUM:
        numbers = [v.number for v in f.enum_type.values]
        return rnd.choice(numbers + [99, -1])
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return rnd.choice((0.0, -1.5, 1e300 if t == FieldDescriptor.TYPE_DOUBLE else 1e30))
    values = _INT_TYPES[t]
    return rnd.choice(values) if rnd.random() < 0.6 else rnd.randrange(-1000, 100_000) if values[-1] != 2**32 - 1 \
        and values[-1] != 2**64 - 1 else rnd.randrange(0, 100_000)


def fill(msg: PbMessage, rnd: random.Random, depth: int = 0) -> PbMessage:
    """Set a random subset of ``msg``'s fields to random values (nested messages up to depth 4)."""
    d: Descriptor = msg.DESCRIPTOR
    for f in d.fields:
        if rnd.random() < 0.35:
            continue
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            m = getattr(msg, f.name)
            for _ in range(rnd.randrange(0, 4)):
                m[rnd.choice(STRINGS[:20])] = rnd.choice(STRINGS[:20])
        elif f.is_repeated:
            rep = getattr(msg, f.name)
            for _ in range(rnd.randrange(0, 4)):
                if f.message_type is not None:
                    if depth < 4:
                        fill(rep.add(), rnd, depth + 1)
                else:
                    rep.append(_scalar(f, rnd))
        elif f.message_type is not None:
            if depth < 4:
                fill(getattr(msg, f.name), rnd, depth + 1)
        else:
            try:
                setattr(msg, f.name, _scalar(f, rnd))
            except ValueError:  # e.g. an enum number a closed enum refuses
                pass
    return msg


def _metadata(rnd: random.Random) -> tuple[tuple[str, str], ...]:
    r = rnd.random()
    if r < 0.1:
        return ()
    if r < 0.2:
        return (("x-mq-client-id", ""),)
    return (("x-mq-client-id", f"fuzz-{rnd.randrange(4)}"), ("authorization", ""), ("x-mq-language", "PYTHON"))


@pytest.fixture
async def proxy(broker: BrokerController) -> AsyncIterator[tuple[ProxyServer, grpc.aio.Channel]]:
    tcm = broker.topic_config_manager
    tcm.update_topic_config(TopicConfig("TopicF", 4, 4))
    tcm.update_topic_config(TopicConfig("TopicFifo", 2, 2, attributes={"message.type": "FIFO"}))
    broker.subscription_group_manager.update_subscription_group_config(
        SubscriptionGroupConfig("GroupF", attributes={"consumeFromWhere": "EARLIEST"}))
    server = ProxyServer(ProxyConfig(grpc_server_port=0, grpc_bind_address="127.0.0.1"), LocalBackend(broker),
                         manage_backend=False)
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}",
                                        options=[("grpc.max_receive_message_length", 64 << 20)])
    try:
        yield server, channel
    finally:
        await channel.close()
        await server.shutdown(0)


def _path(method: Any) -> str:
    return f"/{SERVICE.full_name}/{method.name}"


async def _call(channel: grpc.aio.Channel, method: Any, req: bytes, md: Any) -> list[str]:
    """One call; returns what is wrong with its outcome (empty when fine)."""
    resp_cls = getattr(spb, method.output_type.name)
    name = method.name
    try:
        if method.client_streaming:  # Telemetry: one command, then half-close
            call = channel.stream_stream(_path(method), request_serializer=None,
                                         response_deserializer=resp_cls.FromString)(metadata=md, timeout=DEADLINE_S)
            await call.write(req)
            await call.done_writing()
            async for _ in call:
                break  # an answer to the command (or the end of the stream) is enough
            call.cancel()
            return []
        if method.server_streaming:
            out = [r async for r in channel.unary_stream(_path(method), request_serializer=None,
                                                          response_deserializer=resp_cls.FromString)(
                req, metadata=md, timeout=DEADLINE_S)]
            if not any(r.HasField("status") for r in out):
                return [f"{name}: stream without a status ({len(out)} responses)"]
            return []
        r = await channel.unary_unary(_path(method), request_serializer=None,
                                      response_deserializer=resp_cls.FromString)(req, metadata=md, timeout=DEADLINE_S)
        return [] if r.HasField("status") else [f"{name}: answer without a status"]
    except grpc.aio.AioRpcError as e:
        if e.code() in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED):
            return [f"{name}: {e.code().name} {e.details()!r}"]
        return []  # e.g. RESOURCE_EXHAUSTED for an oversized request: gRPC's own answer


async def test_random_requests_to_every_rpc_get_a_status(proxy: tuple[ProxyServer, grpc.aio.Channel],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    _, channel = proxy
    caplog.set_level(logging.ERROR)
    rnd = random.Random(SEED)
    problems: list[str] = []
    for method in SERVICE.methods:
        req_cls = getattr(spb, method.input_type.name)
        calls = []
        for _ in range(PER_METHOD):
            req = fill(req_cls(), rnd)
            calls.append(_call(channel, method, req.SerializeToString(), _metadata(rnd)))
        for res in await asyncio.gather(*calls):
            problems += res
    # an exception a handler did not expect is answered INTERNAL_SERVER_ERROR and logged as one
    problems += [f"logged: {r.getMessage()} {r.exc_info[1]!r}" if r.exc_info else f"logged: {r.getMessage()}"
                 for r in caplog.records if r.levelno >= logging.ERROR]
    assert not problems, "\n".join(sorted(set(problems))[:30])
    await _still_serving(channel)


async def test_undecodable_requests_leave_the_proxy_serving(proxy: tuple[ProxyServer, grpc.aio.Channel]) -> None:
    _, channel = proxy
    rnd = random.Random(7)
    for method in SERVICE.methods:
        for _ in range(5):
            garbage = rnd.randbytes(rnd.randrange(1, 200))
            try:
                await _call(channel, method, garbage, _metadata(rnd))
            except Exception as e:  # noqa: BLE001 -- any client-side error is fine; the server is checked below
                assert not isinstance(e, asyncio.TimeoutError)
    await _still_serving(channel)


async def test_large_body_is_refused_with_its_code(proxy: tuple[ProxyServer, grpc.aio.Channel]) -> None:
    _, channel = proxy
    req = spb.SendMessageRequest()
    m = req.messages.add(body=b"x" * (4 * 1024 * 1024 + 1))
    m.topic.name = "TopicF"
    m.system_properties.message_id = "BIG"
    m.system_properties.message_type = pb.MessageType.NORMAL
    r = await channel.unary_unary(_path(SERVICE.methods_by_name["SendMessage"]), request_serializer=None,
                                  response_deserializer=spb.SendMessageResponse.FromString)(
        req.SerializeToString(), metadata=(("x-mq-client-id", "c"),), timeout=DEADLINE_S)
    assert r.status.code == pb.Code.MESSAGE_BODY_TOO_LARGE
    await _still_serving(channel)


async def _still_serving(channel: grpc.aio.Channel) -> None:
    req = spb.QueryRouteRequest()
    req.topic.name = "TopicF"
    r = await channel.unary_unary(_path(SERVICE.methods_by_name["QueryRoute"]),
                                  request_serializer=spb.QueryRouteRequest.SerializeToString,
                                  response_deserializer=spb.QueryRouteResponse.FromString)(
        req, metadata=(("x-mq-client-id", "after-fuzz"),), timeout=DEADLINE_S)
    assert r.status.code == pb.Code.OK and len(r.message_queues) == 4


async def test_unknown_broker_name_is_a_bad_request(proxy: tuple[ProxyServer, grpc.aio.Channel]) -> None:
    """RocketMQ's proxy answers a queue on a broker it cannot find with INVALID_BROKER_NAME -> BAD_REQUEST."""
    _, channel = proxy
    req = spb.GetOffsetRequest()
    req.group.name = "GroupF"
    req.message_queue.topic.name = "TopicF"
    req.message_queue.broker.name = "broker-x"
    r = await channel.unary_unary(_path(SERVICE.methods_by_name["GetOffset"]), request_serializer=None,
                                  response_deserializer=spb.GetOffsetResponse.FromString)(
        req.SerializeToString(), metadata=(("x-mq-client-id", "c"),), timeout=DEADLINE_S)
    assert r.status.code == pb.Code.BAD_REQUEST and "cannot find broker broker-x" in r.status.message


def _mutate(handle: str, rnd: random.Random) -> str:
    """A receipt handle with one field replaced, a character flipped, or cut short."""
    parts = handle.split(" ")
    r = rnd.random()
    if r < 0.6:
        i = rnd.randrange(len(parts))
        parts[i] = rnd.choice(["", "-1", "0", "x", str(2**63), str(-(2**63)), str(2**70), "1e3", "broker-x",
                               "TopicF", "%RETRY%GroupF", "00", " ", "\u00e9", parts[i] * 3])
        return " ".join(parts)
    if r < 0.8 and handle:
        i = rnd.randrange(len(handle))
        return handle[:i] + chr(rnd.randrange(32, 127)) + handle[i + 1:]
    return handle[: rnd.randrange(len(handle) + 1)] + rnd.choice(["", " ", "  9", " 1 2 3"])


async def test_mutated_receipt_handles_get_a_status(proxy: tuple[ProxyServer, grpc.aio.Channel],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Ack, ChangeInvisibleDuration and ForwardMessageToDeadLetterQueue with damaged copies of a real
    receipt handle: each answers a status and nothing is logged as an error."""
    _, channel = proxy
    caplog.set_level(logging.ERROR)
    md = (("x-mq-client-id", "fuzz-handles"),)

    def unary(name: str, resp_cls: Any) -> Any:
        return channel.unary_unary(_path(SERVICE.methods_by_name[name]), request_serializer=None,
                                   response_deserializer=resp_cls.FromString)

    send = spb.SendMessageRequest()
    for i in range(4):
        m = send.messages.add(body=b"fuzz")
        m.topic.name = "TopicF"
        m.system_properties.message_id = f"FUZZ{i}"
        m.system_properties.message_type = pb.MessageType.NORMAL
    sr = await unary("SendMessage", spb.SendMessageResponse)(send.SerializeToString(), metadata=md,
                                                            timeout=DEADLINE_S)
    assert sr.status.code == pb.Code.OK
    handles = []
    for qid in range(4):
        rr = spb.ReceiveMessageRequest(batch_size=8)
        rr.group.name = "GroupF"
        rr.message_queue.topic.name = "TopicF"
        rr.message_queue.broker.name = "broker-a"
        rr.message_queue.id = qid
        rr.filter_expression.expression = "*"
        rr.invisible_duration.seconds = 30
        rr.long_polling_timeout.seconds = 1
        call = channel.unary_stream(_path(SERVICE.methods_by_name["ReceiveMessage"]), request_serializer=None,
                                    response_deserializer=spb.ReceiveMessageResponse.FromString)
        async for r in call(rr.SerializeToString(), metadata=md, timeout=DEADLINE_S):
            if r.HasField("message"):
                handles.append((r.message.system_properties.message_id, r.message.system_properties.receipt_handle))
        if handles:
            break
    assert handles, "nothing received to take receipt handles from"
    rnd = random.Random(SEED)
    calls = []
    for _ in range(3 * PER_METHOD):
        mid, handle = rnd.choice(handles)
        bad = _mutate(handle, rnd)
        kind = rnd.randrange(3)
        if kind == 0:
            ack = spb.AckMessageRequest()
            ack.group.name = "GroupF"
            ack.topic.name = "TopicF"
            ack.entries.add(message_id=mid, receipt_handle=bad)
            calls.append(unary("AckMessage", spb.AckMessageResponse)(ack.SerializeToString(), metadata=md,
                                                                    timeout=DEADLINE_S))
        elif kind == 1:
            ch = spb.ChangeInvisibleDurationRequest(receipt_handle=bad, message_id=mid)
            ch.group.name = "GroupF"
            ch.topic.name = "TopicF"
            ch.invisible_duration.seconds = rnd.choice([0, 10, 30, -5, 10**9])
            calls.append(unary("ChangeInvisibleDuration", spb.ChangeInvisibleDurationResponse)(
                ch.SerializeToString(), metadata=md, timeout=DEADLINE_S))
        else:
            fw = spb.ForwardMessageToDeadLetterQueueRequest(receipt_handle=bad, message_id=mid,
                                                            delivery_attempt=rnd.choice([1, 16, 0, -1]),
                                                            max_delivery_attempts=rnd.choice([16, 0, -1]))
            fw.group.name = "GroupF"
            fw.topic.name = "TopicF"
            calls.append(unary("ForwardMessageToDeadLetterQueue", spb.ForwardMessageToDeadLetterQueueResponse)(
                fw.SerializeToString(), metadata=md, timeout=DEADLINE_S))
    results = await asyncio.gather(*calls, return_exceptions=True)
    problems = [repr(r) for r in results if isinstance(r, BaseException) or not r.HasField("status")]
    problems += [f"logged: {r.getMessage()} {r.exc_info[1]!r}" if r.exc_info else f"logged: {r.getMessage()}"
                 for r in caplog.records if r.levelno >= logging.ERROR]
    assert not problems, "\n".join(sorted(set(problems))[:30])
    await _still_serving(channel)
