"""proxy.namespace: RocketMQ's NamespaceUtil rules and the rewriting of requests and answers."""

from __future__ import annotations

import pytest

from protos.apache.rocketmq.v2 import service_pb2 as spb
from proxy.namespace import namespace_of, unwrap, unwrap_response, wrap, wrap_request


@pytest.mark.parametrize("name, stored", [
    ("T", "ns%T"), ("ns%T", "ns%T"), ("%RETRY%G", "%RETRY%ns%G"), ("%DLQ%G", "%DLQ%ns%G"),
    ("%RETRY%ns%G", "%RETRY%ns%G"), ("TBW102", "TBW102"), ("rmq_sys_X", "rmq_sys_X"),
    ("CID_RMQ_SYS_A", "CID_RMQ_SYS_A"), ("", ""),
])
def test_wrap_and_unwrap(name, stored):
    assert wrap("ns", name) == stored
    assert wrap("", name) == name
    if name and not name.startswith(("ns%", "%RETRY%ns%")) and stored != name:
        assert unwrap("ns", stored) == name
    assert unwrap("other", "ns%T") == "ns%T"


def test_requests_get_stored_names_answers_short_ones():
    req = spb.ReceiveMessageRequest()
    req.group.name, req.group.resource_namespace = "G", "ns1"
    req.message_queue.topic.name, req.message_queue.topic.resource_namespace = "T", "ns1"
    assert wrap_request(req, "") == "ns1"  # from the Resources when the header has none
    assert (req.group.name, req.group.resource_namespace) == ("ns1%G", "")
    assert req.message_queue.topic.name == "ns1%T"

    send = spb.SendMessageRequest()
    for _ in range(2):
        m = send.messages.add()
        m.topic.name = "T"
        m.user_properties["k"] = "v"  # map fields are skipped
    assert wrap_request(send, "ns1") == "ns1"
    assert [m.topic.name for m in send.messages] == ["ns1%T", "ns1%T"]

    resp = spb.ReceiveMessageResponse()
    resp.message.topic.name = "ns1%T"
    unwrap_response(resp, "ns1")
    assert (resp.message.topic.name, resp.message.topic.resource_namespace) == ("T", "ns1")
    assert namespace_of((("x-mq-client-id", "c"), ("x-mq-namespace", "ns1"))) == "ns1"
    assert namespace_of(None) == ""
