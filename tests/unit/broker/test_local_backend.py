"""LocalBackend over an in-process BrokerController (no remoting)."""

from __future__ import annotations

import asyncio

import pytest

from backends.api import BackendError, PullStatus, SendStatus
from backends.broker.controller import BrokerController
from backends.local import LocalBackend, decode_transaction_id
from backends.model import Message
from backends.remoting.codes import ResponseCode


async def test_route_send_pull_offsets(broker: BrokerController) -> None:
    be = LocalBackend(broker)
    await be.start()
    assert await be.healthy()
    with pytest.raises(BackendError) as ei:
        await be.get_route("LT")
    assert ei.value.code == ResponseCode.TOPIC_NOT_EXIST

    res = await be.send_message("broker-a", [Message("LT", b"one", {"UNIQ_KEY": "U1", "TAGS": "x"}, queue_id=2)], 5)
    assert res[0].status is SendStatus.SEND_OK and res[0].msg_id == "U1" and res[0].queue_id == 2
    assert res[0].queue_offset == 0 and len(res[0].offset_msg_id) == 32
    res = await be.send_message("broker-a", [Message("LT", b"two", {"UNIQ_KEY": "U2"}, queue_id=2),
                                             Message("LT", b"three", {"UNIQ_KEY": "U3"}, queue_id=2)], 5)
    assert [r.queue_offset for r in res] == [1, 2]

    route = await be.get_route("LT")
    assert route.queue_datas[0].broker_name == "broker-a" and route.queue_datas[0].write_queue_nums == 8
    assert route.broker_datas[0].broker_addrs[0] == broker.broker_addr
    assert (await be.get_topic_config("LT")) is not None

    pr = await be.pull_message("broker-a", "LG", "LT", 2, 0, 32, "TAG", "*", 0, 5)
    assert pr.status is PullStatus.FOUND and [m.body for m in pr.messages] == [b"one", b"two", b"three"]
    assert pr.messages[0].msg_id == "U1"
    pr = await be.pull_message("broker-a", "LG", "LT", 2, 0, 32, "TAG", "x", 0, 5)
    assert [m.body for m in pr.messages] == [b"one"]
    pr = await be.pull_message("broker-a", "LG", "LT", 2, 3, 32, "TAG", "*", 0, 5)
    assert pr.status is PullStatus.NO_NEW_MSG

    waiting = asyncio.ensure_future(be.pull_message("broker-a", "LG", "LT", 2, 3, 32, "TAG", "*", 5000, 10))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await be.send_message("broker-a", [Message("LT", b"four", {"UNIQ_KEY": "U4"}, queue_id=2)], 5)
    pr = await asyncio.wait_for(waiting, 3)
    assert [m.body for m in pr.messages] == [b"four"]

    with pytest.raises(BackendError) as ei:
        await be.query_consumer_offset("broker-a", "LG", "LT", 2)
    assert ei.value.code == ResponseCode.QUERY_NOT_FOUND
    await be.update_consumer_offset("broker-a", "LG", "LT", 2, 4)
    assert await be.query_consumer_offset("broker-a", "LG", "LT", 2) == 4
    assert await be.get_max_offset("broker-a", "LT", 2) == 4
    assert await be.get_min_offset("broker-a", "LT", 2) == 0
    assert await be.search_offset("broker-a", "LT", 2, 0) == 0

    with pytest.raises(BackendError) as ei:
        await be.send_message("broker-a", [Message("bad topic", b"x")], 5)
    assert ei.value.code == ResponseCode.MESSAGE_ILLEGAL
    with pytest.raises(BackendError) as ei:
        await be.send_message("broker-a", [Message("LT", b"x" * (broker.config.max_message_size + 1))], 5)
    assert ei.value.code == ResponseCode.MESSAGE_ILLEGAL
    with pytest.raises(BackendError):
        await be.send_message("other-broker", [Message("LT", b"x")], 5)


async def test_transaction_id_is_self_contained(broker: BrokerController) -> None:
    be = LocalBackend(broker)
    res = await be.send_message("broker-a", [Message("TX", b"half", {"UNIQ_KEY": "H1", "TRAN_MSG": "true",
                                                                     "PGROUP": "PG"})], 5)
    decoded = decode_transaction_id(res[0].transaction_id)
    assert decoded is not None and decoded[0] == "H1" and decoded[3] == "broker-a"


async def test_subscription_group_and_slave(broker: BrokerController) -> None:
    be = LocalBackend(broker)
    assert await be.get_subscription_group("NoSuchGroup") is None
    broker.subscription_group_manager.find_subscription_group_config("AutoGroup")
    sg = await be.get_subscription_group("AutoGroup")
    assert sg is not None and sg.retry_max_times == 16
    broker.config.broker_role = "SLAVE"
    with pytest.raises(BackendError) as ei:
        await be.send_message("broker-a", [Message("LT", b"x")], 5)
    assert ei.value.code == ResponseCode.SERVICE_NOT_AVAILABLE


async def test_pop_ack_through_local_backend(broker: BrokerController) -> None:
    pytest.importorskip("backends.broker.pop.service")
    from backends.api import PopRequest, PopStatus

    be = LocalBackend(broker)
    if broker.pop_service is None:
        pytest.skip("POP service not wired")
    broker.topic_config_manager.create_topic_if_absent("PopT", 1, 1)
    # a new group starts at the latest offset: pop once to fix the start, then send
    first = await be.pop_message("broker-a", PopRequest("PopG", "PopT", max_msg_nums=4), 5)
    assert first.status is not PopStatus.FOUND
    await be.send_message("broker-a", [Message("PopT", b"p1", {"UNIQ_KEY": "P1"}, queue_id=0)], 5)
    got = await be.pop_message("broker-a", PopRequest("PopG", "PopT", max_msg_nums=4, poll_time_ms=2000), 5)
    assert got.status is PopStatus.FOUND and [m.body for m in got.messages] == [b"p1"]
    await be.ack_message("broker-a", "PopG", "PopT", got.messages[0].properties["POP_CK"])


