"""Conversion between apache.rocketmq.v2 messages and the domain model (RocketMQ's GrpcConverter)."""

from __future__ import annotations

import gzip
import hashlib
import time
import zlib

from backends.model import Message, MessageConst, MessageExt, SysFlag, offset_msg_id
from protos.apache.rocketmq.v2 import definition_pb2 as pb

MC = MessageConst
_MD5 = pb.DigestType.MD5
_IDENTITY = pb.Encoding.IDENTITY
_GZIP = pb.Encoding.GZIP
_MT_NORMAL = pb.MessageType.NORMAL
_MT_FIFO = pb.MessageType.FIFO
_MT_DELAY = pb.MessageType.DELAY
_MT_TRANSACTION = pb.MessageType.TRANSACTION

# Properties never shown to users as user_properties.
HIDDEN_PROPERTIES: frozenset[str] = MC.RESERVED | {
    MC.TRANSACTION_ID, "INNER_NUM", "CLUSTER", "TRACE_ON", MC.DLQ_ORIGIN_TOPIC, MC.DLQ_ORIGIN_MESSAGE_ID,
}


def ts_to_ms(ts: object) -> int:
    return int(ts.seconds) * 1000 + int(ts.nanos) // 1_000_000  # type: ignore[attr-defined]


def duration_to_ms(d: object) -> int:
    return int(d.seconds) * 1000 + int(d.nanos) // 1_000_000  # type: ignore[attr-defined]


def set_ts(ts: object, ms: int) -> None:
    ts.seconds = ms // 1000  # type: ignore[attr-defined]
    ts.nanos = (ms % 1000) * 1_000_000  # type: ignore[attr-defined]


def parse_peer(peer: str | None) -> tuple[str, int]:
    """grpc peer "ipv4:1.2.3.4:5678" / "ipv6:[::1]:5678" -> (host, port)."""
    if not peer:
        return ("127.0.0.1", 0)
    _, _, rest = peer.partition(":")
    host, _, port = rest.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if "%" in host:
        host = host.split("%", 1)[0]
    if host.startswith("::ffff:") and "." in host:  # an IPv4 client of a dual-stack listener
        host = host[7:]
    try:
        return (host, int(port))
    except ValueError:
        return (host, 0)


_md5 = hashlib.md5
_UNIQ = MC.UNIQ_CLIENT_MESSAGE_ID_KEYIDX
_TAGS = MC.TAGS
_KEYS = MC.KEYS
_BORN_TS = MC.BORN_TIMESTAMP
_BORN_HOST = MC.BORN_HOST
_GZIP_I = int(_GZIP)
_MT_TRANSACTION_I = int(_MT_TRANSACTION)


def to_message(m: pb.Message, topic: str, queue_id: int, born_host: tuple[str, int],
               producer_group: str) -> Message:
    """A validated SendMessage entry -> the internal Message (properties as RocketMQ's proxy sets them)."""
    sp = m.system_properties
    up = m.user_properties
    props = dict(up) if up else {}
    props[_UNIQ] = sp.message_id
    tag = sp.tag
    if tag:
        props[_TAGS] = tag
    keys = sp.keys
    if keys:
        props[_KEYS] = " ".join(keys)
    if sp.HasField("message_group"):
        props[MC.SHARDING_KEY] = sp.message_group
    if sp.HasField("delivery_timestamp"):
        props[MC.TIMER_DELIVER_MS] = str(ts_to_ms(sp.delivery_timestamp))
    sys_flag = 0
    if sp.message_type == _MT_TRANSACTION_I:
        props[MC.TRANSACTION_PREPARED] = "true"
        props[MC.PRODUCER_GROUP] = producer_group
        sys_flag |= SysFlag.TRANSACTION_PREPARED_TYPE
        if sp.HasField("orphaned_transaction_recovery_duration"):
            secs = sp.orphaned_transaction_recovery_duration.seconds
            if secs > 0:
                props[MC.CHECK_IMMUNITY_TIME_IN_SECONDS] = str(secs)
    trace = sp.trace_context
    if trace:
        props[MC.TRACE_CONTEXT] = trace
    bt = sp.born_timestamp
    born_ts = bt.seconds * 1000 + bt.nanos // 1_000_000
    if not born_ts:
        born_ts = int(time.time() * 1000)
    props[_BORN_TS] = str(born_ts)
    bh = sp.born_host
    if bh:
        props[_BORN_HOST] = bh
    if sp.body_encoding == _GZIP_I:
        sys_flag |= SysFlag.COMPRESSED
    return Message(topic, m.body, props, 0, queue_id, sys_flag, born_ts, born_host)


