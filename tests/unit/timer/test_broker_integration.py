"""Timer and transaction services inside a real BrokerController (through LocalBackend)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from backends.api import BackendError

pytest.importorskip("backends.local")

from backends.broker.broker_config import BrokerConfig  # noqa: E402
from backends.broker.controller import BrokerController  # noqa: E402
from backends.local import LocalBackend  # noqa: E402
from backends.model import Message  # noqa: E402


async def wait_for(cond: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.02)
    return bool(cond())


async def test_timed_message_and_recall_through_the_broker(broker: BrokerController) -> None:
    if broker.timer_service is None:
        pytest.skip("timer service not wired")
    be = LocalBackend(broker)
    now = int(time.time() * 1000)
    res = await be.send_message("broker-a", [Message("TimedT", b"t1", {"UNIQ_KEY": "T1", "TIMER_DELIVER_MS": str(now + 300)}, queue_id=0)], 5)
    assert res[0].recall_handle
    res2 = await be.send_message("broker-a", [Message("TimedT", b"t2", {"UNIQ_KEY": "T2", "TIMER_DELIVER_MS": str(now + 5000)}, queue_id=0)], 5)
    assert broker.get_max_offset("TimedT", 0) == 0
    assert await be.recall_message("broker-a", "TimedT", res2[0].recall_handle) == "T2"
    assert await wait_for(lambda: broker.get_max_offset("TimedT", 0) == 1)
    assert time.time() * 1000 >= now + 300
    pr = await be.pull_message("broker-a", "G", "TimedT", 0, 0, 32, "TAG", "*", 0, 5)
    assert [m.msg_id for m in pr.messages] == ["T1"]
    with pytest.raises(BackendError) as ei:
        await be.recall_message("broker-a", "TimedT", res[0].recall_handle)  # already delivered
    assert ei.value.code == 604


async def test_too_far_delivery_is_message_illegal(broker: BrokerController) -> None:
    if broker.timer_service is None:
        pytest.skip("timer service not wired")
    be = LocalBackend(broker)
    far = int(time.time() * 1000) + (broker.config.timer_max_delay_sec + 60) * 1000
    with pytest.raises(BackendError) as ei:
        await be.send_message("broker-a", [Message("TimedT", b"x", {"UNIQ_KEY": "F1", "TIMER_DELIVER_MS": str(far)}, queue_id=0)], 5)
    assert ei.value.code == 13


async def test_rollback_through_the_broker(broker: BrokerController) -> None:
    if broker.transaction_service is None:
        pytest.skip("transaction service not wired")
    be = LocalBackend(broker)
    res = await be.send_message("broker-a", [Message("TxT2", b"h", {"UNIQ_KEY": "TX9", "TRAN_MSG": "true", "PGROUP": "PG"}, queue_id=0)], 5)
    await be.end_transaction("broker-a", "PG", "TxT2", "TX9", res[0].transaction_id, False, False)
    assert broker.get_max_offset("TxT2", 0) == 0
    with pytest.raises(BackendError):
        await be.end_transaction("broker-a", "PG", "TxT2", "TX9", res[0].transaction_id, True, False)
    assert broker.get_max_offset("TxT2", 0) == 0


async def test_pending_timer_and_half_messages_survive_a_broker_restart(tmp_path: Path) -> None:
    def make() -> BrokerController:
        cfg = BrokerConfig(store_path_root_dir=str(tmp_path / "store"), listen_port=0,
                           mapped_file_size_commit_log=4 * 1024 * 1024)
        return BrokerController(cfg)

    b1 = make()
    await b1.start()
    if b1.timer_service is None or b1.transaction_service is None:
        await b1.shutdown()
        pytest.skip("timer/transaction services not wired")
    be1 = LocalBackend(b1)
    due = int(time.time() * 1000) + 1500
    await be1.send_message("broker-a", [Message("RT", b"t", {"UNIQ_KEY": "R1", "TIMER_DELIVER_MS": str(due)}, queue_id=0)], 5)
    half = await be1.send_message("broker-a", [Message("RTx", b"h", {"UNIQ_KEY": "H1", "TRAN_MSG": "true", "PGROUP": "PG"}, queue_id=0)], 5)
    await b1.shutdown()

    b2 = make()
    await b2.start()
    try:
        assert b2.timer_service.pending_count == 1
        assert [i.uniq_key for i in b2.transaction_service.pending.values()] == ["H1"]
        be2 = LocalBackend(b2)
        await be2.end_transaction("broker-a", "PG", "RTx", "H1", half[0].transaction_id, True, False)
        assert b2.get_max_offset("RTx", 0) == 1
        assert await wait_for(lambda: b2.get_max_offset("RT", 0) == 1)
        assert time.time() * 1000 >= due
    finally:
        await b2.shutdown()
