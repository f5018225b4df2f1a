"""Three controllers in a Raft quorum (in one process): one leads, the others refuse with
CONTROLLER_NOT_LEADER and hold the same state; when the leader stops, another takes over with every
broker id, master and epoch, and replaces a master that stopped heartbeating; a restarted controller
replays the log."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import pytest

from backends.controller import manager as manager_module
from backends.controller.manager import ControllerConfig, ControllerManager
from backends.remoting.client import RemotingClient
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from tests.harness import apoll_until, free_port

pytestmark = pytest.mark.timeout(120)
NAMES = {"clusterName": "C", "brokerName": "broker-a"}


_until = functools.partial(apoll_until, timeout=20.0, interval=0.02)


async def test_quorum_leads_replicates_and_fails_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_module, "MASTER_GRACE_MS", 300)
    peers = ";".join(f"n{i}-127.0.0.1:{free_port()}" for i in range(3))

    def make(i: int) -> ControllerManager:
        return ControllerManager(ControllerConfig(listenPort=0, controllerStorePath=str(tmp_path / f"n{i}"),
                                                  controllerDLegerPeers=peers, controllerDLegerSelfId=f"n{i}",
                                                  scanNotActiveBrokerInterval=100))

    ctls = [make(i) for i in range(3)]
    for c in ctls:
        await c.start()
    client = RemotingClient()

    async def call(c: ControllerManager, code: int, **ext: str) -> RemotingCommand:
        return await client.invoke(f"127.0.0.1:{c.port}", RemotingCommand.request(code, {**NAMES, **ext}), 5)

    try:
        leader = await _until(lambda: next((c for c in ctls if c.is_leader), None))
        follower = next(c for c in ctls if c is not leader)
        assert (await call(follower, RequestCode.CONTROLLER_GET_NEXT_BROKER_ID)).code == ResponseCode.CONTROLLER_NOT_LEADER
        for bid in ("1", "2"):
            r = await call(leader, RequestCode.CONTROLLER_APPLY_BROKER_ID, appliedBrokerId=bid,
                           registerCheckCode=f"127.0.0.1:100{bid};1")
            assert r.code == ResponseCode.SUCCESS, r.remark
            r = await call(leader, RequestCode.BROKER_HEARTBEAT, brokerId=bid, brokerAddr=f"127.0.0.1:100{bid}")
            assert r.code == ResponseCode.SUCCESS, r.remark
        r = await call(leader, RequestCode.CONTROLLER_ELECT_MASTER, brokerId="1")
        assert r.code == ResponseCode.SUCCESS and r.ext_fields["masterBrokerId"] == "1", r.remark
        body = b'{"syncStateSet":[1,2],"syncStateSetEpoch":1}'
        r = await client.invoke(f"127.0.0.1:{leader.port}", RemotingCommand.request(
            RequestCode.CONTROLLER_ALTER_SYNC_STATE_SET, {"brokerName": "broker-a", "masterBrokerId": "1",
                                                          "masterEpoch": "1"}, body), 5)
        assert r.code == ResponseCode.SUCCESS, r.remark
        want = leader.replicas.sets["broker-a"].to_json()
        await _until(lambda: all("broker-a" in c.replicas.sets and c.replicas.sets["broker-a"].to_json() == want
                                 for c in ctls))
        # the leader goes; broker 1 (the master) goes with it, broker 2 keeps heartbeating to the new leader
        await leader.shutdown()
        rest = [c for c in ctls if c is not leader]
        new = await _until(lambda: next((c for c in rest if c.is_leader), None))
        assert new.replicas.sets["broker-a"].to_json() == want

        async def beat() -> None:
            while True:
                await call(new, RequestCode.BROKER_HEARTBEAT, brokerId="2", brokerAddr="127.0.0.1:1002")
                await asyncio.sleep(0.1)

        beating = asyncio.create_task(beat())
        try:
            await _until(lambda: new.replicas.sets["broker-a"].master_broker_id == 2)
        finally:
            beating.cancel()
        assert new.replicas.sets["broker-a"].master_epoch == 2
        # the stopped controller comes back and replays the log up to the new master
        again = make(ctls.index(leader))
        await again.start()
        ctls[ctls.index(leader)] = again
        await _until(lambda: "broker-a" in again.replicas.sets
                     and again.replicas.sets["broker-a"].master_broker_id == 2)
    finally:
        await client.close()
        for c in ctls:
            await c.shutdown()