async def test_transaction_commit_through_local_backend(broker: BrokerController) -> None:
    pytest.importorskip("backends.broker.transaction.service")
    if broker.transaction_service is None:
        pytest.skip("transaction service not wired")
    be = LocalBackend(broker)
    checks: list[tuple[str, str]] = []

    async def listener(group: str, msg: object, tx: str) -> None:
        checks.append((group, tx))

    be.set_transaction_check_listener(listener)
    res = await be.send_message("broker-a", [Message("TxT", b"half", {"UNIQ_KEY": "TX1", "TRAN_MSG": "true",
                                                                      "PGROUP": "PG"}, queue_id=0)], 5)
    assert broker.get_max_offset("TxT", 0) == 0  # invisible while half
    await be.end_transaction("broker-a", "PG", "TxT", "TX1", res[0].transaction_id, True, False)
    assert broker.get_max_offset("TxT", 0) == 1
    pr = await be.pull_message("broker-a", "G", "TxT", 0, 0, 32, "TAG", "*", 0, 5)
    assert [m.body for m in pr.messages] == [b"half"] and pr.messages[0].msg_id == "TX1"


async def test_offset_msg_id_carries_the_bound_port(broker: BrokerController) -> None:
    from backends.model import decode_offset_msg_id

    be = LocalBackend(broker)
    res = await be.send_message("broker-a", [Message("PortT", b"x", {"UNIQ_KEY": "PX"})], 5)
    (host, port), _ = decode_offset_msg_id(res[0].offset_msg_id)
    assert f"{host}:{port}" == broker.broker_addr


async def test_admin_requests_for_a_grpc_consumer_go_through_the_proxy(broker: BrokerController) -> None:
    """GET_CONSUMER_RUNNING_INFO / CONSUME_MESSAGE_DIRECTLY for a consumer a Local-mode proxy serves."""
    from backends.api import ConsumerClient
    from backends.model import offset_msg_id
    from backends.remoting import json_body
    from backends.remoting.codes import RequestCode
    from backends.remoting.command import RemotingCommand

    class Commander:
        def __init__(self) -> None:
            self.verified: list[bytes] = []

        async def thread_stack_trace(self, client_id: str) -> str | None:
            return "main: waiting" if client_id == "c1" else None

        async def verify_message(self, client_id: str, msg: object) -> int | None:
            self.verified.append(msg.body)  # type: ignore[attr-defined]
            return 60000  # FAILED_TO_CONSUME_MESSAGE

    be = LocalBackend(broker)
    await be.start()
    commander = Commander()
    be.set_consumer_commander(commander)
    ask = RemotingCommand.request(RequestCode.GET_CONSUMER_RUNNING_INFO,
                                  {"consumerGroup": "CG", "clientId": "c1", "jstackEnable": "true"})
    r = await broker.call_consumer(ask, "CG", "c1")
    assert r.code == ResponseCode.SYSTEM_ERROR and "not online" in (r.remark or "")
    await be.register_consumer(ConsumerClient("c1", "CG", "127.0.0.1:5000", "JAVA", 437, "CONSUME_ACTIVELY",
                                              [("CT", "TAG", "a || b")]))
    r = await broker.call_consumer(ask, "CG", "c1")
    info = json_body.loads(r.body)
    assert r.code == ResponseCode.SUCCESS and info["jstack"] == "main: waiting"
    assert info["subscriptionSet"][0]["topic"] == "CT" and info["subscriptionSet"][0]["tagsSet"] == ["a", "b"]

    res = await be.send_message("broker-a", [Message("CT", b"again", {"UNIQ_KEY": "U9"}, queue_id=0)], 5)
    msg_id = offset_msg_id(broker.message_store.config.store_host, int(res[0].offset_msg_id[-16:], 16))
    assert msg_id == res[0].offset_msg_id
    direct = RemotingCommand.request(RequestCode.CONSUME_MESSAGE_DIRECTLY,
                                     {"consumerGroup": "CG", "clientId": "c1", "msgId": msg_id})
    from backends.broker.processor.admin_processor import register as register_admin

    class Processors(dict):  # stands in for the remoting server the processors register with
        def register_processor(self, code: int, processor: object) -> None:
            self[code] = processor

    processors = Processors()
    register_admin(processors, broker)  # type: ignore[arg-type]
    r = await processors[RequestCode.CONSUME_MESSAGE_DIRECTLY](direct, None)
    assert r.code == ResponseCode.SUCCESS and commander.verified == [b"again"]
    assert json_body.loads(r.body)["consumeResult"] == "CR_LATER"
    # a consumer this proxy does not serve
    await be.register_consumer(ConsumerClient("c2", "CG", "127.0.0.1:5001", "JAVA", 437, "CONSUME_ACTIVELY", []))
    r = await broker.call_consumer(ask, "CG", "c2")
    assert r.code == ResponseCode.SYSTEM_ERROR and "cannot be reached" in (r.remark or "")
    await be.unregister_consumer("CG", "c1")
    assert (await broker.call_consumer(ask, "CG", "c1")).code == ResponseCode.SYSTEM_ERROR
