"""MessageFilter implementations and the cached factory :func:`build_filter`."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping

from backends.broker.filter.errors import FilterError
from backends.broker.filter.sql92 import EvalError, Evaluator, compile_sql92

log = logging.getLogger("RocketmqBroker")

TAG = "TAG"
SQL92 = "SQL92"
SUB_ALL = "*"
FILTER_CACHE_SIZE = 4096


def tags_hash(tag: str) -> int:
    """Java ``String.hashCode`` of ``tag`` (over UTF-16 code units), as a signed 32-bit int.

    This is the ``tagsCode`` a consume-queue entry holds for a normal message."""
    h = 0
    data = tag.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def _to_int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


class MessageFilter:
    """A compiled subscription expression."""

    expression_type: str
    expression: str
    # True when is_matched_by_properties must be consulted (SQL92); a TAG filter decides on the tag
    # code alone, like RocketMQ's broker (is_matched_by_properties still gives the exact TAG answer).
    needs_properties: bool = False

    def is_matched_by_tags_code(self, tags_code: int) -> bool:
        raise NotImplementedError

    def is_matched_by_properties(self, props: Mapping[str, str]) -> bool:
        raise NotImplementedError

    def store_filter(
        self, decode_properties: Callable[[bytes], Mapping[str, str]]
    ) -> Callable[[int, bytes | None], bool]:
        """The ``message_filter(tags_code, record)`` callback ``MessageStore.get_messages`` takes:
        ``record=None`` -> tag-code check; otherwise decode the record's properties and evaluate."""

        def f(tags_code: int, record: bytes | None) -> bool:
            if record is None:
                return self.is_matched_by_tags_code(tags_code)
            return self.is_matched_by_properties(decode_properties(record))

        return f


class TagMessageFilter(MessageFilter):
    """``*``/empty: everything; ``a || b``: messages tagged ``a`` or ``b``."""

    def __init__(self, expression: str) -> None:
        self.expression_type = TAG
        self.expression = expression
        self.needs_properties = False
        text = (expression or "").strip()
        self.sub_all = text in ("", SUB_ALL)
        self.tags: frozenset[str] = frozenset()
        self.codes: frozenset[int] = frozenset()
        if not self.sub_all:
            tags = [t.strip() for t in text.split("||")]
            tags = [t for t in tags if t]
            if not tags:
                raise FilterError(f"tag expression {expression!r} names no tag")
            self.tags = frozenset(tags)
            self.codes = frozenset(tags_hash(t) for t in tags)

    def is_matched_by_tags_code(self, tags_code: int) -> bool:
        if self.sub_all:
            return True
        return _to_int32(tags_code) in self.codes

    def is_matched_by_properties(self, props: Mapping[str, str]) -> bool:
        if self.sub_all:
            return True
        tag = props.get("TAGS")
        return tag is not None and tag in self.tags

    def __repr__(self) -> str:
        return f"TagMessageFilter({self.expression!r})"


class SqlMessageFilter(MessageFilter):
    """SQL92 on the message properties (``TAGS`` is the tag); see :mod:`backends.broker.filter.sql92`."""

    def __init__(self, expression: str) -> None:
        self.expression_type = SQL92
        self.expression = expression
        self.needs_properties = True
        self._fn: Evaluator = compile_sql92(expression)

    def is_matched_by_tags_code(self, tags_code: int) -> bool:
        return True

    def is_matched_by_properties(self, props: Mapping[str, str]) -> bool:
        try:
            return self._fn(props) is True
        except EvalError:
            return False
        except RecursionError:  # pragma: no cover - depth is bounded at compile time
            return False

    def __repr__(self) -> str:
        return f"SqlMessageFilter({self.expression!r})"


@functools.lru_cache(maxsize=FILTER_CACHE_SIZE)
def _build(expression_type: str, expression: str) -> MessageFilter:
    if expression_type == TAG:
        return TagMessageFilter(expression)
    return SqlMessageFilter(expression)


def build_filter(expression_type: str | None, expression: str | None) -> MessageFilter:
    """Compile (or fetch from the LRU cache) a filter; raises :class:`FilterError`.

    ``expression_type``: ``TAG`` (also ``None``/empty) or ``SQL92`` (``SQL`` accepted), any case."""
    t = (expression_type or TAG).strip().upper()
    if t == "SQL":
        t = SQL92
    if t not in (TAG, SQL92):
        raise FilterError(f"unsupported filter expression type {expression_type!r} (TAG or SQL92)")
    if expression is not None and not isinstance(expression, str):
        raise FilterError("filter expression must be a string")
    return _build(t, expression or "")
