"""Namespaces (RocketMQ 5's ``namespace`` of ClientConfiguration): a client in namespace ``ns`` names
topic ``T`` and group ``G``; the cluster stores them as ``ns%T`` and ``ns%G`` (retry and dead-letter
topics as ``%RETRY%ns%G`` / ``%DLQ%ns%G``), RocketMQ's NamespaceUtil rules.

The SDKs send the namespace in each ``Resource.resource_namespace`` and in the ``x-mq-namespace``
header. :func:`wrap_request` rewrites every Resource of a request to the stored name before the call is
served (so ACL, routing, receipt handles and the broker only see stored names); :func:`unwrap_response`
gives each Resource of an answer back its short name and namespace. A call without a namespace is not
touched.
"""

from __future__ import annotations

from typing import Any

from backends.model import DLQ_GROUP_TOPIC_PREFIX, RETRY_GROUP_TOPIC_PREFIX, is_system_topic
from protos.apache.rocketmq.v2 import definition_pb2 as pb
from proxy.validation import SYS_GROUP_PREFIX

SEPARATOR = "%"
_RESOURCE = pb.Resource.DESCRIPTOR


def _is_system(name: str) -> bool:
    return is_system_topic(name) or name.startswith(SYS_GROUP_PREFIX)


def _split_prefix(name: str) -> tuple[str, str]:
    for prefix in (RETRY_GROUP_TOPIC_PREFIX, DLQ_GROUP_TOPIC_PREFIX):
        if name.startswith(prefix):
            return prefix, name[len(prefix):]
    return "", name


def wrap(namespace: str, name: str) -> str:
    """``T`` -> ``ns%T``; ``%RETRY%G`` -> ``%RETRY%ns%G``; system names and names already in the
    namespace are kept."""
    if not namespace or not name or _is_system(name):
        return name
    prefix, rest = _split_prefix(name)
    if rest.startswith(namespace + SEPARATOR):
        return name
    return f"{prefix}{namespace}{SEPARATOR}{rest}"


def unwrap(namespace: str, name: str) -> str:
    """The inverse of :func:`wrap` (a name of another namespace is kept)."""
    if not namespace or not name:
        return name
    prefix, rest = _split_prefix(name)
    head = namespace + SEPARATOR
    return prefix + rest[len(head):] if rest.startswith(head) else name


def namespace_of(metadata: Any) -> str:
    for k, v in metadata or ():
        if k == "x-mq-namespace":
            return str(v)
    return ""


def _walk(msg: Any, fn: Any) -> None:
    """Apply ``fn`` to every Resource inside ``msg``."""
    for field, value in msg.ListFields():
        mt = field.message_type
        if mt is None or mt.GetOptions().map_entry:
            continue
        for item in value if field.is_repeated else (value,):
            if mt is _RESOURCE:
                fn(item)
            else:
                _walk(item, fn)


def wrap_request(request: Any, namespace: str) -> str:
    """Rewrite the request's Resources to stored names; returns the namespace the call uses (the
    header's, else the first Resource's)."""
    found = [namespace]

    def fn(r: Any) -> None:
        ns = r.resource_namespace or found[0]
        if ns:
            found[0] = found[0] or ns
            r.name = wrap(ns, r.name)
            r.resource_namespace = ""

    _walk(request, fn)
    return found[0]


def unwrap_response(response: Any, namespace: str) -> None:
    def fn(r: Any) -> None:
        short = unwrap(namespace, r.name)
        if short != r.name:
            r.name = short
            r.resource_namespace = namespace

    _walk(response, fn)
