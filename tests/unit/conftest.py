"""Fixtures shared by the unit tests: a real BrokerController on a small temporary store, a remoting client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backends.broker.broker_config import BrokerConfig
from backends.broker.controller import BrokerController
from backends.remoting.client import RemotingClient


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
