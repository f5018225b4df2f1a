"""Self-contained receipt handles (RocketMQ's ReceiptHandle).

Text form: "startOffset popTime invisibleTime reviveQid topicType brokerName queueId queueOffset
commitLogOffset". The first eight fields are the broker's POP extra info (properties[POP_CK]), so any
proxy process can ack or extend a message from the handle alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from protos.apache.rocketmq.v2 import definition_pb2 as pb
from proxy.errors import ProxyError


@dataclass(slots=True, frozen=True)
class ReceiptHandle:
    start_offset: int
    pop_time: int
    invisible_time: int
    revive_qid: int
    topic_type: str
    broker_name: str
    queue_id: int
    queue_offset: int
    commit_log_offset: int
    extra_info: str

    @property
    def next_visible_time(self) -> int:
        return self.pop_time + self.invisible_time

    def is_expired(self, now_ms: int) -> bool:
        return self.next_visible_time <= now_ms

    @classmethod
    def decode(cls, text: str) -> ReceiptHandle:
        parts = text.split(" ")
        if len(parts) < 9 or not text:
            raise ProxyError(pb.Code.INVALID_RECEIPT_HANDLE, "receipt handle is invalid")
        try:
            return cls(
                int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3]), parts[4], parts[5],
                int(parts[6]), int(parts[7]), int(parts[8]), " ".join(parts[:8]),
            )
        except ValueError:
            raise ProxyError(pb.Code.INVALID_RECEIPT_HANDLE, "receipt handle is invalid") from None


def encode(extra_info: str, commit_log_offset: int) -> str:
    return f"{extra_info} {commit_log_offset}"


def decode(text: str) -> ReceiptHandle:
    return ReceiptHandle.decode(text)
