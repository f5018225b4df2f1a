"""END_TRANSACTION and RECALL_MESSAGE over the remoting protocol against a real broker."""

from __future__ import annotations

import asyncio
import time

from backends.broker.controller import BrokerController
from backends.model import decode_offset_msg_id, properties_to_string
from backends.remoting.client import RemotingClient
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand


def send_req(topic: str, uniq: str, props: dict[str, str], sys_flag: int = 0) -> RemotingCommand:
    p = {"UNIQ_KEY": uniq, **props}
    return RemotingCommand.request(RequestCode.SEND_MESSAGE_V2, {
        "a": "PG", "b": topic, "c": "TBW102", "d": "4", "e": "0", "f": str(sys_flag),
        "g": str(int(time.time() * 1000)), "h": "0", "i": properties_to_string(p), "j": "0", "k": "false",
    }, b"body-" + uniq.encode())


def end_req(resp: RemotingCommand, uniq: str, kind: int) -> RemotingCommand:
    _, cl_off = decode_offset_msg_id(resp.ext_fields["msgId"])
    return RemotingCommand.request(RequestCode.END_TRANSACTION, {
        "producerGroup": "PG", "tranStateTableOffset": resp.ext_fields["queueOffset"],
        "commitLogOffset": str(cl_off), "commitOrRollback": str(kind), "fromTransactionCheck": "false",
        "msgId": uniq, "transactionId": uniq, "topic": "RTx",
    })


async def test_end_transaction_over_remoting(broker: BrokerController, client: RemotingClient) -> None:
    addr = broker.broker_addr
    r1 = await client.invoke(addr, send_req("RTx", "H1", {"TRAN_MSG": "true", "PGROUP": "PG"}, 4), 5)
    r2 = await client.invoke(addr, send_req("RTx", "H2", {"TRAN_MSG": "true", "PGROUP": "PG"}, 4), 5)
    assert r1.code == r2.code == ResponseCode.SUCCESS, (r1.remark, r2.remark)
    assert broker.get_max_offset("RTx", 0) == 0
    resp = await client.invoke(addr, end_req(r1, "H1", 8), 5)
    assert resp.code == ResponseCode.SUCCESS, resp.remark
    assert broker.get_max_offset("RTx", 0) == 1
    again = await client.invoke(addr, end_req(r1, "H1", 12), 5)
    assert again.code == ResponseCode.SYSTEM_ERROR and "already ended" in (again.remark or "")
    await client.invoke_oneway(addr, end_req(r2, "H2", 12))  # how clients send it
    svc = broker.transaction_service
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        await svc.check_once()  # reads both queues
        if svc.stats()["halfScan"] == 2 and not svc.pending:
            break
        await asyncio.sleep(0.02)
    assert svc.stats()["halfScan"] == 2 and svc.pending == {}
    assert broker.get_max_offset("RTx", 0) == 1


async def test_recall_over_remoting(broker: BrokerController, client: RemotingClient) -> None:
    addr = broker.broker_addr
    due = int(time.time() * 1000) + 60_000
    r = await client.invoke(addr, send_req("RT", "T1", {"TIMER_DELIVER_MS": str(due)}), 5)
    assert r.code == ResponseCode.SUCCESS, r.remark
    handle = r.ext_fields.get("recallHandle")
    assert handle
    req = RemotingCommand.request(RequestCode.RECALL_MESSAGE, {"topic": "RT", "recallHandle": handle,
                                                               "producerGroup": "PG"})
    resp = await client.invoke(addr, req, 5)
    assert resp.code == ResponseCode.SUCCESS and resp.ext_fields.get("msgId") == "T1"
    resp = await client.invoke(addr, req, 5)
    assert resp.code == ResponseCode.ILLEGAL_OPERATION
    bad = RemotingCommand.request(RequestCode.RECALL_MESSAGE, {"topic": "RT", "recallHandle": "???"})
    assert (await client.invoke(addr, bad, 5)).code == ResponseCode.ILLEGAL_OPERATION
