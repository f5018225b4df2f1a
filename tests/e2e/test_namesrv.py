"""mqnamesrv as a real process: registration, routes, expiry, KV config, bad input, two NameServers."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from pathlib import Path

import pytest

from backends.remoting import json_body
from backends.remoting.client import RemotingClient
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import SERIALIZE_ROCKETMQ, RemotingCommand
from tests.harness import ServerProcess, command, free_port, poll_until, server

pytestmark = pytest.mark.e2e

TRUNCATED = struct.pack(">ii", 100, 2) + b"{}"  # says 100 bytes, sends 6

BOOT = r"The Name Server boot success\. serializeType=JSON"


def register_body(topics: dict[str, int], counter: int = 1) -> bytes:
    table = {
        t: {"topicName": t, "readQueueNums": n, "writeQueueNums": n, "perm": 6, "topicFilterType": "SINGLE_TAG",
            "topicSysFlag": 0, "order": False, "attributes": {}}
        for t, n in topics.items()
    }
    return json_body.dumps({
        "topicConfigSerializeWrapper": {"topicConfigTable": table,
                                        "dataVersion": {"timestamp": 1700000000000, "counter": counter}},
        "filterServerList": [],
    })


def register_req(broker_name: str, addr: str, topics: dict[str, int], broker_id: int = 0,
                 timeout_ms: int = 120000, cluster: str = "DefaultCluster") -> RemotingCommand:
    return RemotingCommand.request(RequestCode.REGISTER_BROKER, {
        "brokerName": broker_name, "brokerAddr": addr, "clusterName": cluster,
        "haServerAddr": addr.rsplit(":", 1)[0] + ":10912", "brokerId": str(broker_id),
        "heartbeatTimeoutMillis": str(timeout_ms), "enableActingMaster": "false", "compressed": "false",
        "bodyCrc32": "0",
    }, register_body(topics))


@pytest.fixture
def namesrv_pair(tmp_path: Path):
    p1, p2 = free_port(), free_port()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    conf = tmp_path / "a" / "namesrv.conf"
    conf.write_text(f"listenPort={p1}\nscanNotActiveBrokerInterval=200\n")
    with server([command("mqnamesrv"), "-c", str(conf)], tmp_path / "a", BOOT) as a, \
            server([command("mqnamesrv"), "--listenPort", str(p2), "--scanNotActiveBrokerInterval", "200"],
                   tmp_path / "b", BOOT) as b:
        yield (a, f"127.0.0.1:{p1}"), (b, f"127.0.0.1:{p2}")


async def route(c: RemotingClient, ns: str, topic: str) -> RemotingCommand:
    return await c.invoke(ns, RemotingCommand.request(RequestCode.GET_ROUTEINFO_BY_TOPIC, {"topic": topic}), 3)


async def test_register_route_expiry_two_namesrvs(namesrv_pair, tmp_path: Path) -> None:
    (proc_a, ns1), (_, ns2) = namesrv_pair
    assert (tmp_path / "a" / "logs" / "rocketmqlogs" / "namesrv.log").read_text().count("boot success") == 1
    c = RemotingClient()
    for ns in (ns1, ns2):
        r = await c.invoke(ns, register_req("broker-a", "127.0.0.1:10911", {"TopicA": 4, "DefaultCluster": 16}), 3)
        assert r.code == ResponseCode.SUCCESS, r.remark
    # a slave learns its master's address
    r = await c.invoke(ns1, register_req("broker-a", "127.0.0.1:10921", {"TopicA": 4}, broker_id=1), 3)
    assert r.code == 0 and r.ext_fields == {"masterAddr": "127.0.0.1:10911", "haServerAddr": "127.0.0.1:10912"}

    for ns in (ns1, ns2):
        r = await route(c, ns, "TopicA")
        assert r.code == ResponseCode.SUCCESS
        data = json_body.loads(r.body)
        assert data["queueDatas"] == [{"brokerName": "broker-a", "readQueueNums": 4, "writeQueueNums": 4,
                                       "perm": 6, "topicSysFlag": 0}]
        assert data["brokerDatas"][0]["brokerName"] == "broker-a"
    assert json_body.loads((await route(c, ns1, "TopicA")).body)["brokerDatas"][0]["brokerAddrs"] == {
        "0": "127.0.0.1:10911", "1": "127.0.0.1:10921"}

    r = await route(c, ns1, "Nope")
    assert r.code == ResponseCode.TOPIC_NOT_EXIST
    assert r.remark == "No topic route info in name server for the topic: Nope"

    r = await c.invoke(ns1, RemotingCommand.request(RequestCode.GET_BROKER_CLUSTER_INFO), 3)
    info = json_body.loads(r.body)
    assert info["clusterAddrTable"] == {"DefaultCluster": ["broker-a"]}
    assert set(info["brokerAddrTable"]) == {"broker-a"}

    r = await c.invoke(ns1, RemotingCommand.request(RequestCode.GET_ALL_TOPIC_LIST_FROM_NAMESERVER), 3)
    assert set(json_body.loads(r.body)["topicList"]) == {"TopicA", "DefaultCluster"}
    r = await c.invoke(ns1, RemotingCommand.request(RequestCode.GET_TOPICS_BY_CLUSTER, {"cluster": "DefaultCluster"}), 3)
    assert set(json_body.loads(r.body)["topicList"]) == {"TopicA", "DefaultCluster"}

    r = await c.invoke(ns1, RemotingCommand.request(RequestCode.DELETE_TOPIC_IN_NAMESRV, {"topic": "DefaultCluster"}), 3)
    assert r.code == 0
    assert (await route(c, ns1, "DefaultCluster")).code == ResponseCode.TOPIC_NOT_EXIST
    assert (await route(c, ns2, "DefaultCluster")).code == ResponseCode.SUCCESS  # NameServers are independent

    # a broker whose registrations stop expires (short heartbeat timeout, 200 ms scan)
    other = RemotingClient()
    r = await other.invoke(ns1, register_req("broker-b", "127.0.0.1:20911", {"TopicB": 2}, timeout_ms=600), 3)
    assert r.code == 0
    assert (await route(c, ns1, "TopicB")).code == 0
    t0 = time.monotonic()
    while (await route(c, ns1, "TopicB")).code == 0:
        assert time.monotonic() - t0 < 5, "broker-b did not expire"
        await asyncio.sleep(0.1)
    assert time.monotonic() - t0 >= 0.3
    await other.close()

    # closing a broker's connection drops it at once
    third = RemotingClient()
    await third.invoke(ns2, register_req("broker-c", "127.0.0.1:30911", {"TopicC": 2}), 3)
    assert (await route(c, ns2, "TopicC")).code == 0
    await third.close()
    t0 = time.monotonic()
    while (await route(c, ns2, "TopicC")).code == 0:
        assert time.monotonic() - t0 < 3
        await asyncio.sleep(0.05)

    # unregister
    r = await c.invoke(ns2, RemotingCommand.request(RequestCode.UNREGISTER_BROKER, {
        "brokerName": "broker-a", "brokerAddr": "127.0.0.1:10911", "clusterName": "DefaultCluster", "brokerId": "0"}), 3)
    assert r.code == 0
    assert (await route(c, ns2, "TopicA")).code == ResponseCode.TOPIC_NOT_EXIST
    await c.close()
    assert "boot success" in proc_a.text()


async def test_kv_config_and_bad_input(namesrv_pair) -> None:
    (proc, ns), _ = namesrv_pair
    c = RemotingClient()
    put = RemotingCommand.request(RequestCode.PUT_KV_CONFIG, {"namespace": "NS", "key": "k", "value": "v1"})
    assert (await c.invoke(ns, put, 3)).code == 0
    get = RemotingCommand.request(RequestCode.GET_KV_CONFIG, {"namespace": "NS", "key": "k"})
    get.serialize_type = SERIALIZE_ROCKETMQ
    r = await c.invoke(ns, get, 3)
    assert r.code == 0 and r.ext_fields["value"] == "v1" and r.serialize_type == SERIALIZE_ROCKETMQ
    assert (await c.invoke(ns, RemotingCommand.request(RequestCode.DELETE_KV_CONFIG, {"namespace": "NS", "key": "k"}), 3)).code == 0
    r = await c.invoke(ns, RemotingCommand.request(RequestCode.GET_KV_CONFIG, {"namespace": "NS", "key": "k"}), 3)
    assert r.code == ResponseCode.QUERY_NOT_FOUND

    # unknown code, missing header field, bad register body: error codes, server keeps going
    r = await c.invoke(ns, RemotingCommand.request(9999), 3)
    assert r.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED and r.remark == "request type 9999 not supported"
    r = await c.invoke(ns, RemotingCommand.request(RequestCode.GET_ROUTEINFO_BY_TOPIC), 3)
    assert r.code == ResponseCode.SYSTEM_ERROR and "topic" in (r.remark or "")
    bad = register_req("b", "127.0.0.1:1", {})
    bad.body = b"{not json"
    assert (await c.invoke(ns, bad, 3)).code == ResponseCode.SYSTEM_ERROR

    host, port = ns.split(":")
    for garbage in (b"\x7f\xff\xff\xff" + b"A" * 64, struct.pack(">ii", 8, 4) + b"nope",
                    TRUNCATED, b"\xde\xad\xbe\xef" * 100):
        with socket.create_connection((host, int(port)), timeout=3) as s:
            s.sendall(garbage)
            if garbage == TRUNCATED:  # truncated frame: no answer, connection stays open
                s.settimeout(0.3)
                with pytest.raises(socket.timeout):
                    s.recv(10)
                continue
            s.settimeout(3)
            assert s.recv(10) == b""
    # a 2 GiB length prefix followed by a flood: refused at once, nothing buffered for it
    with socket.create_connection((host, int(port)), timeout=3) as s:
        s.sendall(struct.pack(">i", 2**31 - 1))
        try:
            for _ in range(64):
                s.sendall(b"\0" * 65536)
        except OSError:
            pass  # reset by the server: expected
    rss_kb = int([ln for ln in Path(f"/proc/{proc.proc.pid}/status").read_text().splitlines()
                  if ln.startswith("VmRSS")][0].split()[1])
    assert rss_kb < 200_000
    r = await c.invoke(ns, RemotingCommand.request(RequestCode.GET_BROKER_CLUSTER_INFO), 3)
    assert r.code == 0
    await c.close()
    assert proc.proc.poll() is None


def test_bad_arguments_and_clean_stop(tmp_path: Path) -> None:
    import subprocess

    cp = subprocess.run([command("mqnamesrv"), "--noSuchKey", "1"], capture_output=True, text=True, timeout=30)
    assert cp.returncode != 0 and "noSuchKey" in cp.stderr
    cp = subprocess.run([command("mqnamesrv"), "-c", str(tmp_path / "missing.conf")], capture_output=True,
                        text=True, timeout=30)
    assert cp.returncode != 0 and "missing.conf" in cp.stderr
    port = free_port()
    p = ServerProcess([command("mqnamesrv"), "--listenPort", str(port)], tmp_path)
    p.wait_for(BOOT)
    # the port is taken: a second NameServer fails with a clear message
    q = ServerProcess([command("mqnamesrv"), "--listenPort", str(port)], tmp_path)
    poll_until(lambda: q.proc.poll() is not None, 20, what="second namesrv exit")
    assert q.proc.returncode != 0 and str(port) in q.text()
    p.stop()
    assert p.proc.returncode == 0


async def test_member_group_system_topics_register_topic(namesrv_pair) -> None:
    (_, ns), _ = namesrv_pair
    c = RemotingClient()
    assert (await c.invoke(ns, register_req("broker-m", "127.0.0.1:40911", {"T1": 2}, cluster="CM"), 3)).code == 0
    r = await c.invoke(ns, RemotingCommand.request(RequestCode.GET_BROKER_MEMBER_GROUP,
                                                   {"clusterName": "CM", "brokerName": "broker-m"}), 3)
    assert json_body.loads(r.body)["brokerMemberGroup"]["brokerAddrs"] == {"0": "127.0.0.1:40911"}
    r = await c.invoke(ns, RemotingCommand.request(304), 3)
    assert json_body.loads(r.body) == {"topicList": ["CM", "broker-m"], "brokerAddr": "127.0.0.1:40911"}
    body = json_body.dumps({"queueDatas": [{"brokerName": "broker-m", "readQueueNums": 1, "writeQueueNums": 1,
                                            "perm": 6, "topicSysFlag": 0}], "brokerDatas": []})
    r = await c.invoke(ns, RemotingCommand.request(217, {"topic": "Reg"}, body), 3)
    assert r.code == 0
    assert (await route(c, ns, "Reg")).code == 0
    await c.close()
