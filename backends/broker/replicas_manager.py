"""A broker in controller mode (RocketMQ 5's ReplicasManager, ``enableControllerMode=true``).

At start the broker gets its id from the controller (GET_NEXT_BROKER_ID, APPLY_BROKER_ID; kept in
``config/brokerIdentity.json``), registers, heartbeats every ``brokerHeartbeatInterval`` and asks for an
election when its set has no master. The controller's answer decides the role: the master takes writes
(HA server on, timer and transaction services running, registered as brokerId 0); a slave cuts its log
back to where it agrees with the master's epochs and replicates from it. Role changes come pushed
(NOTIFY_BROKER_ROLE_CHANGED) and polled (GET_REPLICA_INFO every ``syncBrokerMetadataPeriod``). A master
reports the replicas that keep up as its SyncStateSet (ALTER_SYNC_STATE_SET); with
``allAckInSyncStateSet`` each write waits for all of them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from backends.remoting import json_body
from backends.remoting.client import RemotingClient
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from backends.remoting.errors import RemotingError
from backends.store.config_file import atomic_write_json, read_json
from backends.store.epoch_cache import EpochFileCache, consistent_point, epoch_spans
from backends.tasks import cancel_and_wait, wait_set_or

if TYPE_CHECKING:
    from backends.broker.controller import BrokerController

log = logging.getLogger("rocketmq.broker")


class ReplicasManager:
    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker
        c = broker.config
        self.controllers = [a.strip() for a in c.controller_addr.replace(",", ";").split(";") if a.strip()]
        self.client = RemotingClient()
        self.epochs = EpochFileCache(c.store_path_root_dir)
        self.broker_id = -1  # assigned by the controller
        self.master_epoch = 0
        self.master_broker_id = -1
        self.master_address = ""
        self.sync_state_set: set[int] = set()
        self.sync_state_set_epoch = 0
        self.role = ""  # "MASTER" | "SLAVE" once the controller said
        self._tasks: list[asyncio.Task[None]] = []
        self._change = asyncio.Lock()
        self._poke = asyncio.Event()  # a role change was announced: poll the controller at once
        self._identity_path = os.path.join(c.store_path_root_dir, "config", "brokerIdentity.json")

    # --- controller calls --------------------------------------------------------------------------
    async def _call(self, code: int, ext: dict[str, str], body: bytes = b"",
                    ok: tuple[int, ...] = (ResponseCode.SUCCESS,)) -> RemotingCommand:
        last: object = None
        for addr in self.controllers:  # the leader first: it moves to the front when found
            try:
                resp = await self.client.invoke(addr, RemotingCommand.request(code, ext, body), 3.0)
            except RemotingError as e:
                last = e
                continue
            if resp.code == ResponseCode.CONTROLLER_NOT_LEADER:  # a follower of a controller quorum
                last = resp.remark
                continue
            if addr != self.controllers[0]:
                self.controllers.remove(addr)
                self.controllers.insert(0, addr)
            if resp.code not in ok:
                raise RemotingError(f"controller {addr} answered {resp.code}: {resp.remark}")
            return resp
        raise RemotingError(f"no controller of {self.controllers} answered as leader: {last}")

    def _names(self) -> dict[str, str]:
        c = self.broker.config
        return {"clusterName": c.broker_cluster_name, "brokerName": c.broker_name}

    async def _obtain_broker_id(self) -> None:
        data = read_json(self._identity_path)
        if isinstance(data, dict) and int(data.get("brokerId", -1)) > 0:
            self.broker_id = int(data["brokerId"])
            return
        # (a refused id -- another broker applied it meanwhile -- raises: _run asks again a second later)
        resp = await self._call(RequestCode.CONTROLLER_GET_NEXT_BROKER_ID, self._names())
        nxt = int((resp.ext_fields or {}).get("nextBrokerId", -1))
        check = f"{self.broker.broker_addr};{int(time.time() * 1000)}"
        await self._call(RequestCode.CONTROLLER_APPLY_BROKER_ID,
                         {**self._names(), "appliedBrokerId": str(nxt), "registerCheckCode": check})
        self.broker_id = nxt
        os.makedirs(os.path.dirname(self._identity_path), exist_ok=True)
        atomic_write_json(self._identity_path, {**self._names(), "brokerId": nxt})
        log.info("controller mode: this broker is id %d of %s", nxt, self.broker.config.broker_name)

    async def _heartbeat_once(self) -> None:
        c = self.broker.config
        await self._call(RequestCode.BROKER_HEARTBEAT, {
            **self._names(), "brokerAddr": self.broker.broker_addr, "brokerId": str(self.broker_id),
            "epoch": str(self.epochs.last_epoch), "maxOffset": str(self.broker.message_store.get_max_phy_offset()),
            "heartbeatTimeoutMills": str(c.controller_heart_beat_timeout_mills)})

    # --- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        server = self.broker.remoting_server
        if server is not None:
            server.register_processor(RequestCode.NOTIFY_BROKER_ROLE_CHANGED, self._on_notify)
            server.register_processor(RequestCode.GET_BROKER_EPOCH_CACHE, self._epoch_cache)
        self._tasks.append(asyncio.create_task(self._run(), name="replicas-manager"))

    async def shutdown(self) -> None:
        await cancel_and_wait(*self._tasks)
        await self.client.close()

    async def _run(self) -> None:
        c = self.broker.config
        while self.broker_id < 0 or not self.role:  # until the controller has placed this broker
            try:
                if self.broker_id < 0:
                    await self._obtain_broker_id()
                resp = await self._call(RequestCode.CONTROLLER_REGISTER_BROKER, {
                    **self._names(), "brokerId": str(self.broker_id), "brokerAddress": self.broker.broker_addr})
                await self._heartbeat_once()
                if int((resp.ext_fields or {}).get("masterBrokerId", -1)) < 0:
                    resp = await self._call(RequestCode.CONTROLLER_ELECT_MASTER, {
                        **self._names(), "brokerId": str(self.broker_id), "designateElect": "false",
                        "invokeTime": str(int(time.time() * 1000))},
                        ok=(ResponseCode.SUCCESS, ResponseCode.CONTROLLER_MASTER_NOT_AVAILABLE))
                await self._apply(resp)
            except RemotingError as e:
                log.warning("controller mode: %s; retrying", e)
            except Exception:
                log.exception("controller mode: taking the role the controller decided failed; retrying")
            if not self.role:
                await asyncio.sleep(1.0)
        self._tasks.append(asyncio.create_task(self._heartbeat_loop(c.broker_heartbeat_interval / 1000)))
        self._tasks.append(asyncio.create_task(self._metadata_loop(c.sync_broker_metadata_period / 1000)))

    async def _heartbeat_loop(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self._heartbeat_once()
            except RemotingError as e:
                log.warning("controller mode: heartbeat failed: %s", e)
            if self.role == "MASTER":
                await self._check_sync_state_set()

    async def _metadata_loop(self, every: float) -> None:
        while True:
            await wait_set_or(self._poke, every)
            try:
                resp = await self._call(RequestCode.CONTROLLER_GET_REPLICA_INFO, self._names())
                await self._apply(resp)
            except (RemotingError, ValueError) as e:
                log.info("controller mode: replica info not taken: %s", e)
            except Exception:
                log.exception("controller mode: applying the replica info failed")

    async def _on_notify(self, request: RemotingCommand, conn: Any) -> RemotingCommand:
        """NOTIFY_BROKER_ROLE_CHANGED: ask the controller now (the notification itself is only a hint,
        so a forged or garbled one cannot set a role or an epoch)."""
        self._poke.set()
        return request.response()

    # --- roles -------------------------------------------------------------------------------------
    async def _apply(self, cmd: RemotingCommand) -> None:
        """Take the controller's view (a reply or a notification): master id, address, epoch, SyncStateSet."""
        ext = cmd.ext_fields or {}
        try:
            master_id = int(ext.get("masterBrokerId", -1))
            epoch = int(ext.get("masterEpoch", 0))
            body = json_body.loads(cmd.body) if cmd.body else {}
            members = {int(i) for i in body.get("syncStateSet") or []}
            set_epoch = int(body.get("syncStateSetEpoch", 0))
        except (ValueError, TypeError, AttributeError) as e:
            raise ValueError(f"bad replica info from the controller: {e}") from None
        async with self._change:
            if epoch < self.master_epoch:
                return  # a stale answer
            if set_epoch >= self.sync_state_set_epoch:  # (an answer older than our own ALTER is not taken)
                self.sync_state_set, self.sync_state_set_epoch = members, set_epoch
            if master_id < 0:
                return  # no master now: keep serving reads as we are
            address = str(ext.get("masterAddress", ""))
            if (master_id, epoch) != (self.master_broker_id, self.master_epoch) or not self.role:
                if master_id == self.broker_id:
                    await self._change_to_master(epoch)
                elif address:
                    await self._change_to_slave(address, epoch)
                else:
                    return
                # (only once the change is made: a failed one is tried again at the next poll)
                self.master_broker_id, self.master_epoch, self.master_address = master_id, epoch, address
            if master_id == self.broker_id:
                self._require_sync_state_set()

    def _require_sync_state_set(self) -> None:
        ha = self.broker.ha_service
        if ha is not None and self.broker.config.all_ack_in_sync_state_set:
            ha.set_required(self.sync_state_set - {self.broker_id})

    async def _change_to_master(self, epoch: int) -> None:
        b = self.broker
        store = b.message_store
        if b.ha_client is not None:
            await b.ha_client.shutdown()
            b.ha_client = None
        store.drop_replica_tail()
        self.epochs.begin(epoch, store.get_max_phy_offset())
        b.config.broker_role = "SYNC_MASTER" if b.config.all_ack_in_sync_state_set else "ASYNC_MASTER"
        b.config.broker_id = 0
        if b.ha_service is None:
            await b.start_ha_service()
        b.set_services_running(True)
        b.slave_synchronize.stop_following()
        self.role = "MASTER"
        log.info("controller mode: %s is now the MASTER of %s, epoch %d, from offset %d", b.broker_addr,
                 b.config.broker_name, epoch, store.get_max_phy_offset())
        await b.broker_outer_api.register_broker_all()

    async def _change_to_slave(self, master_addr: str, epoch: int) -> None:
        b = self.broker
        if b.ha_service is not None:
            await b.ha_service.shutdown()
            b.ha_service = None
        b.config.broker_role = "SLAVE"
        b.config.broker_id = self.broker_id
        b.set_services_running(False)
        ha_addr = await self._truncate_to_master(master_addr)
        b.start_ha_client(self.broker_id).update_master(ha_addr)
        b.slave_synchronize.set_master_addr(master_addr)
        b.slave_synchronize.start()
        self.role = "SLAVE"
        log.info("controller mode: %s is now a SLAVE of %s (%s), epoch %d", b.broker_addr, b.config.broker_name,
                 master_addr, epoch)
        await b.broker_outer_api.register_broker_all()

    async def _truncate_to_master(self, master_addr: str) -> str:
        """Cut this log back to where it agrees with the master's epochs; returns the master's HA address."""
        resp = await self.client.invoke(master_addr, RemotingCommand.request(RequestCode.GET_BROKER_EPOCH_CACHE), 5.0)
        if resp.code != ResponseCode.SUCCESS:
            raise RemotingError(f"master {master_addr} answered {resp.code} for its epochs: {resp.remark}")
        data = json_body.loads(resp.body)
        theirs = [(int(e["epoch"]), int(e["startOffset"])) for e in data.get("epochList") or []]
        store = self.broker.message_store
        mine, my_max = self.epochs.entries, store.get_max_phy_offset()
        point = consistent_point(mine, my_max, theirs, int(data.get("maxOffset", 0)))
        if point < 0 and mine:
            point = min([my_max] + [s for _, s in theirs[:1]])
            log.error("controller mode: no epoch in common with master %s (mine %s, its %s); cutting at %d",
                      master_addr, mine, theirs, point)
        if 0 <= point < my_max:
            store.truncate_replica(point)
            await self.broker.reload_services()
        self.epochs.replace(theirs)
        return str((resp.ext_fields or {}).get("haServerAddr") or "")

    async def _epoch_cache(self, request: RemotingCommand, conn: Any) -> RemotingCommand:
        b = self.broker
        mx = b.message_store.get_max_phy_offset()
        lst = [{"epoch": e, "startOffset": s, "endOffset": end} for e, s, end in epoch_spans(self.epochs.entries, mx)]
        return request.response(ext_fields={"haServerAddr": b.config.ha_server_addr},
                                body=json_body.dumps({**self._names(), "brokerId": self.broker_id,
                                                      "epochList": lst, "maxOffset": mx}))

    async def _check_sync_state_set(self) -> None:
        """A master: the replicas that caught up within haMaxTimeSlaveNotCatchup, reported when changed."""
        b = self.broker
        ha = b.ha_service
        if ha is None:
            return
        in_sync = ha.caught_up_ids(b.config.ha_max_time_slave_not_catchup / 1000) | {self.broker_id}
        if in_sync == self.sync_state_set:
            return
        body = json_body.dumps({"syncStateSet": sorted(in_sync), "syncStateSetEpoch": self.sync_state_set_epoch})
        try:
            resp = await self._call(RequestCode.CONTROLLER_ALTER_SYNC_STATE_SET, {
                "brokerName": b.config.broker_name, "masterBrokerId": str(self.broker_id),
                "masterEpoch": str(self.master_epoch)}, body)
        except RemotingError as e:
            log.warning("controller mode: SyncStateSet %s not altered: %s", sorted(in_sync), e)
            return
        async with self._change:
            self.sync_state_set = in_sync
            self.sync_state_set_epoch = int((resp.ext_fields or {}).get("newSyncStateSetEpoch",
                                                                         self.sync_state_set_epoch + 1))
            self._require_sync_state_set()
        log.info("controller mode: SyncStateSet of %s is now %s", b.config.broker_name, sorted(in_sync))
