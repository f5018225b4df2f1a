"""Seeded fuzzing of the proxy's gRPC surface, shared by the Local (unit) and Cluster (e2e) tests.

Half the requests are filled field by field from the message descriptors with random values: names the
broker knows and names it does not, empty, blank, overlong and control-character strings, integer
extremes, unknown enum numbers, negative and huge durations, large bodies; the other half are valid
requests (``VALID``) with some fields, at any depth, cleared or randomised, so that they get past the
first checks to the code behind them. Each scenario returns what went wrong:
an answer without a ``status`` (a streaming answer needs one at least once), gRPC UNKNOWN (an exception
escaped a handler) or a call that outlived its deadline.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message as PbMessage

from protos.apache.rocketmq.v2 import definition_pb2 as pb
from protos.apache.rocketmq.v2 import service_pb2 as spb
from proxy.handlers import SERVICE

PER_METHOD = int(os.environ.get("FUZZ_PER_METHOD", "40"))  # more, and other seeds, when hunting
SEED = int(os.environ.get("FUZZ_SEED", "20261126"))
DEADLINE_S = 4.0
STRINGS = ["", " ", "TopicF", "TopicFifo", "GroupF", "TagA", "*", "TagA||TagB", "(a > 1", "a > 1 AND b = 'x'",
           "%RETRY%GroupF", "%DLQ%GroupF", "TBW102", "RMQ_SYS_TRANS_HALF_TOPIC", "broker-a", "broker-x",
           "127.0.0.1", "\x00\x01\x7f", "ü✓ 中文", "1 2 3 4 5 6 7 8 9", "x" * 300, "k" * 70000,
           "0 0 30000 0 0 broker-a 0 0 0", "MsgId", "client-1", "UNIQ_KEY", "__KEY"]
NAMES = ["TopicF", "TopicFifo", "GroupF", "broker-a", "broker-b"]
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
        return rnd.choice([v.number for v in f.enum_type.values] + [99, -1])
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return rnd.choice((0.0, -1.5, 1e30))
    values = _INT_TYPES[t]
    if rnd.random() < 0.6:
        return rnd.choice(values)
    return rnd.randrange(0 if min(values) == 0 else -1000, 100_000)


def _set_random(msg: PbMessage, f: FieldDescriptor, rnd: random.Random, depth: int) -> None:
    """Give field ``f`` of ``msg`` a random value (entries for a repeated or map field)."""
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        m = getattr(msg, f.name)
        for _ in range(rnd.randrange(0, 4)):
            m[rnd.choice(STRINGS[:20])] = rnd.choice(STRINGS[:20])
    elif f.is_repeated:
        rep = getattr(msg, f.name)
        for _ in range(rnd.randrange(0, 4)):
            if f.message_type is None:
                rep.append(_scalar(f, rnd))
            elif depth < 4:
                fill(rep.add(), rnd, depth + 1)
    elif f.message_type is not None:
        if depth < 4:
            fill(getattr(msg, f.name), rnd, depth + 1)
    else:
        try:
            setattr(msg, f.name, _scalar(f, rnd))
        except ValueError:  # e.g. an enum number a closed enum refuses
            pass


def fill(msg: PbMessage, rnd: random.Random, depth: int = 0) -> PbMessage:
    """Set a random subset of ``msg``'s fields to random values (nested messages up to depth 4)."""
    d: Descriptor = msg.DESCRIPTOR
    for f in d.fields:
        if rnd.random() >= 0.35:
            _set_random(msg, f, rnd, depth)
    return msg


def blend(msg: PbMessage, rnd: random.Random, keep: float = 0.85, depth: int = 0) -> PbMessage:
    """``msg`` (a valid request) with some fields, at any depth, cleared or given random values: requests
    that pass most checks, to reach the code behind them."""
    for f in msg.DESCRIPTOR.fields:
        is_map = f.message_type is not None and f.message_type.GetOptions().map_entry
        if rnd.random() < keep:
            if f.message_type is None or is_map or depth >= 4:
                continue
            if f.is_repeated:
                for sub in getattr(msg, f.name):
                    blend(sub, rnd, keep, depth + 1)
            elif msg.HasField(f.name):
                blend(getattr(msg, f.name), rnd, keep, depth + 1)
            continue
        msg.ClearField(f.name)
        if rnd.random() < 0.7:
            _set_random(msg, f, rnd, depth)
    return msg


