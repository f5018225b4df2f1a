"""The controller (RocketMQ's ControllerManager): broker ids, heartbeats, master election and SyncStateSets
for brokers in controller mode (``enableControllerMode=true``), over the remoting protocol.

It runs inside ``mqnamesrv`` (``enableControllerInNamesrv=true``: the brokers' ``controllerAddr`` is the
NameServer's address) or alone as ``mqcontroller`` (port 9878). With one peer in ``controllerDLegerPeers``
the controller decides alone and saves its state to ``controllerStorePath`` after every change; with
several, they form a Raft quorum (backends/controller/raft.py): the leader answers, the others answer
CONTROLLER_NOT_LEADER and brokers try the next address of their ``controllerAddr``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from backends.controller.raft import RaftQuorum
from backends.controller.replicas_info_manager import (
    BrokerSet,
    ControllerError,
    Event,
    ReplicasInfoManager,
    no_master,
)
from backends.remoting import json_body
from backends.remoting.client import RemotingClient
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from backends.remoting.errors import RemotingError
from backends.remoting.header import Header, RemotingCommandException
from backends.remoting.server import RemotingServer
from backends.tasks import cancel_and_wait

log = logging.getLogger("rocketmq.controller")

BOOT_LINE = "The ControllerManager boot success. serializeType=JSON"
MASTER_GRACE_MS = 10_000  # a new leader waits this long for heartbeats before replacing a silent master


@dataclass(slots=True)
class ControllerConfig:
    """RocketMQ's ControllerConfig keys (camelCase as in controller.conf / namesrv.conf)."""

    listenPort: int = 9878  # noqa: N815 (mqcontroller only; inside mqnamesrv the NameServer's port)
    controllerStorePath: str = ""  # noqa: N815  default ~/DledgerController
    controllerDLegerGroup: str = "group1"  # noqa: N815
    controllerDLegerPeers: str = ""  # noqa: N815  one peer: n0-127.0.0.1:9878
    controllerDLegerSelfId: str = "n0"  # noqa: N815
    scanNotActiveBrokerInterval: int = 5000  # noqa: N815  ms
    enableElectUncleanMaster: bool = False  # noqa: N815
    notifyBrokerRoleChanged: bool = True  # noqa: N815

    def __post_init__(self) -> None:
        if not self.controllerStorePath:
            self.controllerStorePath = str(Path(os.path.expanduser("~")) / "DledgerController")

    def set(self, key: str, value: str) -> bool:
        for f in fields(self):
            if f.name == key:
                current = getattr(self, key)
                conv: Any = value.strip()
                if isinstance(current, bool):
                    conv = conv.lower() == "true"
                elif isinstance(current, int):
                    conv = int(conv)
                setattr(self, key, conv)
                return True
        return False

    @property
    def quorum(self) -> bool:
        return len([p for p in self.controllerDLegerPeers.split(";") if p.strip()]) > 1


@dataclass
class BrokerLiveInfo:
    """The last heartbeat of one replica (RocketMQ's BrokerLiveInfo)."""

    address: str
    last_update_ms: int
    timeout_ms: int
    epoch: int = 0
    max_offset: int = 0


