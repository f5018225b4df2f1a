"""ACL 1.0 on the broker's remoting port (``aclEnable=true`` in broker.conf; accounts of
``$ROCKETMQ_HOME/conf/plain_acl.yml``, rules in :mod:`backends.acl`).

Each request is checked before its processor runs: the ``AccessKey`` and ``Signature`` ext fields
(RocketMQ's AclClientRPCHook) and the resources of the request code, as RocketMQ's PlainAccessValidator
reads them; topic and broker administration codes need an admin account. A refused request is answered
NO_PERMISSION with the reason. Slaves and other brokers calling this one need an account or an entry in
``globalWhiteRemoteAddresses``, as in RocketMQ.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from backends.acl import (
    ACCESS_KEY,
    PUB,
    SIGNATURE,
    SUB,
    AclDenied,
    AclSource,
    Resource,
    check_access,
    remoting_content,
    sign_remoting,
)
from backends.model import RETRY_GROUP_TOPIC_PREFIX
from backends.remoting import json_body
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand

log = logging.getLogger("rocketmq.broker")

ADMIN_CODES = {
    RequestCode.UPDATE_AND_CREATE_TOPIC: "UPDATE_AND_CREATE_TOPIC",
    RequestCode.UPDATE_BROKER_CONFIG: "UPDATE_BROKER_CONFIG",
    RequestCode.DELETE_TOPIC_IN_BROKER: "DELETE_TOPIC_IN_BROKER",
    RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: "UPDATE_AND_CREATE_SUBSCRIPTIONGROUP",
    RequestCode.DELETE_SUBSCRIPTIONGROUP: "DELETE_SUBSCRIPTIONGROUP",
}


def _group(name: str | None) -> list[Resource]:
    return [(name, True, SUB)] if name else []


def _topic(name: str | None, perm: int) -> list[Resource]:
    if not name:
        return []
    if name.startswith(RETRY_GROUP_TOPIC_PREFIX):  # a retry topic stands for its group
        return [(name[len(RETRY_GROUP_TOPIC_PREFIX):], True, SUB)]
    return [(name, False, perm)]


def resources_of(cmd: RemotingCommand) -> list[Resource]:
    f = cmd.ext_fields
    code = cmd.code
    if code == RequestCode.SEND_MESSAGE:
        return _topic(f.get("topic"), PUB)
    if code in (RequestCode.SEND_MESSAGE_V2, RequestCode.SEND_BATCH_MESSAGE):
        return _topic(f.get("b"), PUB)
    if code == RequestCode.CONSUMER_SEND_MSG_BACK:
        return _topic(f.get("originTopic"), PUB) + _group(f.get("group"))
    if code in (RequestCode.PULL_MESSAGE, RequestCode.POP_MESSAGE, RequestCode.QUERY_CONSUMER_OFFSET,
                RequestCode.UPDATE_CONSUMER_OFFSET):
        return _topic(f.get("topic"), SUB) + _group(f.get("consumerGroup"))
    if code in (RequestCode.ACK_MESSAGE, RequestCode.CHANGE_MESSAGE_INVISIBLETIME):
        return _topic(f.get("topic"), SUB) + _group(f.get("consumerGroup"))
    if code == RequestCode.QUERY_MESSAGE:
        return _topic(f.get("topic"), SUB)
    if code in (RequestCode.UNREGISTER_CLIENT, RequestCode.GET_CONSUMER_LIST_BY_GROUP):
        return _group(f.get("consumerGroup"))
    if code == RequestCode.HEART_BEAT and cmd.body:
        out: list[Resource] = []
        data: Any = json_body.loads(cmd.body)
        for c in (data.get("consumerDataSet") or []) if isinstance(data, dict) else []:
            out += _group(c.get("groupName"))
            for s in c.get("subscriptionDataSet") or []:
                out += _topic(s.get("topic"), SUB)
        return out
    return []


class RemotingAccessValidator:
    def __init__(self, source: AclSource) -> None:
        self.source = source

    def check(self, cmd: RemotingCommand, remote_addr: str) -> RemotingCommand | None:
        """None when the request may go on, else the NO_PERMISSION answer."""
        ip = remote_addr.rsplit(":", 1)[0].strip("[]")
        f = cmd.ext_fields
        try:
            signature = f.get(SIGNATURE, "")
            content = remoting_content(f, cmd.body)
            check_access(self.source.current(), ip, f.get(ACCESS_KEY),
                         lambda secret: hmac.compare_digest(signature, sign_remoting(secret, content)),
                         resources_of(cmd), admin_only=ADMIN_CODES.get(cmd.code, ""))
        except AclDenied as e:
            log.warning("request code %d from %s refused: %s", cmd.code, remote_addr, e.message)
            return cmd.response(ResponseCode.NO_PERMISSION, e.message)
        except Exception as e:  # noqa: BLE001 -- an undecodable body: refuse, never crash
            return cmd.response(ResponseCode.NO_PERMISSION, f"ACL: cannot read the request: {e}")
        return None
