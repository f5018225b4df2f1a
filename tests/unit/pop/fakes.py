"""Test doubles for POP: an in-memory MessageStore (only the methods POP uses), a broker around it,
and a manual clock. Swapped for the real MessageStore by conftest when it is available."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from backends.broker.broker_config import BrokerConfig
from backends.broker.consumer_offset_manager import ConsumerOffsetManager
from backends.broker.metrics import BrokerStats
from backends.broker.subscription_group_manager import SubscriptionGroupManager
from backends.broker.topic_config_manager import TopicConfigManager
from backends.model import (
    AppendResult,
    GetMessageResult,
    GetMessageStatus,
    Message,
    PutMessageResult,
    PutMessageStatus,
    offset_msg_id,
)
from backends.store.record import encode_record, tags_code

HOST = ("127.0.0.1", 10911)


class ManualClock:
    def __init__(self, start_ms: int | None = None) -> None:
        self.now = start_ms if start_ms is not None else int(time.time() * 1000)

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


class FakeStore:
    """Records kept in memory as RocketMQ commitlog records, like the real store returns them."""

    def __init__(self) -> None:
        self.queues: dict[tuple[str, int], list[tuple[bytes, int, int]]] = {}  # (record, tags code, ts)
        self.phys = 0
        self.listeners: list[Callable[[str, int, int], None]] = []
        self.fail_puts = False

    async def start(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def put_messages(self, messages: list[Message]) -> PutMessageResult:
        if self.fail_puts:
            return PutMessageResult(PutMessageStatus.UNKNOWN_ERROR, error="injected")
        results = []
        touched: dict[tuple[str, int], int] = {}
        for m in messages:
            q = self.queues.setdefault((m.topic, m.queue_id), [])
            ts = int(time.time() * 1000)
            rec = encode_record(m, len(q), self.phys, ts, HOST)
            results.append(AppendResult(self.phys, len(rec), len(q), ts, offset_msg_id(HOST, self.phys)))
            q.append((rec, tags_code(m.properties.get("TAGS")), ts))
            self.phys += len(rec)
            touched[(m.topic, m.queue_id)] = len(q)
        for (t, qid), mx in touched.items():
            for lst in self.listeners:
                lst(t, qid, mx)
        return PutMessageResult(PutMessageStatus.PUT_OK, results)

    def get_messages(self, topic: str, queue_id: int, offset: int, max_msg_nums: int,
                     message_filter: Callable[[int, bytes | None], bool] | None = None) -> GetMessageResult:
        q = self.queues.get((topic, queue_id), [])
        mx = len(q)
        if mx == 0:
            return GetMessageResult(GetMessageStatus.NO_MESSAGE_IN_QUEUE, 0, 0, 0)
        if offset < 0:
            return GetMessageResult(GetMessageStatus.OFFSET_TOO_SMALL, 0, 0, mx)
        if offset >= mx:
            st = GetMessageStatus.OFFSET_OVERFLOW_ONE if offset == mx else GetMessageStatus.OFFSET_OVERFLOW_BADLY
            return GetMessageResult(st, mx if offset > mx else offset, 0, mx)
        res = GetMessageResult(GetMessageStatus.NO_MATCHED_MESSAGE, offset, 0, mx)
        off = offset
        while off < mx and len(res.records) < max_msg_nums and off - offset < 800:
            rec, code, _ = q[off]
            off += 1
            if message_filter is not None and not (message_filter(code, None) and message_filter(code, rec)):
                continue
            res.records.append(rec)
            res.queue_offsets.append(off - 1)
        res.next_begin_offset = off
        if res.records:
            res.status = GetMessageStatus.FOUND
        return res

    def get_max_offset_in_queue(self, topic: str, queue_id: int) -> int:
        return len(self.queues.get((topic, queue_id), []))

    def get_min_offset_in_queue(self, topic: str, queue_id: int) -> int:
        return 0

    def get_offset_in_queue_by_time(self, topic: str, queue_id: int, timestamp_ms: int) -> int:
        q = self.queues.get((topic, queue_id), [])
        for i, (_, _, ts) in enumerate(q):
            if ts >= timestamp_ms:
                return i
        return len(q)

    def add_arrival_listener(self, listener: Callable[[str, int, int], None]) -> None:
        self.listeners.append(listener)


class FakeBroker:
    def __init__(self, root: str, store: Any) -> None:
        self.config = BrokerConfig(store_path_root_dir=root)
        self.message_store = store
        self.topic_config_manager = TopicConfigManager(self.config)
        self.subscription_group_manager = SubscriptionGroupManager(self.config)
        self.consumer_offset_manager = ConsumerOffsetManager(self.config)
        self.puts: list[Message] = []
        self.stats = BrokerStats()

    async def put_messages(self, messages: list[Message]) -> PutMessageResult:
        self.puts.extend(messages)
        result: PutMessageResult = await self.message_store.put_messages(messages)
        return result


def namespace(**kw: Any) -> SimpleNamespace:
    return SimpleNamespace(**kw)