class ControllerManager:
    def __init__(self, config: ControllerConfig, server: RemotingServer | None = None) -> None:
        """With ``server`` (mqnamesrv's) the processors join it; else the controller listens on listenPort."""
        self.config = config
        self.own_server = server is None
        self.server = server or RemotingServer("0.0.0.0", config.listenPort)
        # alone: the state is saved as a snapshot; in a quorum, the Raft log (replayed at start) holds it
        self.replicas = ReplicasInfoManager(
            None if config.quorum else os.path.join(config.controllerStorePath, "replicaInfo.json"))
        self.raft: RaftQuorum | None = None
        self.live: dict[tuple[str, int], BrokerLiveInfo] = {}  # (broker name, id)
        self.client = RemotingClient()
        self._scan: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._started_at = 0.0

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        c = self.config
        os.makedirs(c.controllerStorePath, exist_ok=True)
        self.replicas.load()
        if c.quorum:
            self.raft = RaftQuorum(c.controllerDLegerPeers, c.controllerDLegerSelfId, self.replicas,
                                   c.controllerStorePath)
            self.raft.start()
        self._started_at = asyncio.get_running_loop().time()
        reg = self.server.register_processor
        reg(RequestCode.CONTROLLER_GET_NEXT_BROKER_ID, self._guard(self._next_broker_id))
        reg(RequestCode.CONTROLLER_APPLY_BROKER_ID, self._guard(self._apply_broker_id))
        reg(RequestCode.CONTROLLER_REGISTER_BROKER, self._guard(self._register_broker))
        reg(RequestCode.BROKER_HEARTBEAT, self._guard(self._heartbeat))
        reg(RequestCode.CONTROLLER_ELECT_MASTER, self._guard(self._elect_master))
        reg(RequestCode.CONTROLLER_GET_REPLICA_INFO, self._guard(self._get_replica_info))
        reg(RequestCode.CONTROLLER_ALTER_SYNC_STATE_SET, self._guard(self._alter_sync_state_set))
        reg(RequestCode.CONTROLLER_GET_SYNC_STATE_DATA, self._guard(self._get_sync_state_data))
        reg(RequestCode.CONTROLLER_GET_METADATA_INFO, self._guard(self._get_metadata))
        if self.own_server:
            await self.server.start()
        self._scan = asyncio.create_task(self._scan_loop(), name="controller-scan")
        log.info("controller: %d broker sets loaded from %s", len(self.replicas.sets), self.replicas.path)

    async def shutdown(self) -> None:
        await cancel_and_wait(self._scan, *self._sending)
        if self.raft is not None:
            await self.raft.shutdown()
        await self.client.close()
        if self.own_server:
            await self.server.shutdown()

    # --- liveness and election ---------------------------------------------------------------------
    def _alive(self, name: str, broker_id: int) -> tuple[int, int] | None:
        info = self.live.get((name, broker_id))
        if info is None or _now_ms() - info.last_update_ms > info.timeout_ms:
            return None
        return info.epoch, info.max_offset

    async def _scan_loop(self) -> None:
        while True:
            await asyncio.sleep(max(100, self.config.scanNotActiveBrokerInterval) / 1000)
            try:
                await self.scan_not_active_broker()
            except Exception:
                log.exception("controller: scanNotActiveBroker failed")

    @property
    def is_leader(self) -> bool:
        return self.raft is None or self.raft.is_leader

    def _leader_for(self) -> float:
        """Seconds this controller has been deciding (alone: since start)."""
        since = self.raft.leader_since if self.raft is not None else self._started_at
        return asyncio.get_running_loop().time() - since

    async def _commit(self, event: Event | None) -> None:
        if event is None:
            return
        if self.raft is None:
            self.replicas.apply(event)
        else:
            await self.raft.commit(event)

    async def scan_not_active_broker(self) -> None:
        if not self.is_leader:
            self.live.clear()  # a follower's view is stale by the time it leads
            return
        for key, info in list(self.live.items()):
            if _now_ms() - info.last_update_ms > info.timeout_ms:
                del self.live[key]
                log.warning("controller: broker %s id %d (%s) is not active", key[0], key[1], info.address)
        # a master without a heartbeat (gone while no controller was leading, or expired just now) is
        # replaced once this controller has led for longer than a heartbeat timeout
        if self._leader_for() * 1000 > MASTER_GRACE_MS:
            for name, bs in list(self.replicas.sets.items()):
                if bs.master_broker_id >= 0 and (name, bs.master_broker_id) not in self.live:
                    await self._elect_and_notify(name)

    async def _elect_and_notify(self, name: str) -> BrokerSet | None:
        try:
            event = self.replicas.elect_event(name, self._alive, self.config.enableElectUncleanMaster)
            await self._commit(event)
        except ControllerError as e:
            log.warning("controller: %s", e.message)
            return None
        bs = self.replicas.sets[name]
        if event is not None and bs.master_broker_id >= 0:
            self._notify(bs)
        return bs

    def _notify(self, bs: BrokerSet) -> None:
        """NOTIFY_BROKER_ROLE_CHANGED to every alive replica (they also poll GET_REPLICA_INFO)."""
        if not self.config.notifyBrokerRoleChanged:
            return
        for broker_id, addr in bs.addresses.items():
            if self._alive(bs.broker_name, broker_id) is None:
                continue
            req = RemotingCommand.request(RequestCode.NOTIFY_BROKER_ROLE_CHANGED, _replica_header(bs),
                                          _sync_state_body(bs))
            task = asyncio.get_running_loop().create_task(self._send_quietly(addr, req))
            self._sending.add(task)  # (the loop keeps only weak references to tasks)
            task.add_done_callback(self._sending.discard)

    async def _send_quietly(self, addr: str, req: RemotingCommand) -> None:
        try:
            await self.client.invoke(addr, req, 3.0)
        except RemotingError as e:
            log.info("controller: notifying %s of the role change failed: %s", addr, e)

    # --- processors --------------------------------------------------------------------------------
    def _guard(self, fn: Any) -> Any:
        async def handle(request: RemotingCommand, conn: Any) -> RemotingCommand | None:
            try:
                if not self.is_leader and request.code != RequestCode.CONTROLLER_GET_METADATA_INFO:
                    raise ControllerError(ResponseCode.CONTROLLER_NOT_LEADER,
                                          f"this controller is not the leader (leader: {self.raft and self.raft.leader})")
                return await fn(request, Header(request))
            except ControllerError as e:
                return request.response(e.code, e.message)
            except RemotingCommandException as e:
                return e.response(request)
            except Exception as e:  # noqa: BLE001
                log.exception("controller: request code %s failed", request.code)
                return request.response(ResponseCode.SYSTEM_ERROR, f"{type(e).__name__}: {e}")

        return handle

    async def _next_broker_id(self, request: RemotingCommand, h: Header) -> RemotingCommand:
        nxt = self.replicas.next_broker_id(h.s("clusterName"), h.s("brokerName"))
        return request.response(ext_fields={"clusterName": h.s("clusterName"), "brokerName": h.s("brokerName"),
                                            "nextBrokerId": str(nxt)})

    async def _apply_broker_id(self, request: RemotingCommand, h: Header) -> RemotingCommand:
        await self._commit(self.replicas.apply_broker_id_event(
            h.s("clusterName"), h.s("brokerName"), h.i("appliedBrokerId"), h.s("registerCheckCode").split(";")[0]))
        return request.response(ext_fields={"clusterName": h.s("clusterName"), "brokerName": h.s("brokerName")})

    async def _register_broker(self, request: RemotingCommand, h: Header) -> RemotingCommand:
        name = h.s("brokerName")
        await self._commit(self.replicas.register_event(h.s("clusterName"), name, h.i("brokerId"),
                                                        h.s("brokerAddress")))
        bs = self.replicas.sets[name]
        return request.response(ext_fields=_replica_header(bs), body=_sync_state_body(bs))

    async def _heartbeat(self, request: RemotingCommand, h: Header) -> RemotingCommand:
        name, broker_id = h.s("brokerName"), h.i("brokerId", -1)
        known = self.replicas.sets.get(name)
        if known is None or broker_id not in known.addresses:
            return request.response(ResponseCode.CONTROLLER_BROKER_METADATA_NOT_EXIST,
                                    f"broker {name} id {broker_id} is not registered with this controller")
        key = (name, broker_id)
        if key not in self.live:
            log.info("controller: broker %s id %d (%s) is active", name, broker_id, h.s("brokerAddr"))
        self.live[key] = BrokerLiveInfo(h.s("brokerAddr"), _now_ms(), h.i("heartbeatTimeoutMills", 10_000),
                                        h.i("epoch", 0), h.i("maxOffset", 0))
        return request.response()

    async def _elect_master(self, request: RemotingCommand, h: Header) -> RemotingCommand:
        name = h.s("brokerName")
        designated = h.i("brokerId") if h.b("designateElect") else None
        event = self.replicas.elect_event(name, self._alive, self.config.enableElectUncleanMaster, designated)
        await self._commit(event)
        bs = self.replicas.sets[name]
        if bs.master_broker_id < 0:
            raise no_master(bs)
        if event is not None:
            self._notify(bs)
        return request.response(ext_fields=_replica_header(bs), body=_sync_state_body(bs))

    async def _get_replica_info(self, request: RemotingCommand, h: Header) -> RemotingCommand:
        bs = self.replicas.replica_info(h.s("brokerName"))
        return request.response(ext_fields=_replica_header(bs), body=_sync_state_body(bs))

    async def _alter_sync_state_set(self, request: RemotingCommand, h: Header) -> RemotingCommand:
        try:
            body = json_body.loads(request.body or b"{}")
            new_set = {int(i) for i in body.get("syncStateSet") or []}
            set_epoch = int(body.get("syncStateSetEpoch", 0))
        except (ValueError, TypeError, AttributeError) as e:
            raise ControllerError(ResponseCode.CONTROLLER_INVALID_REQUEST, f"bad SyncStateSet body: {e}") from None
        name = h.s("brokerName")
        await self._commit(self.replicas.alter_event(name, h.i("masterBrokerId"), h.i("masterEpoch"), new_set,
                                                     set_epoch))
        bs = self.replicas.sets[name]
        return request.response(ext_fields={"newSyncStateSetEpoch": str(bs.sync_state_set_epoch)},
                                body=_sync_state_body(bs))

    async def _get_sync_state_data(self, request: RemotingCommand, h: Header) -> RemotingCommand:
        try:
            names = json_body.loads(request.body) if request.body else list(self.replicas.sets)
        except ValueError:
            names = list(self.replicas.sets)
        table = {}
        for name in names if isinstance(names, list) else []:
            bs = self.replicas.sets.get(str(name))
            if bs is None:
                continue
            table[bs.broker_name] = {
                **bs.to_json(),
                "masterAddress": bs.master_address,
                "alive": {str(i): self._alive(bs.broker_name, i) is not None for i in bs.addresses},
            }
        return request.response(body=json_body.dumps(table))

    async def _get_metadata(self, request: RemotingCommand, h: Header) -> RemotingCommand:
        c = self.config
        leader = self.raft.leader if self.raft is not None else f"127.0.0.1:{self.port}"
        return request.response(ext_fields={"group": c.controllerDLegerGroup,
                                            "controllerLeaderId": _peer_id(c.controllerDLegerPeers, leader)
                                            or c.controllerDLegerSelfId,
                                            "controllerLeaderAddress": leader,
                                            "isLeader": str(self.is_leader).lower(), "peers": c.controllerDLegerPeers})


def _peer_id(peers: str, addr: str) -> str:
    for item in peers.split(";"):
        node, _, a = item.strip().partition("-")
        if a == addr:
            return node
    return ""


def _replica_header(bs: BrokerSet) -> dict[str, str]:
    return {"masterBrokerId": str(bs.master_broker_id), "masterAddress": bs.master_address,
            "masterEpoch": str(bs.master_epoch), "syncStateSetEpoch": str(bs.sync_state_set_epoch)}


def _sync_state_body(bs: BrokerSet) -> bytes:
    return json_body.dumps({"syncStateSet": sorted(bs.sync_state_set), "syncStateSetEpoch": bs.sync_state_set_epoch})


def _now_ms() -> int:
    return int(time.monotonic() * 1000)
