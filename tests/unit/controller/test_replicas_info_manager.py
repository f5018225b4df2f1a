"""The controller's election and SyncStateSet rules, and the epoch agreement a rejoining replica cuts at."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.controller.replicas_info_manager import ControllerError, ReplicasInfoManager
from backends.remoting.codes import ResponseCode
from backends.store.epoch_cache import EpochFileCache, consistent_point


def _registered(tmp_path: Path, n: int) -> ReplicasInfoManager:
    m = ReplicasInfoManager(str(tmp_path / "replicaInfo.json"))
    for i in range(1, n + 1):
        assert m.next_broker_id("C", "b") == i
        m.apply_broker_id("C", "b", i, f"10.0.0.{i}:10911")
    return m


def test_election_prefers_the_sync_state_set_then_epoch_and_offset(tmp_path: Path) -> None:
    m = _registered(tmp_path, 3)
    state = {1: (0, 0), 2: (0, 0), 3: (0, 0)}

    def alive(name: str, i: int) -> tuple[int, int] | None:
        return state.get(i)

    bs = m.elect_master("b", alive)
    assert (bs.master_broker_id, bs.master_epoch, bs.sync_state_set) == (1, 1, {1})
    assert m.elect_master("b", alive).master_epoch == 1  # an alive master is kept
    m.alter_sync_state_set("b", 1, 1, {1, 2}, bs.sync_state_set_epoch)
    del state[1]  # the master dies: only 2 (in the set) may take over, not 3 (not in sync)
    state[3] = (9, 10**9)
    bs = m.elect_master("b", alive)
    assert (bs.master_broker_id, bs.master_epoch, bs.sync_state_set) == (2, 2, {2})
    del state[2]  # nobody of {2} alive: no master, unless unclean election is allowed
    with pytest.raises(ControllerError) as ei:
        m.elect_master("b", alive)
    assert ei.value.code == ResponseCode.CONTROLLER_MASTER_NOT_AVAILABLE and m.sets["b"].master_broker_id == -1
    assert m.elect_master("b", alive, unclean=True).master_broker_id == 3
    # the state survives a controller restart
    again = ReplicasInfoManager(str(tmp_path / "replicaInfo.json"))
    again.load()
    assert again.sets["b"].to_json() == m.sets["b"].to_json()


def test_sync_state_set_changes_are_fenced(tmp_path: Path) -> None:
    m = _registered(tmp_path, 2)
    bs = m.elect_master("b", lambda n, i: (0, 0))
    with pytest.raises(ControllerError) as ei:
        m.alter_sync_state_set("b", 2, bs.master_epoch, {1, 2}, bs.sync_state_set_epoch)  # not the master
    assert ei.value.code == ResponseCode.CONTROLLER_FENCED_MASTER_EPOCH
    with pytest.raises(ControllerError) as ei:
        m.alter_sync_state_set("b", 1, bs.master_epoch, {1, 2}, bs.sync_state_set_epoch - 1)  # stale set epoch
    assert ei.value.code == ResponseCode.CONTROLLER_FENCED_SYNC_STATE_SET_EPOCH
    with pytest.raises(ControllerError) as ei:
        m.alter_sync_state_set("b", 1, bs.master_epoch, {2}, bs.sync_state_set_epoch)  # without the master
    assert ei.value.code == ResponseCode.CONTROLLER_INVALID_REPLICAS
    with pytest.raises(ControllerError):
        m.apply_broker_id("C", "b", 2, "10.0.0.9:10911")  # an id taken by another address
    with pytest.raises(ControllerError):
        m.register_broker("C", "b", 7, "10.0.0.7:10911")  # an id never applied


def test_consistent_point() -> None:
    # same history: the shorter log's end
    assert consistent_point([(1, 0), (2, 500)], 800, [(1, 0), (2, 500)], 900) == 800
    # a deposed master wrote on in epoch 2 after the new master (epoch 3) took over at 700
    assert consistent_point([(1, 0), (2, 500)], 1000, [(1, 0), (2, 500), (3, 700)], 1200) == 700
    # a replica that never saw epoch 2: agreement ends where epoch 1 ended on the master
    assert consistent_point([(1, 0)], 650, [(1, 0), (2, 500)], 900) == 500
    assert consistent_point([(4, 0)], 10, [(1, 0)], 10) == -1


def test_epoch_file(tmp_path: Path) -> None:
    c = EpochFileCache(str(tmp_path))
    c.begin(1, 0)
    c.begin(3, 700)
    c.begin(2, 500)  # an older epoch starting later cuts what came after it
    assert EpochFileCache(str(tmp_path)).entries == [(1, 0), (2, 500)]
    c.replace([(5, 9), (4, 1)])
    assert EpochFileCache(str(tmp_path)).entries == [(4, 1), (5, 9)] and c.last_epoch == 5
