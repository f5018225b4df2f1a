"""Every request code the controller serves answers random headers and bodies with a response, logs no
error, and the controller still elects afterwards."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import pytest

from backends.controller.manager import ControllerConfig, ControllerManager
from backends.remoting.client import RemotingClient
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand

NUMBERS = ["1", "2", "0", "-1", "9223372036854775808", "x", ""]
FIELDS: dict[str, list[str]] = {
    "clusterName": ["C", "", "x" * 300],
    "brokerName": ["broker-a", "", "\x01"],
    **{f: NUMBERS for f in ("brokerId", "appliedBrokerId", "masterBrokerId", "masterEpoch", "epoch", "maxOffset",
                            "heartbeatTimeoutMills", "invokeTime", "confirmOffset", "electionPriority")},
    **{f: ["127.0.0.1:1", "", "x", "127.0.0.1:1;1700000000000"] for f in ("brokerAddress", "brokerAddr",
                                                                          "registerCheckCode")},
    "designateElect": ["true", "false", "x", ""],
}
BODIES = [b"", b"{}", b"[]", b"null", b"x", b'{"syncStateSet":[1,2],"syncStateSetEpoch":1}',
          b'{"syncStateSet":"x"}', b'["broker-a"]', b'{"a":']


@pytest.mark.parametrize("seed", [int(s) for s in os.environ.get("FUZZ_SEEDS", "1,2").split(",")])
async def test_random_requests_get_a_response(tmp_path: Path, caplog: pytest.LogCaptureFixture, seed: int) -> None:
    manager = ControllerManager(ControllerConfig(listenPort=0, controllerStorePath=str(tmp_path)))
    await manager.start()
    client = RemotingClient()
    addr = f"127.0.0.1:{manager.port}"
    caplog.set_level(logging.ERROR)
    rnd = random.Random(seed)
    problems = []
    succeeded: set[int] = set()
    try:
        for code in manager.server.request_codes * 2:  # (the second round meets what the first created)
            for _ in range(100):
                # half with every field, so that requests get past the required-field checks
                names = list(FIELDS) if rnd.random() < 0.5 else rnd.sample(sorted(FIELDS), rnd.randrange(len(FIELDS)))
                ext = {f: rnd.choice(FIELDS[f]) for f in names}
                body = rnd.choice(BODIES) if rnd.random() < 0.8 else rnd.randbytes(rnd.randrange(1, 100))
                try:
                    resp = await client.invoke(addr, RemotingCommand.request(code, ext, body), 5.0)
                except Exception as e:  # noqa: BLE001
                    problems.append(f"code {code}: {type(e).__name__}: {e}")
                    continue
                if not resp.is_response:
                    problems.append(f"code {code}: not a response")
                elif resp.code == ResponseCode.SUCCESS:
                    succeeded.add(code)
        problems += [f"logged: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
        assert not problems, problems[:10]
        assert len(succeeded) >= 5, succeeded  # the random requests get past validation too
        # still deciding: a new broker set gets an id, heartbeats and is elected
        names = {"clusterName": "C2", "brokerName": "fresh"}
        nxt = await client.invoke(addr, RemotingCommand.request(RequestCode.CONTROLLER_GET_NEXT_BROKER_ID, names), 5)
        bid = nxt.ext_fields["nextBrokerId"]
        for code, ext in ((RequestCode.CONTROLLER_APPLY_BROKER_ID, {"appliedBrokerId": bid,
                                                                     "registerCheckCode": "127.0.0.1:9;1"}),
                          (RequestCode.BROKER_HEARTBEAT, {"brokerId": bid, "brokerAddr": "127.0.0.1:9"}),
                          (RequestCode.CONTROLLER_ELECT_MASTER, {"brokerId": bid})):
            resp = await client.invoke(addr, RemotingCommand.request(code, {**names, **ext}), 5)
            assert resp.code == ResponseCode.SUCCESS, (code, resp.remark)
        assert resp.ext_fields["masterBrokerId"] == bid
    finally:
        await client.close()
        await manager.shutdown()
