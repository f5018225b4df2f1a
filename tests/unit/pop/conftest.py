from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backends.api import PopRequest, PopResult
from backends.broker.pop.service import PopMessageService
from backends.model import Message, MessageConst, MessageExt, TopicConfig
from tests.unit.pop.fakes import FakeBroker, FakeStore, ManualClock

TOPIC = "TopicA"
GROUP = "GroupA"


def make_store(root: Path, **config: object) -> object:
    """The real MessageStore when it is usable, else the in-memory fake."""
    if os.environ.get("POP_TEST_STORE") == "fake":
        return FakeStore()
    try:
        from backends.store.message_store import MessageStore, MessageStoreConfig

        return MessageStore(MessageStoreConfig(store_path_root_dir=str(root), **config))  # type: ignore[arg-type]
    except NotImplementedError:
        return FakeStore()


@dataclass
class Env:
    root: Path
    broker: FakeBroker
    service: PopMessageService
    clock: ManualClock

    async def send(self, n: int, topic: str = TOPIC, queue_id: int = 0, tag: str | None = None,
                   prefix: str = "m") -> None:
        msgs = []
        for i in range(n):
            props = {MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX: f"{prefix}-{queue_id}-{i}"}
            if tag:
                props[MessageConst.TAGS] = tag
            msgs.append(Message(topic=topic, body=f"{prefix}{i}".encode(), properties=props, queue_id=queue_id))
        res = await self.broker.message_store.put_messages(msgs)  # type: ignore[attr-defined]
        assert res.ok

    async def pop(self, n: int = 32, invisible: int = 30_000, queue_id: int = -1, group: str = GROUP,
                  topic: str = TOPIC, **kw: object) -> PopResult:
        req = PopRequest(group=group, topic=topic, queue_id=queue_id, max_msg_nums=n,
                         invisible_time_ms=invisible, **kw)  # type: ignore[arg-type]
        return await self.service.pop(req, timeout=10)

    async def power_loss_restart(self) -> None:
        """kill -9 of the whole broker: the store drops what was not fdatasync'ed, nothing is shut down
        and the config files (consumer offsets) are not persisted."""
        old_service = self.service
        old_service._started = False
        if old_service._revive_task is not None:
            old_service._revive_task.cancel()
        self.broker.message_store.simulate_power_loss()  # type: ignore[attr-defined]
        store = make_store(self.root, flush_disk_type="SYNC_FLUSH", power_loss_test_mode=True)
        await store.start()  # type: ignore[attr-defined]
        old = self.broker
        self.broker = FakeBroker(str(self.root), store)
        self.broker.topic_config_manager.load()
        self.broker.subscription_group_manager = old.subscription_group_manager
        self.broker.consumer_offset_manager.load()
        self.service = PopMessageService(self.broker, clock=self.clock)
        await self.service.start()

    async def restart(self) -> None:
        """A new service (and store, managers) over the same directory, without a clean shutdown of
        the POP service (as after kill -9, only what is in the log survives)."""
        # the old service just stops (no final snapshot), as if the process had been killed
        old_service = self.service
        old_service._started = False
        if old_service._revive_task is not None:
            old_service._revive_task.cancel()
        store = self.broker.message_store
        if not isinstance(store, FakeStore):
            await store.shutdown()  # type: ignore[attr-defined]
            store = make_store(self.root)
            await store.start()  # type: ignore[attr-defined]
        old = self.broker
        self.broker = FakeBroker(str(self.root), store)
        self.broker.topic_config_manager.load()
        self.broker.subscription_group_manager = old.subscription_group_manager
        # only what the offset manager persisted survives
        self.broker.consumer_offset_manager.load()
        self.service = PopMessageService(self.broker, clock=self.clock)
        await self.service.start()


def bodies(msgs: list[MessageExt]) -> list[str]:
    return [m.body.decode() for m in msgs]


def handles(msgs: list[MessageExt]) -> list[str]:
    return [m.properties[MessageConst.POP_CK] for m in msgs]


async def _env(tmp_path: Path, store: object) -> AsyncIterator[Env]:
    await store.start()  # type: ignore[attr-defined]
    broker = FakeBroker(str(tmp_path), store)
    broker.topic_config_manager.update_topic_config(TopicConfig(TOPIC, 4, 4))
    clock = ManualClock()
    service = PopMessageService(broker, clock=clock)
    await service.start()
    e = Env(tmp_path, broker, service, clock)
    yield e
    await e.service.shutdown()
    await e.broker.message_store.shutdown()  # type: ignore[attr-defined]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async for e in _env(tmp_path, make_store(tmp_path)):
        yield e


@pytest.fixture
async def sync_env(tmp_path: Path) -> AsyncIterator[Env]:
    """Env over a SYNC_FLUSH store in power-loss test mode (skipped with the fake store)."""
    store = make_store(tmp_path, flush_disk_type="SYNC_FLUSH", power_loss_test_mode=True)
    if isinstance(store, FakeStore):
        pytest.skip("needs the real MessageStore")
    async for e in _env(tmp_path, store):
        yield e
