from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from backends.model import Message
from backends.store.message_store import MessageStore, MessageStoreConfig

SMALL = dict(
    mapped_file_size_commit_log=64 * 1024,
    mapped_file_size_consume_queue=100 * 20,
    max_hash_slot_num=512,
    max_index_num=2048,
    flush_interval_commit_log=20,
    flush_interval_consume_queue=50,
)


def small_config(root: str, **kw: Any) -> MessageStoreConfig:
    args: dict[str, Any] = dict(SMALL)
    args.update(kw)
    return MessageStoreConfig(store_path_root_dir=root, **args)


def msg(topic: str = "TopicA", body: bytes = b"hello", queue_id: int = 0, **props: str) -> Message:
    return Message(topic=topic, body=body, properties=dict(props), queue_id=queue_id,
                   born_timestamp=1_700_000_000_000, born_host=("10.0.0.7", 40000))


StoreFactory = Callable[..., Awaitable[MessageStore]]


@pytest.fixture
async def make_store(tmp_path: Any) -> AsyncIterator[StoreFactory]:
    stores: list[MessageStore] = []

    async def factory(root: str | None = None, **kw: Any) -> MessageStore:
        store_kw = {k: kw.pop(k) for k in ("clock", "fsync", "disk_usage") if k in kw}
        s = MessageStore(small_config(root or str(tmp_path / "store"), **kw), **store_kw)
        await s.start()
        stores.append(s)
        return s

    yield factory
    for s in stores:
        if s._running:
            await s.shutdown()


def commitlog_files(root: str) -> list[str]:
    d = os.path.join(root, "commitlog")
    return sorted(os.path.join(d, n) for n in os.listdir(d))
