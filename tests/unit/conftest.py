"""Fixtures shared by the unit tests: a real BrokerController on a small temporary store, a remoting client,
a spy on the JSON state-file writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backends.broker.broker_config import BrokerConfig
from backends.broker.controller import BrokerController
from backends.remoting.client import RemotingClient
from tests.unit.broker.write_spy import Call, spy_atomic_writes


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[BrokerController]:
    cfg = BrokerConfig(store_path_root_dir=str(tmp_path / "store"), listen_port=0,
                       mapped_file_size_commit_log=4 * 1024 * 1024)
    b = BrokerController(cfg)
    await b.start()
    try:
        yield b
    finally:
        await b.shutdown()


@pytest.fixture
async def client() -> AsyncIterator[RemotingClient]:
    c = RemotingClient()
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def atomic_writes(monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    """Every atomic_write_json call of the test, recorded as (thread, path, obj) and still done."""
    return spy_atomic_writes(monkeypatch)
