"""A slave's copy of its master's tables (RocketMQ's SlaveSynchronize): topic configs, subscription groups
and consumer offsets, fetched from the master's remoting port at start and every 10 s, so that a consumer
that reads from the slave while the master is away finds its topics, its group and its progress."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from backends.model import DataVersion
from backends.remoting import json_body
from backends.remoting.codes import RequestCode, ResponseCode
from backends.remoting.command import RemotingCommand
from backends.remoting.errors import RemotingError
from backends.tasks import cancel_and_wait, wait_set_or

if TYPE_CHECKING:
    from backends.broker.controller import BrokerController

log = logging.getLogger("rocketmq.broker")

SYNC_INTERVAL = 10.0


class SlaveSynchronize:
    def __init__(self, broker: BrokerController) -> None:
        self.broker = broker
        self.master_addr = ""
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()

    def set_master_addr(self, addr: str) -> None:
        if addr and addr != self.master_addr:
            log.info("slave: master of %s is %s", self.broker.config.broker_name, addr)
            self.master_addr = addr
            self._kick.set()

    def stop_following(self) -> None:
        """This broker became a master: its tables are its own now."""
        self.master_addr = ""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="slave-synchronize")

    async def _loop(self) -> None:
        while True:
            await wait_set_or(self._kick, SYNC_INTERVAL)
            try:
                await self.sync_all()
            except Exception:
                log.exception("slave: synchronizing with the master failed")

    async def sync_all(self) -> None:
        addr = self.master_addr
        if not addr:
            return
        b = self.broker
        await self._sync(addr, RequestCode.GET_ALL_TOPIC_CONFIG, b.topic_config_manager, "topicConfigTable")
        await self._sync(addr, RequestCode.GET_ALL_SUBSCRIPTIONGROUP_CONFIG, b.subscription_group_manager,
                         "subscriptionGroupTable")
        await self._sync(addr, RequestCode.GET_ALL_CONSUMER_OFFSET, b.consumer_offset_manager, "offsetTable")

    async def _sync(self, addr: str, code: int, manager: Any, table: str) -> None:
        try:
            resp = await self.broker.broker_outer_api.client.invoke(addr, RemotingCommand.request(code), 3.0)
        except RemotingError as e:
            log.info("slave: fetching %s from master %s failed: %s", table, addr, e)
            return
        if resp.code != ResponseCode.SUCCESS or not resp.body:
            log.warning("slave: master %s answered %s for %s: %s", addr, resp.code, table, resp.remark)
            return
        try:
            data = json_body.loads(resp.body)
        except ValueError as e:
            log.warning("slave: %s from master %s is not JSON: %s", table, addr, e)
            return
        if not isinstance(data, dict) or not isinstance(data.get(table), dict):
            return
        if table != "offsetTable" and DataVersion.from_json(data.get("dataVersion")) == manager.data_version:
            return  # unchanged since the last copy
        current: dict[str, Any] = getattr(manager, _ATTRS[table])
        current.clear()
        manager.decode(data, f"master {addr}")
        manager.request_persist()
        log.info("slave: %d entries of %s copied from master %s", len(current), table, addr)

    async def shutdown(self) -> None:
        await cancel_and_wait(self._task)


_ATTRS = {"topicConfigTable": "topic_config_table", "subscriptionGroupTable": "subscription_group_table",
          "offsetTable": "offset_table"}