_MQ = 'message_queue { topic { name: "TopicF" } id: 0 broker { name: "broker-a" } }'
_GROUP = 'group { name: "GroupF" }'
_TOPIC = 'topic { name: "TopicF" }'
_HANDLE = '"1 1764115200000 30000 0 0 broker-a 0 0 0"'
_MSG = ('messages { topic { name: "TopicF" } body: "hello" system_properties { message_id: "01VALID" tag: "TagA" '
        'keys: "k1" message_type: NORMAL body_encoding: IDENTITY born_host: "h" } user_properties { key: "a" '
        'value: "b" } }')
# one valid request per RPC (protobuf text format), the starting point of blend()
VALID: dict[str, str] = {
    "QueryRoute": f"{_TOPIC} endpoints {{ scheme: IPv4 addresses {{ host: \"127.0.0.1\" port: 8081 }} }}",
    "Heartbeat": f"{_GROUP} client_type: SIMPLE_CONSUMER",
    "SendMessage": _MSG + " " + _MSG.replace("TopicF", "TopicFifo").replace("NORMAL", "FIFO").replace(
        'born_host: "h"', 'born_host: "h" message_group: "g1"'),
    "QueryAssignment": f"{_TOPIC} {_GROUP} endpoints {{ scheme: IPv4 addresses {{ host: \"127.0.0.1\" port: 1 }} }}",
    "ReceiveMessage": f"{_GROUP} {_MQ} filter_expression {{ type: TAG expression: \"*\" }} batch_size: 8 "
                      "invisible_duration { seconds: 30 } long_polling_timeout { seconds: 1 } auto_renew: false",
    "AckMessage": f"{_GROUP} {_TOPIC} entries {{ message_id: \"01VALID\" receipt_handle: {_HANDLE} }}",
    "ForwardMessageToDeadLetterQueue": f"{_GROUP} {_TOPIC} receipt_handle: {_HANDLE} message_id: \"01VALID\" "
                                       "delivery_attempt: 16 max_delivery_attempts: 16",
    "PullMessage": f"{_GROUP} {_MQ} offset: 0 batch_size: 8 filter_expression {{ type: TAG expression: \"*\" }} "
                   "long_polling_timeout { seconds: 1 }",
    "UpdateOffset": f"{_GROUP} {_MQ} offset: 1",
    "GetOffset": f"{_GROUP} {_MQ}",
    "QueryOffset": f"{_MQ} query_offset_policy: END",
    "EndTransaction": f"{_TOPIC} message_id: \"01VALID\" transaction_id: \"01VALID 0 0 broker-a\" "
                      "resolution: COMMIT source: SOURCE_CLIENT",
    "Telemetry": "settings { client_type: PRODUCER publishing { topics { name: \"TopicF\" } } }",
    "NotifyClientTermination": _GROUP,
    "ChangeInvisibleDuration": f"{_GROUP} {_TOPIC} receipt_handle: {_HANDLE} message_id: \"01VALID\" "
                               "invisible_duration { seconds: 10 }",
    "RecallMessage": f"{_TOPIC} recall_handle: \"x\"",
}


def request(method: Any, rnd: random.Random) -> PbMessage:
    """A random request for ``method``: half built from nothing, half a blended valid one."""
    req_cls = getattr(spb, method.input_type.name)
    valid = VALID.get(method.name)
    if valid is None or rnd.random() < 0.5:
        return fill(req_cls(), rnd)
    return blend(text_format.Parse(valid, req_cls()), rnd)


