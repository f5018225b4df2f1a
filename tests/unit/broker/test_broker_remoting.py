"""The broker's remoting processors against an in-process BrokerController."""

from __future__ import annotations

import asyncio
import time

from backends.broker.controller import BrokerController
from backends.model import SubscriptionGroupConfig, properties_to_string
from backends.remoting import json_body
from backends.remoting.client import RemotingClient
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from backends.store.record import decode_records, encode_message_batch


def send_req(topic: str, body: bytes, queue_id: int = 0, tags: str | None = None,
             code: int = RequestCode.SEND_MESSAGE_V2) -> RemotingCommand:
    props = {"UNIQ_KEY": f"U{time.time_ns()}"}
    if tags:
        props["TAGS"] = tags
    return RemotingCommand.request(code, {
        "a": "PG", "b": topic, "c": "TBW102", "d": "4", "e": str(queue_id), "f": "0",
        "g": str(int(time.time() * 1000)), "h": "0", "i": properties_to_string(props), "j": "0", "k": "false",
    }, body)


def pull_req(group: str, topic: str, queue_id: int, offset: int, suspend_ms: int = 0,
             sub: str = "*") -> RemotingCommand:
    return RemotingCommand.request(RequestCode.PULL_MESSAGE, {
        "consumerGroup": group, "topic": topic, "queueId": str(queue_id), "queueOffset": str(offset),
        "maxMsgNums": "32", "sysFlag": str(2 | 4 if suspend_ms else 4), "commitOffset": "0",
        "suspendTimeoutMillis": str(suspend_ms), "subscription": sub, "subVersion": "0", "expressionType": "TAG",
    })


async def test_send_pull_offsets(broker: BrokerController, client: RemotingClient) -> None:
    addr = broker.broker_addr
    r = await client.invoke(addr, send_req("T1", b"hello", tags="A"), 5)
    assert r.code == ResponseCode.SUCCESS, r.remark
    assert r.ext_fields["queueOffset"] == "0" and r.ext_fields["queueId"] == "0"
    assert len(r.ext_fields["msgId"]) == 32
    await client.invoke(addr, send_req("T1", b"world", tags="B"), 5)
    assert broker.topic_config_manager.select_topic_config("T1") is not None

    p = await client.invoke(addr, pull_req("G1", "T1", 0, 0), 5)
    assert p.code == ResponseCode.SUCCESS, p.remark
    msgs = decode_records(p.body)
    assert [m.body for m in msgs] == [b"hello", b"world"]
    assert p.ext_fields["nextBeginOffset"] == "2"

    p = await client.invoke(addr, pull_req("G1", "T1", 0, 0, sub="B"), 5)
    assert p.code == ResponseCode.SUCCESS
    assert [m.body for m in decode_records(p.body)] == [b"world"]

    p = await client.invoke(addr, pull_req("G1", "T1", 0, 2), 5)
    assert p.code == ResponseCode.PULL_NOT_FOUND

    q = RemotingCommand.request(RequestCode.QUERY_CONSUMER_OFFSET,
                                {"consumerGroup": "G1", "topic": "T1", "queueId": "0", "setZeroIfNotFound": "false"})
    assert (await client.invoke(addr, q, 5)).code == ResponseCode.QUERY_NOT_FOUND
    u = RemotingCommand.request(RequestCode.UPDATE_CONSUMER_OFFSET,
                                {"consumerGroup": "G1", "topic": "T1", "queueId": "0", "commitOffset": "2"})
    assert (await client.invoke(addr, u, 5)).code == ResponseCode.SUCCESS
    q.opaque = 0
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.QUERY_CONSUMER_OFFSET, dict(q.ext_fields)), 5)
    assert r.code == ResponseCode.SUCCESS and r.ext_fields["offset"] == "2"
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.GET_MAX_OFFSET,
                                                          {"topic": "T1", "queueId": "0"}), 5)
    assert r.ext_fields["offset"] == "2"


