"""Self-contained receipt handles (RocketMQ's ReceiptHandle).

Text form: "startOffset popTime invisibleTime reviveQid topicType brokerName queueId queueOffset
commitLogOffset". The first eight fields are the broker's POP extra info (properties[POP_CK], parsed by
:mod:`backends.broker.pop.extra_info`), so any proxy process can ack or extend a message from the
handle alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from backends.broker.pop import extra_info as xi
from protos.apache.rocketmq.v2 import definition_pb2 as pb
from proxy.errors import ProxyError


@dataclass(slots=True, frozen=True)
class ReceiptHandle:
    info: xi.ExtraInfo
    commit_log_offset: int
    extra_info: str  # the first eight fields as sent, handed back to the broker unchanged

    @property
    def broker_name(self) -> str:
        return self.info.broker_name

    @property
    def queue_id(self) -> int:
        return self.info.queue_id

    @property
    def queue_offset(self) -> int:
        return self.info.queue_offset

    def is_expired(self, now_ms: int) -> bool:
        return self.info.pop_time + self.info.invisible_time <= now_ms

    @classmethod
    def decode(cls, text: str) -> ReceiptHandle:
        parts = text.split(" ")
        if len(parts) < 9 or not text:
            raise ProxyError(pb.Code.INVALID_RECEIPT_HANDLE, "receipt handle is invalid")
        extra = " ".join(parts[:8])
        try:
            return cls(xi.parse(extra), int(parts[8]), extra)
        except (xi.ExtraInfoError, ValueError):
            raise ProxyError(pb.Code.INVALID_RECEIPT_HANDLE, "receipt handle is invalid") from None


def encode(extra_info: str, commit_log_offset: int) -> str:
    return f"{extra_info} {commit_log_offset}"


def decode(text: str) -> ReceiptHandle:
    return ReceiptHandle.decode(text)
