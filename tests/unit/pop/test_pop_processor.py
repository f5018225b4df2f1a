from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
import pytest

from backends.broker.pop import extra_info as xi
from backends.broker.pop.processor import register
from backends.model import MessageConst, SubscriptionGroupConfig
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from backends.store.record import decode_records
from tests.unit.pop.conftest import GROUP, TOPIC, Env


class CapturingServer:
    def __init__(self) -> None:
        self.processors: dict[int, Any] = {}

    def register_processor(self, code: int, processor: Any) -> None:
        self.processors[code] = processor


@pytest.fixture
def call(env: Env) -> Any:
    env.broker.pop_service = env.service  # type: ignore[attr-defined]
    env.broker.subscription_group_manager.update_subscription_group_config(
        SubscriptionGroupConfig(GROUP, attributes={"consumeFromWhere": "EARLIEST"}))
    server = CapturingServer()
    register(server, env.broker)

    async def do(code: int, fields: dict[str, str], body: bytes = b"") -> RemotingCommand:
        req = RemotingCommand.request(code, fields, body)
        req.opaque = 7
        resp = await server.processors[code](req, None)
        assert resp is not None and resp.opaque == 7 and resp.is_response
        return resp  # type: ignore[no-any-return]

    return do


def pop_fields(**kw: Any) -> dict[str, str]:
    f = {"consumerGroup": GROUP, "topic": TOPIC, "queueId": "-1", "maxMsgNums": "32",
         "invisibleTime": "30000", "pollTime": "0", "bornTime": "0", "initMode": "1"}
    f.update({k: str(v) for k, v in kw.items()})
    return f


async def test_pop_ack_change_invisible_over_remoting(env: Env, call: Any) -> None:
    await env.send(3, queue_id=1)
    resp = await call(RequestCode.POP_MESSAGE, pop_fields())
    assert resp.code == ResponseCode.SUCCESS
    msgs = decode_records(resp.body)
    assert [m.body for m in msgs] == [b"m0", b"m1", b"m2"]
    ext = resp.ext_fields
    assert ext["popTime"] == str(env.clock.now) and ext["invisibleTime"] == "30000"
    assert ext["startOffsetInfo"] == "0 1 0" and ext["msgOffsetInfo"] == "0 1 0,1,2"
    assert int(ext["restNum"]) == 0
    ck = [m.properties[MessageConst.POP_CK] for m in msgs]
    assert xi.parse(ck[2]).queue_offset == 2
    # ack m0 with the header offset
    r = await call(RequestCode.ACK_MESSAGE, {"consumerGroup": GROUP, "topic": TOPIC, "queueId": "1",
                                             "extraInfo": ck[0], "offset": "0"})
    assert r.code == ResponseCode.SUCCESS
    # change invisible time of m1: new handle comes back
    r = await call(RequestCode.CHANGE_MESSAGE_INVISIBLETIME,
                   {"consumerGroup": GROUP, "topic": TOPIC, "queueId": "1", "extraInfo": ck[1], "offset": "1",
                    "invisibleTime": "50000"})
    assert r.code == ResponseCode.SUCCESS and r.ext_fields["invisibleTime"] == "50000"
    assert xi.parse(r.ext_fields["extraInfo"]).invisible_time == 50000
    # the old handle of m1 can no longer change it
    r = await call(RequestCode.CHANGE_MESSAGE_INVISIBLETIME,
                   {"consumerGroup": GROUP, "topic": TOPIC, "queueId": "1", "extraInfo": ck[1], "offset": "1",
                    "invisibleTime": "1000"})
    assert r.code == ResponseCode.NO_MESSAGE
    # batch ack m2 with a BitSet (bit 2 from start offset 0)
    info = xi.parse(ck[2])
    body = orjson.dumps({"brokerName": "broker-a", "acks": [{
        "c": GROUP, "t": TOPIC, "r": "0", "so": 0, "q": 1, "rq": 0, "pt": info.pop_time,
        "it": info.invisible_time, "b": base64.b64encode(bytes([0b100])).decode()}]})
    r = await call(RequestCode.BATCH_ACK_MESSAGE, {}, body)
    assert r.code == ResponseCode.SUCCESS and not r.remark
    assert env.service.inflight_count(GROUP) == 1  # only m1 (changed) is left


async def test_empty_pop_codes_and_notification(env: Env, call: Any) -> None:
    r = await call(RequestCode.POP_MESSAGE, pop_fields())
    assert r.code == ResponseCode.NO_MESSAGE
    r = await call(RequestCode.POP_MESSAGE, pop_fields(pollTime=50))
    assert r.code == ResponseCode.POLLING_TIMEOUT
    n = await call(RequestCode.NOTIFICATION, {"consumerGroup": GROUP, "topic": TOPIC, "queueId": "-1",
                                              "pollTime": "50", "bornTime": "0"})
    assert n.code == ResponseCode.SUCCESS and n.ext_fields["hasMsg"] == "false"
    task = asyncio.create_task(call(RequestCode.NOTIFICATION, {
        "consumerGroup": GROUP, "topic": TOPIC, "queueId": "-1", "pollTime": "8000", "bornTime": "0"}))
    await asyncio.sleep(0.05)
    await env.send(1, queue_id=2)
    n = await asyncio.wait_for(task, 5)
    assert n.ext_fields["hasMsg"] == "true"


async def test_fifo_order_count_info(env: Env, call: Any) -> None:
    await env.send(2, queue_id=0)
    r = await call(RequestCode.POP_MESSAGE, pop_fields(queueId=0, order="true"))
    assert r.code == ResponseCode.SUCCESS
    assert r.ext_fields["orderCountInfo"] == "0 qo0%0 0;0 qo0%1 0"


@pytest.mark.parametrize("code,fields,body", [
    (RequestCode.POP_MESSAGE, {}, b""),
    (RequestCode.POP_MESSAGE, {"consumerGroup": GROUP, "topic": TOPIC, "maxMsgNums": "x", "invisibleTime": "1"}, b""),
    (RequestCode.POP_MESSAGE, {"consumerGroup": GROUP, "topic": TOPIC, "maxMsgNums": "99",
                               "invisibleTime": "1000"}, b""),
    (RequestCode.POP_MESSAGE, {"consumerGroup": GROUP, "topic": "NoTopic", "maxMsgNums": "1",
                               "invisibleTime": "1000"}, b""),
    (RequestCode.ACK_MESSAGE, {"consumerGroup": GROUP}, b""),
    (RequestCode.ACK_MESSAGE, {"consumerGroup": GROUP, "topic": TOPIC, "queueId": "0", "offset": "0",
                               "extraInfo": "nonsense"}, b""),
    (RequestCode.BATCH_ACK_MESSAGE, {}, b"{not json"),
    (RequestCode.BATCH_ACK_MESSAGE, {}, b"[1,2]"),
    (RequestCode.BATCH_ACK_MESSAGE, {}, b'{"acks":[{"c":"g"}]}'),
    (RequestCode.BATCH_ACK_MESSAGE, {}, b""),
    (RequestCode.CHANGE_MESSAGE_INVISIBLETIME, {"consumerGroup": GROUP, "topic": TOPIC}, b""),
    (RequestCode.NOTIFICATION, {"consumerGroup": GROUP}, b""),
])
async def test_bad_requests_answer_errors(env: Env, call: Any, code: int, fields: dict[str, str],
                                          body: bytes) -> None:
    r = await call(code, fields, body)
    assert r.code != ResponseCode.SUCCESS
    assert r.remark
