"""Request validation with RocketMQ's rules and codes (GrpcValidator and SendMessageActivity checks).

Every function raises :class:`proxy.errors.ProxyError` carrying the ``apache.rocketmq.v2.Code``.
"""

from __future__ import annotations

import re
import time
from typing import Any

from backends.model import MessageConst, is_system_topic
from protos.apache.rocketmq.v2 import definition_pb2 as pb
from proxy.config import ProxyConfig
from proxy.errors import ProxyError

C = pb.Code
TOPIC_MAX_LENGTH = 127
GROUP_MAX_LENGTH = 120
_NAME_RE = re.compile(r"^[%|a-zA-Z0-9_-]+$")
SYS_GROUP_PREFIX = "CID_RMQ_SYS_"
_SYSTEM_GROUPS = frozenset(
    {
        "DEFAULT_CONSUMER", "DEFAULT_PRODUCER", "TOOLS_CONSUMER", "FILTERSRV_CONSUMER",
        "__MONITOR_CONSUMER", "CLIENT_INNER_PRODUCER", "SELF_TEST_P_GROUP", "SELF_TEST_C_GROUP",
        "CID_ONS-HTTP-PROXY", "CID_ONSAPI_PERMISSION", "CID_ONSAPI_OWNER", "CID_ONSAPI_PULL",
        "CID_RMQ_SYS_TRANS",
    }
)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _has_control(s: str) -> bool:
    return _CONTROL.search(s) is not None


def validate_topic(topic: str) -> None:
    if not topic or not topic.strip():
        raise ProxyError(C.ILLEGAL_TOPIC, "topic name cannot be empty")
    if len(topic) > TOPIC_MAX_LENGTH:
        raise ProxyError(C.ILLEGAL_TOPIC, f"topic name length exceeds {TOPIC_MAX_LENGTH}: {topic}")
    if not _NAME_RE.match(topic):
        raise ProxyError(C.ILLEGAL_TOPIC, f"topic name {topic!r} contains illegal characters")
    if is_system_topic(topic):
        raise ProxyError(C.ILLEGAL_TOPIC, f"cannot access system topic {topic}")


def validate_group(group: str) -> None:
    if not group or not group.strip():
        raise ProxyError(C.ILLEGAL_CONSUMER_GROUP, "consumer group cannot be empty")
    if len(group) > GROUP_MAX_LENGTH:
        raise ProxyError(C.ILLEGAL_CONSUMER_GROUP, f"consumer group length exceeds {GROUP_MAX_LENGTH}")
    if not _NAME_RE.match(group):
        raise ProxyError(C.ILLEGAL_CONSUMER_GROUP, f"consumer group {group!r} contains illegal characters")
    if group.startswith(SYS_GROUP_PREFIX) or group in _SYSTEM_GROUPS:
        raise ProxyError(C.ILLEGAL_CONSUMER_GROUP, f"cannot use system consumer group {group}")


# As RocketMQ's GrpcValidator / SendMessageActivity: an empty tag, key or message group is no value and
# passes (the Go SDK sends a present but empty field for SetTag("")); a blank one is refused.
def validate_tag(tag: str) -> None:
    if not tag or tag.isalnum():
        return
    if not tag.strip():
        raise ProxyError(C.ILLEGAL_MESSAGE_TAG, "tag cannot be blank")
    if "|" in tag:
        raise ProxyError(C.ILLEGAL_MESSAGE_TAG, "tag cannot contain '|'")
    if _has_control(tag):
        raise ProxyError(C.ILLEGAL_MESSAGE_TAG, "tag cannot contain control characters")


def validate_key(key: str) -> None:
    if not key:
        return
    if not key.strip():
        raise ProxyError(C.ILLEGAL_MESSAGE_KEY, "key cannot be blank")
    if _has_control(key):
        raise ProxyError(C.ILLEGAL_MESSAGE_KEY, "key cannot contain control characters")


def validate_message_group(group: str, cfg: ProxyConfig) -> None:
    if not group:
        return
    if not group.strip():
        raise ProxyError(C.ILLEGAL_MESSAGE_GROUP, "message group cannot be blank")
    if len(group.encode()) >= cfg.max_message_group_size:
        raise ProxyError(C.ILLEGAL_MESSAGE_GROUP, f"message group exceeds {cfg.max_message_group_size} bytes")
    if _has_control(group):
        raise ProxyError(C.ILLEGAL_MESSAGE_GROUP, "message group cannot contain control characters")


def validate_user_properties(props: Any, cfg: ProxyConfig) -> None:
    items = props.items()
    if len(items) > cfg.user_property_max_num:
        raise ProxyError(
            C.MESSAGE_PROPERTIES_TOO_LARGE, f"too many user properties, max {cfg.user_property_max_num}"
        )
    total = 0
    reserved = MessageConst.RESERVED
    for k, v in items:
        total += len(k.encode()) + len(v.encode())
        if k in reserved:
            raise ProxyError(C.ILLEGAL_MESSAGE_PROPERTY_KEY, f"property key {k!r} is reserved")
        if not k or _has_control(k) or _has_control(v):
            raise ProxyError(C.ILLEGAL_MESSAGE_PROPERTY_KEY, f"property {k!r} contains control characters")
    if total > cfg.max_user_property_size:
        raise ProxyError(
            C.MESSAGE_PROPERTIES_TOO_LARGE, f"user properties exceed {cfg.max_user_property_size} bytes"
        )


def validate_body(body: bytes, cfg: ProxyConfig) -> None:
    if not body:
        raise ProxyError(C.MESSAGE_BODY_EMPTY, "message body cannot be empty")
    if len(body) > cfg.max_message_size:
        raise ProxyError(C.MESSAGE_BODY_TOO_LARGE, f"message body exceeds {cfg.max_message_size} bytes")


def validate_delivery_time(delivery_ms: int, cfg: ProxyConfig, now_ms: int | None = None) -> None:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if cfg.max_delay_time_mills > 0 and delivery_ms - now > cfg.max_delay_time_mills:
        raise ProxyError(
            C.ILLEGAL_DELIVERY_TIME, f"delivery time exceeds the max delay of {cfg.max_delay_time_mills} ms"
        )


def validate_invisible_time(ms: int, cfg: ProxyConfig, min_ms: int | None = None) -> None:
    lo = cfg.min_invisible_time_mills_for_recv if min_ms is None else min_ms
    if ms < lo:
        raise ProxyError(C.ILLEGAL_INVISIBLE_TIME, f"invisible duration {ms} ms is below {lo} ms")
    if ms > cfg.max_invisible_time_mills:
        raise ProxyError(
            C.ILLEGAL_INVISIBLE_TIME, f"invisible duration {ms} ms exceeds {cfg.max_invisible_time_mills} ms"
        )
