"""Controller mode (RocketMQ 5.0's automatic failover) with real processes.

A NameServer runs the controller (``enableControllerInNamesrv=true``); two brokers of broker-a in
controller mode with ``allAckInSyncStateSet=true``: the first becomes master, the second its slave and a
member of the SyncStateSet. The official Python SDK sends through mqproxy; the master is killed with
SIGKILL mid stream; the controller elects the slave, which takes writes, and the producer goes on. A
consumer then receives every message the proxy acknowledged, before and after the failover. The old
master, restarted, rejoins as a slave of the new one.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest

from backends.model import MessageConst
from backends.remoting.codes import ResponseCode
from backends.store.record import decode_records
from backends.tools.admin_client import AdminClient
from tests.e2e.proxy_stack import BROKER_BOOT, NAMESRV_BOOT, PROXY_BOOT, parse_result
from tests.harness import (
    REPO,
    SDK_PYTHON,
    ServerProcess,
    broker_log,
    command,
    count_lines,
    free_port,
    mqadmin,
    poll_until,
    run_sdk_script,
    server,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]




def _broker(home: Path, ns: str, controller: str = "") -> list[str]:
    home.mkdir(parents=True, exist_ok=True)
    conf = home / "broker.conf"
    conf.write_text(
        "brokerClusterName=DefaultCluster\nbrokerName=broker-a\nbrokerId=-1\nenableControllerMode=true\n"
        f"controllerAddr={controller or ns}\nallAckInSyncStateSet=true\nlistenPort={free_port()}\nhaListenPort={free_port()}\n"
        f"storePathRootDir={home / 'store'}\nbrokerIP1=127.0.0.1\nbrokerHeartbeatInterval=500\n"
        "controllerHeartBeatTimeoutMills=3000\nsyncBrokerMetadataPeriod=1000\nhaSendHeartbeatInterval=1000\n")
    return [command("mqbroker"), "-n", ns, "-c", str(conf)]


async def _send_delayed(ns: str, addr: str, topic: str, deliver_ms: int) -> None:
    admin = AdminClient(ns)
    try:
        await admin.send_message(addr, "broker-a", topic, 0, b"late",
                                 {MessageConst.TIMER_DELIVER_MS: str(deliver_ms)})
    finally:
        await admin.close()


async def _bodies(ns: str, addr: str, topic: str) -> list[str]:
    admin = AdminClient(ns)
    try:
        resp = await admin.pull(addr, "GroupCtl", topic, 0, 0, 32)
        return [m.body.decode() for m in decode_records(resp.body)] if resp.code == ResponseCode.SUCCESS else []
    finally:
        await admin.close()


def _knows(home: Path, table: str, key: str, name: str) -> bool:
    try:
        return name in json.loads((home / "store" / "config" / table).read_text()).get(key, {})
    except (FileNotFoundError, ValueError):
        return False


def test_master_kill9_fails_over_to_the_slave_without_losing_acked_messages(tmp_path: Path) -> None:
    ns_port = free_port()
    ns = f"127.0.0.1:{ns_port}"
    (tmp_path / "ns").mkdir()
    ns_conf = tmp_path / "ns" / "namesrv.conf"
    ns_conf.write_text(f"listenPort={ns_port}\nenableControllerInNamesrv=true\nscanNotActiveBrokerInterval=1000\n"
                       f"controllerStorePath={tmp_path / 'ns' / 'controller'}\n")
    a_home, b_home = tmp_path / "a", tmp_path / "b"
    with server([command("mqnamesrv"), "-c", str(ns_conf)], tmp_path / "ns", NAMESRV_BOOT, timeout=60):
        a = ServerProcess(_broker(a_home, ns), a_home)
        b: ServerProcess | None = None
        try:
            a.wait_for(BROKER_BOOT, 60)
            poll_until(lambda: "is now the MASTER" in broker_log(a_home), timeout=30, what="broker a elected master")
            b = ServerProcess(_broker(b_home, ns), b_home)
            b.wait_for(BROKER_BOOT, 60)
            poll_until(lambda: "is now a SLAVE" in broker_log(b_home), timeout=30, what="broker b a slave")
            poll_until(lambda: "SyncStateSet of broker-a is now [1, 2]" in broker_log(a_home), timeout=30,
                       what="b in the SyncStateSet")
            out = mqadmin("getSyncStateSet", "-a", ns, "-b", "broker-a").stdout  # the controller in mqnamesrv
            assert "#MasterBrokerId  1" in out and "#SyncStateSetNums  2" in out, out
            mqadmin("updateTopic", "-n", ns, "-c", "DefaultCluster", "-t", "TopicFail", "-r", "4", "-w", "4")
            mqadmin("updateSubGroup", "-n", ns, "-c", "DefaultCluster", "-g", "GroupFail",
                    "--attributes", "+consumeFromWhere=EARLIEST")
            poll_until(lambda: _knows(b_home, "topics.json", "topicConfigTable", "TopicFail")
                       and _knows(b_home, "subscriptionGroup.json", "subscriptionGroupTable", "GroupFail"),
                       timeout=30, what="the slave's copy of the topic and group")
            grpc_port = free_port()
            pc = tmp_path / "rmq-proxy.json"
            pc.write_text(json.dumps({"rocketMQClusterName": "DefaultCluster", "grpcServerPort": grpc_port}))
            endpoint = f"127.0.0.1:{grpc_port}"
            with server([command("mqproxy"), "-pm", "cluster", "-n", ns, "-pc", str(pc)], tmp_path, PROXY_BOOT,
                        timeout=60) as proxy:
                acked = tmp_path / "acked.txt"
                producer = subprocess.Popen(
                    [str(SDK_PYTHON), str(REPO / "tests/sdk/python/crash_send.py"), endpoint, "TopicFail", str(acked),
                     "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                try:
                    poll_until(lambda: count_lines(acked) >= 200 or producer.poll() is not None, timeout=90,
                               interval=0.05, what="200 acknowledged sends")
                    assert producer.poll() is None, producer.communicate()[0][-3000:]
                    a.kill()  # SIGKILL to the master mid stream
                    at_kill = count_lines(acked)
                    poll_until(lambda: "is now the MASTER" in broker_log(b_home), timeout=60, what="b elected master")
                    poll_until(lambda: count_lines(acked) >= at_kill + 100 or producer.poll() is not None,
                               timeout=90, what="100 sends acknowledged by the new master")
                    assert producer.poll() is None, producer.communicate()[0][-3000:]
                finally:
                    producer.kill()
                    producer.communicate(timeout=30)
                cp = run_sdk_script("drain.py", endpoint, "TopicFail", "GroupFail", str(acked), "90", timeout=150)
                r = parse_result(cp.stdout)
                assert r["missing_count"] == 0, (r, broker_log(b_home)[-3000:], proxy.text()[-2000:])
                # the old master comes back as a slave of the new one
                a2 = ServerProcess(a.args, a_home)
                try:
                    a2.wait_for(BROKER_BOOT, 60)
                    poll_until(lambda: broker_log(a_home).count("is now a SLAVE") >= 1, timeout=30,
                               what="the old master rejoining as a slave")
                finally:
                    a2.stop()
        finally:
            a.kill()
            if b is not None:
                b.stop()


def test_standalone_mqcontroller_elects_a_single_broker_and_mqadmin_shows_it(tmp_path: Path) -> None:
    ns_port, ctl_port = free_port(), free_port()
    ns, ctl = f"127.0.0.1:{ns_port}", f"127.0.0.1:{ctl_port}"
    bad = subprocess.run([command("mqcontroller"), "--listenPort", "0", "--controllerDLegerPeers",
                          "n0-127.0.0.1:1;n1-127.0.0.1:2;n2-127.0.0.1:3", "--controllerDLegerSelfId", "n5"],
                         capture_output=True, text=True, timeout=30, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert bad.returncode == 1 and "controllerDLegerSelfId 'n5' is not one of" in bad.stderr, bad
    (tmp_path / "c").mkdir()
    with server([command("mqnamesrv"), "--listenPort", str(ns_port)], tmp_path, NAMESRV_BOOT, timeout=60), \
            server([command("mqcontroller"), "--listenPort", str(ctl_port), "--controllerStorePath",
                    str(tmp_path / "c" / "store")], tmp_path / "c", "The ControllerManager boot success", timeout=60):
        home = tmp_path / "a"
        with server(_broker(home, ns, ctl), home, BROKER_BOOT, timeout=60):
            poll_until(lambda: "is now the MASTER" in broker_log(home), timeout=30, what="the broker elected master")
            out = mqadmin("getSyncStateSet", "-a", ctl, "-b", "broker-a").stdout
            assert "#MasterBrokerId  1" in out and "#MasterEpoch  1" in out, out
            assert "#SyncStateSetNums  1" in out, out
            assert "ControllerLeaderId\tn0" in mqadmin("getControllerMetaData", "-a", ctl).stdout
            mqadmin("updateTopic", "-n", ns, "-c", "DefaultCluster", "-t", "TopicCtl")
            assert "SEND_OK" in mqadmin("sendMessage", "-n", ns, "-t", "TopicCtl", "-p", "hello").stdout
            route = json.loads(mqadmin("topicRoute", "-n", ns, "-t", "TopicCtl").stdout)
            addrs = route["brokerDatas"][0]["brokerAddrs"]  # the master registers as brokerId 0
            assert list(addrs) == ["0"], route
            # the elected master delivers delayed messages (its timer loop started with the role)
            addr = addrs["0"]
            asyncio.run(_send_delayed(ns, addr, "TopicCtl", int(time.time() * 1000) + 1500))
            poll_until(lambda: "late" in asyncio.run(_bodies(ns, addr, "TopicCtl")), timeout=20,
                       what="the delayed message delivered")


def test_quorum_of_three_controllers_survives_its_leader_and_still_fails_over(tmp_path: Path) -> None:
    ns_port = free_port()
    ns = f"127.0.0.1:{ns_port}"
    raft = [free_port() for _ in range(3)]
    ports = [free_port() for _ in range(3)]
    peers = ";".join(f"n{i}-127.0.0.1:{p}" for i, p in enumerate(raft))
    addrs = ";".join(f"127.0.0.1:{p}" for p in ports)
    ctls: list[ServerProcess] = []
    brokers: list[ServerProcess] = []
    with server([command("mqnamesrv"), "--listenPort", str(ns_port)], tmp_path, NAMESRV_BOOT, timeout=60):
        try:
            for i in range(3):
                home = tmp_path / f"c{i}"
                home.mkdir()
                ctls.append(ServerProcess([command("mqcontroller"), "--listenPort", str(ports[i]),
                                           "--controllerDLegerPeers", peers, "--controllerDLegerSelfId", f"n{i}",
                                           "--controllerStorePath", str(home / "store"),
                                           "--scanNotActiveBrokerInterval", "1000"], home))
            for c in ctls:
                c.wait_for("The ControllerManager boot success", 60)

            def leader() -> int | None:
                out = mqadmin("getControllerMetaData", "-a", f"127.0.0.1:{ports[0]}", ok=False).stdout
                for line in out.splitlines():
                    if line.startswith("ControllerLeaderAddress\t"):
                        addr = line.split("\t", 1)[1]
                        return next((i for i, p in enumerate(raft) if addr.endswith(f":{p}")), None)
                return None

            first = poll_until(lambda: (i := leader()) is not None and (i,), timeout=30,
                               what="a controller leader")[0]
            a_home, b_home = tmp_path / "a", tmp_path / "b"
            brokers.append(ServerProcess(_broker(a_home, ns, addrs), a_home))
            poll_until(lambda: "is now the MASTER" in broker_log(a_home), timeout=30, what="broker a master")
            brokers.append(ServerProcess(_broker(b_home, ns, addrs), b_home))
            poll_until(lambda: "SyncStateSet of broker-a is now [1, 2]" in broker_log(a_home), timeout=30,
                       what="b in the SyncStateSet")
            ctls[first].kill()  # the leading controller and the master go together
            brokers[0].kill()
            poll_until(lambda: "is now the MASTER" in broker_log(b_home), timeout=60,
                       what="b elected by the new controller leader")
            mqadmin("updateTopic", "-n", ns, "-c", "DefaultCluster", "-t", "TopicQuorum")
            assert "SEND_OK" in mqadmin("sendMessage", "-n", ns, "-t", "TopicQuorum", "-p", "after").stdout
        finally:
            for p in brokers + ctls:
                p.kill()
