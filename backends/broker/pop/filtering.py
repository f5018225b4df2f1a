"""Subscription filters for POP: a thin adapter over :mod:`backends.broker.filter`."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from backends.api import BackendError
from backends.broker.filter import FilterError, TagMessageFilter, build_filter
from backends.broker.filter import MessageFilter as _Compiled
from backends.model import MessageExt, string_to_properties
from backends.remoting.codes import ResponseCode
from backends.store.record import RecordError, check_record


def _record_properties(record: bytes) -> Mapping[str, str]:
    try:
        return string_to_properties(check_record(record, check_crc=False).properties)
    except RecordError:
        return {}


class _TagCodeFilter:
    """A store filter on the consume queue's tag hash alone: ``needs_properties = False`` tells
    ``MessageStore.get_messages`` not to call it again with the record (``accept`` then checks the tag
    string on the decoded message, which POP decodes anyway)."""

    __slots__ = ("compiled",)
    needs_properties = False

    def __init__(self, compiled: _Compiled) -> None:
        self.compiled = compiled

    def __call__(self, tags_code: int, record: bytes | None) -> bool:
        return self.compiled.is_matched_by_tags_code(tags_code)


class MessageFilter:
    """``store_filter`` goes to ``MessageStore.get_messages``; ``accept`` is the exact check on the
    decoded message (tag string after a tag-hash match, or the SQL92 expression).

    ``exact_in_store``: the store filter already made the exact check on the record (SQL92: the store
    calls it with the record's bytes and it evaluates the expression on their properties), so a record
    the store returned needs no ``accept`` (it used to evaluate every SQL92 expression twice per
    delivered message). TAG filters decide on the tag hash in the store and on the tag string here."""

    def __init__(self, compiled: _Compiled) -> None:
        self.compiled = compiled
        self.exact_in_store: bool = compiled.needs_properties
        self.store_filter: Callable[[int, bytes | None], bool] = (
            compiled.store_filter(_record_properties) if compiled.needs_properties else _TagCodeFilter(compiled))

    def accept(self, msg: MessageExt) -> bool:
        return self.compiled.is_matched_by_properties(msg.properties)


def build_message_filter(expression_type: str, expression: str) -> MessageFilter | None:
    """None when every message matches; BackendError(SUBSCRIPTION_PARSE_FAILED) when invalid."""
    try:
        compiled = build_filter(expression_type or "TAG", expression or "*")
    except FilterError as e:
        raise BackendError(ResponseCode.SUBSCRIPTION_PARSE_FAILED,
                           f"parse the consumer's subscription failed: {e}") from None
    if isinstance(compiled, TagMessageFilter) and compiled.sub_all:
        return None
    return MessageFilter(compiled)
