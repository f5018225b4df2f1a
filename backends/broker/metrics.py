"""The broker's metrics (RocketMQ's BrokerMetricsManager names and labels).

:class:`BrokerStats` holds plain counters the send, pop and pull paths add to (a dict update per
batch); :func:`register` turns them and the broker's state into observable instruments of a
:class:`backends.metrics.MetricsManager`, read only when the exporter collects.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from backends.metrics import MetricsManager, Points
from backends.model import RETRY_GROUP_TOPIC_PREFIX, Message, MessageConst, is_system_topic

if TYPE_CHECKING:
    from backends.broker.controller import BrokerController

# label values of message_type, as RocketMQ's TopicMessageType names them in metrics
NORMAL, FIFO, DELAY, TRANSACTION = "Normal", "Fifo", "Delay", "Transaction"
_DELAY_KEYS = (MessageConst.DELAY_TIME_LEVEL, MessageConst.TIMER_DELIVER_MS, MessageConst.TIMER_DELAY_SEC,
               MessageConst.TIMER_DELAY_MS)


def message_type(m: Message) -> str:
    p = m.properties
    if p.get(MessageConst.TRANSACTION_PREPARED) == "true":
        return TRANSACTION
    if MessageConst.SHARDING_KEY in p:
        return FIFO
    for k in _DELAY_KEYS:
        if k in p:
            return DELAY
    return NORMAL


@dataclass
class BrokerStats:
    """Totals since start: messages and body bytes in per (topic, message type), out per (topic, group),
    and messages sent to a dead-letter queue per (topic, group)."""

    messages_in: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    messages_out: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    to_dlq: dict[tuple[str, str], int] = field(default_factory=dict)

    @staticmethod
    def count_in(messages: Iterable[Message]) -> dict[tuple[str, str], list[int]]:
        """Messages and body bytes per (topic, message type), to :meth:`commit_in` once stored."""
        counted: dict[tuple[str, str], list[int]] = {}
        for m in messages:
            key = (m.topic, message_type(m))
            c = counted.get(key)
            if c is None:
                c = counted[key] = [0, 0]
            c[0] += 1
            c[1] += len(m.body)
        return counted

    def commit_in(self, counted: dict[tuple[str, str], list[int]]) -> None:
        table = self.messages_in
        for key, (n, size) in counted.items():
            c = table.get(key)
            if c is None:
                table[key] = [n, size]
            else:
                c[0] += n
                c[1] += size

    def add_out(self, topic: str, group: str, count: int, size: int) -> None:
        if count <= 0:
            return
        c = self.messages_out.get((topic, group))
        if c is None:
            c = self.messages_out[(topic, group)] = [0, 0]
        c[0] += count
        c[1] += size

    def add_dlq(self, topic: str, group: str) -> None:
        self.to_dlq[(topic, group)] = self.to_dlq.get((topic, group), 0) + 1


def _sys(topic: str) -> str:
    return "true" if is_system_topic(topic) else "false"


def register(manager: MetricsManager, broker: BrokerController) -> None:
    stats = broker.stats

    def messages_in(i: int) -> Points:
        for (topic, mtype), c in list(stats.messages_in.items()):
            yield c[i], {"topic": topic, "message_type": mtype, "is_system": _sys(topic)}

    def messages_out(i: int) -> Points:
        for (topic, group), c in list(stats.messages_out.items()):
            retry = "true" if topic.startswith(RETRY_GROUP_TOPIC_PREFIX) else "false"
            yield c[i], {"topic": topic, "consumer_group": group, "is_retry": retry, "is_system": _sys(topic)}

    def to_dlq() -> Points:
        for (topic, group), n in list(stats.to_dlq.items()):
            yield n, {"topic": topic, "consumer_group": group}

    manager.counter("rocketmq_messages_in_total", lambda: messages_in(0), "messages produced")
    manager.counter("rocketmq_throughput_in_total", lambda: messages_in(1), "body bytes produced")
    manager.counter("rocketmq_messages_out_total", lambda: messages_out(0), "messages delivered to consumers")
    manager.counter("rocketmq_throughput_out_total", lambda: messages_out(1), "body bytes delivered to consumers")
    manager.counter("rocketmq_send_to_dlq_messages_total", to_dlq, "messages moved to a dead-letter queue")

    manager.gauge("rocketmq_broker_permission", lambda: [(broker.config.broker_permission, {})],
                  "the broker's permission (6 read and write, 4 read only, 2 write only)")
    manager.gauge("rocketmq_topic_number",
                  lambda: [(len(broker.topic_config_manager.topic_config_table), {})], "topics of this broker")
    manager.gauge("rocketmq_consumer_group_number",
                  lambda: [(len(broker.subscription_group_manager.subscription_group_table), {})],
                  "subscription groups of this broker")
    manager.gauge("rocketmq_producer_connections", lambda: _producers(broker), "producer connections per group")
    manager.gauge("rocketmq_consumer_connections", lambda: _consumers(broker), "consumer connections per group")
    manager.gauge("rocketmq_consumer_lag_messages", lambda: _lag(broker),
                  "messages of the topic not yet consumed (acked) by the group")
    manager.gauge("rocketmq_consumer_inflight_messages", lambda: _pop_counts(broker, 0),
                  "messages handed out to the group and neither acked nor expired")
    manager.gauge("rocketmq_consumer_ready_messages", lambda: _pop_counts(broker, 1),
                  "messages ready to be handed out to the group")
    manager.gauge("rocketmq_storage_size", lambda: [(_storage_size(broker), {})], "commitlog bytes kept")
    manager.gauge("rocketmq_storage_flush_behind_bytes", lambda: [(_flush_behind(broker), {})],
                  "commitlog bytes written but not yet flushed to disk")


def _producers(broker: BrokerController) -> Points:
    for group, chans in list(broker.producer_manager.group_channel_table.items()):
        yield len(chans), {"producer_group": group}


def _consumers(broker: BrokerController) -> Points:
    for group, info in list(broker.consumer_manager.consumer_table.items()):
        yield len(info.channels), {"consumer_group": group}


def _lag(broker: BrokerController) -> Points:
    store = broker.message_store
    for key, queues in list(broker.consumer_offset_manager.offset_table.items()):
        topic, _, group = key.partition("@")
        lag = 0
        for qid, committed in list(queues.items()):
            lag += max(0, store.get_max_offset_in_queue(topic, qid) - max(committed, 0))
        yield lag, {"topic": topic, "consumer_group": group}


def _pop_counts(broker: BrokerController, which: int) -> Points:
    """which 0: in flight; 1: ready (never handed out, or expired and waiting to be handed out again)."""
    svc = broker.pop_service
    if svc is None:
        return
    store = broker.message_store
    sums: dict[tuple[str, str], int] = {}
    for (group, topic, qid), st in list(svc.states.items()):
        if which == 0:
            n = len(st.inflight)
        else:
            n = len(st.pending) + max(0, store.get_max_offset_in_queue(topic, qid) - st.next_offset)
        sums[(topic, group)] = sums.get((topic, group), 0) + n
    for (topic, group), n in sums.items():
        yield n, {"topic": topic, "consumer_group": group}


def _storage_size(broker: BrokerController) -> int:
    store = broker.message_store
    return max(0, store.get_max_phy_offset() - store.get_min_phy_offset())


def _flush_behind(broker: BrokerController) -> int:
    store = broker.message_store
    return max(0, store.get_max_phy_offset() - store.get_flushed_phy_offset())
