"""Recall handles (RocketMQ 5.3.2's RecallMessageHandle, version 1).

A handle is the URL-safe base64 (with padding, as Java's ``Base64.getUrlEncoder()``) of
``"v1 <topic> <brokerName> <timestampStr> <messageId>"`` where the timestamp is the delivery time in
ms and the message id is the UNIQ_KEY.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

VERSION_1 = "v1"


class RecallHandleError(ValueError):
    """Not a valid recall handle."""


@dataclass(frozen=True, slots=True)
class RecallHandleV1:
    topic: str
    broker_name: str
    timestamp_str: str
    message_id: str

    def encode(self) -> str:
        return build_handle(self.topic, self.broker_name, self.timestamp_str, self.message_id)


def build_handle(topic: str, broker_name: str, timestamp_str: str, message_id: str) -> str:
    raw = " ".join((VERSION_1, topic, broker_name, timestamp_str, message_id))
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii")


def decode_handle(handle: str) -> RecallHandleV1:
    if not handle:
        raise RecallHandleError("recall handle is invalid")
    try:
        text = handle.strip()
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError) as e:
        raise RecallHandleError("recall handle is invalid") from e
    items = raw.split(" ")
    if len(items) < 5 or items[0] != VERSION_1:
        raise RecallHandleError("recall handle is invalid")
    return RecallHandleV1(items[1], items[2], items[3], items[4])
