"""A SYNC_MASTER and its SLAVE in one process (no NameServer: the slave is told its master directly)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backends.broker.broker_config import BrokerConfig, ConfigError
from backends.broker.controller import BrokerController
from backends.broker.pop.service import InFlight, QueueState
from backends.controller.manager import ControllerConfig, ControllerManager
from backends.model import Message, PutMessageStatus, TopicConfig
from backends.remoting.client import RemotingClient
from backends.remoting.codes import RequestCode
from backends.remoting.command import RemotingCommand
from backends.store.ha import encode_report
from tests.harness import apoll_until


def _config(root: Path, role: str, **kw: object) -> BrokerConfig:
    cfg = BrokerConfig(store_path_root_dir=str(root), listen_port=0, mapped_file_size_commit_log=1024 * 1024,
                       broker_role=role, broker_id=1 if role == "SLAVE" else 0, sync_flush_timeout=500,
                       ha_send_heartbeat_interval=200, **kw)  # type: ignore[arg-type]
    return cfg


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[BrokerController, BrokerController]]:
    master = BrokerController(_config(tmp_path / "m", "SYNC_MASTER"))
    slave = BrokerController(_config(tmp_path / "s", "SLAVE"))
    await master.start()
    await slave.start()
    try:
        yield master, slave
    finally:
        await slave.shutdown()
        await master.shutdown()


def _msg(i: int) -> Message:
    return Message("TopicR", f"m{i}".encode(), {"UNIQ_KEY": f"U{i}"}, queue_id=i % 2)


async def test_sync_master_waits_for_its_slave(pair: tuple[BrokerController, BrokerController]) -> None:
    master, slave = pair
    assert master.ha_service is not None and slave.ha_client is not None
    # no slave yet: stored on the master, answered SLAVE_NOT_AVAILABLE (RocketMQ's soft failure)
    r = await master.put_messages([_msg(0)])
    assert r.status is PutMessageStatus.SLAVE_NOT_AVAILABLE and len(r.results) == 1
    slave.on_register_result(f"127.0.0.1:{master.ha_service.port}", master.broker_addr)
    await apoll_until(lambda: slave.message_store.get_max_phy_offset() == master.message_store.get_max_phy_offset())
    for i in range(1, 20):  # answered only once the slave holds the message
        r = await master.put_messages([_msg(i)])
        assert r.ok, r
        end = r.results[0].commitlog_offset + r.results[0].store_size
        assert slave.message_store.get_max_phy_offset() >= end
    assert slave.message_store.get_max_offset_in_queue("TopicR", 1) == 10
    # a slave takes no writes of its own
    r = await slave.put_messages([_msg(99)])
    assert r.status is PutMessageStatus.SERVICE_NOT_AVAILABLE


async def test_a_silent_slave_times_the_writer_out(tmp_path: Path) -> None:
    master = BrokerController(_config(tmp_path / "m", "SYNC_MASTER"))
    await master.start()
    try:
        assert master.ha_service is not None
        # a "slave" that reports once and then never again: the master waits syncFlushTimeout for it
        reader, writer = await asyncio.open_connection("127.0.0.1", master.ha_service.port)
        writer.write(encode_report(0))
        await writer.drain()
        await apoll_until(lambda: bool(master.ha_service and master.ha_service.connections))
        r = await master.put_messages([_msg(0)])
        assert r.status is PutMessageStatus.FLUSH_SLAVE_TIMEOUT and len(r.results) == 1, r
        writer.close()
    finally:
        await master.shutdown()


async def test_slave_copies_the_masters_tables(pair: tuple[BrokerController, BrokerController]) -> None:
    master, slave = pair
    master.topic_config_manager.update_topic_config(TopicConfig("TopicT", 4, 4))
    master.consumer_offset_manager.commit_offset("127.0.0.1", "GroupT", "TopicT", 3, 42)
    slave.on_register_result("", master.broker_addr)
    await slave.slave_synchronize.sync_all()
    assert slave.topic_config_manager.select_topic_config("TopicT") is not None
    assert slave.consumer_offset_manager.query_offset("GroupT", "TopicT", 3) == 42
    assert slave.subscription_group_manager.data_version == master.subscription_group_manager.data_version


def test_slave_needs_a_broker_id(tmp_path: Path) -> None:
    cfg = BrokerConfig()
    with pytest.raises(ConfigError, match="brokerId above 0"):
        cfg.apply({"brokerRole": "SLAVE", "brokerId": "0"})
    cfg = BrokerConfig()
    cfg.apply({"brokerRole": "SYNC_MASTER", "brokerId": "3"})
    assert cfg.broker_id == 0


async def test_services_forget_what_a_truncation_cut(tmp_path: Path) -> None:
    b = BrokerController(_config(tmp_path / "b", "ASYNC_MASTER"))
    await b.start()
    try:
        timer, tx = b.timer_service, b.transaction_service
        far = str(int(time.time() * 1000) + 3_600_000)
        r = await b.put_messages([Message("TopicR", b"kept", {"UNIQ_KEY": "K", "TIMER_DELIVER_MS": far})])
        assert r.ok
        cut = b.message_store.get_max_phy_offset()
        r = await b.put_messages([Message("TopicR", b"cut", {"UNIQ_KEY": "C", "TIMER_DELIVER_MS": far}),
                                  Message("TopicR", b"half", {"UNIQ_KEY": "H", "TRAN_MSG": "true",
                                                              "PGROUP": "PG"})])
        assert r.ok
        await timer.run_once()
        await tx._scan_halves()
        assert len(timer._heap) == 2 and len(tx.pending) == 1
        pop = b.pop_service
        qs = QueueState("G", "TopicP", 0, 5)  # a consumer had been handed offsets up to 4 here
        qs.put_inflight(4, InFlight(1, 60_000, 1, 0), True)
        pop.states[qs.key] = qs
        await b.put_messages([Message("TopicP", b"p", {"UNIQ_KEY": "P"}, queue_id=0)])
        b.set_services_running(False)
        b.message_store.truncate_replica(cut)  # what a deposed master does before following the new one
        await b.reload_services()
        assert [e[1] for e in timer._heap] == [0] and tx.pending == {}
        assert qs.next_offset == 0 and not qs.inflight
    finally:
        await b.shutdown()


async def test_controller_mode_broker_takes_roles_from_the_controller_not_from_notifications(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    ctl = ControllerManager(ControllerConfig(listenPort=0, controllerStorePath=str(tmp_path / "ctl")))
    await ctl.start()
    b = BrokerController(_config(tmp_path / "b", "ASYNC_MASTER", enable_controller_mode=True,
                                 controller_addr=f"127.0.0.1:{ctl.port}"))
    await b.start()
    client = RemotingClient()
    try:
        assert b.replicas_manager is not None
        await apoll_until(lambda: b.replicas_manager is not None and b.replicas_manager.role == "MASTER")
        caplog.set_level(logging.ERROR)
        rnd = random.Random(7)
        values = ["1", "-1", "x", "", "99999999999999999999", "127.0.0.1:1"]
        for code in (RequestCode.NOTIFY_BROKER_ROLE_CHANGED, RequestCode.GET_BROKER_EPOCH_CACHE):
            for _ in range(40):
                ext = {k: rnd.choice(values) for k in ("masterBrokerId", "masterEpoch", "masterAddress",
                                                       "syncStateSetEpoch") if rnd.random() < 0.7}
                body = rnd.choice([b"", b"[]", b"{}", b'{"syncStateSet":"x"}', b'{"syncStateSet":[1]}', b"\xff"])
                resp = await client.invoke(b.broker_addr, RemotingCommand.request(code, ext, body), 10)
                assert resp.is_response
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert b.replicas_manager.role == "MASTER" and not b.config.is_slave
        assert b.replicas_manager.master_epoch == 1  # a garbled epoch in a notification was not taken
    finally:
        await client.close()
        await b.shutdown()
        await ctl.shutdown()