def metadata(rnd: random.Random) -> tuple[tuple[str, str], ...]:
    r = rnd.random()
    if r < 0.1:
        return ()
    if r < 0.2:
        return (("x-mq-client-id", ""),)
    return (("x-mq-client-id", f"fuzz-{rnd.randrange(4)}"), ("authorization", ""), ("x-mq-language", "PYTHON"))


def path(method: Any) -> str:
    return f"/{SERVICE.full_name}/{method.name}"


async def invoke(channel: grpc.aio.Channel, method: Any, req: bytes, md: Any) -> list[Any]:
    """One call of ``method`` with serialized ``req``, in the method's shape; its answers. A bidi stream
    (Telemetry) gets the one command and a half-close, and only its first answer is read."""
    deserialize = getattr(spb, method.output_type.name).FromString
    if method.client_streaming:
        stream = channel.stream_stream(path(method), request_serializer=None,
                                       response_deserializer=deserialize)(metadata=md, timeout=DEADLINE_S)
        await stream.write(req)
        await stream.done_writing()
        out = []
        async for r in stream:
            out.append(r)
            break
        stream.cancel()
        return out
    if method.server_streaming:
        return [r async for r in channel.unary_stream(path(method), request_serializer=None,
                                                       response_deserializer=deserialize)(
            req, metadata=md, timeout=DEADLINE_S)]
    return [await channel.unary_unary(path(method), request_serializer=None, response_deserializer=deserialize)(
        req, metadata=md, timeout=DEADLINE_S)]


async def call(channel: grpc.aio.Channel, method: Any, req: bytes, md: Any) -> list[str]:
    """One call; returns what is wrong with its outcome (empty when fine)."""
    try:
        out = await invoke(channel, method, req, md)
    except grpc.aio.AioRpcError as e:
        if e.code() in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED):
            return [f"{method.name}: {e.code().name} {e.details()!r}"]
        return []  # e.g. RESOURCE_EXHAUSTED for an oversized request: gRPC's own answer
    if method.client_streaming or any(r.HasField("status") for r in out):
        return []  # (Telemetry: an answer to the command, or the end of the stream, is enough)
    return [f"{method.name}: answer without a status ({len(out)} responses)"]


async def still_serving(channel: grpc.aio.Channel, queues: int) -> None:
    """A normal QueryRoute of TopicF is answered with its ``queues`` queues."""
    req = spb.QueryRouteRequest()
    req.topic.name = "TopicF"
    r = await unary(channel, "QueryRoute")(req.SerializeToString(), metadata=(("x-mq-client-id", "after-fuzz"),),
                                          timeout=DEADLINE_S)
    assert r.status.code == pb.Code.OK and len(r.message_queues) == queues, r


def mutate(handle: str, rnd: random.Random) -> str:
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


def unary(channel: grpc.aio.Channel, name: str) -> Any:
    m = SERVICE.methods_by_name[name]
    return channel.unary_unary(path(m), request_serializer=None,
                               response_deserializer=getattr(spb, m.output_type.name).FromString)


def logged_errors(records: Iterable[logging.LogRecord]) -> list[str]:
    """Errors the proxy logged: an exception a handler did not expect is answered INTERNAL_SERVER_ERROR
    and logged as one."""
    return [f"logged: {r.getMessage()} {r.exc_info[1]!r}" if r.exc_info else f"logged: {r.getMessage()}"
            for r in records if r.levelno >= logging.ERROR]


async def random_requests(channel: grpc.aio.Channel) -> list[str]:
    """PER_METHOD random requests to every RPC (each RPC's calls run concurrently)."""
    rnd = random.Random(SEED)
    problems: list[str] = []
    for method in SERVICE.methods:
        calls = [call(channel, method, request(method, rnd).SerializeToString(), metadata(rnd))
                 for _ in range(PER_METHOD)]
        for res in await asyncio.gather(*calls):
            problems += res
    return problems


