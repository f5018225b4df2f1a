"""Every broker processor answers a missing/ill-typed header or a garbage body with an error response."""

from __future__ import annotations

from backends.broker.controller import BrokerController
from backends.remoting.client import RemotingClient
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand

CODES = [
    RequestCode.SEND_MESSAGE, RequestCode.SEND_MESSAGE_V2, RequestCode.SEND_BATCH_MESSAGE, RequestCode.PULL_MESSAGE,
    RequestCode.QUERY_MESSAGE, RequestCode.VIEW_MESSAGE_BY_ID, RequestCode.HEART_BEAT, RequestCode.UNREGISTER_CLIENT,
    RequestCode.GET_CONSUMER_LIST_BY_GROUP, RequestCode.QUERY_CONSUMER_OFFSET, RequestCode.UPDATE_CONSUMER_OFFSET,
    RequestCode.GET_MAX_OFFSET, RequestCode.GET_MIN_OFFSET, RequestCode.SEARCH_OFFSET_BY_TIMESTAMP,
    RequestCode.GET_EARLIEST_MSG_STORETIME, RequestCode.CONSUMER_SEND_MSG_BACK, RequestCode.UPDATE_AND_CREATE_TOPIC,
    RequestCode.DELETE_TOPIC_IN_BROKER, RequestCode.GET_TOPIC_CONFIG, RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
    RequestCode.DELETE_SUBSCRIPTIONGROUP, RequestCode.GET_SUBSCRIPTIONGROUP_CONFIG, RequestCode.GET_TOPIC_STATS_INFO,
    RequestCode.GET_CONSUME_STATS, RequestCode.GET_CONSUMER_CONNECTION_LIST, RequestCode.RECALL_MESSAGE,
]

BAD_FIELDS = [
    {},
    {"topic": "T", "queueId": "abc", "consumerGroup": "G", "queueOffset": "x", "offset": "y", "group": "G",
     "commitOffset": "z", "timestamp": "t", "key": "k", "maxNum": "q", "b": "T", "e": "nope"},
    {"topic": "T" * 300, "queueId": "-5", "consumerGroup": "G", "queueOffset": "-1", "offset": "-1", "group": "G",
     "commitOffset": "-1", "timestamp": "-1", "key": "k", "maxNum": "0", "b": "T", "e": "-1"},
]


async def test_bad_requests_get_error_responses(broker: BrokerController, client: RemotingClient) -> None:
    addr = broker.broker_addr
    for code in CODES:
        for fields in BAD_FIELDS:
            for body in (b"", b"\x00\xffgarbage{"):
                r = await client.invoke(addr, RemotingCommand.request(code, dict(fields), body), 5)
                assert r.is_response, (code, fields)
                if r.code != ResponseCode.SUCCESS:
                    assert r.remark, (code, fields, r.code)
    # the broker still works
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.GET_BROKER_RUNTIME_INFO), 5)
    assert r.code == ResponseCode.SUCCESS


async def test_header_errors_answer_one_line_remarks(broker: BrokerController, client: RemotingClient) -> None:
    addr = broker.broker_addr
    cases = [
        (RequestCode.GET_MAX_OFFSET, {}, "the custom field <topic> is null"),
        (RequestCode.GET_MAX_OFFSET, {"topic": "T", "queueId": "abc"}, "the custom field <queueId> is not a number: 'abc'"),
        (RequestCode.PULL_MESSAGE, {"consumerGroup": "G", "topic": "T", "queueId": "0", "queueOffset": "9" * 30},
         f"the custom field <queueOffset> is out of range: '{'9' * 30}'"),
        (RequestCode.SEND_MESSAGE_V2, {"a": "P", "b": "T", "e": "x"}, "the custom field <e> is not a number: 'x'"),
        (RequestCode.DELETE_SUBSCRIPTIONGROUP, {"groupName": "G", "cleanOffset": "maybe"},
         "the custom field <cleanOffset> is not a boolean: 'maybe'"),
    ]
    for code, fields, remark in cases:
        r = await client.invoke(addr, RemotingCommand.request(code, dict(fields)), 5)
        assert (r.code, r.remark) == (ResponseCode.SYSTEM_ERROR, remark), (code, fields)


async def test_queue_counts_are_bounded(broker: BrokerController, client: RemotingClient) -> None:
    """A topic of 2^31 queues (or a group of as many retry queues) would make every per-queue walk --
    topic stats, rebalance, POP -- exhaust memory: refused with INVALID_PARAMETER (the fuzz test found it)."""
    from backends.broker.topic_config_manager import MAX_QUEUE_NUMS
    from backends.remoting import json_body

    addr = broker.broker_addr
    for read, write in (("2147483648", "8"), ("8", str(MAX_QUEUE_NUMS + 1)), ("0", "8"), ("8", "-1")):
        r = await client.invoke(addr, RemotingCommand.request(RequestCode.UPDATE_AND_CREATE_TOPIC, {
            "topic": "TopicWide", "readQueueNums": read, "writeQueueNums": write, "perm": "6"}), 5)
        assert r.code == ResponseCode.INVALID_PARAMETER and "between 1 and" in (r.remark or ""), (read, write, r)
    assert broker.topic_config_manager.select_topic_config("TopicWide") is None
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.UPDATE_AND_CREATE_TOPIC, {
        "topic": "TopicWide", "readQueueNums": str(MAX_QUEUE_NUMS), "writeQueueNums": "8", "perm": "6"}), 5)
    assert r.code == ResponseCode.SUCCESS
    body = json_body.dumps({"groupName": "GroupWide", "retryQueueNums": 10**12})
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, {},
                                                          body), 5)
    assert r.code == ResponseCode.INVALID_PARAMETER and "retryQueueNums" in (r.remark or "")
    assert broker.subscription_group_manager.get("GroupWide") is None
