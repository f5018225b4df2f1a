"""Clients seen through HEART_BEAT: consumers per group (ConsumerManager) and producers per group
(ProducerManager). Both are keyed by connection and forget a client when its connection closes."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("rocketmq.broker")


def channel_key(conn: Any, client_id: str) -> int:
    """A client's key in its group's channel table: its connection, or its client id when in-process."""
    return id(conn) if conn is not None else hash(client_id)


@dataclass(slots=True)
class SubscriptionData:
    topic: str
    sub_string: str = "*"
    tags_set: list[str] = field(default_factory=list)
    code_set: list[int] = field(default_factory=list)
    expression_type: str = "TAG"
    sub_version: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "classFilterMode": False,
            "topic": self.topic,
            "subString": self.sub_string,
            "tagsSet": list(self.tags_set),
            "codeSet": list(self.code_set),
            "subVersion": self.sub_version,
            "expressionType": self.expression_type,
        }

    @classmethod
    def of(cls, topic: str, expression_type: str, expression: str) -> SubscriptionData:
        """RocketMQ's FilterAPI.buildSubscriptionData: a TAG expression ``a || b`` lists its tags and
        their hash codes; ``*`` (or empty) and SQL92 list none."""
        from backends.broker.filter.message_filter import tags_hash

        expression = expression.strip() or "*"
        sub = cls(topic=topic, sub_string=expression, expression_type=expression_type.upper() or "TAG",
                  sub_version=int(time.time() * 1000))
        if sub.expression_type == "TAG" and expression != "*":
            sub.tags_set = [t.strip() for t in expression.split("||") if t.strip()]
            sub.code_set = [tags_hash(t) for t in sub.tags_set]
        return sub

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SubscriptionData:
        return cls(
            topic=str(d["topic"]),
            sub_string=str(d.get("subString") or "*"),
            tags_set=[str(t) for t in d.get("tagsSet") or []],
            code_set=[int(c) for c in d.get("codeSet") or []],
            expression_type=str(d.get("expressionType") or "TAG"),
            sub_version=int(d.get("subVersion") or 0),
        )


@dataclass(slots=True)
class ClientChannelInfo:
    client_id: str
    client_addr: str
    language: str
    version: int
    conn: Any  # backends.remoting.server.Connection (or None for in-process clients)
    last_update: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"clientId": self.client_id, "clientAddr": self.client_addr, "language": self.language,
                "version": self.version}


@dataclass
class ConsumerGroupInfo:
    group: str
    consume_type: str = "CONSUME_PASSIVELY"
    message_model: str = "CLUSTERING"
    consume_from_where: str = "CONSUME_FROM_LAST_OFFSET"
    channels: dict[int, ClientChannelInfo] = field(default_factory=dict)  # channel_key() -> info
    subscription_table: dict[str, SubscriptionData] = field(default_factory=dict)
    last_update: float = field(default_factory=time.time)

    def client_ids(self) -> list[str]:
        return [c.client_id for c in self.channels.values()]


class ConsumerManager:
    def __init__(self) -> None:
        self.consumer_table: dict[str, ConsumerGroupInfo] = {}

    def register_consumer(
        self,
        group: str,
        info: ClientChannelInfo,
        consume_type: str,
        message_model: str,
        consume_from_where: str,
        subscriptions: list[SubscriptionData],
    ) -> bool:
        """Returns True when the group's set of clients changed."""
        g = self.consumer_table.get(group)
        if g is None:
            g = self.consumer_table[group] = ConsumerGroupInfo(group)
        g.consume_type, g.message_model, g.consume_from_where = consume_type, message_model, consume_from_where
        g.last_update = time.time()
        key = channel_key(info.conn, info.client_id)
        changed = key not in g.channels
        if changed:
            log.info("new consumer connected, group: %s %s", group, info.client_addr)
        old = g.channels.get(key)
        if old is not None:
            old.last_update = time.time()
        else:
            g.channels[key] = info
        if subscriptions:
            g.subscription_table = {s.topic: s for s in subscriptions}
        return changed

    def unregister_consumer(self, group: str, conn: Any, client_id: str = "") -> bool:
        g = self.consumer_table.get(group)
        if g is None:
            return False
        key = channel_key(conn, client_id)
        removed = g.channels.pop(key, None) is not None
        if not g.channels:
            self.consumer_table.pop(group, None)
        return removed

    def connection_closed(self, conn: Any) -> list[str]:
        """Drop ``conn`` from every group; returns the groups it left."""
        left = []
        for group, g in list(self.consumer_table.items()):
            if g.channels.pop(id(conn), None) is not None:
                left.append(group)
                log.info("consumer connection closed, group: %s", group)
                if not g.channels:
                    del self.consumer_table[group]
        return left

    def scan_not_active(self, timeout_s: float) -> list[str]:
        """Drop clients not heard from (heartbeat) within ``timeout_s``; returns the groups that changed."""
        now = time.time()
        changed = []
        for group, g in list(self.consumer_table.items()):
            stale = [k for k, c in g.channels.items()
                     if now - c.last_update > timeout_s or getattr(c.conn, "closed", False)]
            for k in stale:
                info = g.channels.pop(k)
                log.warning("consumer %s of group %s expired (no heartbeat for %.0f s)", info.client_id, group,
                            now - info.last_update)
            if stale:
                changed.append(group)
            if not g.channels:
                del self.consumer_table[group]
        return changed

    def get(self, group: str) -> ConsumerGroupInfo | None:
        return self.consumer_table.get(group)

    def groups_of_topic(self, topic: str) -> set[str]:
        return {g for g, info in self.consumer_table.items() if topic in info.subscription_table}


class ProducerManager:
    def __init__(self) -> None:
        self.group_channel_table: dict[str, dict[int, ClientChannelInfo]] = {}

    def register_producer(self, group: str, info: ClientChannelInfo) -> None:
        chans = self.group_channel_table.setdefault(group, {})
        key = channel_key(info.conn, info.client_id)
        old = chans.get(key)
        if old is None:
            chans[key] = info
            log.info("new producer connected, group: %s %s", group, info.client_addr)
        else:
            old.last_update = time.time()

    def unregister_producer(self, group: str, conn: Any, client_id: str = "") -> None:
        chans = self.group_channel_table.get(group)
        if chans is None:
            return
        chans.pop(channel_key(conn, client_id), None)
        if not chans:
            del self.group_channel_table[group]

    def connection_closed(self, conn: Any) -> None:
        for group, chans in list(self.group_channel_table.items()):
            if chans.pop(id(conn), None) is not None and not chans:
                del self.group_channel_table[group]

    def scan_not_active(self, timeout_s: float) -> None:
        now = time.time()
        for group, chans in list(self.group_channel_table.items()):
            for k in [k for k, c in chans.items()
                      if now - c.last_update > timeout_s or getattr(c.conn, "closed", False)]:
                del chans[k]
            if not chans:
                del self.group_channel_table[group]

    def available_channels(self, group: str) -> list[ClientChannelInfo]:
        return [c for c in self.group_channel_table.get(group, {}).values()
                if c.conn is not None and not getattr(c.conn, "closed", False)]
