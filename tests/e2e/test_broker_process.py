"""mqbroker as a real process: boot line and log, config errors, -p, registration, clean shutdown."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from backends.api import BackendError
from backends.cluster import ClusterBackend
from backends.model import Message
from tests.harness import ServerProcess, command, free_port, server

pytestmark = pytest.mark.e2e


def test_bad_config_and_print(tmp_path: Path) -> None:
    cp = subprocess.run([command("mqbroker"), "-c", str(tmp_path / "missing.conf")], capture_output=True,
                        text=True, timeout=30)
    assert cp.returncode == 1 and "missing.conf" in cp.stderr and len(cp.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.conf"
    bad.write_text("listenPort=notanumber\n")
    cp = subprocess.run([command("mqbroker"), "-c", str(bad)], capture_output=True, text=True, timeout=30)
    assert cp.returncode == 1 and "listenPort" in cp.stderr
    cp = subprocess.run([command("mqbroker"), "-p", "-n", "1.2.3.4:9876"], capture_output=True, text=True,
                        timeout=30)
    assert cp.returncode == 0 and "namesrvAddr=1.2.3.4:9876" in cp.stdout and "brokerName=broker-a" in cp.stdout


def test_boot_register_shutdown(tmp_path: Path) -> None:
    ns_port, port = free_port(), free_port()
    ns = f"127.0.0.1:{ns_port}"
    conf = tmp_path / "broker.conf"
    conf.write_text(f"brokerClusterName=C1\nbrokerName=broker-z\nlistenPort={port}\n")
    with server([command("mqnamesrv"), "--listenPort", str(ns_port)], tmp_path, "boot success"):
        b = ServerProcess([command("mqbroker"), "-n", ns, "-c", str(conf)], tmp_path)
        try:
            b.wait_for(rf"The broker\[broker-z, 127\.0\.0\.1:{port}\] boot success\. serializeType=JSON and name "
                       rf"server is {ns}", 30)
            log = (tmp_path / "logs" / "rocketmqlogs" / "broker.log").read_text()
            assert "boot success" in log
            topics = json.loads((tmp_path / "store" / "config" / "topics.json").read_text())
            assert "C1" in topics["topicConfigTable"] and "broker-z" in topics["topicConfigTable"]

            async def check() -> None:
                be = ClusterBackend([ns], "C1")
                try:
                    route = await be.get_route("C1")
                    assert route.broker_datas[0].broker_addrs == {0: f"127.0.0.1:{port}"}
                    assert (await be.get_route("broker-z")).queue_datas[0].read_queue_nums == 1
                    assert (await be.get_route("TBW102")).queue_datas[0].perm == 7
                    await be.send_message("broker-z", [Message("PT", b"x", {"UNIQ_KEY": "P1"})], 5)
                finally:
                    await be.shutdown()

            import asyncio

            asyncio.run(check())
        finally:
            b.stop()
        assert b.proc.returncode == 0, b.text()
        topics = json.loads((tmp_path / "store" / "config" / "topics.json").read_text())
        assert "PT" in topics["topicConfigTable"]

        async def gone() -> None:
            be = ClusterBackend([ns], "C1")
            try:
                with pytest.raises(BackendError):
                    await be.get_route("C1")
            finally:
                await be.shutdown()

        import asyncio

        asyncio.run(gone())


def test_enable_proxy(tmp_path: Path) -> None:
    from tests.harness import wait_port

    port, grpc_port = free_port(), free_port()
    conf = tmp_path / "broker.conf"
    conf.write_text(f"listenPort={port}\n")
    pc = tmp_path / "rmq-proxy.json"
    pc.write_text(json.dumps({"rocketMQClusterName": "DefaultCluster", "grpcServerPort": grpc_port}))
    with server([command("mqbroker"), "-c", str(conf), "--enable-proxy", "-pc", str(pc)], tmp_path,
                "rocketmq-proxy startup successfully") as b:
        assert "boot success. serializeType=JSON" in b.text() and "name server is" not in b.text()
        wait_port(grpc_port, 5)
    assert b.proc.returncode == 0, b.text()


def test_port_in_use_fails_cleanly(tmp_path: Path) -> None:
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("0.0.0.0", port))
        s.listen()
        conf = tmp_path / "broker.conf"
        conf.write_text(f"listenPort={port}\n")
        cp = subprocess.run([command("mqbroker"), "-c", str(conf)], capture_output=True, text=True, timeout=60,
                            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert cp.returncode == 1 and "start failed" in cp.stderr and str(port) in cp.stderr
    assert not (tmp_path / "store" / "abort").exists()


def test_master_and_slave_register_slave_refuses_writes(tmp_path: Path) -> None:
    import asyncio

    from tests.harness import REPO

    ns_port, mport, sport = free_port(), free_port(), free_port()
    ns = f"127.0.0.1:{ns_port}"
    confs = {}
    for name, port in (("broker-a", mport), ("broker-a-s", sport)):
        src = (REPO / "conf" / "2m-2s-async" / f"{name}.properties").read_text()
        p = tmp_path / f"{name}.properties"
        p.write_text(src + f"\nlistenPort={port}\nstorePathRootDir={tmp_path / name}\n")
        confs[name] = p
    with server([command("mqnamesrv"), "--listenPort", str(ns_port)], tmp_path, "boot success"), \
            server([command("mqbroker"), "-n", ns, "-c", str(confs["broker-a"])], tmp_path, "boot success"), \
            server([command("mqbroker"), "-n", ns, "-c", str(confs["broker-a-s"])], tmp_path, "boot success"):

        async def check() -> None:
            from backends.remoting.client import RemotingClient
            from backends.remoting.codes import RequestCode, ResponseCode
            from backends.remoting.command import RemotingCommand

            be = ClusterBackend([ns], "DefaultCluster")
            c = RemotingClient()
            try:
                route = await be.get_route("DefaultCluster")
                assert route.broker_datas[0].broker_addrs == {0: f"127.0.0.1:{mport}", 1: f"127.0.0.1:{sport}"}
                r = await c.invoke(f"127.0.0.1:{sport}", RemotingCommand.request(RequestCode.SEND_MESSAGE_V2, {
                    "a": "PG", "b": "ST", "e": "0", "i": ""}, b"x"), 5)
                assert r.code == ResponseCode.SERVICE_NOT_AVAILABLE, (r.code, r.remark)
                res = await be.send_message("broker-a", [Message("ST", b"x", {"UNIQ_KEY": "S1"})], 5)
                assert res[0].queue_offset == 0
            finally:
                await c.close()
                await be.shutdown()

        asyncio.run(check())


def test_registers_with_every_name_server(tmp_path: Path) -> None:
    import asyncio

    p1, p2, port = free_port(), free_port(), free_port()
    (tmp_path / "n1").mkdir()
    (tmp_path / "n2").mkdir()
    conf = tmp_path / "broker.conf"
    conf.write_text(f"listenPort={port}\n")
    with server([command("mqnamesrv"), "--listenPort", str(p1)], tmp_path / "n1", "boot success"), \
            server([command("mqnamesrv"), "--listenPort", str(p2)], tmp_path / "n2", "boot success"), \
            server([command("mqbroker"), "-n", f"127.0.0.1:{p1};127.0.0.1:{p2}", "-c", str(conf)], tmp_path,
                   "boot success"):

        async def check() -> None:
            for p in (p1, p2):
                be = ClusterBackend([f"127.0.0.1:{p}"], "DefaultCluster")
                try:
                    route = await be.get_route("DefaultCluster")
                    assert route.broker_datas[0].broker_addrs == {0: f"127.0.0.1:{port}"}
                finally:
                    await be.shutdown()

        asyncio.run(check())
