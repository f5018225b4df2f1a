"""Registration with the NameServers (RocketMQ's BrokerOuterAPI.registerBrokerAll / unregisterBrokerAll).

The broker registers with every NameServer at start, every ``registerNameServerPeriod`` and at once
(debounced) when its topics change; it unregisters on a clean shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import TYPE_CHECKING

from backends.remoting import json_body
from backends.remoting.client import RemotingClient, RemotingError
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from backends.tasks import cancel_and_wait

if TYPE_CHECKING:
    from backends.broker.controller import BrokerController

log = logging.getLogger("rocketmq.broker")


def crc32_positive(data: bytes) -> int:
    """RocketMQ's UtilAll.crc32 (the CRC masked to a non-negative int)."""
    return zlib.crc32(data) & 0x7FFFFFFF


class BrokerOuterAPI:
    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker
        self.client = RemotingClient()
        self._task: asyncio.Task[None] | None = None
        self._soon: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.registered: set[str] = set()
        self._dirty = False

    @property
    def namesrv_addrs(self) -> list[str]:
        return self.broker.config.namesrv_addr_list

    def register_body(self) -> bytes:
        tcm = self.broker.topic_config_manager
        return json_body.dumps({
            "topicConfigSerializeWrapper": {
                "topicConfigTable": {k: self._masked(v.to_json()) for k, v in tcm.topic_config_table.items()},
                "dataVersion": tcm.data_version.to_json(),
            },
            "filterServerList": [],
        })

    def _masked(self, tc: dict[str, object]) -> dict[str, object]:
        """A broker that is not writable/readable registers its topics without those permissions."""
        bp = self.broker.config.broker_permission
        if (bp & 0x6) != 0x6:
            tc["perm"] = int(tc["perm"]) & (bp | 0x9)  # type: ignore[call-overload]
        return tc

    def register_header(self, body: bytes) -> dict[str, str]:
        c = self.broker.config
        return {
            "brokerName": c.broker_name,
            "brokerAddr": self.broker.broker_addr,
            "clusterName": c.broker_cluster_name,
            "haServerAddr": c.ha_server_addr,
            "brokerId": str(c.broker_id),
            "heartbeatTimeoutMillis": str(c.broker_not_active_timeout_millis),
            "enableActingMaster": "false",
            "compressed": "false",
            "bodyCrc32": str(crc32_positive(body)),
        }

    async def register_broker_all(self) -> None:
        addrs = self.namesrv_addrs
        rm = self.broker.replicas_manager
        if not addrs or (rm is not None and not rm.role):  # controller mode: once the role is known
            return
        async with self._lock:
            body = self.register_body()
            header = self.register_header(body)
            await asyncio.gather(*(self._register_one(a, header, body) for a in addrs))

    async def _register_one(self, addr: str, header: dict[str, str], body: bytes) -> None:
        req = RemotingCommand.request(RequestCode.REGISTER_BROKER, dict(header), body)
        try:
            resp = await self.client.invoke(addr, req, 3.0)
        except RemotingError as e:
            if addr in self.registered:
                log.warning("register broker to name server %s failed: %s", addr, e)
            else:
                log.info("register broker to name server %s failed: %s", addr, e)
            self.registered.discard(addr)
            return
        if resp.code != ResponseCode.SUCCESS:
            log.warning("register broker to name server %s: code %s %s", addr, resp.code, resp.remark)
            self.registered.discard(addr)
            return
        if addr not in self.registered:
            log.info("register broker[%s] to name server %s OK", self.broker.config.broker_id, addr)
        self.registered.add(addr)
        ext = resp.ext_fields or {}
        self.broker.on_register_result(str(ext.get("haServerAddr") or ""), str(ext.get("masterAddr") or ""))

    async def unregister_broker_all(self) -> None:
        c = self.broker.config
        header = {
            "brokerName": c.broker_name,
            "brokerAddr": self.broker.broker_addr,
            "clusterName": c.broker_cluster_name,
            "brokerId": str(c.broker_id),
        }

        async def one(addr: str) -> None:
            try:
                await self.client.invoke(addr, RemotingCommand.request(RequestCode.UNREGISTER_BROKER,
                                                                        dict(header)), 3.0)
                log.info("unregister broker from name server %s OK", addr)
            except RemotingError as e:
                log.warning("unregister broker from name server %s failed: %s", addr, e)

        await asyncio.gather(*(one(a) for a in self.namesrv_addrs))

    async def start(self) -> None:
        if not self.namesrv_addrs:
            return
        await self.register_broker_all()
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        period = max(1.0, min(60.0, self.broker.config.register_name_server_period / 1000.0))
        while True:
            await asyncio.sleep(period)
            try:
                await self.register_broker_all()
            except Exception as e:  # noqa: BLE001
                log.warning("register broker failed: %s", e)

    def register_soon(self) -> None:
        """Re-register at once (topics changed); coalesces bursts of changes."""
        self._dirty = True
        if not self.namesrv_addrs or (self._soon is not None and not self._soon.done()):
            return
        try:
            self._soon = asyncio.get_running_loop().create_task(self._register_after_tick())
        except RuntimeError:
            pass

    async def _register_after_tick(self) -> None:
        while self._dirty:
            self._dirty = False
            await asyncio.sleep(0)
            try:
                await self.register_broker_all()
            except Exception as e:  # noqa: BLE001
                log.warning("register broker failed: %s", e)

    async def shutdown(self) -> None:
        await cancel_and_wait(self._task, self._soon)
        if self.namesrv_addrs:
            await self.unregister_broker_all()
        await self.client.close()
