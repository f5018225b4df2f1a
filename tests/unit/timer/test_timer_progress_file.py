"""timerProgress.json: written with atomic_write_json (fsync, .bak), off the event loop when one runs,
and read back -- also the compact files written before, and the .bak when the file is missing."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from backends.broker.timer import service as timer_service
from backends.broker.timer.service import TimerProgress

WAIT = 10.0


def progress(path: Path, offset: int, done: list[int]) -> TimerProgress:
    p = TimerProgress(str(path))
    p.offset = offset
    for o in done:
        p.mark(o)
    return p


def loaded(path: Path) -> TimerProgress:
    p = TimerProgress(str(path))
    p.load()
    return p


def test_persist_goes_through_atomic_write_json_and_round_trips(tmp_path: Path, atomic_writes: list[Any]) -> None:
    path = tmp_path / "config" / "timerProgress.json"
    p = progress(path, 5, [7, 8, 10])
    p.persist()
    assert not p.dirty
    assert [c[1] for c in atomic_writes] == [str(path)]
    assert json.loads(path.read_text()) == {"offset": 5, "done": [[7, 8], [10, 10]]}
    assert not Path(str(path) + ".bak").exists()
    back = loaded(path)
    assert back.offset == 5 and back.done == {7, 8, 10}
    p.mark(5)
    p.advance()
    p.persist()
    assert json.loads(Path(str(path) + ".bak").read_text()) == {"offset": 5, "done": [[7, 8], [10, 10]]}
    back = loaded(path)
    assert back.offset == 6 and back.done == {7, 8, 10}


def test_reads_the_files_written_before(tmp_path: Path) -> None:
    path = tmp_path / "timerProgress.json"
    path.write_text('{"offset":3,"done":[[5,6]]}')  # json.dump(separators=(",", ":")), as before
    back = loaded(path)
    assert back.offset == 3 and back.done == {5, 6}


def test_missing_or_corrupt_file_falls_back_to_the_backup(tmp_path: Path) -> None:
    path = tmp_path / "timerProgress.json"
    progress(path, 2, []).persist()
    progress(path, 9, [11]).persist()
    path.unlink()  # a crash between the two renames of atomic_write_json
    assert loaded(path).offset == 2
    path.write_text("{trunc")
    assert loaded(path).offset == 2
    Path(str(path) + ".bak").unlink()
    assert loaded(path).offset == -1  # nothing readable: rescan the timer queue


def test_write_failure_is_logged_and_keeps_going(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    p = progress(blocker / "timerProgress.json", 1, [3])  # its directory cannot be created
    p.persist()
    assert p.dirty  # still to be written
    assert "timerProgress.json failed" in caplog.text


async def test_periodic_persist_runs_off_the_loop(tmp_path: Path, atomic_writes: list[Any]) -> None:
    path = tmp_path / "timerProgress.json"
    p = progress(path, 4, [6])
    p.persist_soon()
    assert atomic_writes == [] and not p.dirty  # requested, not written on the loop
    p.mark(7)
    p.persist_soon()
    await p.flush()
    assert atomic_writes and all(t is not threading.main_thread() for t, _, _ in atomic_writes)
    assert json.loads(path.read_text()) == {"offset": 4, "done": [[6, 7]]}


async def test_service_shutdown_writes_the_progress(tmp_path: Path) -> None:
    from tests.unit.timer.fake_broker import FakeClock, StandInBroker, open_store

    clock = FakeClock()
    store = await open_store(str(tmp_path), clock)
    try:
        svc = timer_service.TimerMessageService(StandInBroker(str(tmp_path), store, clock), clock=clock)
        await svc.start(run_loop=False)
        svc.progress.offset = 42
        svc.progress.dirty = True
        await asyncio.wait_for(svc.shutdown(), WAIT)
        assert loaded(Path(svc.progress.path or "")).offset == 42
    finally:
        await store.shutdown()
