"""ConsumerOffsetManager: committed offsets per (topic@group, queue), in config/consumerOffset.json.

Commits are kept in memory and written every ``flushConsumerOffsetInterval`` and at shutdown, as
RocketMQ does.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from backends.broker.config_manager import CoalescedPersistence, CoalescingPersister, DataVersion, read_json

if TYPE_CHECKING:
    from backends.broker.broker_config import BrokerConfig

log = logging.getLogger("rocketmq.broker")

TOPIC_GROUP_SEPARATOR = "@"


class ConsumerOffsetManager(CoalescedPersistence):
    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        # "topic@group" -> {queue id: offset}
        self.offset_table: dict[str, dict[int, int]] = {}
        self.data_version = DataVersion()
        self.path = os.path.join(config.store_path_root_dir, "config", "consumerOffset.json")
        self._dirty = False
        self._persister = CoalescingPersister(lambda: self.path, self.encode, name="consumerOffset.json")

    def load(self) -> None:
        data = read_json(self.path)
        if isinstance(data, dict):
            self.decode(data, self.path)

    def decode(self, data: dict[str, Any], source: str) -> None:
        """Take the offsets of a consumerOffset.json document (the file, or a master's table on a slave)."""
        for key, queues in (data.get("offsetTable") or {}).items():
            try:
                self.offset_table[str(key)] = {int(q): int(o) for q, o in queues.items()}
            except (AttributeError, TypeError, ValueError) as e:
                log.warning("bad consumer offsets %r in %s ignored: %s", key, source, e)
        self.data_version = DataVersion.from_json(data.get("dataVersion"))

    def encode(self) -> dict[str, Any]:
        return {
            "offsetTable": {k: {str(q): o for q, o in v.items()} for k, v in self.offset_table.items()},
            "dataVersion": self.data_version.to_json(),
        }

    def persist_if_dirty(self) -> None:
        """The periodic save (flushConsumerOffsetInterval): written off the event loop when changed."""
        if self._dirty:
            self._dirty = False
            self.request_persist()

    def query_offset(self, group: str, topic: str, queue_id: int) -> int:
        """Committed offset, -1 when none."""
        return self.offset_table.get(f"{topic}@{group}", {}).get(queue_id, -1)

    def commit_offset(self, client_host: str, group: str, topic: str, queue_id: int, offset: int) -> None:
        self.offset_table.setdefault(f"{topic}@{group}", {})[queue_id] = offset
        self._dirty = True
        self.data_version.next_version()

    def query_offsets(self, group: str, topic: str) -> dict[int, int]:
        return dict(self.offset_table.get(f"{topic}@{group}", {}))

    def which_topic_by_consumer(self, group: str) -> set[str]:
        out = set()
        for key in self.offset_table:
            topic, _, g = key.rpartition(TOPIC_GROUP_SEPARATOR)
            if g == group:
                out.add(topic)
        return out

    def which_group_by_topic(self, topic: str) -> set[str]:
        out = set()
        for key in self.offset_table:
            t, _, g = key.rpartition(TOPIC_GROUP_SEPARATOR)
            if t == topic:
                out.add(g)
        return out

    def remove_group(self, group: str) -> None:
        for key in [k for k in self.offset_table if k.rpartition(TOPIC_GROUP_SEPARATOR)[2] == group]:
            del self.offset_table[key]
        self._dirty = True

    def remove_topic(self, topic: str) -> None:
        for key in [k for k in self.offset_table if k.rpartition(TOPIC_GROUP_SEPARATOR)[0] == topic]:
            del self.offset_table[key]
        self._dirty = True