async def test_query_offset_of_a_new_group_follows_rocketmq(broker: BrokerController, client: RemotingClient) -> None:
    """A group that never consumed a queue: 0 when the queue's first message is there and in memory
    (4.x clients then read a young topic from its start), not found for an empty queue or when the client
    says ``setZeroIfNotFound=false``; a group created with consumeFromWhere starts where it says."""
    addr = broker.broker_addr

    async def query(group: str, queue_id: int, **extra: str) -> tuple[int, str]:
        r = await client.invoke(addr, RemotingCommand.request(RequestCode.QUERY_CONSUMER_OFFSET, {
            "consumerGroup": group, "topic": "TQ", "queueId": str(queue_id), **extra}), 5)
        return r.code, r.ext_fields.get("offset", "")

    for i in range(3):
        assert (await client.invoke(addr, send_req("TQ", b"m%d" % i), 5)).code == ResponseCode.SUCCESS
    assert await query("NewG", 0) == (ResponseCode.SUCCESS, "0")
    assert (await query("NewG", 0, setZeroIfNotFound="false"))[0] == ResponseCode.QUERY_NOT_FOUND
    assert (await query("NewG", 1))[0] == ResponseCode.QUERY_NOT_FOUND  # no message in queue 1
    broker.message_store.config.access_message_in_memory_max_ratio = 0  # offset 0 no longer "in memory"
    assert (await query("NewG", 0))[0] == ResponseCode.QUERY_NOT_FOUND
    broker.message_store.config.access_message_in_memory_max_ratio = 40
    broker.update_subscription_group(SubscriptionGroupConfig(
        "LateG", attributes={"consumeFromWhere": "TIMESTAMP", "consumeTimestamp": str(2**62)}))
    assert await query("LateG", 0) == (ResponseCode.SUCCESS, "3")  # after every stored message
    broker.update_subscription_group(SubscriptionGroupConfig("EndG", attributes={"consumeFromWhere": "LATEST"}))
    assert (await query("EndG", 0))[0] == ResponseCode.QUERY_NOT_FOUND  # the client starts at the end


async def test_long_polling_wakes_on_arrival(broker: BrokerController, client: RemotingClient) -> None:
    addr = broker.broker_addr
    await client.invoke(addr, send_req("T2", b"first"), 5)
    t0 = time.monotonic()
    pending = asyncio.ensure_future(client.invoke(addr, pull_req("G2", "T2", 0, 1, suspend_ms=10_000), 15))
    await asyncio.sleep(0.3)
    assert not pending.done()
    await client.invoke(addr, send_req("T2", b"second"), 5)
    p = await pending
    assert p.code == ResponseCode.SUCCESS
    assert [m.body for m in decode_records(p.body)] == [b"second"]
    assert time.monotonic() - t0 < 5


async def test_batch_and_errors(broker: BrokerController, client: RemotingClient) -> None:
    from backends.model import Message

    addr = broker.broker_addr
    body = encode_message_batch([Message("TB", b"m1", {"UNIQ_KEY": "K1"}), Message("TB", b"m2", {"UNIQ_KEY": "K2"})])
    r = await client.invoke(addr, send_req("TB", body, code=RequestCode.SEND_BATCH_MESSAGE), 5)
    assert r.code == ResponseCode.SUCCESS, r.remark
    assert len(r.ext_fields["msgId"].split(",")) == 2
    r = await client.invoke(addr, send_req("bad topic!", b"x"), 5)
    assert r.code == ResponseCode.MESSAGE_ILLEGAL
    r = await client.invoke(addr, send_req("T" * 128, b"x"), 5)
    assert r.code == ResponseCode.MESSAGE_ILLEGAL
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.PULL_MESSAGE, {"topic": "TB"}), 5)
    assert r.code == ResponseCode.SYSTEM_ERROR and "consumerGroup" in (r.remark or "")
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.GET_MAX_OFFSET,
                                                          {"topic": "TB", "queueId": "x"}), 5)
    assert r.code == ResponseCode.SYSTEM_ERROR
    broker.config.auto_create_topic_enable = False
    broker.topic_config_manager.topic_config_table.pop("TBW102")
    r = await client.invoke(addr, send_req("NoSuchTopic", b"x"), 5)
    assert r.code == ResponseCode.TOPIC_NOT_EXIST


