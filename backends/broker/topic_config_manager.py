"""TopicConfigManager: the broker's topics, persisted in config/topics.json (RocketMQ's format)."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from backends.broker.config_manager import CoalescedPersistence, CoalescingPersister, DataVersion, read_json
from backends.model import (
    AUTO_CREATE_TOPIC_KEY,
    BENCHMARK_TOPIC,
    MESSAGE_TYPE_ATTRIBUTE,
    REVIVE_TOPIC_PREFIX,
    SCHEDULE_TOPIC,
    SELF_TEST_TOPIC,
    TIMER_TOPIC,
    TRANS_HALF_TOPIC,
    TRANS_OP_HALF_TOPIC,
    Perm,
    TopicConfig,
    TopicMessageType,
)

if TYPE_CHECKING:
    from backends.broker.broker_config import BrokerConfig

log = logging.getLogger("rocketmq.broker")

TOPIC_NAME_RE = re.compile(r"^[%|a-zA-Z0-9_-]+$")
TOPIC_MAX_LENGTH = 127
# Queues per topic (and retry queues per group) this broker accepts: generous for any real topic, and a
# bound for the per-queue work of stats, rebalance and POP (a topic of 2^31 queues would exhaust memory).
MAX_QUEUE_NUMS = 4096


def queue_nums_error(**counts: int) -> str | None:
    """Why queue counts, given by field name, are refused (None when each is in 1..MAX_QUEUE_NUMS)."""
    bad = [f"{name} ({n})" for name, n in counts.items() if not 1 <= n <= MAX_QUEUE_NUMS]
    return f"{' and '.join(bad)} must be between 1 and {MAX_QUEUE_NUMS}" if bad else None


def validate_topic_name(topic: str) -> str | None:
    """None when ``topic`` is a legal name, else the reason (RocketMQ's TopicValidator)."""
    if not topic or not topic.strip():
        return "The specified topic is blank."
    if len(topic) > TOPIC_MAX_LENGTH:
        return f"The specified topic is longer than topic max length {TOPIC_MAX_LENGTH}."
    if not TOPIC_NAME_RE.match(topic):
        return f"The specified topic[{topic}] contains illegal characters, allowing only ^[%|a-zA-Z0-9_-]+$"
    return None


def parse_attributes(spec: str | None) -> tuple[dict[str, str], set[str]]:
    """``"+message.type=FIFO,-foo"`` -> ({"message.type": "FIFO"}, {"foo"}) (RocketMQ's AttributeParser)."""
    add: dict[str, str] = {}
    delete: set[str] = set()
    if not spec:
        return add, delete
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("+"):
            k, _, v = item[1:].partition("=")
            if not k:
                raise ValueError(f"bad attribute {item!r}")
            add[k] = v
        elif item.startswith("-"):
            delete.add(item[1:])
        else:
            raise ValueError(f"attribute {item!r} must start with + or -")
    return add, delete


_MESSAGE_TYPES = {t.value for t in TopicMessageType}


class TopicConfigManager(CoalescedPersistence):
    """Topics by name; persist / request_persist / wait_persisted / flush from CoalescedPersistence."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.topic_config_table: dict[str, TopicConfig] = {}
        self.data_version = DataVersion()
        self.path = os.path.join(config.store_path_root_dir, "config", "topics.json")
        # Called (topic config) after a topic is created/updated/deleted: re-register with the NameServers.
        self.on_change: Callable[[TopicConfig | None], None] | None = None
        self._persister = CoalescingPersister(lambda: self.path, self.encode, name="topics.json")
        self._init_system_topics()

    # -- system topics (RocketMQ's TopicConfigManager constructor) --
    def _put_system(self, name: str, queues: int, perm: int = Perm.READ_WRITE) -> None:
        self.topic_config_table[name] = TopicConfig(name, queues, queues, perm)

    def _init_system_topics(self) -> None:
        c = self.config
        self._put_system(SELF_TEST_TOPIC, 1)
        if c.auto_create_topic_enable:
            self._put_system(AUTO_CREATE_TOPIC_KEY, c.default_topic_queue_nums, Perm.INHERIT | Perm.READ_WRITE)
        self._put_system(BENCHMARK_TOPIC, 1024)
        self._put_system(
            c.broker_cluster_name, 16, Perm.INHERIT | (Perm.READ_WRITE if c.cluster_topic_enable else 0)
        )
        self._put_system(c.broker_name, 1, Perm.INHERIT | (Perm.READ_WRITE if c.broker_topic_enable else 0))
        self._put_system("OFFSET_MOVED_EVENT", 1)
        self._put_system(SCHEDULE_TOPIC, len(c.delay_levels_ms) or 18)
        if c.trace_topic_enable:
            self._put_system(c.msg_trace_topic_name, 1)
        self._put_system(c.broker_cluster_name + "_REPLY_TOPIC", 1)
        self._put_system(REVIVE_TOPIC_PREFIX + c.broker_cluster_name, c.revive_queue_num)
        self._put_system(TIMER_TOPIC, 1)
        self._put_system(TRANS_HALF_TOPIC, 1)
        self._put_system(TRANS_OP_HALF_TOPIC, 1)
        self._put_system("TRANS_CHECK_MAX_TIME_TOPIC", 1)

    # -- persistence --
    def load(self) -> None:
        data = read_json(self.path)
        if isinstance(data, dict):
            self.decode(data, self.path)

    def decode(self, data: dict[str, Any], source: str) -> None:
        """Take the topics of a topics.json document (the file, or a master's table on a slave)."""
        for name, tc in (data.get("topicConfigTable") or {}).items():
            try:
                self.topic_config_table[str(name)] = TopicConfig.from_json(tc)
            except (KeyError, TypeError, ValueError) as e:
                log.warning("bad topic config %r in %s ignored: %s", name, source, e)
        self.data_version = DataVersion.from_json(data.get("dataVersion"))

    def encode(self) -> dict[str, Any]:
        return {
            "topicConfigTable": {k: v.to_json() for k, v in self.topic_config_table.items()},
            "dataVersion": self.data_version.to_json(),
        }

    def _changed(self, tc: TopicConfig | None, now: bool = True) -> None:
        """``now``: write the file on this thread (admin updates); else request an off-loop write
        (topics auto-created in request handling)."""
        self.data_version.next_version()
        if now:
            self.persist()
        else:
            self.request_persist()
        if self.on_change is not None:
            self.on_change(tc)

    # -- queries --
    def select_topic_config(self, topic: str) -> TopicConfig | None:
        return self.topic_config_table.get(topic)

    # -- updates --
    def create_topic_if_absent(
        self,
        topic: str,
        read_queue_nums: int,
        write_queue_nums: int,
        perm: int = Perm.READ_WRITE,
        attributes: dict[str, str] | None = None,
        topic_sys_flag: int = 0,
    ) -> TopicConfig:
        tc = self.topic_config_table.get(topic)
        if tc is not None:
            return tc
        tc = TopicConfig(topic, read_queue_nums, write_queue_nums, perm, topic_sys_flag=topic_sys_flag,
                         attributes=dict(attributes or {}))
        self.topic_config_table[topic] = tc
        log.info("create new topic [%s] %s", topic, tc.to_json())
        self._changed(tc, now=False)
        return tc

    def create_topic_in_send_message_method(self, topic: str, queue_nums: int) -> TopicConfig | None:
        """Auto-create a topic a producer sends to (autoCreateTopicEnable and TBW102 present)."""
        tc = self.topic_config_table.get(topic)
        if tc is not None:
            return tc
        default = self.topic_config_table.get(AUTO_CREATE_TOPIC_KEY)
        if not self.config.auto_create_topic_enable or default is None or not default.perm & Perm.INHERIT:
            return None
        n = max(1, min(queue_nums or default.write_queue_nums, default.write_queue_nums))
        return self.create_topic_if_absent(topic, n, n, default.perm & ~Perm.INHERIT)

    def update_topic_config(self, tc: TopicConfig) -> None:
        why = queue_nums_error(readQueueNums=tc.read_queue_nums, writeQueueNums=tc.write_queue_nums)
        if why:
            raise ValueError(why)
        mt = tc.attributes.get(MESSAGE_TYPE_ATTRIBUTE)
        if mt is not None and mt.upper() not in _MESSAGE_TYPES:
            raise ValueError(f"message.type must be one of {sorted(_MESSAGE_TYPES)}, not {mt!r}")
        old = self.topic_config_table.get(tc.topic_name)
        self.topic_config_table[tc.topic_name] = tc
        log.info("%s topic config %s", "update" if old else "create", tc.to_json())
        self._changed(tc)

    def delete_topic(self, topic: str) -> TopicConfig | None:
        old = self.topic_config_table.pop(topic, None)
        if old is not None:
            log.info("delete topic config %s", topic)
            self._changed(None)
        return old
