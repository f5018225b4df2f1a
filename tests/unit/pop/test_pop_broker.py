"""POP through a real BrokerController over remoting (wiring, restart of the whole broker)."""

from __future__ import annotations

import time
from pathlib import Path

from backends.broker.broker_config import BrokerConfig
from backends.broker.controller import BrokerController
from backends.model import MessageConst, properties_to_string
from backends.remoting.client import RemotingClient
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from backends.store.record import decode_records


def send_req(topic: str, body: bytes, queue_id: int = 0) -> RemotingCommand:
    props = {"UNIQ_KEY": f"U{time.time_ns()}"}
    return RemotingCommand.request(RequestCode.SEND_MESSAGE_V2, {
        "a": "PG", "b": topic, "c": "TBW102", "d": "1", "e": str(queue_id), "f": "0",
        "g": str(int(time.time() * 1000)), "h": "0", "i": properties_to_string(props), "j": "0", "k": "false",
    }, body)


def pop_req(group: str, topic: str, init_mode: int = 0, invisible: int = 60_000) -> RemotingCommand:
    return RemotingCommand.request(RequestCode.POP_MESSAGE, {
        "consumerGroup": group, "topic": topic, "queueId": "-1", "maxMsgNums": "32",
        "invisibleTime": str(invisible), "pollTime": "0", "bornTime": str(int(time.time() * 1000)),
        "initMode": str(init_mode),
    })


def ack_req(group: str, topic: str, extra: str) -> RemotingCommand:
    p = extra.split(" ")
    return RemotingCommand.request(RequestCode.ACK_MESSAGE, {
        "consumerGroup": group, "topic": topic, "queueId": p[6], "extraInfo": extra, "offset": p[7]})


async def test_pop_and_ack_through_the_broker_survive_a_restart(tmp_path: Path) -> None:
    cfg = BrokerConfig(store_path_root_dir=str(tmp_path / "store"), listen_port=0,
                       mapped_file_size_commit_log=4 * 1024 * 1024)
    client = RemotingClient()
    b = BrokerController(cfg)
    await b.start()
    try:
        addr = b.broker_addr
        for i in range(3):
            r = await client.invoke(addr, send_req("PT", f"b{i}".encode()), 5)
            assert r.code == ResponseCode.SUCCESS, r.remark
        r = await client.invoke(addr, pop_req("PG1", "PT", init_mode=0), 5)  # initMode MIN: from the start
        assert r.code == ResponseCode.SUCCESS, r.remark
        msgs = decode_records(r.body)
        assert [m.body for m in msgs] == [b"b0", b"b1", b"b2"]
        cks = [m.properties[MessageConst.POP_CK] for m in msgs]
        a = await client.invoke(addr, ack_req("PG1", "PT", cks[1]), 5)
        assert a.code == ResponseCode.SUCCESS, a.remark
        r = await client.invoke(addr, pop_req("PG1", "PT"), 5)
        assert r.code == ResponseCode.NO_MESSAGE
    finally:
        await b.shutdown()
    b = BrokerController(cfg)
    await b.start()
    try:
        addr = b.broker_addr
        # a handle from before the restart still acks
        a = await client.invoke(addr, ack_req("PG1", "PT", cks[0]), 5)
        assert a.code == ResponseCode.SUCCESS, a.remark
        # b2 is still in flight; nothing comes back yet, b1/b0 never again
        r = await client.invoke(addr, pop_req("PG1", "PT"), 5)
        assert r.code == ResponseCode.NO_MESSAGE
        # change invisible time of b2 to 0: it is visible again
        p = cks[2].split(" ")
        c = await client.invoke(addr, RemotingCommand.request(RequestCode.CHANGE_MESSAGE_INVISIBLETIME, {
            "consumerGroup": "PG1", "topic": "PT", "queueId": p[6], "extraInfo": cks[2], "offset": p[7],
            "invisibleTime": "0"}), 5)
        assert c.code == ResponseCode.SUCCESS, c.remark
        r = await client.invoke(addr, pop_req("PG1", "PT"), 5)
        assert r.code == ResponseCode.SUCCESS, r.remark
        again = decode_records(r.body)
        assert [m.body for m in again] == [b"b2"] and again[0].reconsume_times == 1
    finally:
        await b.shutdown()
        await client.close()