async def test_heartbeat_and_consumer_list(broker: BrokerController, client: RemotingClient) -> None:
    addr = broker.broker_addr
    hb = {"clientID": "c1", "producerDataSet": [{"groupName": "PG"}], "consumerDataSet": [{
        "groupName": "CG", "consumeType": "CONSUME_PASSIVELY", "messageModel": "CLUSTERING",
        "consumeFromWhere": "CONSUME_FROM_LAST_OFFSET",
        "subscriptionDataSet": [{"topic": "T3", "subString": "*", "tagsSet": [], "codeSet": [],
                                 "expressionType": "TAG", "subVersion": 1}]}]}
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.HEART_BEAT, body=json_body.dumps(hb)), 5)
    assert r.code == ResponseCode.SUCCESS, r.remark
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.GET_CONSUMER_LIST_BY_GROUP,
                                                          {"consumerGroup": "CG"}), 5)
    assert json_body.loads(r.body)["consumerIdList"] == ["c1"]
    assert broker.topic_config_manager.select_topic_config("%RETRY%CG") is not None
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.GET_PRODUCER_CONNECTION_LIST,
                                                          {"producerGroup": "PG"}), 5)
    assert [c["clientId"] for c in json_body.loads(r.body)["connectionSet"]] == ["c1"]
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.GET_CONSUMER_CONNECTION_LIST,
                                                          {"consumerGroup": "CG"}), 5)
    cc = json_body.loads(r.body)
    assert cc["consumeFromWhere"] == "CONSUME_FROM_LAST_OFFSET" and "T3" in cc["subscriptionTable"]
    await client.close()
    for _ in range(50):
        if broker.consumer_manager.get("CG") is None:
            break
        await asyncio.sleep(0.05)
    assert broker.consumer_manager.get("CG") is None


async def test_admin_topic_and_group(broker: BrokerController, client: RemotingClient) -> None:
    addr = broker.broker_addr
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.UPDATE_AND_CREATE_TOPIC, {
        "topic": "FT", "readQueueNums": "2", "writeQueueNums": "2", "perm": "6",
        "attributes": "+message.type=FIFO"}), 5)
    assert r.code == ResponseCode.SUCCESS, r.remark
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.GET_TOPIC_CONFIG, {"topic": "FT"}), 5)
    tc = json_body.loads(r.body)
    assert tc["attributes"] == {"message.type": "FIFO"} and tc["readQueueNums"] == 2
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
                                                          body=json_body.dumps({"groupName": "SG",
                                                                                "retryMaxTimes": 3})), 5)
    assert r.code == ResponseCode.SUCCESS
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.GET_SUBSCRIPTIONGROUP_CONFIG,
                                                          {"group": "SG"}), 5)
    assert json_body.loads(r.body)["retryMaxTimes"] == 3
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.DELETE_TOPIC_IN_BROKER, {"topic": "FT"}), 5)
    assert r.code == ResponseCode.SUCCESS
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.GET_TOPIC_CONFIG, {"topic": "FT"}), 5)
    assert r.code == ResponseCode.TOPIC_NOT_EXIST
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.GET_BROKER_RUNTIME_INFO), 5)
    assert "brokerVersion" in json_body.loads(r.body)["table"]


async def test_lock_batch_mq(broker: BrokerController, client: RemotingClient) -> None:
    addr = broker.broker_addr

    def body(cid: str) -> bytes:
        return json_body.dumps({"consumerGroup": "OG", "clientId": cid,
                                "mqSet": [{"topic": "OT", "brokerName": "broker-a", "queueId": 0}]})

    r = await client.invoke(addr, RemotingCommand.request(RequestCode.LOCK_BATCH_MQ, body=body("c1")), 5)
    assert len(json_body.loads(r.body)["lockOKMQSet"]) == 1
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.LOCK_BATCH_MQ, body=body("c2")), 5)
    assert json_body.loads(r.body)["lockOKMQSet"] == []
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.UNLOCK_BATCH_MQ, body=body("c1")), 5)
    assert r.code == ResponseCode.SUCCESS
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.LOCK_BATCH_MQ, body=body("c2")), 5)
    assert len(json_body.loads(r.body)["lockOKMQSet"]) == 1


