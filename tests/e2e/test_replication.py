"""Master/slave replication with real processes (2m-2s-sync and 2m-2s-async, one broker pair of each).

The official Python SDK sends through mqproxy (Cluster mode) to a master; its slave copies the commitlog
over the HA port and the master's tables over remoting. SYNC_MASTER: the master is killed with SIGKILL mid
stream and every message id the proxy acknowledged must be readable from the slave (PULL on the slave's
own port). ASYNC_MASTER: the slave catches up with everything sent, and copies topics, groups and
consumer offsets.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

from backends.model import MessageConst
from backends.remoting.codes import ResponseCode
from backends.store.record import decode_records
from backends.tools.admin_client import AdminClient
from tests.e2e.proxy_stack import BROKER_BOOT, NAMESRV_BOOT, PROXY_BOOT
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
    server,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

QUEUES = 4


def _conf(home: Path, shipped: str, port: int, ha_port: int) -> Path:
    """One of conf/2m-2s-*/ (RocketMQ's files, meant for one host each) with this host's ports and store."""
    home.mkdir(parents=True, exist_ok=True)
    p = home / "broker.conf"
    p.write_text((REPO / "conf" / shipped).read_text() +
                 f"\nlistenPort={port}\nhaListenPort={ha_port}\n"
                 f"storePathRootDir={home / 'store'}\nbrokerIP1=127.0.0.1\nhaSendHeartbeatInterval=1000\n")
    return p




async def _pull_ids(namesrv: str, addr: str, topic: str, group: str) -> set[str]:
    """Every message id in ``topic`` on the broker at ``addr`` (PULL from offset 0 of each queue)."""
    admin = AdminClient(namesrv)
    ids: set[str] = set()
    try:
        for q in range(QUEUES):
            offset = 0
            while True:
                resp = await admin.pull(addr, group, topic, q, offset, 32)
                if resp.code != ResponseCode.SUCCESS:
                    break
                for m in decode_records(resp.body):
                    ids.add(m.properties[MessageConst.UNIQ_CLIENT_MESSAGE_ID_KEYIDX])
                offset = int((resp.ext_fields or {})["nextBeginOffset"])
    finally:
        await admin.close()
    return ids


class Pair(NamedTuple):
    ns_port: int
    ns: str  # NameServer address
    master: ServerProcess
    master_addr: str
    slave_addr: str


@contextmanager
def _pair(tmp_path: Path, mode: str, topic: str) -> Iterator[Pair]:
    """A NameServer, broker-a and broker-a-s of conf/``mode``/ (the slave connected) and ``topic``."""
    ns_port, mport, sport = free_port(), free_port(), free_port()
    ns = f"127.0.0.1:{ns_port}"
    mconf = _conf(tmp_path / "m", f"{mode}/broker-a.properties", mport, free_port())
    sconf = _conf(tmp_path / "s", f"{mode}/broker-a-s.properties", sport, free_port())
    with server([command("mqnamesrv"), "--listenPort", str(ns_port)], tmp_path, NAMESRV_BOOT, timeout=60), \
            server([command("mqbroker"), "-n", ns, "-c", str(mconf)], tmp_path / "m", BROKER_BOOT, timeout=60) as m, \
            server([command("mqbroker"), "-n", ns, "-c", str(sconf)], tmp_path / "s", BROKER_BOOT, timeout=60):
        poll_until(lambda: "HAClient: connected to master" in broker_log(tmp_path / "s"), timeout=30,
                   what="the slave's HA connection")
        mqadmin("updateTopic", "-n", ns, "-c", "DefaultCluster", "-t", topic, "-r", str(QUEUES), "-w", str(QUEUES))
        yield Pair(ns_port, ns, m, f"127.0.0.1:{mport}", f"127.0.0.1:{sport}")


def _slave_knows(tmp_path: Path, table: str, name: str) -> bool:
    try:
        return name in json.loads((tmp_path / "s" / "store" / "config" / table).read_text()).get(
            "topicConfigTable" if table == "topics.json" else "subscriptionGroupTable", {})
    except (FileNotFoundError, ValueError):
        return False


def _proxy(tmp_path: Path, ns_port: int) -> tuple[list[str], str]:
    grpc_port = free_port()
    pc = tmp_path / "rmq-proxy.json"
    pc.write_text(json.dumps({"rocketMQClusterName": "DefaultCluster", "grpcServerPort": grpc_port,
                              "namesrvListenPort": ns_port}))
    return [command("mqproxy"), "-pm", "cluster", "-n", f"127.0.0.1:{ns_port}", "-pc", str(pc)], \
        f"127.0.0.1:{grpc_port}"


def test_sync_master_acked_messages_survive_master_kill9_on_the_slave(tmp_path: Path) -> None:
    with _pair(tmp_path, "2m-2s-sync", "TopicHA") as (ns_port, ns, master, maddr, saddr):
        # a slave serves a topic once it has copied the master's topic table (every 10 s, as RocketMQ)
        poll_until(lambda: _slave_knows(tmp_path, "topics.json", "TopicHA"), timeout=30,
                   what="TopicHA on the slave")
        proxy_args, endpoint = _proxy(tmp_path, ns_port)
        with server(proxy_args, tmp_path, PROXY_BOOT, timeout=60):
            acked = tmp_path / "acked.txt"
            producer = subprocess.Popen(
                [str(SDK_PYTHON), str(REPO / "tests/sdk/python/crash_send.py"), endpoint, "TopicHA", str(acked)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                poll_until(lambda: count_lines(acked) >= 300 or producer.poll() is not None, timeout=90,
                           interval=0.05, what="300 acknowledged sends")
                assert producer.poll() is None, producer.communicate()[0][-3000:]
                master.kill()  # SIGKILL mid stream: what the proxy acknowledged must be on the slave
            finally:
                producer.kill()
                producer.communicate(timeout=30)
        want = {line.strip() for line in acked.read_text().splitlines() if line.strip()}
        assert len(want) >= 300
        got = asyncio.run(_pull_ids(ns, saddr, "TopicHA", "GroupHA"))
        missing = want - got
        assert not missing, (len(missing), sorted(missing)[:5], broker_log(tmp_path / "s")[-3000:])
        assert "connection to master" in broker_log(tmp_path / "s")  # it saw the master go


def test_async_master_slave_catches_up_and_copies_tables(tmp_path: Path) -> None:
    with _pair(tmp_path, "2m-2s-async", "TopicAsync") as (ns_port, ns, master, maddr, saddr):
        mqadmin("updateSubGroup", "-n", ns, "-c", "DefaultCluster", "-g", "GroupAsync")
        for i in range(5):
            mqadmin("sendMessage", "-n", ns, "-t", "TopicAsync", "-p", f"async-{i}")
        # the master's tables reach the slave (SlaveSynchronize: at registration, then every 10 s)
        poll_until(lambda: _slave_knows(tmp_path, "topics.json", "TopicAsync")
                   and _slave_knows(tmp_path, "subscriptionGroup.json", "GroupAsync"),
                   timeout=30, what="the master's tables on the slave")
        on_master = asyncio.run(_pull_ids(ns, maddr, "TopicAsync", "GroupAsync"))
        assert len(on_master) == 5
        poll_until(lambda: asyncio.run(_pull_ids(ns, saddr, "TopicAsync", "GroupAsync")) == on_master,
                   timeout=20, what="the 5 messages on the slave")
        assert " ERROR " not in broker_log(tmp_path / "s"), broker_log(tmp_path / "s")[-3000:]
