"""The controller's state (RocketMQ's ReplicasInfoManager): per broker set (one brokerName), the ids and
addresses of its replicas, its master and master epoch, and its SyncStateSet (the replicas that hold
everything the master acknowledged) with its epoch. Pure: no I/O but the snapshot file it is saved to
after every change.

Election (RocketMQ's DefaultElectPolicy): the new master is an alive replica of the SyncStateSet -- the
one with the highest epoch, then the highest max offset it last reported, then the lowest id; with
``enableElectUncleanMaster`` any alive replica when none of the set is alive. Each election bumps the
master epoch; the new SyncStateSet holds the new master alone (slaves rejoin once they catch up).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backends.remoting.codes import ResponseCode
from backends.store.config_file import atomic_write_json, read_json

log = logging.getLogger("rocketmq.controller")


class ControllerError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class BrokerSet:
    cluster_name: str
    broker_name: str
    addresses: dict[int, str] = field(default_factory=dict)  # broker id -> remoting address
    master_broker_id: int = -1  # -1: no master
    master_epoch: int = 0
    sync_state_set: set[int] = field(default_factory=set)
    sync_state_set_epoch: int = 0

    @property
    def master_address(self) -> str:
        return self.addresses.get(self.master_broker_id, "") if self.master_broker_id >= 0 else ""

    def to_json(self) -> dict[str, Any]:
        return {"clusterName": self.cluster_name, "brokerName": self.broker_name,
                "brokerIdTable": {str(k): v for k, v in self.addresses.items()},
                "masterBrokerId": self.master_broker_id, "masterEpoch": self.master_epoch,
                "syncStateSet": sorted(self.sync_state_set), "syncStateSetEpoch": self.sync_state_set_epoch}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BrokerSet:
        return cls(str(d["clusterName"]), str(d["brokerName"]),
                   {int(k): str(v) for k, v in (d.get("brokerIdTable") or {}).items()},
                   int(d.get("masterBrokerId", -1)), int(d.get("masterEpoch", 0)),
                   {int(i) for i in d.get("syncStateSet") or []}, int(d.get("syncStateSetEpoch", 0)))


# a replica's standing in an election: (epoch, max offset) it last reported; None when not alive
Liveness = Callable[[str, int], "tuple[int, int] | None"]
Event = dict[str, Any]


class ReplicasInfoManager:
    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.sets: dict[str, BrokerSet] = {}

    # --- persistence ------------------------------------------------------------------------------
    def load(self) -> None:
        if not self.path:
            return
        data = read_json(self.path)
        if not isinstance(data, dict):
            return
        for name, d in (data.get("replicaInfoTable") or {}).items():
            try:
                self.sets[str(name)] = BrokerSet.from_json(d)
            except (KeyError, TypeError, ValueError) as e:
                log.warning("controller: bad replica info %r in %s ignored: %s", name, self.path, e)

    def _save(self) -> None:
        if self.path:
            atomic_write_json(self.path, {"replicaInfoTable": {k: v.to_json() for k, v in self.sets.items()}})

    # --- broker ids -------------------------------------------------------------------------------
    def next_broker_id(self, cluster: str, name: str) -> int:
        bs = self.sets.get(name)
        return max(bs.addresses, default=0) + 1 if bs else 1

    # Each change is decided (``*_event``: checks only, nothing changes) and then applied as an event
    # with absolute values (``apply``): the same events, applied in the same order, give every controller
    # of a Raft quorum the same state, and applying one twice changes nothing.
    def apply_broker_id_event(self, cluster: str, name: str, broker_id: int, address: str) -> Event:
        bs = self.sets.get(name)
        if bs is not None and bs.cluster_name != cluster:
            raise ControllerError(ResponseCode.CONTROLLER_INVALID_REQUEST,
                                  f"broker set {name} belongs to cluster {bs.cluster_name}, not {cluster}")
        if broker_id <= 0:
            raise ControllerError(ResponseCode.CONTROLLER_BROKER_ID_INVALID, f"broker id {broker_id} is not above 0")
        if bs is not None and broker_id in bs.addresses and bs.addresses[broker_id] != address:
            raise ControllerError(ResponseCode.CONTROLLER_BROKER_ID_INVALID,
                                  f"broker id {broker_id} of {name} is taken by {bs.addresses[broker_id]}")
        return {"op": "address", "cluster": cluster, "name": name, "id": broker_id, "address": address}

    def register_event(self, cluster: str, name: str, broker_id: int, address: str) -> Event | None:
        """A broker (re)starts: its id must have been applied; its address may have changed."""
        bs = self.sets.get(name)
        if bs is None or broker_id not in bs.addresses:
            raise ControllerError(ResponseCode.CONTROLLER_BROKER_METADATA_NOT_EXIST,
                                  f"broker {name} id {broker_id} has no applied id: ask for one first")
        if bs.addresses[broker_id] == address:
            return None
        return {"op": "address", "cluster": bs.cluster_name, "name": name, "id": broker_id, "address": address}

    def replica_info(self, name: str) -> BrokerSet:
        bs = self.sets.get(name)
        if bs is None:
            raise ControllerError(ResponseCode.CONTROLLER_BROKER_METADATA_NOT_EXIST, f"no broker set {name}")
        return bs

    def elect_event(self, name: str, alive: Liveness, unclean: bool = False,
                    designated: int | None = None) -> Event | None:
        """The election for ``name``: None when nothing changes (its master is alive, or none may become
        master and there is none); else the new master (id -1: the master is gone and none may follow)."""
        bs = self.replica_info(name)
        if designated is not None:
            if alive(name, designated) is None or designated not in bs.addresses:
                raise ControllerError(ResponseCode.CONTROLLER_ELECT_MASTER_FAILED,
                                      f"broker {designated} of {name} is not alive")
            return self._master_event(bs, designated)
        if bs.master_broker_id >= 0 and alive(name, bs.master_broker_id) is not None:
            return None
        pool = bs.sync_state_set if bs.sync_state_set else set(bs.addresses)
        ranked = sorted(((st, i) for i in pool if (st := alive(name, i)) is not None),
                        key=lambda c: (-c[0][0], -c[0][1], c[1]))
        if not ranked and unclean:
            ranked = sorted(((st, i) for i in bs.addresses if (st := alive(name, i)) is not None),
                            key=lambda c: (-c[0][0], -c[0][1], c[1]))
        if not ranked:  # none may become master
            if bs.master_broker_id < 0:
                return None
            log.warning("controller: master %d of %s is gone and no replica of the SyncStateSet %s is alive",
                        bs.master_broker_id, name, sorted(bs.sync_state_set))
            return {"op": "master", "name": name, "id": -1, "epoch": bs.master_epoch,
                    "syncStateSet": sorted(bs.sync_state_set), "syncStateSetEpoch": bs.sync_state_set_epoch}
        return self._master_event(bs, ranked[0][1])

    @staticmethod
    def _master_event(bs: BrokerSet, broker_id: int) -> Event:
        return {"op": "master", "name": bs.broker_name, "id": broker_id, "epoch": bs.master_epoch + 1,
                "syncStateSet": [broker_id], "syncStateSetEpoch": bs.sync_state_set_epoch + 1}

    def alter_event(self, name: str, master_id: int, master_epoch: int, new_set: set[int],
                    set_epoch: int) -> Event | None:
        """The master reports which replicas are in sync; fenced by the master and set epochs."""
        bs = self.replica_info(name)
        if master_id != bs.master_broker_id or master_epoch != bs.master_epoch:
            raise ControllerError(ResponseCode.CONTROLLER_FENCED_MASTER_EPOCH,
                                  f"broker {master_id} epoch {master_epoch} is not the master of {name} "
                                  f"(master {bs.master_broker_id}, epoch {bs.master_epoch})")
        if set_epoch != bs.sync_state_set_epoch:
            raise ControllerError(ResponseCode.CONTROLLER_FENCED_SYNC_STATE_SET_EPOCH,
                                  f"SyncStateSet epoch {set_epoch} is stale (now {bs.sync_state_set_epoch})")
        if master_id not in new_set or not new_set <= set(bs.addresses):
            raise ControllerError(ResponseCode.CONTROLLER_INVALID_REPLICAS,
                                  f"SyncStateSet {sorted(new_set)} must hold the master and known replicas only")
        if new_set == bs.sync_state_set:
            return None
        return {"op": "syncStateSet", "name": name, "syncStateSet": sorted(new_set),
                "syncStateSetEpoch": bs.sync_state_set_epoch + 1}

    def apply(self, event: Event) -> None:
        op, name = event["op"], event["name"]
        if op == "address":
            bs = self.sets.get(name)
            if bs is None:
                bs = self.sets[name] = BrokerSet(event["cluster"], name)
            bs.addresses[int(event["id"])] = event["address"]
        elif op == "master":
            bs = self.sets[name]
            changed = bs.master_broker_id != event["id"] or bs.master_epoch != event["epoch"]
            bs.master_broker_id, bs.master_epoch = int(event["id"]), int(event["epoch"])
            bs.sync_state_set, bs.sync_state_set_epoch = set(event["syncStateSet"]), int(event["syncStateSetEpoch"])
            if changed and bs.master_broker_id >= 0:
                log.info("controller: elected broker %d (%s) master of %s, epoch %d", bs.master_broker_id,
                         bs.master_address, name, bs.master_epoch)
        elif op == "syncStateSet":
            bs = self.sets[name]
            bs.sync_state_set, bs.sync_state_set_epoch = set(event["syncStateSet"]), int(event["syncStateSetEpoch"])
            log.info("controller: SyncStateSet of %s is now %s (epoch %d)", name, sorted(bs.sync_state_set),
                     bs.sync_state_set_epoch)
        else:
            raise ValueError(f"unknown controller event {op!r}")
        self._save()

    # --- one controller: decide and apply at once (what a Raft quorum does through its log) -----------
    def _run(self, event: Event | None) -> None:
        if event is not None:
            self.apply(event)

    def apply_broker_id(self, cluster: str, name: str, broker_id: int, address: str) -> None:
        self._run(self.apply_broker_id_event(cluster, name, broker_id, address))

    def register_broker(self, cluster: str, name: str, broker_id: int, address: str) -> BrokerSet:
        self._run(self.register_event(cluster, name, broker_id, address))
        return self.sets[name]

    def elect_master(self, name: str, alive: Liveness, unclean: bool = False,
                     designated: int | None = None) -> BrokerSet:
        self._run(self.elect_event(name, alive, unclean, designated))
        bs = self.sets[name]
        if bs.master_broker_id < 0:
            raise no_master(bs)
        return bs

    def alter_sync_state_set(self, name: str, master_id: int, master_epoch: int, new_set: set[int],
                             set_epoch: int) -> BrokerSet:
        self._run(self.alter_event(name, master_id, master_epoch, new_set, set_epoch))
        return self.sets[name]


def no_master(bs: BrokerSet) -> ControllerError:
    return ControllerError(ResponseCode.CONTROLLER_MASTER_NOT_AVAILABLE,
                           f"no replica of {bs.broker_name} can become master (SyncStateSet {sorted(bs.sync_state_set)})")