async def test_send_message_v1_header(broker: BrokerController, client: RemotingClient) -> None:
    r = await client.invoke(broker.broker_addr, RemotingCommand.request(RequestCode.SEND_MESSAGE, {
        "producerGroup": "PG", "topic": "V1T", "defaultTopic": "TBW102", "defaultTopicQueueNums": "4",
        "queueId": "1", "sysFlag": "0", "bornTimestamp": "1", "flag": "0",
        "properties": properties_to_string({"UNIQ_KEY": "V1"}), "reconsumeTimes": "0"}, b"v1"), 5)
    assert r.code == ResponseCode.SUCCESS and r.ext_fields["queueId"] == "1", r.remark
    tc = broker.topic_config_manager.select_topic_config("V1T")
    assert tc is not None and tc.write_queue_nums == 4  # min(defaultTopicQueueNums, TBW102's 8)


async def test_update_broker_config(broker: BrokerController, client: RemotingClient) -> None:
    addr = broker.broker_addr
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.UPDATE_BROKER_CONFIG,
                                                          body=b"brokerPermission=4\n"), 5)
    assert r.code == ResponseCode.SUCCESS, r.remark
    r = await client.invoke(addr, send_req("PermT", b"x"), 5)
    assert r.code == ResponseCode.NO_PERMISSION
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.UPDATE_BROKER_CONFIG, body=b"listenPort=1\n"), 5)
    assert r.code == ResponseCode.NO_PERMISSION
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.UPDATE_BROKER_CONFIG,
                                                          body=b"brokerPermission=x\n"), 5)
    assert r.code == ResponseCode.INVALID_PARAMETER
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.GET_BROKER_CONFIG), 5)
    assert b"brokerPermission=4" in r.body


async def test_send_back_with_pop_extra_info_goes_to_dlq(broker: BrokerController, client: RemotingClient) -> None:
    import pytest

    pytest.importorskip("backends.broker.pop.service")
    if broker.pop_service is None:
        pytest.skip("POP service not wired")
    from backends.api import PopRequest, PopStatus
    from backends.local import LocalBackend

    be = LocalBackend(broker)
    broker.topic_config_manager.create_topic_if_absent("DT", 1, 1)
    await be.pop_message("broker-a", PopRequest("DG", "DT"), 5)  # fixes the start offset of the new group
    await client.invoke(broker.broker_addr, send_req("DT", b"to-dlq"), 5)
    got = await be.pop_message("broker-a", PopRequest("DG", "DT", poll_time_ms=2000), 5)
    assert got.status is PopStatus.FOUND
    r = await client.invoke(broker.broker_addr, RemotingCommand.request(RequestCode.CONSUMER_SEND_MSG_BACK, {
        "offset": "-1", "group": "DG", "delayLevel": "-1", "originTopic": "DT", "maxReconsumeTimes": "16",
        "extraInfo": got.messages[0].properties["POP_CK"]}), 5)
    assert r.code == ResponseCode.SUCCESS, r.remark
    res = broker.message_store.get_messages("%DLQ%DG", 0, 0, 10)
    assert [m.body for m in decode_records(b"".join(res.records))] == [b"to-dlq"]


async def test_reset_offset_by_time(broker: BrokerController, client: RemotingClient) -> None:
    addr = broker.broker_addr
    for i in range(3):
        await client.invoke(addr, send_req("RsT", f"m{i}".encode()), 5)
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.INVOKE_BROKER_TO_RESET_OFFSET, {
        "topic": "RsT", "group": "RsG", "timestamp": "0", "isForce": "true"}), 5)
    assert r.code == ResponseCode.SUCCESS, r.remark
    assert broker.consumer_offset_manager.query_offset("RsG", "RsT", 0) == 0
    r = await client.invoke(addr, RemotingCommand.request(RequestCode.INVOKE_BROKER_TO_RESET_OFFSET, {
        "topic": "RsT", "group": "RsG", "timestamp": "-1", "isForce": "true"}), 5)
    assert broker.consumer_offset_manager.query_offset("RsG", "RsT", 0) == 3
    assert b'"queueId":0,"topic":"RsT"}:3' in r.body
