"""The one interface the proxy calls: :class:`Backend`.

Two implementations: ``backends.local.LocalBackend`` calls an in-process broker directly and
``backends.cluster.ClusterBackend`` finds brokers through the NameServer and speaks remoting to them.
Both take a ``broker_name`` to select the broker (the proxy picks it from the route), and both raise
:class:`BackendError` carrying the remoting response code the broker gave (``backends.remoting.codes``).
"""

from __future__ import annotations

import abc
import asyncio
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from backends.model import (
    Message,
    MessageExt,
    SubscriptionGroupConfig,
    TopicConfig,
)


class BackendError(Exception):
    """A failure with the RocketMQ remoting response code the broker (or NameServer) answered."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"CODE: {self.code} DESC: {self.message}"


# --- Route (RocketMQ's TopicRouteData, JSON keys as the NameServer sends them) --------------------


@dataclass(slots=True)
class QueueData:
    broker_name: str
    read_queue_nums: int
    write_queue_nums: int
    perm: int
    topic_sys_flag: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "brokerName": self.broker_name,
            "readQueueNums": self.read_queue_nums,
            "writeQueueNums": self.write_queue_nums,
            "perm": self.perm,
            "topicSysFlag": self.topic_sys_flag,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> QueueData:
        return cls(
            str(d["brokerName"]),
            int(d.get("readQueueNums", 0)),
            int(d.get("writeQueueNums", 0)),
            int(d.get("perm", 0)),
            int(d.get("topicSysFlag", 0)),
        )


@dataclass(slots=True)
class BrokerData:
    cluster: str
    broker_name: str
    broker_addrs: dict[int, str] = field(default_factory=dict)  # broker id -> "host:port"

    @property
    def master_addr(self) -> str | None:
        return self.broker_addrs.get(0)

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "brokerName": self.broker_name,
            "brokerAddrs": {str(k): v for k, v in self.broker_addrs.items()},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BrokerData:
        return cls(
            str(d.get("cluster", "")),
            str(d["brokerName"]),
            {int(k): str(v) for k, v in (d.get("brokerAddrs") or {}).items()},
        )


@dataclass(slots=True)
class TopicRouteData:
    queue_datas: list[QueueData] = field(default_factory=list)
    broker_datas: list[BrokerData] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "orderTopicConf": None,
            "queueDatas": [q.to_json() for q in self.queue_datas],
            "brokerDatas": [b.to_json() for b in self.broker_datas],
            "filterServerTable": {},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TopicRouteData:
        return cls(
            [QueueData.from_json(q) for q in d.get("queueDatas") or []],
            [BrokerData.from_json(b) for b in d.get("brokerDatas") or []],
        )


# --- Results --------------------------------------------------------------------------------------


class SendStatus(enum.Enum):
    SEND_OK = 0
    FLUSH_DISK_TIMEOUT = 1
    FLUSH_SLAVE_TIMEOUT = 2
    SLAVE_NOT_AVAILABLE = 3


@dataclass(slots=True)
class SendResult:
    status: SendStatus
    msg_id: str  # UNIQ_KEY (the id clients see)
    offset_msg_id: str
    queue_id: int
    queue_offset: int
    broker_name: str
    transaction_id: str = ""
    recall_handle: str = ""


class PopStatus(enum.Enum):
    FOUND = 0
    NO_NEW_MSG = 1
    POLLING_FULL = 2
    POLLING_NOT_FOUND = 3


@dataclass(slots=True)
class PopRequest:
    group: str
    topic: str
    queue_id: int = -1  # -1: every queue of the broker
    max_msg_nums: int = 32
    invisible_time_ms: int = 60_000
    poll_time_ms: int = 0  # long polling budget; 0 answers at once
    expression_type: str = "TAG"  # TAG | SQL92
    expression: str = "*"
    order: bool = False  # FIFO consumption
    attempt_id: str = ""


@dataclass(slots=True)
class PopResult:
    status: PopStatus
    # Each message carries properties[MessageConst.POP_CK] = its extra info (the receipt handle core)
    # and reconsume_times = delivery attempt - 1.
    messages: list[MessageExt] = field(default_factory=list)
    pop_time: int = 0
    invisible_time: int = 0
    rest_num: int = 0


class PullStatus(enum.Enum):
    FOUND = 0
    NO_NEW_MSG = 1
    NO_MATCHED_MSG = 2
    OFFSET_ILLEGAL = 3


@dataclass(slots=True)
class PullResult:
    status: PullStatus
    next_begin_offset: int
    min_offset: int
    max_offset: int
    messages: list[MessageExt] = field(default_factory=list)


# Called by a backend when a broker asks a producer group about an orphaned half message:
# (producer_group, message, transaction_id) -> None. The proxy forwards it to a producer's Telemetry.
TransactionCheckListener = Callable[[str, MessageExt, str], Awaitable[None]]


@dataclass(slots=True)
class ConsumerClient:
    """A gRPC consumer as the proxy knows it from its Heartbeat and Telemetry settings."""

    client_id: str
    group: str
    client_addr: str  # host:port
    language: str  # the SDK's x-mq-language (JAVA, PYTHON, HTTP for Node.js, ...)
    version: int  # MQVersion ordinal of the SDK's x-mq-client-version (see backends.remoting.version)
    consume_type: str  # CONSUME_ACTIVELY (SimpleConsumer) or CONSUME_PASSIVELY (PushConsumer)
    subscriptions: list[tuple[str, str, str]]  # (topic, TAG | SQL92, expression)


class ConsumerCommander(Protocol):
    """What a proxy can ask one of its gRPC consumers on its Telemetry stream (RocketMQ's
    PrintThreadStackTraceCommand and VerifyMessageCommand); None: the consumer is not on this proxy."""

    async def thread_stack_trace(self, client_id: str) -> str | None: ...

    async def verify_message(self, client_id: str, msg: MessageExt) -> int | None:
        """The consumer's answer (a definition_pb2.Code value) after consuming ``msg`` once."""
        ...


