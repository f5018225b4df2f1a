"""mqadmin against real mqnamesrv (and mqbroker) processes."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from backends.remoting.codec import FrameDecoder, encode
from tests.e2e.test_namesrv import BOOT, register_req
from tests.harness import BIN, command, free_port, mqadmin, server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def namesrv(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("ns")
    port = free_port()
    with server([command("mqnamesrv"), "--listenPort", str(port)], home, BOOT):
        yield f"127.0.0.1:{port}"


def test_namesrv_commands(namesrv: str) -> None:
    # a fake broker registers on a connection kept open for the test (closing it unregisters)
    host, port = namesrv.split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(encode(register_req("broker-z", "127.0.0.1:1", {"AdminTopic": 3})))
    dec = FrameDecoder()
    resp: list = []
    while not resp:
        resp = dec.feed(sock.recv(65536))
    assert resp[0].code == 0
    out = mqadmin("topicList", "-n", namesrv).stdout
    assert "AdminTopic" in out.split()
    out = mqadmin("topicRoute", "-n", f"127.0.0.1:1;{namesrv}", "-t", "AdminTopic").stdout  # first address down
    assert '"brokerName": "broker-z"' in out and '"readQueueNums": 3' in out
    out = mqadmin("clusterList", "-n", namesrv).stdout
    line = [ln for ln in out.splitlines() if "broker-z" in ln][0]
    assert line.split()[:4] == ["DefaultCluster", "broker-z", "0", "127.0.0.1:1"] and line.endswith("false")

    cp = mqadmin("topicRoute", "-n", namesrv, "-t", "NoSuchTopic", ok=False)
    assert cp.returncode == 1
    assert cp.stderr.strip() == ("mqadmin topicRoute: CODE: 17 DESC: No topic route info in name server for "
                                 "the topic: NoSuchTopic")
    assert mqadmin("topicClusterList", "-n", namesrv, "-t", "AdminTopic").stdout.split() == ["DefaultCluster"]
    assert "OK, 1" in mqadmin("wipeWritePerm", "-n", namesrv, "-b", "broker-z").stdout
    assert '"perm": 4' in mqadmin("topicRoute", "-n", namesrv, "-t", "AdminTopic").stdout
    assert "OK, 1" in mqadmin("addWritePerm", "-n", namesrv, "-b", "broker-z").stdout
    mqadmin("updateKvConfig", "-n", namesrv, "-s", "ns1", "-k", "k1", "-v", "v1")
    mqadmin("deleteKvConfig", "-n", namesrv, "-s", "ns1", "-k", "k1")
    assert "success" in mqadmin("updateNamesrvConfig", "-n", namesrv, "-k", "orderMessageEnable", "-v", "true").stdout
    out = mqadmin("getNamesrvConfig", "-n", namesrv).stdout
    assert [ln.split()[-1] for ln in out.splitlines() if ln.startswith("orderMessageEnable")] == ["true"]
    cp = mqadmin("updateNamesrvConfig", "-n", namesrv, "-k", "kvConfigPath", "-v", "/x", ok=False)
    assert cp.returncode == 1 and "CODE: 16" in cp.stderr
    sock.close()


def test_bad_arguments_and_unreachable(namesrv: str) -> None:
    cp = mqadmin("topicList", "-n", "127.0.0.1:1", ok=False)
    assert cp.returncode == 1 and len(cp.stderr.strip().splitlines()) == 1 and "127.0.0.1:1" in cp.stderr
    cp = mqadmin("noSuchCommand", ok=False)
    assert cp.returncode == 2 and "noSuchCommand" in cp.stderr
    cp = mqadmin("topicRoute", "-n", namesrv, ok=False)  # missing -t
    assert cp.returncode == 2 and len(cp.stderr.strip().splitlines()) == 1 and "-t" in cp.stderr
    cp = mqadmin("updateTopic", "-n", namesrv, "-t", "X", "-r", "many", ok=False)
    assert cp.returncode == 2 and "many" in cp.stderr
    cp = mqadmin("updateTopic", "-n", namesrv, "-t", "X", ok=False)  # neither -b nor -c
    assert cp.returncode == 2 and "-c" in cp.stderr
    cp = mqadmin("updateTopic", "-n", namesrv, "-c", "DefaultCluster", "-t", "bad topic!", ok=False)
    assert cp.returncode == 2 and "illegal characters" in cp.stderr
    cp = mqadmin("topicList", "-n", "nonsense", ok=False)
    assert cp.returncode == 1 and "nonsense" in cp.stderr
    assert "updateTopic" in mqadmin("help").stdout
    assert "--readQueueNums" in mqadmin("help", "updateTopic").stdout


@pytest.fixture(scope="module")
def broker(namesrv: str, tmp_path_factory: pytest.TempPathFactory):
    if not (BIN / "mqbroker").exists():
        pytest.skip("mqbroker not installed")
    home: Path = tmp_path_factory.mktemp("broker")
    port = free_port()
    conf = home / "broker.conf"
    conf.write_text(f"brokerClusterName=AdminCluster\nbrokerName=broker-adm\nlistenPort={port}\n"
                    f"brokerIP1=127.0.0.1\nstorePathRootDir={home / 'store'}\n")
    with server([command("mqbroker"), "-n", namesrv, "-c", str(conf)], home, r"boot success"):
        yield f"127.0.0.1:{port}"


def test_broker_commands(namesrv: str, broker: str) -> None:
    n = ["-n", namesrv]
    out = mqadmin("updateTopic", *n, "-c", "AdminCluster", "-t", "AdmT", "-r", "2", "-w", "2",
                  "-a", "+message.type=FIFO").stdout
    assert f"create topic to {broker} success." in out and "message.type" in out
    out = mqadmin("topicRoute", *n, "-t", "AdmT", "-l").stdout
    assert "broker-adm" in out
    out = mqadmin("sendMessage", *n, "-t", "AdmT", "-p", "hello-admin", "-k", "key1", "-c", "tagA").stdout
    row = out.splitlines()[1].split()
    assert row[0] == "broker-adm" and row[2] == "SEND_OK"
    uniq = row[3]
    out = mqadmin("topicStatus", *n, "-t", "AdmT").stdout
    assert sorted(int(ln.split()[3]) for ln in out.splitlines()[1:]) == [0, 1]
    out = mqadmin("consumeMessage", *n, "-t", "AdmT", "-c", "10").stdout
    assert "BODY: hello-admin" in out and uniq in out
    out = mqadmin("queryMsgByKey", *n, "-t", "AdmT", "-k", "key1").stdout
    assert uniq in out
    out = mqadmin("queryMsgByUniqueKey", *n, "-t", "AdmT", "-i", uniq).stdout
    assert "hello-admin" in out and "[tagA]" in out
    offset_id = [ln.split()[1] for ln in out.splitlines() if ln.startswith("OffsetID:")][0]
    out = mqadmin("queryMsgById", *n, "-i", offset_id).stdout
    assert "hello-admin" in out
    out = mqadmin("updateSubGroup", *n, "-c", "AdminCluster", "-g", "AdmG", "-o", "true", "-r", "3").stdout
    assert '"retryMaxTimes":3' in out and '"consumeMessageOrderly":true' in out
    mqadmin("resetOffsetByTime", *n, "-g", "AdmG", "-t", "AdmT", "-s", "0")
    out = mqadmin("consumerProgress", *n, "-g", "AdmG").stdout
    assert "Consume Diff Total: 1" in out
    out = mqadmin("consumerProgress", *n).stdout
    assert [ln.split() for ln in out.splitlines() if ln.startswith("AdmG ")] == [
        ["AdmG", "0", "OFFLINE", "0", "1"]]
    cp = mqadmin("consumerConnection", *n, "-g", "AdmG", ok=False)
    assert cp.returncode == 1 and "206" in cp.stderr
    out = mqadmin("clusterList", *n).stdout
    assert any("broker-adm" in ln and ln.endswith("true") for ln in out.splitlines())
    assert "brokerVersionDesc" in mqadmin("brokerStatus", *n, "-b", broker).stdout
    out = mqadmin("skipAccumulatedMessage", *n, "-g", "AdmG", "-t", "AdmT").stdout
    assert sorted(int(ln.split()[2]) for ln in out.splitlines()[1:]) == [0, 1]
    assert "Consume Diff Total: 0" in mqadmin("consumerProgress", *n, "-g", "AdmG").stdout
    assert "listenPort" in mqadmin("getBrokerConfig", *n, "-b", broker).stdout
    mqadmin("deleteSubGroup", *n, "-c", "AdminCluster", "-g", "AdmG")
    out = mqadmin("deleteTopic", *n, "-c", "AdminCluster", "-t", "AdmT").stdout
    assert "from NameServer success" in out
    assert mqadmin("topicRoute", *n, "-t", "AdmT", ok=False).returncode == 1


def test_bench_remoting_smoke(broker: str) -> None:
    for mode in ("send", "pull"):
        cp = subprocess.run([command("mqbench"), "remoting", "-a", broker, "--mode", mode, "--topic", "BenchT",
                             "--queues", "2", "--concurrency", "4", "--seconds", "1", "--size", "100"],
                            capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert "Throughput:" in cp.stdout and "p999=" in cp.stdout and "errors=0" in cp.stdout
