"""Domain types shared by the store, the broker, the NameServer, the backends and the proxy.

Names follow RocketMQ's own vocabulary (MessageExt, TopicConfig, SubscriptionGroupConfig, ...).
JSON forms (``to_json``/``from_json``) use RocketMQ's camelCase keys, as the remoting protocol and the
store's config files carry them.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload


class MessageConst:
    """Message property keys (RocketMQ's MessageConst)."""

    KEYS = "KEYS"
    TAGS = "TAGS"
    WAIT_STORE_MSG_OK = "WAIT"
    DELAY_TIME_LEVEL = "DELAY"
    RETRY_TOPIC = "RETRY_TOPIC"
    REAL_TOPIC = "REAL_TOPIC"
    REAL_QUEUE_ID = "REAL_QID"
    TRANSACTION_PREPARED = "TRAN_MSG"
    PRODUCER_GROUP = "PGROUP"
    MIN_OFFSET = "MIN_OFFSET"
    MAX_OFFSET = "MAX_OFFSET"
    ORIGIN_MESSAGE_ID = "ORIGIN_MESSAGE_ID"
    RECONSUME_TIME = "RECONSUME_TIME"
    MSG_REGION = "MSG_REGION"
    TRACE_SWITCH = "TRACE_ON"
    UNIQ_CLIENT_MESSAGE_ID_KEYIDX = "UNIQ_KEY"
    MAX_RECONSUME_TIMES = "MAX_RECONSUME_TIMES"
    CONSUME_START_TIMESTAMP = "CONSUME_START_TIME"
    POP_CK = "POP_CK"
    POP_CK_OFFSET = "POP_CK_OFFSET"
    FIRST_POP_TIME = "1ST_POP_TIME"
    SHARDING_KEY = "__SHARDINGKEY"
    TRANSACTION_CHECK_TIMES = "TRANSACTION_CHECK_TIMES"
    CHECK_IMMUNITY_TIME_IN_SECONDS = "CHECK_IMMUNITY_TIME_IN_SECONDS"
    TIMER_DELIVER_MS = "TIMER_DELIVER_MS"
    TIMER_DELAY_SEC = "TIMER_DELAY_SEC"
    TIMER_DELAY_MS = "TIMER_DELAY_MS"
    TIMER_OUT_MS = "TIMER_OUT_MS"
    TIMER_ENQUEUE_MS = "TIMER_ENQUEUE_MS"
    TIMER_DEQUEUE_MS = "TIMER_DEQUEUE_MS"
    TIMER_ROLL_TIMES = "TIMER_ROLL_TIMES"
    TIMER_DEL_UNIQKEY = "TIMER_DEL_UNIQKEY"
    TRACE_CONTEXT = "TRACE_CONTEXT"
    BORN_HOST = "__BORNHOST"
    BORN_TIMESTAMP = "BORN_TIMESTAMP"
    DLQ_ORIGIN_TOPIC = "DLQ_ORIGIN_TOPIC"
    DLQ_ORIGIN_MESSAGE_ID = "DLQ_ORIGIN_MESSAGE_ID"
    INNER_MULTI_QUEUE_OFFSET = "INNER_MULTI_QUEUE_OFFSET"
    TRANSACTION_ID = "__transactionId__"

    # Keys a user may not set (RocketMQ's STRING_HASH_SET of system keys).
    RESERVED: frozenset[str] = frozenset(
        {
            "KEYS", "TAGS", "WAIT", "DELAY", "RETRY_TOPIC", "REAL_TOPIC", "REAL_QID", "TRAN_MSG",
            "PGROUP", "MIN_OFFSET", "MAX_OFFSET", "BUYER_ID", "ORIGIN_MESSAGE_ID", "TRANSFER_FLAG",
            "CORRECTION_FLAG", "MQ2_FLAG", "RECONSUME_TIME", "MSG_REGION", "TRACE_ON", "UNIQ_KEY",
            "MAX_RECONSUME_TIMES", "CONSUME_START_TIME", "POP_CK", "POP_CK_OFFSET", "1ST_POP_TIME",
            "__SHARDINGKEY", "TRANSACTION_CHECK_TIMES", "CHECK_IMMUNITY_TIME_IN_SECONDS",
            "TIMER_DELIVER_MS", "TIMER_DELAY_SEC", "TIMER_DELAY_MS", "TIMER_OUT_MS",
            "TIMER_ENQUEUE_MS", "TIMER_DEQUEUE_MS", "TIMER_ROLL_TIMES", "TIMER_DEL_UNIQKEY",
            "TRACE_CONTEXT", "__BORNHOST", "BORN_TIMESTAMP", "DLQ_ORIGIN_TOPIC",
            "DLQ_ORIGIN_MESSAGE_ID", "INNER_MULTI_QUEUE_OFFSET", "INNER_NUM", "CLUSTER",
        }
    )


class SysFlag:
    """Message sysFlag bits (RocketMQ's MessageSysFlag)."""

    COMPRESSED = 0x1
    MULTI_TAGS = 0x2
    TRANSACTION_NOT_TYPE = 0x0
    TRANSACTION_PREPARED_TYPE = 0x4
    TRANSACTION_COMMIT_TYPE = 0x8
    TRANSACTION_ROLLBACK_TYPE = 0xC
    TRANSACTION_MASK = 0xC
    BORNHOST_V6 = 0x10
    STOREHOST_V6 = 0x20
    NEED_UNWRAP = 0x40
    INNER_BATCH = 0x80


class Perm:
    """Topic/queue permission bits (RocketMQ's PermName)."""

    PRIORITY = 0x8
    READ = 0x4
    WRITE = 0x2
    INHERIT = 0x1
    READ_WRITE = READ | WRITE

    @staticmethod
    def readable(perm: int) -> bool:
        return bool(perm & Perm.READ)

    @staticmethod
    def writeable(perm: int) -> bool:
        return bool(perm & Perm.WRITE)


class TopicMessageType(enum.StrEnum):
    """Value of the topic attribute ``message.type``."""

    UNSPECIFIED = "UNSPECIFIED"
    NORMAL = "NORMAL"
    FIFO = "FIFO"
    DELAY = "DELAY"
    TRANSACTION = "TRANSACTION"
    MIXED = "MIXED"


MESSAGE_TYPE_ATTRIBUTE = "message.type"

# System topics and prefixes (RocketMQ's TopicValidator / MixAll).
RETRY_GROUP_TOPIC_PREFIX = "%RETRY%"
DLQ_GROUP_TOPIC_PREFIX = "%DLQ%"
SCHEDULE_TOPIC = "SCHEDULE_TOPIC_XXXX"
TIMER_TOPIC = "rmq_sys_wheel_timer"
TRANS_HALF_TOPIC = "RMQ_SYS_TRANS_HALF_TOPIC"
TRANS_OP_HALF_TOPIC = "RMQ_SYS_TRANS_OP_HALF_TOPIC"
REVIVE_TOPIC_PREFIX = "rmq_sys_REVIVE_LOG_"
SELF_TEST_TOPIC = "SELF_TEST_TOPIC"
AUTO_CREATE_TOPIC_KEY = "TBW102"
BENCHMARK_TOPIC = "BenchmarkTest"
SYSTEM_TOPIC_PREFIX = "rmq_sys_"
SYSTEM_TOPICS: frozenset[str] = frozenset(
    {
        AUTO_CREATE_TOPIC_KEY, SCHEDULE_TOPIC, BENCHMARK_TOPIC, TRANS_HALF_TOPIC, TRANS_OP_HALF_TOPIC,
        TIMER_TOPIC, SELF_TEST_TOPIC, "OFFSET_MOVED_EVENT", "TRANS_CHECK_MAX_TIME_TOPIC",
        "RMQ_SYS_TRACE_TOPIC", "rmq_sys_SYNC_BROKER_MEMBER",
    }
)


def is_system_topic(topic: str) -> bool:
    return topic in SYSTEM_TOPICS or topic.startswith(SYSTEM_TOPIC_PREFIX)


def retry_topic(group: str) -> str:
    return RETRY_GROUP_TOPIC_PREFIX + group


def dlq_topic(group: str) -> str:
    return DLQ_GROUP_TOPIC_PREFIX + group


# Properties codec: key \x01 value \x02 ... (RocketMQ's MessageDecoder.messageProperties2String).
NAME_VALUE_SEPARATOR = "\x01"
PROPERTY_SEPARATOR = "\x02"


def properties_to_string(props: dict[str, str]) -> str:
    if not props:
        return ""
    return "".join(f"{k}\x01{v}\x02" for k, v in props.items())


def string_to_properties(text: str) -> dict[str, str]:
    props: dict[str, str] = {}
    if not text:
        return props
    for item in text.split(PROPERTY_SEPARATOR):
        if not item:
            continue
        k, sep, v = item.partition(NAME_VALUE_SEPARATOR)
        if sep:
            props[k] = v
    return props


@dataclass(slots=True)
class Message:
    """A message as a producer sends it (RocketMQ's Message plus the broker-side inner fields)."""

    topic: str
    body: bytes
    properties: dict[str, str] = field(default_factory=dict)
    flag: int = 0
    queue_id: int = 0
    sys_flag: int = 0
    born_timestamp: int = 0  # ms since epoch
    born_host: tuple[str, int] = ("127.0.0.1", 0)
    reconsume_times: int = 0
    prepared_transaction_offset: int = 0

    @property
    def tags(self) -> str | None:
        return self.properties.get(MessageConst.TAGS)

    @property
    def keys(self) -> list[str]:
        k = self.properties.get(MessageConst.KEYS)
        return k.split(" ") if k else []

    @property
    def uniq_key(self) -> str | None:
        return self.properties.get(MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX)


@dataclass(slots=True)
class MessageExt(Message):
    """A stored message as read back from the commitlog (RocketMQ's MessageExt)."""

    queue_offset: int = 0
    commitlog_offset: int = 0
    store_size: int = 0
    store_timestamp: int = 0  # ms since epoch
    store_host: tuple[str, int] = ("127.0.0.1", 0)
    body_crc: int = 0

    @property
    def offset_msg_id(self) -> str:
        """RocketMQ's offset message id: hex(store IPv4, port i32, commitlog offset i64)."""
        return offset_msg_id(self.store_host, self.commitlog_offset)

    @property
    def msg_id(self) -> str:
        """The id clients see: UNIQ_KEY when set, else the offset message id."""
        return self.uniq_key or self.offset_msg_id


def offset_msg_id(store_host: tuple[str, int], commitlog_offset: int) -> str:
    import socket
    import struct

    ip = socket.inet_aton(store_host[0]) if ":" not in store_host[0] else socket.inet_pton(
        socket.AF_INET6, store_host[0]
    )
    return (ip + struct.pack(">iq", store_host[1], commitlog_offset)).hex().upper()


def decode_offset_msg_id(msg_id: str) -> tuple[tuple[str, int], int]:
    """Inverse of :func:`offset_msg_id`; raises ValueError on a malformed id."""
    import socket
    import struct

    raw = bytes.fromhex(msg_id)
    if len(raw) == 16:
        host = socket.inet_ntoa(raw[:4])
        port, off = struct.unpack(">iq", raw[4:])
    elif len(raw) == 28:
        host = socket.inet_ntop(socket.AF_INET6, raw[:16])
        port, off = struct.unpack(">iq", raw[16:])
    else:
        raise ValueError(f"not an offset message id: {msg_id!r}")
    if not 0 < port < 65536 or off < 0:
        # e.g. a unique key (also 16 bytes): its process id sits where the port would be
        raise ValueError(f"not an offset message id: {msg_id!r} (port {port}, offset {off})")
    return (host, port), off



@dataclass(slots=True)
class DataVersion:
    """RocketMQ's DataVersion: the version of a broker's topic table (and its other config files), which the
    NameServer compares to tell whether a registration carries changes."""

    timestamp: int = 0
    counter: int = 0
    state_version: int = 0

    def next_version(self) -> None:
        self.timestamp = int(time.time() * 1000)
        self.counter += 1

    def to_json(self) -> dict[str, Any]:
        return {"stateVersion": self.state_version, "timestamp": self.timestamp, "counter": self.counter}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> DataVersion:
        d = d or {}
        counter = d.get("counter", 0)
        if isinstance(counter, dict):  # AtomicLong serialized by some versions as {"value": n}
            counter = counter.get("value", 0)
        return cls(int(d.get("timestamp", 0)), int(counter or 0), int(d.get("stateVersion", 0)))

@dataclass(slots=True)
class TopicConfig:
    """RocketMQ's TopicConfig; ``attributes`` holds e.g. ``{"message.type": "FIFO"}``."""

    topic_name: str
    read_queue_nums: int = 8
    write_queue_nums: int = 8
    perm: int = Perm.READ_WRITE
    topic_filter_type: str = "SINGLE_TAG"
    topic_sys_flag: int = 0
    order: bool = False
    attributes: dict[str, str] = field(default_factory=dict)

    @property
    def message_type(self) -> TopicMessageType:
        value = self.attributes.get(MESSAGE_TYPE_ATTRIBUTE, "")
        try:
            return TopicMessageType(value.upper()) if value else TopicMessageType.NORMAL
        except ValueError:
            return TopicMessageType.NORMAL

    def to_json(self) -> dict[str, Any]:
        return {
            "topicName": self.topic_name,
            "readQueueNums": self.read_queue_nums,
            "writeQueueNums": self.write_queue_nums,
            "perm": self.perm,
            "topicFilterType": self.topic_filter_type,
            "topicSysFlag": self.topic_sys_flag,
            "order": self.order,
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TopicConfig:
        return cls(
            topic_name=str(d["topicName"]),
            read_queue_nums=int(d.get("readQueueNums", 8)),
            write_queue_nums=int(d.get("writeQueueNums", 8)),
            perm=int(d.get("perm", Perm.READ_WRITE)),
            topic_filter_type=str(d.get("topicFilterType", "SINGLE_TAG")),
            topic_sys_flag=int(d.get("topicSysFlag", 0)),
            order=bool(d.get("order", False)),
            attributes={str(k): str(v) for k, v in (d.get("attributes") or {}).items()},
        )


class ConsumeInitMode(enum.StrEnum):
    """Where a consumer group with no committed offset starts (an extension: RocketMQ 5 is always MAX)."""

    LATEST = "LATEST"
    EARLIEST = "EARLIEST"
    TIMESTAMP = "TIMESTAMP"

    @classmethod
    def parse(cls, where: str | None) -> ConsumeInitMode | None:
        """A ``consumeFromWhere`` value (also RocketMQ's CONSUME_FROM_* names); None when unset or unknown."""
        return _INIT_MODE_NAMES.get((where or "").upper())


_INIT_MODE_NAMES = {
    "EARLIEST": ConsumeInitMode.EARLIEST, "FIRST": ConsumeInitMode.EARLIEST,
    "CONSUME_FROM_FIRST_OFFSET": ConsumeInitMode.EARLIEST,
    "LATEST": ConsumeInitMode.LATEST,
    "TIMESTAMP": ConsumeInitMode.TIMESTAMP, "CONSUME_FROM_TIMESTAMP": ConsumeInitMode.TIMESTAMP,
}


@dataclass(slots=True)
class SubscriptionGroupConfig:
    """RocketMQ's SubscriptionGroupConfig."""

    group_name: str
    consume_enable: bool = True
    consume_from_min_enable: bool = True
    consume_broadcast_enable: bool = True
    consume_message_orderly: bool = False
    retry_queue_nums: int = 1
    retry_max_times: int = 16
    broker_id: int = 0
    which_broker_when_consume_slowly: int = 1
    notify_consumer_ids_changed_enable: bool = True
    group_sys_flag: int = 0
    consume_timeout_minute: int = 15
    attributes: dict[str, str] = field(default_factory=dict)

    def consume_from(self) -> tuple[ConsumeInitMode | None, int]:
        """Where the group starts on a queue it never consumed, from its ``consumeFromWhere`` attribute
        (None: not set), and its ``consumeTimestamp`` (ms, 0 when absent or not a number)."""
        try:
            ts = int(self.attributes.get("consumeTimestamp", "0"))
        except ValueError:
            ts = 0
        return ConsumeInitMode.parse(self.attributes.get("consumeFromWhere")), ts

    def to_json(self) -> dict[str, Any]:
        return {
            "groupName": self.group_name,
            "consumeEnable": self.consume_enable,
            "consumeFromMinEnable": self.consume_from_min_enable,
            "consumeBroadcastEnable": self.consume_broadcast_enable,
            "consumeMessageOrderly": self.consume_message_orderly,
            "retryQueueNums": self.retry_queue_nums,
            "retryMaxTimes": self.retry_max_times,
            "brokerId": self.broker_id,
            "whichBrokerWhenConsumeSlowly": self.which_broker_when_consume_slowly,
            "notifyConsumerIdsChangedEnable": self.notify_consumer_ids_changed_enable,
            "groupSysFlag": self.group_sys_flag,
            "consumeTimeoutMinute": self.consume_timeout_minute,
            "attributes": dict(self.attributes),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SubscriptionGroupConfig:
        def b(key: str, default: bool) -> bool:
            v = d.get(key, default)
            return v if isinstance(v, bool) else str(v).lower() == "true"

        return cls(
            group_name=str(d["groupName"]),
            consume_enable=b("consumeEnable", True),
            consume_from_min_enable=b("consumeFromMinEnable", True),
            consume_broadcast_enable=b("consumeBroadcastEnable", True),
            consume_message_orderly=b("consumeMessageOrderly", False),
            retry_queue_nums=int(d.get("retryQueueNums", 1)),
            retry_max_times=int(d.get("retryMaxTimes", 16)),
            broker_id=int(d.get("brokerId", 0)),
            which_broker_when_consume_slowly=int(d.get("whichBrokerWhenConsumeSlowly", 1)),
            notify_consumer_ids_changed_enable=b("notifyConsumerIdsChangedEnable", True),
            group_sys_flag=int(d.get("groupSysFlag", 0)),
            consume_timeout_minute=int(d.get("consumeTimeoutMinute", 15)),
            attributes={str(k): str(v) for k, v in (d.get("attributes") or {}).items()},
        )


# --- Store results (RocketMQ's PutMessageStatus / GetMessageStatus) --------------------------------


class PutMessageStatus(enum.Enum):
    PUT_OK = 0
    FLUSH_DISK_TIMEOUT = 1
    FLUSH_SLAVE_TIMEOUT = 2
    SLAVE_NOT_AVAILABLE = 3
    SERVICE_NOT_AVAILABLE = 4
    CREATE_MAPPED_FILE_FAILED = 5
    MESSAGE_ILLEGAL = 6
    PROPERTIES_SIZE_EXCEEDED = 7
    OS_PAGE_CACHE_BUSY = 8
    UNKNOWN_ERROR = 9
    DISK_FULL = 10
    IO_ERROR = 11


@dataclass(slots=True)
class AppendResult:
    """Where one message landed."""

    commitlog_offset: int
    store_size: int
    queue_offset: int
    store_timestamp: int
    msg_id: str  # offset message id


class AppendResults(Sequence[AppendResult]):
    """The AppendResults of one stored batch, built on access: the store's put path keeps three ints
    per message (``placed`` = [commitlog offset, size, queue offset, ...]) instead of an object and a
    message id string per message."""

    __slots__ = ("placed", "store_timestamp", "msg_id_prefix")

    def __init__(self, placed: list[int], store_timestamp: int, msg_id_prefix: str) -> None:
        self.placed = placed
        self.store_timestamp = store_timestamp
        self.msg_id_prefix = msg_id_prefix

    def __len__(self) -> int:
        return len(self.placed) // 3

    def _at(self, i: int) -> AppendResult:
        pos, size, qoff = self.placed[3 * i:3 * i + 3]
        return AppendResult(pos, size, qoff, self.store_timestamp, f"{self.msg_id_prefix}{pos:016X}")

    @overload
    def __getitem__(self, i: int) -> AppendResult: ...

    @overload
    def __getitem__(self, i: slice) -> list[AppendResult]: ...

    def __getitem__(self, i: int | slice) -> AppendResult | list[AppendResult]:
        n = len(self)
        if isinstance(i, slice):
            return [self._at(k) for k in range(*i.indices(n))]
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("append result index out of range")
        return self._at(i)

    def __iter__(self) -> Iterator[AppendResult]:
        return (self._at(k) for k in range(len(self)))

    def __repr__(self) -> str:
        return f"AppendResults({list(self)!r})"


@dataclass(slots=True)
class PutMessageResult:
    status: PutMessageStatus
    results: Sequence[AppendResult] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is PutMessageStatus.PUT_OK


class GetMessageStatus(enum.Enum):
    FOUND = 0
    NO_MATCHED_MESSAGE = 1
    MESSAGE_WAS_REMOVING = 2
    OFFSET_FOUND_NULL = 3
    OFFSET_OVERFLOW_BADLY = 4
    OFFSET_OVERFLOW_ONE = 5
    OFFSET_TOO_SMALL = 6
    NO_MATCHED_LOGIC_QUEUE = 7
    NO_MESSAGE_IN_QUEUE = 8


@dataclass(slots=True)
class GetMessageResult:
    status: GetMessageStatus
    next_begin_offset: int
    min_offset: int
    max_offset: int
    # Raw commitlog records (bytes exactly as stored), one per message, in queue order.
    records: list[bytes] = field(default_factory=list)
    # Queue offsets of the records above (same length).
    queue_offsets: list[int] = field(default_factory=list)
