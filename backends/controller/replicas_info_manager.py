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
    def _set(self, cluster: str, name: str) -> BrokerSet:
        bs = self.sets.get(name)
        if bs is None:
            bs = self.sets[name] = BrokerSet(cluster, name)
        elif bs.cluster_name != cluster:
            raise ControllerError(ResponseCode.CONTROLLER_INVALID_REQUEST,
                                  f"broker set {name} belongs to cluster {bs.cluster_name}, not {cluster}")
        return bs

    def next_broker_id(self, cluster: str, name: str) -> int:
        bs = self.sets.get(name)
        return max(bs.addresses, default=0) + 1 if bs else 1

    def apply_broker_id(self, cluster: str, name: str, broker_id: int, address: str) -> None:
        bs = self._set(cluster, name)
        if broker_id <= 0:
            raise ControllerError(ResponseCode.CONTROLLER_BROKER_ID_INVALID, f"broker id {broker_id} is not above 0")
        if broker_id in bs.addresses and bs.addresses[broker_id] != address:
            raise ControllerError(ResponseCode.CONTROLLER_BROKER_ID_INVALID,
                                  f"broker id {broker_id} of {name} is taken by {bs.addresses[broker_id]}")
        bs.addresses[broker_id] = address
        self._save()

    def register_broker(self, cluster: str, name: str, broker_id: int, address: str) -> BrokerSet:
        """A broker (re)starts: its id must have been applied; its address may have changed."""
        bs = self.sets.get(name)
        if bs is None or broker_id not in bs.addresses:
            raise ControllerError(ResponseCode.CONTROLLER_BROKER_METADATA_NOT_EXIST,
                                  f"broker {name} id {broker_id} has no applied id: ask for one first")
        if bs.addresses[broker_id] != address:
            bs.addresses[broker_id] = address
            self._save()
        return bs

    def replica_info(self, name: str) -> BrokerSet:
        bs = self.sets.get(name)
        if bs is None:
            raise ControllerError(ResponseCode.CONTROLLER_BROKER_METADATA_NOT_EXIST, f"no broker set {name}")
        return bs

    # --- election ---------------------------------------------------------------------------------
    def elect_master(self, name: str, alive: Liveness, unclean: bool = False,
                     designated: int | None = None) -> BrokerSet:
        """Elect a master for ``name`` (the current one is kept when it is alive and not designated away);
        raises CONTROLLER_MASTER_NOT_AVAILABLE when no replica may become master."""
        bs = self.replica_info(name)
        if designated is not None:
            if alive(name, designated) is None or designated not in bs.addresses:
                raise ControllerError(ResponseCode.CONTROLLER_ELECT_MASTER_FAILED,
                                      f"broker {designated} of {name} is not alive")
            return self._new_master(bs, designated)
        if bs.master_broker_id >= 0 and alive(name, bs.master_broker_id) is not None:
            return bs
        pool = bs.sync_state_set if bs.sync_state_set else set(bs.addresses)
        candidates = [(alive(name, i), i) for i in pool]
        ranked = sorted(((st, i) for st, i in candidates if st is not None), key=lambda c: (-c[0][0], -c[0][1], c[1]))
        if not ranked and unclean:
            ranked = sorted(((st, i) for i in bs.addresses if (st := alive(name, i)) is not None),
                            key=lambda c: (-c[0][0], -c[0][1], c[1]))
        if not ranked:
            if bs.master_broker_id >= 0:
                log.warning("controller: master %d of %s is gone and no replica of the SyncStateSet %s is alive",
                            bs.master_broker_id, name, sorted(bs.sync_state_set))
                bs.master_broker_id = -1
                self._save()
            raise ControllerError(ResponseCode.CONTROLLER_MASTER_NOT_AVAILABLE,
                                  f"no replica of {name} can become master (SyncStateSet {sorted(bs.sync_state_set)})")
        return self._new_master(bs, ranked[0][1])

    def _new_master(self, bs: BrokerSet, broker_id: int) -> BrokerSet:
        bs.master_broker_id = broker_id
        bs.master_epoch += 1
        bs.sync_state_set = {broker_id}
        bs.sync_state_set_epoch += 1
        self._save()
        log.info("controller: elected broker %d (%s) master of %s, epoch %d", broker_id,
                 bs.addresses.get(broker_id), bs.broker_name, bs.master_epoch)
        return bs

    def alter_sync_state_set(self, name: str, master_id: int, master_epoch: int, new_set: set[int],
                             set_epoch: int) -> BrokerSet:
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
        if new_set != bs.sync_state_set:
            bs.sync_state_set = set(new_set)
            bs.sync_state_set_epoch += 1
            self._save()
            log.info("controller: SyncStateSet of %s is now %s (epoch %d)", name, sorted(new_set),
                     bs.sync_state_set_epoch)
        return bs
