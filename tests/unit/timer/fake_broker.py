"""A minimal broker stand-in for timer and transaction tests.

``StandInBroker`` offers what the services use of BrokerController: ``config``, ``message_store``,
``put_messages`` (transaction prepare -> timer intercept -> store, the broker's put path) and
``check_transaction_state``. The store is the real MessageStore in a tmp dir when it is implemented,
else ``MemoryStore`` (records encoded with the real record codec).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from backends.model import (
    AppendResult,
    GetMessageResult,
    GetMessageStatus,
    Message,
    MessageExt,
    PutMessageResult,
    PutMessageStatus,
    offset_msg_id,
)
from backends.store.record import decode_record, encode_record


class FakeClock:
    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> None:
        self.now += ms


@dataclass
class StandInConfig:
    store_path_root_dir: str
    broker_name: str = "broker-a"
    timer_max_delay_sec: int = 259200
    message_delay_level: str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
    transaction_time_out: int = 6000
    transaction_check_interval: int = 30000
    transaction_check_max: int = 15
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def delay_levels_ms(self) -> list[int]:
        units = {"s": 1000, "m": 60_000, "h": 3_600_000}
        return [int(i[:-1]) * units[i[-1]] for i in self.message_delay_level.split()]


class MemoryStore:
    """In-memory MessageStore with the contract's method names (durable across service restarts
    because tests keep the object)."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self.clock = clock
        self.log: dict[int, bytes] = {}
        self.phy = 0
        self.queues: dict[tuple[str, int], list[int]] = {}
        self.listeners: list[Callable[[str, int, int], None]] = []
        self.store_host = ("127.0.0.1", 10911)

    async def start(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def put_messages(self, messages: list[Message]) -> PutMessageResult:
        results = []
        touched: dict[tuple[str, int], int] = {}
        for m in messages:
            q = self.queues.setdefault((m.topic, m.queue_id), [])
            rec = encode_record(m, len(q), self.phy, self.clock(), self.store_host)
            self.log[self.phy] = rec
            results.append(AppendResult(self.phy, len(rec), len(q), self.clock(), offset_msg_id(self.store_host, self.phy)))
            q.append(self.phy)
            touched[(m.topic, m.queue_id)] = len(q)
            self.phy += len(rec)
        for (t, qid), mx in touched.items():
            for listener in self.listeners:
                listener(t, qid, mx)
        return PutMessageResult(PutMessageStatus.PUT_OK, results)

    def get_messages(self, topic: str, queue_id: int, offset: int, max_msg_nums: int, message_filter: Any = None) -> GetMessageResult:
        q = self.queues.get((topic, queue_id), [])
        if offset >= len(q):
            return GetMessageResult(GetMessageStatus.NO_MESSAGE_IN_QUEUE, offset, 0, len(q))
        offs = list(range(offset, min(len(q), offset + max_msg_nums)))
        return GetMessageResult(
            GetMessageStatus.FOUND, offs[-1] + 1, 0, len(q), [self.log[q[o]] for o in offs], offs
        )

    def get_max_offset_in_queue(self, topic: str, queue_id: int) -> int:
        return len(self.queues.get((topic, queue_id), []))

    def get_min_offset_in_queue(self, topic: str, queue_id: int) -> int:
        return 0

    def look_message_by_offset(self, commitlog_offset: int, size: int = -1) -> MessageExt | None:
        rec = self.log.get(commitlog_offset)
        return None if rec is None else decode_record(rec)

    def add_arrival_listener(self, listener: Callable[[str, int, int], None]) -> None:
        self.listeners.append(listener)

    # test helper
    def messages(self, topic: str, queue_id: int | None = None) -> list[MessageExt]:
        out = []
        for (t, qid), q in sorted(self.queues.items()):
            if t == topic and (queue_id is None or qid == queue_id):
                out.extend(decode_record(self.log[p]) for p in q)
        return out


def real_store_available() -> bool:
    try:
        from backends.store.message_store import MessageStore, MessageStoreConfig

        MessageStore(MessageStoreConfig(store_path_root_dir="/nonexistent-probe"))
        return True
    except NotImplementedError:
        return False
    except Exception:
        return True


async def open_store(root: str, clock: Callable[[], int], memory: MemoryStore | None = None) -> Any:
    """The real MessageStore over ``root`` when implemented, else (the given) MemoryStore."""
    if memory is not None:
        return memory
    if real_store_available():
        from backends.store.message_store import MessageStore, MessageStoreConfig

        store = MessageStore(
            MessageStoreConfig(
                store_path_root_dir=os.path.join(root, "store"),
                mapped_file_size_commit_log=4 * 1024 * 1024,
                mapped_file_size_consume_queue=1000 * 20,
            )
        )
        await store.start()
        return store
    return MemoryStore(clock)


async def reopen_store(root: str, clock: Callable[[], int], store: Any) -> Any:
    """A broker restart: the real store is shut down and opened again over the same directory."""
    if isinstance(store, MemoryStore):
        return store
    await store.shutdown()
    return await open_store(root, clock)


def store_messages(store: Any, topic: str, queue_id: int = 0) -> list[MessageExt]:
    """Every message of a queue, decoded."""
    if isinstance(store, MemoryStore):
        return store.messages(topic, queue_id)
    out: list[MessageExt] = []
    off = store.get_min_offset_in_queue(topic, queue_id)
    mx = store.get_max_offset_in_queue(topic, queue_id)
    while off < mx:
        res = store.get_messages(topic, queue_id, off, 32)
        if not res.records:
            break
        out.extend(decode_record(r) for r in res.records)
        off = res.next_begin_offset
    return out


CheckHandler = Callable[[str, MessageExt, str], Awaitable[bool]]


class StandInBroker:
    def __init__(self, root: str, store: Any, clock: Callable[[], int]) -> None:
        self.config = StandInConfig(store_path_root_dir=root)
        self.message_store = store
        self.clock = clock
        self.timer_service: Any = None
        self.transaction_service: Any = None
        self.put_calls: list[list[Message]] = []
        self.check_calls: list[tuple[str, MessageExt, str]] = []
        self.check_handler: CheckHandler | None = None
        self.fail_puts = 0

    async def put_messages(self, messages: list[Message]) -> PutMessageResult:
        if self.fail_puts > 0:
            self.fail_puts -= 1
            return PutMessageResult(PutMessageStatus.SERVICE_NOT_AVAILABLE, error="injected")
        out = []
        for m in messages:
            if self.transaction_service is not None:
                m = self.transaction_service.prepare(m)
            if self.timer_service is not None:
                m = self.timer_service.intercept(m)
            out.append(m)
        self.put_calls.append(out)
        return await self.message_store.put_messages(out)

    async def check_transaction_state(self, producer_group: str, msg: MessageExt, transaction_id: str) -> bool:
        self.check_calls.append((producer_group, msg, transaction_id))
        if self.check_handler is None:
            return False
        return await self.check_handler(producer_group, msg, transaction_id)