def message_type_of(props: dict[str, str]) -> int:
    if props.get(MC.TRANSACTION_PREPARED) == "true":
        return _MT_TRANSACTION
    if MC.SHARDING_KEY in props:
        return _MT_FIFO
    if MC.TIMER_DELIVER_MS in props or MC.DELAY_TIME_LEVEL in props or MC.TIMER_DELAY_SEC in props:
        return _MT_DELAY
    return _MT_NORMAL


def _decompress(body: bytes) -> bytes | None:
    try:
        if body[:2] == b"\x1f\x8b":
            return gzip.decompress(body)
        return zlib.decompress(body)
    except Exception:
        return None


def to_pb_message(ext: MessageExt, topic: str | None = None, receipt_handle: str = "",
                  invisible_ms: int = 0, into: pb.Message | None = None) -> pb.Message:
    """A stored/popped message -> apache.rocketmq.v2.Message with its system properties; ``into`` (an
    empty message, e.g. a response's field) is filled in place instead of a new one (no copy)."""
    props = ext.properties
    body = ext.body
    encoding = _IDENTITY
    if ext.sys_flag & SysFlag.COMPRESSED:
        plain = _decompress(body)
        if plain is None:
            encoding = _GZIP
        else:
            body = plain
    if into is None:
        msg = pb.Message(body=body)
    else:
        msg = into
        msg.body = body
    msg.topic.name = topic or ext.topic
    sp = msg.system_properties
    sp.body_encoding = encoding  # type: ignore[assignment]
    digest = sp.body_digest
    digest.type = _MD5
    digest.checksum = _md5(body).hexdigest().upper()
    get = props.get
    store_host = ext.store_host
    sp.message_id = get(_UNIQ) or offset_msg_id(store_host, ext.commitlog_offset)
    tag = get(_TAGS)
    if tag:
        sp.tag = tag
    keys = get(_KEYS)
    if keys:
        sp.keys.extend(k for k in keys.split(" ") if k)
    sp.message_type = message_type_of(props)  # type: ignore[assignment]
    group = get(MC.SHARDING_KEY)
    if group:
        sp.message_group = group
    ms = ext.born_timestamp
    ts = sp.born_timestamp
    ts.seconds = ms // 1000
    ts.nanos = (ms % 1000) * 1_000_000
    sp.born_host = get(_BORN_HOST) or ext.born_host[0]
    ms = ext.store_timestamp
    ts = sp.store_timestamp
    ts.seconds = ms // 1000
    ts.nanos = (ms % 1000) * 1_000_000
    sp.store_host = f"{store_host[0]}:{store_host[1]}"
    deliver = get(MC.TIMER_DELIVER_MS)
    if deliver and deliver.isdigit():
        set_ts(sp.delivery_timestamp, int(deliver))
    if receipt_handle:
        sp.receipt_handle = receipt_handle
    sp.queue_id = ext.queue_id
    sp.queue_offset = ext.queue_offset
    if invisible_ms:
        d = sp.invisible_duration
        d.seconds = invisible_ms // 1000
        d.nanos = (invisible_ms % 1000) * 1_000_000
    sp.delivery_attempt = ext.reconsume_times + 1
    trace = get(MC.TRACE_CONTEXT)
    if trace:
        sp.trace_context = trace
    origin_topic = get(MC.DLQ_ORIGIN_TOPIC)
    if origin_topic:
        sp.dead_letter_queue.topic = origin_topic
        sp.dead_letter_queue.message_id = get(MC.DLQ_ORIGIN_MESSAGE_ID, "")
    user = props.keys() - HIDDEN_PROPERTIES
    if user:
        up = msg.user_properties
        for k in user:
            up[k] = props[k]
    return msg


def java_hash(s: str) -> int:
    """Java String.hashCode (UTF-16 code units), so every proxy process picks the same queue."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h
