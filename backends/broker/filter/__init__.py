"""Message filters: TAG expressions and SQL92 property expressions (RocketMQ's filter module).

Use::

    from backends.broker.filter import build_filter, FilterError

    f = build_filter("TAG", "a || b")          # or ("SQL92", "a > 5 AND TAGS IN ('x')")
    f.is_matched_by_tags_code(tags_code)        # cheap check on the consume-queue entry
    if f.needs_properties:                      # SQL92: decode the record's properties, then
        f.is_matched_by_properties(props)       # exact check (TAG: compares the TAGS string)

``build_filter`` raises :class:`FilterError` (map it to 40010 in the proxy, 23 in the broker) and
caches compiled filters in a bounded LRU keyed by (type, expression), so calling it per request is cheap.
``MessageFilter.store_filter(decode_properties)`` adapts a filter to the ``message_filter(tags_code,
record)`` callback of ``MessageStore.get_messages``. ``tags_hash(tag)`` is the consume-queue tag code
(Java ``String.hashCode``).
"""

from backends.broker.filter.errors import FilterError
from backends.broker.filter.message_filter import (
    SQL92,
    TAG,
    MessageFilter,
    SqlMessageFilter,
    TagMessageFilter,
    build_filter,
    tags_hash,
)

__all__ = [
    "SQL92",
    "TAG",
    "FilterError",
    "MessageFilter",
    "SqlMessageFilter",
    "TagMessageFilter",
    "build_filter",
    "tags_hash",
]