class Backend(abc.ABC):
    """What the proxy needs from the brokers. All methods may raise :class:`BackendError`."""

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def shutdown(self) -> None: ...

    @abc.abstractmethod
    async def healthy(self) -> bool:
        """True when at least one broker is reachable."""

    # -- metadata --
    @abc.abstractmethod
    async def get_route(self, topic: str) -> TopicRouteData:
        """Route of ``topic``; BackendError(TOPIC_NOT_EXIST) when no broker serves it."""

    @abc.abstractmethod
    async def get_topic_config(self, topic: str) -> TopicConfig | None: ...

    @abc.abstractmethod
    async def get_subscription_group(self, group: str) -> SubscriptionGroupConfig | None: ...

    # -- produce --
    @abc.abstractmethod
    async def send_message(
        self, broker_name: str, messages: list[Message], timeout: float
    ) -> list[SendResult]:
        """Append ``messages`` (one topic, one queue: ``messages[i].queue_id``) to the broker."""

    @abc.abstractmethod
    async def end_transaction(
        self,
        broker_name: str,
        producer_group: str,
        topic: str,
        msg_id: str,
        transaction_id: str,
        commit: bool,
        from_check: bool,
    ) -> None: ...

    @abc.abstractmethod
    async def recall_message(self, broker_name: str, topic: str, recall_handle: str) -> str:
        """Cancel a pending delayed message; returns its message id."""

    # -- POP consume --
    @abc.abstractmethod
    async def pop_message(self, broker_name: str, request: PopRequest, timeout: float) -> PopResult: ...

    @abc.abstractmethod
    async def ack_message(self, broker_name: str, group: str, topic: str, extra_info: str) -> None: ...

    async def ack_messages(self, broker_name: str, group: str, topic: str,
                           extra_infos: list[str]) -> list[BackendError | None]:
        """Ack several messages of one broker (RocketMQ's BATCH_ACK_MESSAGE); one result per entry,
        None when acked. This default acks them in a few concurrent lanes through ``ack_message``;
        backends override it with one call per batch."""
        results: list[BackendError | None] = [None] * len(extra_infos)
        lanes = min(8, len(extra_infos))

        async def lane(k: int) -> None:
            for i in range(k, len(extra_infos), lanes):
                try:
                    await self.ack_message(broker_name, group, topic, extra_infos[i])
                except BackendError as e:
                    results[i] = e

        if lanes == 1:
            await lane(0)
        elif lanes:
            await asyncio.gather(*(lane(k) for k in range(lanes)))
        return results

    @abc.abstractmethod
    async def change_invisible_time(
        self, broker_name: str, group: str, topic: str, extra_info: str, invisible_time_ms: int
    ) -> str:
        """Returns the new extra info (a new receipt handle core)."""

    @abc.abstractmethod
    async def forward_to_dead_letter_queue(
        self, broker_name: str, group: str, topic: str, extra_info: str, max_reconsume_times: int
    ) -> None:
        """Move the popped message to %DLQ%<group> at once and ack it."""

    # -- pull consume and offsets --
    @abc.abstractmethod
    async def pull_message(
        self,
        broker_name: str,
        group: str,
        topic: str,
        queue_id: int,
        offset: int,
        max_nums: int,
        expression_type: str,
        expression: str,
        poll_time_ms: int,
        timeout: float,
    ) -> PullResult: ...

    @abc.abstractmethod
    async def query_consumer_offset(self, broker_name: str, group: str, topic: str, queue_id: int) -> int:
        """Committed offset; BackendError(QUERY_NOT_FOUND) when the group has none."""

    @abc.abstractmethod
    async def update_consumer_offset(
        self, broker_name: str, group: str, topic: str, queue_id: int, offset: int
    ) -> None: ...

    @abc.abstractmethod
    async def get_max_offset(self, broker_name: str, topic: str, queue_id: int) -> int: ...

    @abc.abstractmethod
    async def get_min_offset(self, broker_name: str, topic: str, queue_id: int) -> int: ...

    @abc.abstractmethod
    async def search_offset(self, broker_name: str, topic: str, queue_id: int, timestamp_ms: int) -> int: ...

    # -- transaction check-back --
    @abc.abstractmethod
    def set_transaction_check_listener(self, listener: TransactionCheckListener) -> None: ...

    @abc.abstractmethod
    async def register_producer(self, client_id: str, producer_group: str) -> None:
        """Tell the brokers this proxy speaks for a producer of ``producer_group`` (for check-back)."""

    @abc.abstractmethod
    async def register_consumer(self, client: ConsumerClient) -> None:
        """A gRPC consumer's heartbeat (Local mode: the broker lists it among the group's connections,
        mqadmin consumerConnection, until it stops heartbeating)."""

    @abc.abstractmethod
    async def unregister_consumer(self, group: str, client_id: str) -> None:
        """The consumer ended (NotifyClientTermination)."""

    @abc.abstractmethod
    def set_consumer_commander(self, commander: ConsumerCommander) -> None:
        """Local mode: admin requests for a gRPC consumer (consumerStatus, consume a message directly)
        reach it through ``commander``."""
