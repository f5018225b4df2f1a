"""ClusterBackend against real processes: mqnamesrv + two mqbroker (2m-noslave)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends.api import BackendError, PullStatus
from backends.cluster import ClusterBackend
from backends.model import Message
from backends.remoting.codes import ResponseCode
from tests.harness import REPO, ServerProcess, command, free_port, server

pytestmark = pytest.mark.e2e

NS_BOOT = r"The Name Server boot success"


def broker_conf(home: Path, name: str, port: int) -> Path:
    src = (REPO / "conf" / "2m-noslave" / f"{name}.properties").read_text()
    p = home / f"{name}.properties"
    p.write_text(src + f"\nlistenPort={port}\nstorePathRootDir={home / name / 'store'}\n"
                 "mappedFileSizeCommitLog=4194304\n")
    return p


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[str, list[ServerProcess], dict[str, int]]]:
    ns_port = free_port()
    ns_addr = f"127.0.0.1:{ns_port}"
    ports = {"broker-a": free_port(), "broker-b": free_port()}
    with server([command("mqnamesrv"), "--listenPort", str(ns_port)], tmp_path, NS_BOOT):
        procs = []
        try:
            for name, port in ports.items():
                conf = broker_conf(tmp_path, name, port)
                p = ServerProcess([command("mqbroker"), "-n", ns_addr, "-c", str(conf)], tmp_path)
                procs.append(p)
            for name, p in zip(ports, procs, strict=True):
                p.wait_for(rf"The broker\[{name}, 127\.0\.0\.1:{ports[name]}\] boot success\. serializeType=JSON "
                           rf"and name server is {ns_addr}", 30)
            yield ns_addr, procs, ports
        finally:
            for p in procs:
                p.stop()


async def test_cluster_backend_send_pull_offsets(cluster: tuple[str, list[ServerProcess], dict[str, int]]) -> None:
    ns_addr, procs, ports = cluster
    backend = ClusterBackend([ns_addr], "DefaultCluster")
    await backend.start()
    try:
        assert await backend.healthy()
        route = await backend.get_route("DefaultCluster")
        assert sorted(b.broker_name for b in route.broker_datas) == ["broker-a", "broker-b"]
        assert {b.master_addr for b in route.broker_datas} == {f"127.0.0.1:{p}" for p in ports.values()}

        with pytest.raises(BackendError) as ei:
            await backend.get_route("NoSuchTopicYet")
        assert ei.value.code == ResponseCode.TOPIC_NOT_EXIST

        # send to each broker (auto-create), then the route lists both once they re-registered
        for name in ports:
            res = await backend.send_message(name, [Message("CT", b"hello-" + name.encode(),
                                                            {"UNIQ_KEY": f"U-{name}", "TAGS": "A"}, queue_id=1)], 5)
            assert res[0].broker_name == name and res[0].queue_offset == 0 and res[0].msg_id == f"U-{name}"
        deadline = time.monotonic() + 10
        while True:
            route = await backend.get_route("CT", refresh=True)
            if len(route.queue_datas) == 2 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert sorted(q.broker_name for q in route.queue_datas) == ["broker-a", "broker-b"]

        batch = [Message("CT", f"b{i}".encode(), {"UNIQ_KEY": f"B{i}"}, queue_id=1) for i in range(3)]
        res = await backend.send_message("broker-a", batch, 5)
        assert [r.queue_offset for r in res] == [1, 2, 3]

        pr = await backend.pull_message("broker-a", "CG", "CT", 1, 0, 32, "TAG", "*", 0, 5)
        assert pr.status is PullStatus.FOUND
        assert [m.body for m in pr.messages] == [b"hello-broker-a", b"b0", b"b1", b"b2"]
        assert pr.next_begin_offset == 4
        pr = await backend.pull_message("broker-a", "CG", "CT", 1, 0, 32, "TAG", "A", 0, 5)
        assert [m.body for m in pr.messages] == [b"hello-broker-a"]

        # long polling through the backend: woken by a send
        waiting = asyncio.ensure_future(backend.pull_message("broker-b", "CG", "CT", 1, 1, 32, "TAG", "*", 8000, 10))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await backend.send_message("broker-b", [Message("CT", b"late", {"UNIQ_KEY": "L"}, queue_id=1)], 5)
        pr = await asyncio.wait_for(waiting, 5)
        assert [m.body for m in pr.messages] == [b"late"]

        with pytest.raises(BackendError) as ei:
            await backend.query_consumer_offset("broker-a", "CG", "CT", 1)
        assert ei.value.code == ResponseCode.QUERY_NOT_FOUND
        await backend.update_consumer_offset("broker-a", "CG", "CT", 1, 3)
        assert await backend.query_consumer_offset("broker-a", "CG", "CT", 1) == 3
        assert await backend.get_max_offset("broker-a", "CT", 1) == 4
        assert await backend.get_min_offset("broker-a", "CT", 1) == 0
        assert await backend.search_offset("broker-a", "CT", 1, 0) == 0

        tc = await backend.get_topic_config("CT")
        assert tc is not None and tc.topic_name == "CT"
        assert await backend.get_topic_config("Nope") is None
        assert await backend.get_subscription_group("NeverSeenGroup") is None
        await backend.register_producer("cid", "PG1")
    finally:
        await backend.shutdown()

    # clean shutdown unregisters: after broker-b stops, the route only lists broker-a
    procs[1].stop()
    backend = ClusterBackend([ns_addr], "DefaultCluster")
    try:
        route = await backend.get_route("DefaultCluster")
        assert [b.broker_name for b in route.broker_datas] == ["broker-a"]
    finally:
        await backend.shutdown()


async def test_cluster_backend_transaction_commit_and_check_back(tmp_path: Path) -> None:
    pytest.importorskip("backends.broker.transaction.service")
    ns_port, port = free_port(), free_port()
    ns_addr = f"127.0.0.1:{ns_port}"
    conf = tmp_path / "b.properties"
    conf.write_text(f"brokerName=broker-t\nlistenPort={port}\ntransactionCheckInterval=500\n"
                    "transactionTimeOut=500\nmappedFileSizeCommitLog=4194304\n")
    with server([command("mqnamesrv"), "--listenPort", str(ns_port)], tmp_path, NS_BOOT), \
            server([command("mqbroker"), "-n", ns_addr, "-c", str(conf)], tmp_path, "boot success"):
        backend = ClusterBackend([ns_addr], "DefaultCluster")
        checks: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()

        async def listener(group: str, msg: object, tx: str) -> None:
            await checks.put((group, getattr(msg, "uniq_key", ""), tx))

        backend.set_transaction_check_listener(listener)
        await backend.start()
        try:
            await backend.register_producer("cid", "TxPG")
            props = {"UNIQ_KEY": "TXA", "TRAN_MSG": "true", "PGROUP": "TxPG"}
            r1 = await backend.send_message("broker-t", [Message("TxTopic", b"commit-me", dict(props))], 5)
            props2 = {"UNIQ_KEY": "TXB", "TRAN_MSG": "true", "PGROUP": "TxPG"}
            r2 = await backend.send_message("broker-t", [Message("TxTopic", b"check-me", props2)], 5)
            assert r1[0].transaction_id and r2[0].transaction_id
            await backend.end_transaction("broker-t", "TxPG", "TxTopic", "TXA", r1[0].transaction_id, True, False)
            # the other one is checked back through the producer heartbeat's connection
            deadline = time.monotonic() + 15
            while True:
                group, uniq, tx = await asyncio.wait_for(checks.get(), max(0.1, deadline - time.monotonic()))
                if uniq == "TXB":
                    break
            assert group == "TxPG"
            await backend.end_transaction("", "TxPG", "TxTopic", "TXB", tx, True, True)
            got: list[bytes] = []
            deadline = time.monotonic() + 10
            while len(got) < 2 and time.monotonic() < deadline:
                pr = await backend.pull_message("broker-t", "TxCG", "TxTopic", 0, 0, 32, "TAG", "*", 0, 5)
                got = [m.body for m in pr.messages]
                await asyncio.sleep(0.1)
            assert sorted(got) == [b"check-me", b"commit-me"]
        finally:
            await backend.shutdown()


def _has_pop_processor() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("backends.broker.pop.processor") is not None
    except ImportError:
        return False


@pytest.mark.skipif(not _has_pop_processor(), reason="backends.broker.pop.processor not there yet")
async def test_cluster_backend_pop_ack_change_dlq(cluster: tuple[str, list[ServerProcess], dict[str, int]]) -> None:
    from backends.api import PopRequest, PopStatus

    ns_addr, _, _ = cluster
    backend = ClusterBackend([ns_addr], "DefaultCluster")
    await backend.start()
    try:
        await backend.send_message("broker-a", [Message("PopCT", b"seed", {"UNIQ_KEY": "S0"}, queue_id=0)], 5)
        first = await backend.pop_message("broker-a", PopRequest("PopCG", "PopCT", max_msg_nums=8), 5)
        assert first.status is not PopStatus.FOUND  # a new group starts at the latest offset
        for i in range(3):
            await backend.send_message("broker-a", [Message("PopCT", f"p{i}".encode(), {"UNIQ_KEY": f"P{i}"},
                                                            queue_id=0)], 5)
        got = await backend.pop_message("broker-a", PopRequest("PopCG", "PopCT", max_msg_nums=8,
                                                               invisible_time_ms=30_000, poll_time_ms=2000), 8)
        assert got.status is PopStatus.FOUND and sorted(m.body for m in got.messages) == [b"p0", b"p1", b"p2"]
        by_body = {m.body: m.properties["POP_CK"] for m in got.messages}
        await backend.ack_message("broker-a", "PopCG", "PopCT", by_body[b"p0"])
        new = await backend.change_invisible_time("broker-a", "PopCG", "PopCT", by_body[b"p1"], 0)
        assert new and new != by_body[b"p1"]
        await backend.forward_to_dead_letter_queue("broker-a", "PopCG", "PopCT", by_body[b"p2"], 16)
        again = await backend.pop_message("broker-a", PopRequest("PopCG", "PopCT", max_msg_nums=8,
                                                                 poll_time_ms=3000), 8)
        assert [m.body for m in again.messages] == [b"p1"]
        assert again.messages[0].reconsume_times == 1
        dlq = await backend.pull_message("broker-a", "x", "%DLQ%PopCG", 0, 0, 32, "TAG", "*", 0, 5)
        assert [m.body for m in dlq.messages] == [b"p2"]
    finally:
        await backend.shutdown()


@pytest.mark.skipif(not _has_pop_processor(), reason="backends.broker.pop.processor not there yet")
async def test_cluster_backend_batch_ack(cluster: tuple[str, list[ServerProcess], dict[str, int]]) -> None:
    """ack_messages: one BATCH_ACK_MESSAGE for a pop batch; per-entry errors when some fail."""
    from backends.api import PopRequest, PopStatus

    ns_addr, _, _ = cluster
    backend = ClusterBackend([ns_addr], "DefaultCluster")
    await backend.start()
    try:
        await backend.send_message("broker-a", [Message("BatchAckT", b"seed", {"UNIQ_KEY": "S0"}, queue_id=0)], 5)
        await backend.pop_message("broker-a", PopRequest("BatchAckG", "BatchAckT", max_msg_nums=8), 5)
        await backend.send_message("broker-a", [Message("BatchAckT", f"b{i}".encode(), {"UNIQ_KEY": f"B{i}"},
                                                        queue_id=0) for i in range(12)], 5)
        got = await backend.pop_message("broker-a", PopRequest("BatchAckG", "BatchAckT", max_msg_nums=32,
                                                               invisible_time_ms=30_000, poll_time_ms=2000), 8)
        assert got.status is PopStatus.FOUND and len(got.messages) == 12
        handles = [m.properties["POP_CK"] for m in got.messages]
        codes: list[int] = []
        invoke = backend._invoke

        async def counting(name: str, request: Any, timeout: float) -> Any:
            codes.append(request.code)
            return await invoke(name, request, timeout)

        backend._invoke = counting  # type: ignore[method-assign]
        assert await backend.ack_messages("broker-a", "BatchAckG", "BatchAckT", handles[:10]) == [None] * 10
        assert codes == [200151]  # one BATCH_ACK_MESSAGE
        # a repeated ack is fine, a handle of a never-popped offset fails alone
        parts = handles[10].split(" ")
        parts[7] = str(int(parts[7]) + 1000)
        out = await backend.ack_messages("broker-a", "BatchAckG", "BatchAckT",
                                         [handles[0], handles[10], " ".join(parts), handles[11]])
        assert out[0] is None and out[1] is None and out[3] is None
        assert isinstance(out[2], BackendError)
        again = await backend.pop_message("broker-a", PopRequest("BatchAckG", "BatchAckT", max_msg_nums=32,
                                                                 invisible_time_ms=1000, poll_time_ms=0), 5)
        assert again.status is not PopStatus.FOUND  # all 12 acked: nothing comes back
    finally:
        await backend.shutdown()
