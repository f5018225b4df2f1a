"""topics.json / subscriptionGroup.json: auto-creation in request handling writes them off the event loop,
coalesced; admin updates write at once; shutdown leaves the last tables on disk."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from backends.broker import config_manager
from backends.broker.broker_config import BrokerConfig
from backends.broker.controller import BrokerController
from backends.broker.subscription_group_manager import SubscriptionGroupManager
from backends.broker.topic_config_manager import TopicConfigManager
from backends.model import SubscriptionGroupConfig, TopicConfig

WAIT = 10.0  # bound of every wait (seconds)


class Writes:
    """Stands in for config_manager.persist_json: records each write (thread, path, table) and does it.
    With ``gate`` set, every write first waits (bounded) until the gate opens."""

    def __init__(self, gated: bool = False) -> None:
        self.calls: list[tuple[threading.Thread, str, Any]] = []
        self.started = threading.Event()
        self.gate = threading.Event()
        self.gate_timed_out = False
        if not gated:
            self.gate.set()
        self._real = config_manager.persist_json
        self._lock = threading.Lock()

    def __call__(self, path: str, obj: Any) -> bool:
        with self._lock:
            self.calls.append((threading.current_thread(), path, obj))
        self.started.set()
        if not self.gate.wait(WAIT):
            self.gate_timed_out = True
        return self._real(path, obj)

    def to(self, name: str) -> list[tuple[threading.Thread, str, Any]]:
        with self._lock:
            return [c for c in self.calls if Path(c[1]).name == name]


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Writes:
    w = Writes()
    monkeypatch.setattr(config_manager, "persist_json", w)
    return w


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> Writes:
    w = Writes(gated=True)
    monkeypatch.setattr(config_manager, "persist_json", w)
    return w


def groups_on_disk(path: str) -> set[str]:
    return set(json.loads(Path(path).read_text())["subscriptionGroupTable"])


def topics_on_disk(path: str) -> set[str]:
    return set(json.loads(Path(path).read_text())["topicConfigTable"])


async def test_group_burst_is_written_off_the_loop_in_at_most_two_writes(tmp_path: Path, writes: Writes) -> None:
    sgm = SubscriptionGroupManager(BrokerConfig(store_path_root_dir=str(tmp_path)))
    names = {f"G{i}" for i in range(200)}
    for g in sorted(names):
        assert sgm.find_subscription_group_config(g) is not None
    assert writes.calls == []  # the heartbeats returned without writing
    await sgm.wait_persisted(WAIT)
    assert 1 <= len(writes.calls) <= 2
    assert all(t is not threading.main_thread() for t, _, _ in writes.calls)
    assert names <= groups_on_disk(sgm.path)
    again = SubscriptionGroupManager(BrokerConfig(store_path_root_dir=str(tmp_path)))
    again.load()
    assert names <= set(again.subscription_group_table)
    assert again.data_version.counter == sgm.data_version.counter


async def test_requests_during_a_write_end_in_exactly_one_more_write(tmp_path: Path, gated: Writes) -> None:
    sgm = SubscriptionGroupManager(BrokerConfig(store_path_root_dir=str(tmp_path)))
    sgm.find_subscription_group_config("First")
    # the first write is now held in the worker thread; the loop keeps serving
    assert await asyncio.to_thread(gated.started.wait, WAIT)
    for i in range(50):
        sgm.find_subscription_group_config(f"During{i}")
        await asyncio.sleep(0)  # let the writer task run between requests: it must not start a write
    assert len(gated.calls) == 1
    gated.gate.set()
    await sgm.wait_persisted(WAIT)
    assert not gated.gate_timed_out
    assert len(gated.calls) == 2
    first, second = gated.calls[0][2], gated.calls[1][2]
    assert "First" in first["subscriptionGroupTable"] and "During0" not in first["subscriptionGroupTable"]
    assert {f"During{i}" for i in range(50)} | {"First"} <= set(second["subscriptionGroupTable"])
    assert {f"During{i}" for i in range(50)} <= groups_on_disk(sgm.path)
    assert all(t is not threading.main_thread() for t, _, _ in gated.calls)


async def test_topic_auto_create_burst_is_written_off_the_loop(tmp_path: Path, writes: Writes) -> None:
    tcm = TopicConfigManager(BrokerConfig(store_path_root_dir=str(tmp_path)))
    changed: list[str | None] = []
    tcm.on_change = lambda tc: changed.append(tc.topic_name if tc else None)
    names = [f"Auto{i}" for i in range(100)]
    for t in names:
        assert tcm.create_topic_in_send_message_method(t, 4) is not None
    assert writes.calls == []
    assert changed == names  # the NameServers still hear of each topic at once
    await tcm.wait_persisted(WAIT)
    assert 1 <= len(writes.calls) <= 2
    assert all(t is not threading.main_thread() for t, _, _ in writes.calls)
    assert set(names) <= topics_on_disk(tcm.path)


async def test_admin_updates_are_on_disk_when_they_return(tmp_path: Path, writes: Writes) -> None:
    cfg = BrokerConfig(store_path_root_dir=str(tmp_path))
    tcm, sgm = TopicConfigManager(cfg), SubscriptionGroupManager(cfg)
    tcm.update_topic_config(TopicConfig("Admin", 2, 2))
    assert "Admin" in topics_on_disk(tcm.path)
    sgm.update_subscription_group_config(SubscriptionGroupConfig("AdminG"))
    assert "AdminG" in groups_on_disk(sgm.path)
    tcm.delete_topic("Admin")
    assert "Admin" not in topics_on_disk(tcm.path)
    sgm.delete_subscription_group_config("AdminG")
    assert "AdminG" not in groups_on_disk(sgm.path)


def test_an_older_table_never_replaces_a_newer_one(tmp_path: Path, writes: Writes) -> None:
    """A background write encoded before a synchronous (admin) write but reaching the worker after it is
    dropped, not written over the newer file."""
    table = {"v": 1}
    path = str(tmp_path / "t.json")
    p = config_manager.CoalescingPersister(lambda: path, lambda: dict(table))
    older = p._snapshot()  # what a background writer took before the admin update
    table["v"] = 2
    assert p.persist_now()
    assert p._write(*older)
    assert json.loads(Path(path).read_text()) == {"v": 2}
    assert [c[2] for c in writes.calls] == [{"v": 2}]


def test_without_a_loop_a_request_writes_at_once(tmp_path: Path, writes: Writes) -> None:
    sgm = SubscriptionGroupManager(BrokerConfig(store_path_root_dir=str(tmp_path)))
    sgm.find_subscription_group_config("Sync")
    assert len(writes.calls) == 1 and writes.calls[0][0] is threading.current_thread()
    assert "Sync" in groups_on_disk(sgm.path)
    tcm = TopicConfigManager(BrokerConfig(store_path_root_dir=str(tmp_path)))
    tcm.create_topic_if_absent("SyncT", 1, 1)
    assert "SyncT" in topics_on_disk(tcm.path)


async def test_flush_waits_for_the_write_in_flight_and_writes_the_newest(tmp_path: Path, gated: Writes) -> None:
    sgm = SubscriptionGroupManager(BrokerConfig(store_path_root_dir=str(tmp_path)))
    sgm.find_subscription_group_config("A")
    assert await asyncio.to_thread(gated.started.wait, WAIT)
    sgm.subscription_group_table["B"] = SubscriptionGroupConfig("B")  # a change without a request
    flush = asyncio.create_task(sgm.flush(WAIT))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not flush.done()  # it waits for the held write
    gated.gate.set()
    await asyncio.wait_for(flush, WAIT)
    assert {"A", "B"} <= groups_on_disk(sgm.path)


async def test_broker_shutdown_writes_the_last_tables(tmp_path: Path, writes: Writes) -> None:
    cfg = BrokerConfig(store_path_root_dir=str(tmp_path / "store"), listen_port=0,
                       mapped_file_size_commit_log=4 * 1024 * 1024)
    b = BrokerController(cfg)
    await b.start()
    sgm, tcm = b.subscription_group_manager, b.topic_config_manager
    try:
        sgm.find_subscription_group_config("Early")
        await sgm.wait_persisted(WAIT)
        assert "Early" in groups_on_disk(sgm.path)
        sgm.find_subscription_group_config("Late")
        tcm.create_topic_in_send_message_method("LateTopic", 2)
        # Drop the background writers before they ran: from here on only the shutdown can write
        # "Late" and "LateTopic".
        for p in (sgm._persister, tcm._persister):
            assert p._task is not None and not p._task.done()
            p._task.cancel()
        await asyncio.sleep(0)
        assert "Late" not in groups_on_disk(sgm.path)
        assert "LateTopic" not in topics_on_disk(tcm.path)
    finally:
        await b.shutdown()
    assert not sgm._persister.busy and not tcm._persister.busy  # nothing left to write
    assert "Late" in groups_on_disk(sgm.path)
    assert "LateTopic" in topics_on_disk(tcm.path)
    last_group_write = writes.to("subscriptionGroup.json")[-1]
    assert last_group_write[0] is not threading.main_thread()  # off the loop, also at shutdown
    assert "Late" in last_group_write[2]["subscriptionGroupTable"]


def test_unreadable_or_corrupt_table_falls_back_to_its_backup(tmp_path: Path, caplog) -> None:
    """RocketMQ's ConfigManager.load: a table file that cannot be read or parsed is logged and its .bak
    loaded; without a usable .bak the table starts empty (the broker still starts)."""
    cfg = BrokerConfig(store_path_root_dir=str(tmp_path))
    tcm = TopicConfigManager(cfg)
    tcm.update_topic_config(TopicConfig("Kept", 2, 2))
    tcm.update_topic_config(TopicConfig("Newer", 2, 2))  # the .bak holds the table with "Kept" only
    path = Path(tcm.path)
    path.unlink()
    path.mkdir()  # reading it fails with an OSError (IsADirectoryError), not "not found"
    again = TopicConfigManager(cfg)
    again.load()
    assert "Kept" in again.topic_config_table and "Newer" not in again.topic_config_table
    assert f"cannot read {path}" in caplog.text
    path.rmdir()
    path.write_text("{not json")
    Path(str(path) + ".bak").write_text("")
    empty = TopicConfigManager(cfg)
    empty.load()
    assert "Kept" not in empty.topic_config_table
    assert "is corrupt" in caplog.text and "is empty" in caplog.text
