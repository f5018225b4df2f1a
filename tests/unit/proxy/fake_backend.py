"""A small in-memory Backend for the proxy's unit tests."""

from __future__ import annotations

import copy
import time
from typing import Any

from backends.api import (
    Backend,
    BackendError,
    BrokerData,
    ConsumerClient,
    ConsumerCommander,
    PopRequest,
    PopResult,
    PopStatus,
    PullResult,
    PullStatus,
    QueueData,
    SendResult,
    SendStatus,
    TopicRouteData,
    TransactionCheckListener,
)
from backends.model import (
    Message,
    MessageConst,
    MessageExt,
    SubscriptionGroupConfig,
    TopicConfig,
    offset_msg_id,
)
from backends.remoting.codes import ResponseCode


class FakeBackend(Backend):
    def __init__(self, brokers: tuple[str, ...] = ("broker-a",), queues: int = 4) -> None:
        self.brokers = brokers
        self.queues = queues
        self.topics: dict[str, TopicConfig] = {}
        self.groups: dict[str, SubscriptionGroupConfig] = {}
        self.stored: list[tuple[str, MessageExt]] = []  # (broker, message)
        self.acked: list[tuple[str, str, str, str]] = []
        self.changed: list[tuple[str, str, int]] = []
        self.sent_batches: list[tuple[str, int, int]] = []  # broker, queue id, size
        self.send_error: BackendError | None = None
        self.send_status = SendStatus.SEND_OK
        self.listener: TransactionCheckListener | None = None
        self.producers: list[tuple[str, str]] = []
        self.consumers: dict[str, ConsumerClient] = {}
        self.ended: list[tuple[Any, ...]] = []
        self.is_healthy = True
        self.offsets: dict[tuple[str, str, int], int] = {}

    def add_topic(self, name: str, message_type: str | None = None, perm: int = 6) -> None:
        attrs = {"message.type": message_type} if message_type else {}
        self.topics[name] = TopicConfig(name, self.queues, self.queues, perm=perm, attributes=attrs)

    async def start(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def healthy(self) -> bool:
        return self.is_healthy

    async def get_route(self, topic: str) -> TopicRouteData:
        tc = self.topics.get(topic)
        if tc is None:
            raise BackendError(ResponseCode.TOPIC_NOT_EXIST, f"No topic route info in name server for the topic: {topic}")
        return TopicRouteData(
            [QueueData(b, tc.read_queue_nums, tc.write_queue_nums, tc.perm) for b in self.brokers],
            [BrokerData("DefaultCluster", b, {0: f"127.0.0.1:{10911 + 10 * i}"}) for i, b in enumerate(self.brokers)],
        )

    async def get_topic_config(self, topic: str) -> TopicConfig | None:
        return self.topics.get(topic)

    async def get_subscription_group(self, group: str) -> SubscriptionGroupConfig | None:
        return self.groups.get(group)

    async def send_message(self, broker_name: str, messages: list[Message], timeout: float) -> list[SendResult]:
        if self.send_error:
            raise self.send_error
        self.sent_batches.append((broker_name, messages[0].queue_id, len(messages)))
        out = []
        port = 10911 + 10 * self.brokers.index(broker_name)
        for m in messages:
            off = len(self.stored)
            ext = MessageExt(
                m.topic, m.body, dict(m.properties), m.flag, m.queue_id, m.sys_flag, m.born_timestamp,
                m.born_host, 0, 0, queue_offset=off, commitlog_offset=1000 + off, store_timestamp=int(time.time() * 1000),
                store_host=("127.0.0.1", port),
            )
            self.stored.append((broker_name, ext))
            out.append(SendResult(self.send_status, m.uniq_key or "", offset_msg_id(ext.store_host, ext.commitlog_offset),
                                  m.queue_id, off, broker_name))
        return out

    async def end_transaction(self, broker_name: str, producer_group: str, topic: str, msg_id: str,
                              transaction_id: str, commit: bool, from_check: bool) -> None:
        self.ended.append((broker_name, producer_group, topic, msg_id, transaction_id, commit, from_check))

    async def recall_message(self, broker_name: str, topic: str, recall_handle: str) -> str:
        raise BackendError(ResponseCode.REQUEST_CODE_NOT_SUPPORTED, "recall not supported")

    async def pop_message(self, broker_name: str, request: PopRequest, timeout: float) -> PopResult:
        self.last_pop = (broker_name, request, timeout)
        now = int(time.time() * 1000)
        msgs = []
        for b, m in self.stored:
            if b != broker_name or m.topic != request.topic:
                continue
            if request.expression not in ("*", "") and m.tags not in request.expression.split("||"):
                continue
            if any(a[3].endswith(f" {m.queue_offset}") for a in self.acked):
                continue
            c = copy.copy(m)
            c.properties = dict(m.properties)
            c.properties[MessageConst.POP_CK] = (
                f"{m.queue_offset} {now} {request.invisible_time_ms} 0 0 {broker_name} {m.queue_id} {m.queue_offset}"
            )
            msgs.append(c)
            if len(msgs) >= request.max_msg_nums:
                break
        return PopResult(PopStatus.FOUND if msgs else PopStatus.NO_NEW_MSG, msgs, now, request.invisible_time_ms)

    async def ack_message(self, broker_name: str, group: str, topic: str, extra_info: str) -> None:
        self.acked.append((broker_name, group, topic, extra_info))

    async def change_invisible_time(self, broker_name: str, group: str, topic: str, extra_info: str,
                                    invisible_time_ms: int) -> str:
        self.changed.append((broker_name, extra_info, invisible_time_ms))
        p = extra_info.split(" ")
        p[1] = str(int(time.time() * 1000))
        p[2] = str(invisible_time_ms)
        return " ".join(p)

    async def forward_to_dead_letter_queue(self, broker_name: str, group: str, topic: str, extra_info: str,
                                           max_reconsume_times: int) -> None:
        self.acked.append((broker_name, group, topic, extra_info))

    async def pull_message(self, broker_name: str, group: str, topic: str, queue_id: int, offset: int,
                           max_nums: int, expression_type: str, expression: str, poll_time_ms: int,
                           timeout: float) -> PullResult:
        msgs = [m for b, m in self.stored if b == broker_name and m.topic == topic and m.queue_id == queue_id
                and m.queue_offset >= offset][:max_nums]
        nxt = msgs[-1].queue_offset + 1 if msgs else offset
        return PullResult(PullStatus.FOUND if msgs else PullStatus.NO_NEW_MSG, nxt, 0, len(self.stored), msgs)

    async def query_consumer_offset(self, broker_name: str, group: str, topic: str, queue_id: int) -> int:
        key = (group, topic, queue_id)
        if key not in self.offsets:
            raise BackendError(ResponseCode.QUERY_NOT_FOUND, "not found")
        return self.offsets[key]

    async def update_consumer_offset(self, broker_name: str, group: str, topic: str, queue_id: int,
                                     offset: int) -> None:
        self.offsets[(group, topic, queue_id)] = offset

    async def get_max_offset(self, broker_name: str, topic: str, queue_id: int) -> int:
        return 100

    async def get_min_offset(self, broker_name: str, topic: str, queue_id: int) -> int:
        return 3

    async def search_offset(self, broker_name: str, topic: str, queue_id: int, timestamp_ms: int) -> int:
        return 42

    def set_transaction_check_listener(self, listener: TransactionCheckListener) -> None:
        self.listener = listener

    async def register_producer(self, client_id: str, producer_group: str) -> None:
        self.producers.append((client_id, producer_group))

    async def register_consumer(self, client: ConsumerClient) -> None:
        self.consumers[client.client_id] = client

    async def unregister_consumer(self, group: str, client_id: str) -> None:
        self.consumers.pop(client_id, None)

    def set_consumer_commander(self, commander: ConsumerCommander) -> None:
        self.commander = commander
