"""The POP extra info: the broker's part of a receipt handle (RocketMQ's ExtraInfoUtil), pure.

Format, space separated (MessageConst.KEY_SEPARATOR)::

    ckQueueOffset popTime invisibleTime reviveQid topicType brokerName queueId queueOffset

``ckQueueOffset`` is the first queue offset of the pop batch on that queue, ``popTime`` the pop (or last
change-invisible) time in ms, ``topicType`` "0" for the topic itself, "1" for the group's retry topic
``%RETRY%<group>``. The proxy appends `` commitLogOffset`` to form the gRPC receipt handle; a ninth
field is accepted and ignored here.
"""

from __future__ import annotations

from dataclasses import dataclass

from backends.model import RETRY_GROUP_TOPIC_PREFIX, retry_topic

NORMAL_TOPIC = "0"
RETRY_TOPIC = "1"
RETRY_TOPIC_V2 = "2"


class ExtraInfoError(ValueError):
    """A malformed extra info string."""


@dataclass(frozen=True, slots=True)
class ExtraInfo:
    ck_queue_offset: int
    pop_time: int
    invisible_time: int
    revive_qid: int
    topic_type: str
    broker_name: str
    queue_id: int
    queue_offset: int

    def real_topic(self, topic: str, group: str) -> str:
        """The topic the message is stored under."""
        if self.topic_type == NORMAL_TOPIC or topic.startswith(RETRY_GROUP_TOPIC_PREFIX):
            return topic
        return retry_topic(group)

    def encode(self) -> str:
        return build(
            self.ck_queue_offset, self.pop_time, self.invisible_time, self.revive_qid, self.topic_type,
            self.broker_name, self.queue_id, self.queue_offset,
        )


def topic_type_of(topic: str) -> str:
    return RETRY_TOPIC if topic.startswith(RETRY_GROUP_TOPIC_PREFIX) else NORMAL_TOPIC


def build(ck_queue_offset: int, pop_time: int, invisible_time: int, revive_qid: int, topic_type: str,
          broker_name: str, queue_id: int, queue_offset: int) -> str:
    return (f"{ck_queue_offset} {pop_time} {invisible_time} {revive_qid} {topic_type} {broker_name} "
            f"{queue_id} {queue_offset}")


def parse(extra_info: str) -> ExtraInfo:
    """Parse an extra info (8 fields, or 9 with the proxy's commitlog offset); ExtraInfoError if bad."""
    if not isinstance(extra_info, str):
        raise ExtraInfoError("extra info is not a string")
    parts = extra_info.split(" ")
    if len(parts) not in (8, 9):
        raise ExtraInfoError(f"extra info has {len(parts)} fields, expected 8: {extra_info[:120]!r}")
    try:
        ck, pt, it, rq = int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3])
        qid, qoff = int(parts[6]), int(parts[7])
    except ValueError:
        raise ExtraInfoError(f"extra info has a non-numeric field: {extra_info[:120]!r}") from None
    tt = parts[4]
    if tt not in (NORMAL_TOPIC, RETRY_TOPIC, RETRY_TOPIC_V2):
        raise ExtraInfoError(f"extra info has an unknown topic type {tt!r}")
    if min(ck, pt, it, rq, qid, qoff) < 0 or not parts[5]:
        raise ExtraInfoError(f"extra info has a negative or empty field: {extra_info[:120]!r}")
    return ExtraInfo(ck, pt, it, rq, tt, parts[5], qid, qoff)