async def undecodable_requests(channel: grpc.aio.Channel) -> list[str]:
    """Random bytes that are no protobuf message to every RPC: each answered INTERNAL "invalid protobuf
    byte sequence" (as grpc-java answers), not UNKNOWN."""
    rnd = random.Random(SEED + 1)
    md = (("x-mq-client-id", "fuzz-undecodable"),)  # so that Telemetry reads its first command
    problems = []
    for method in SERVICE.methods:
        for _ in range(5):
            garbage = b"\xff" + rnd.randbytes(rnd.randrange(1, 200))  # 0xff: not a valid field tag
            try:
                await invoke(channel, method, garbage, md)
                problems.append(f"{method.name}: undecodable request answered")
            except grpc.aio.AioRpcError as e:
                if e.code() != grpc.StatusCode.INTERNAL or "invalid protobuf byte sequence" not in (e.details() or ""):
                    problems.append(f"{method.name}: {e.code().name} {e.details()!r}")
    return problems


async def receipt_handles(channel: grpc.aio.Channel, brokers: Iterable[str]) -> list[tuple[str, str]]:
    """Sends four TopicF messages and receives them as GroupF: (message id, receipt handle) pairs."""
    md = (("x-mq-client-id", "fuzz-handles"),)
    send = spb.SendMessageRequest()
    for i in range(4):
        m = send.messages.add(body=b"fuzz")
        m.topic.name = "TopicF"
        m.system_properties.message_id = f"FUZZ{i}"
        m.system_properties.message_type = pb.MessageType.NORMAL
    sr = await unary(channel, "SendMessage")(send.SerializeToString(), metadata=md, timeout=DEADLINE_S)
    assert sr.status.code == pb.Code.OK, sr
    handles: list[tuple[str, str]] = []
    receive = SERVICE.methods_by_name["ReceiveMessage"]
    for broker in brokers:
        rr = spb.ReceiveMessageRequest(batch_size=8)
        rr.group.name = "GroupF"
        rr.message_queue.topic.name = "TopicF"
        rr.message_queue.broker.name = broker
        rr.filter_expression.expression = "*"
        rr.invisible_duration.seconds = 30
        rr.long_polling_timeout.seconds = 1
        for r in await invoke(channel, receive, rr.SerializeToString(), md):
            if r.HasField("message"):
                sp = r.message.system_properties
                handles.append((sp.message_id, sp.receipt_handle))
    return handles


async def mutated_handles(channel: grpc.aio.Channel, handles: list[tuple[str, str]]) -> list[str]:
    """Ack, ChangeInvisibleDuration and ForwardMessageToDeadLetterQueue with damaged copies of real
    receipt handles."""
    md = (("x-mq-client-id", "fuzz-handles"),)
    rnd = random.Random(SEED)
    calls = []
    for _ in range(3 * PER_METHOD):
        mid, handle = rnd.choice(handles)
        bad = mutate(handle, rnd)
        kind = rnd.randrange(3)
        if kind == 0:
            ack = spb.AckMessageRequest()
            ack.entries.add(message_id=mid, receipt_handle=bad)
            req: Any = ack
            name = "AckMessage"
        elif kind == 1:
            req = spb.ChangeInvisibleDurationRequest(receipt_handle=bad, message_id=mid)
            req.invisible_duration.seconds = rnd.choice([0, 10, 30, -5, 10**9])
            name = "ChangeInvisibleDuration"
        else:
            req = spb.ForwardMessageToDeadLetterQueueRequest(receipt_handle=bad, message_id=mid,
                                                             delivery_attempt=rnd.choice([1, 16, 0, -1]),
                                                             max_delivery_attempts=rnd.choice([16, 0, -1]))
            name = "ForwardMessageToDeadLetterQueue"
        req.group.name = "GroupF"
        req.topic.name = "TopicF"
        calls.append(unary(channel, name)(req.SerializeToString(), metadata=md, timeout=DEADLINE_S))
    results = await asyncio.gather(*calls, return_exceptions=True)
    return [repr(r) for r in results if isinstance(r, BaseException) or not r.HasField("status")]
