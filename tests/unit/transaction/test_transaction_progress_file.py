"""transactionProgress.json: written with atomic_write_json (fsync, .bak), off the event loop when one
runs, and read back -- also the compact files written before, and the .bak when the file is missing."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from backends.broker.transaction import TransactionalMessageService

WAIT = 10.0


def service(root: Path) -> TransactionalMessageService:
    broker = SimpleNamespace(config=SimpleNamespace(store_path_root_dir=str(root)), message_store=None)
    return TransactionalMessageService(broker)


def loaded(root: Path) -> TransactionalMessageService:
    svc = service(root)
    svc._load()
    return svc


def test_persist_goes_through_atomic_write_json_and_round_trips(tmp_path: Path, atomic_writes: list[Any]) -> None:
    svc = service(tmp_path)
    path = Path(svc.path or "")
    svc.half_offset, svc._op_scan, svc.check_times = 3, 7, {3: 2, 4: 1, 1: 9}
    svc._persist()  # no event loop here: written at once
    assert [c[1] for c in atomic_writes] == [str(path)]
    assert json.loads(path.read_text()) == {"halfOffset": 3, "opOffset": 7, "checkTimes": {"3": 2, "4": 1}}
    back = loaded(tmp_path)
    assert (back.half_offset, back._op_scan, back.check_times) == (3, 7, {3: 2, 4: 1})
    svc.half_offset = 4
    svc._persist()
    assert json.loads(Path(str(path) + ".bak").read_text())["halfOffset"] == 3
    assert loaded(tmp_path).half_offset == 4


def test_reads_the_files_written_before_and_the_backup(tmp_path: Path) -> None:
    path = tmp_path / "config" / "transactionProgress.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"halfOffset":2,"opOffset":5,"checkTimes":{"2":1}}')  # as written before
    back = loaded(tmp_path)
    assert (back.half_offset, back._op_scan, back.check_times) == (2, 5, {2: 1})
    svc = service(tmp_path)
    svc.half_offset = 6
    svc._persist()  # the old file becomes the .bak
    path.unlink()  # a crash between the two renames of atomic_write_json
    assert loaded(tmp_path).half_offset == 2
    path.write_text("")
    assert loaded(tmp_path).half_offset == 2


async def test_persist_runs_off_the_loop(tmp_path: Path, atomic_writes: list[Any]) -> None:
    svc = service(tmp_path)
    svc.half_offset = 8
    svc._persist()
    assert atomic_writes == []  # requested, not written on the loop
    await asyncio.wait_for(svc._writer.wait_persisted(), WAIT)
    assert atomic_writes and all(t is not threading.main_thread() for t, _, _ in atomic_writes)
    assert loaded(tmp_path).half_offset == 8


def test_write_failure_is_logged_and_keeps_going(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "config").write_text("")  # a file where the config directory should be
    svc = service(tmp_path)
    svc._persist()
    assert "transactionProgress.json failed" in caplog.text
