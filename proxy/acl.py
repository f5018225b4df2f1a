"""Access control for the gRPC proxy: ``enableACL`` in rmq-proxy.json and the accounts of
``plain_acl.yml`` (the rules are :mod:`backends.acl`'s).

The official SDKs sign every call: header ``x-mq-date-time`` (``20221110T104405Z``) and
``authorization: MQv2-HMAC-SHA1 Credential=<accessKey>, SignedHeaders=x-mq-date-time, Signature=<hex>``
(the Go SDK: ``Credential=<accessKey>//Rocketmq``),
the signature being HMAC-SHA1 of the date-time with the account's secret key. A refused call answers
UNAUTHORIZED (40100) for a missing or wrong key or signature, FORBIDDEN (40300) for a permission.
The resources of each RPC follow RocketMQ's PlainAccessValidator: a send, EndTransaction or recall needs
PUB on the topic; receive, ack, change of invisible time, DLQ forward and the pull/offset calls need SUB
on the topic and the group; a heartbeat SUB on its group; the others only a valid signature.
"""

from __future__ import annotations

import hmac
from typing import Any

from backends.acl import PUB, SUB, AclDenied, AclSource, Resource, check_access, sign_hex
from protos.apache.rocketmq.v2 import definition_pb2 as pb


def parse_authorization(header: str) -> tuple[str | None, str]:
    """(access key, lower-case signature hex) of an ``authorization`` header, read as RocketMQ reads it:
    ``<algorithm> key=value, key=value``; the access key is Credential's text before the first ``/``
    (the Go SDK sends ``Credential=<ak>//Rocketmq``, the Java and Python SDKs ``Credential=<ak>``).
    (None, "") when there is no Credential."""
    _, _, items = header.partition(" ")
    access_key: str | None = None
    signature = ""
    for item in items.split(","):
        key, _, value = item.strip().partition("=")
        if key == "Credential":
            access_key = value.split("/", 1)[0]
        elif key == "Signature":
            signature = value.lower()
    return access_key, signature


class AclError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def status(self) -> pb.Status:
        return pb.Status(code=self.code, message=self.message)  # type: ignore[arg-type]


def resources_of(method: str, request: Any) -> list[Resource]:
    """What a call needs, after RocketMQ's PlainAccessValidator.parse for gRPC."""
    if method in ("SendMessage",):
        return [(m.topic.name, False, PUB) for m in request.messages[:1]]
    if method in ("EndTransaction", "RecallMessage"):
        return [(request.topic.name, False, PUB)]
    if method == "Heartbeat":
        return [(request.group.name, True, SUB)] if request.HasField("group") else []
    if method in ("ReceiveMessage", "PullMessage", "UpdateOffset", "GetOffset", "QueryOffset"):
        return [(request.group.name, True, SUB), (request.message_queue.topic.name, False, SUB)]
    if method in ("AckMessage", "ChangeInvisibleDuration", "ForwardMessageToDeadLetterQueue"):
        return [(request.group.name, True, SUB), (request.topic.name, False, SUB)]
    return []


class PlainAccessValidator:
    def __init__(self, source: AclSource) -> None:
        self.source = source

    def validate(self, remote_ip: str, metadata: dict[str, str], resources: list[Resource]) -> None:
        """Raise AclError for a call that may not go on."""
        access_key, signature = parse_authorization(metadata.get("authorization", ""))
        date_time = metadata.get("x-mq-date-time", "")
        try:
            check_access(self.source.current(), remote_ip, access_key,
                         lambda secret: hmac.compare_digest(signature, sign_hex(secret, date_time)), resources)
        except AclDenied as e:
            raise AclError(pb.Code.UNAUTHORIZED if e.authentication else pb.Code.FORBIDDEN, e.message) from None
