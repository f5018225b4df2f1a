"""Message filters for PULL: tag hash on the consume queue, then the tag string (or SQL92 via
backends.broker.filter) on the stored record."""

from __future__ import annotations

import struct
from collections.abc import Callable

from backends.model import SysFlag, string_to_properties

MAGIC_V2 = 0xDAA320AB - (1 << 32)

MessageFilterFn = Callable[[int, bytes | None], bool]


def record_properties(record: bytes) -> dict[str, str]:
    """Properties of one stored commitlog record (RocketMQ's layout)."""
    magic = struct.unpack_from(">i", record, 4)[0]
    sys_flag = struct.unpack_from(">i", record, 36)[0]
    pos = 48
    pos += (16 if sys_flag & SysFlag.BORNHOST_V6 else 4) + 4
    pos += 8
    pos += (16 if sys_flag & SysFlag.STOREHOST_V6 else 4) + 4
    pos += 4 + 8
    body_len = struct.unpack_from(">i", record, pos)[0]
    pos += 4 + body_len
    if magic == MAGIC_V2:
        topic_len = struct.unpack_from(">H", record, pos)[0]
        pos += 2
    else:
        topic_len = record[pos]
        pos += 1
    pos += topic_len
    props_len = struct.unpack_from(">H", record, pos)[0]
    pos += 2
    return string_to_properties(record[pos:pos + props_len].decode("utf-8", "replace"))


def build_pull_filter(expression_type: str, expression: str) -> MessageFilterFn | None:
    """The store callback for a TAG or SQL92 subscription; None when every message matches.
    Raises ValueError (FilterError) on a bad expression."""
    from backends.broker.filter import build_filter

    et = (expression_type or "TAG").upper()
    if et == "TAG" and (not expression or expression.strip() in ("", "*")):
        return None
    mf = build_filter(et, expression)
    return mf.store_filter(record_properties)
