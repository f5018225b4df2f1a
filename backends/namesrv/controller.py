"""NamesrvController: the NameServer assembled (remoting server, processors, broker expiry scan).

Usable in-process (the embedded default mode) as well as from ``mqnamesrv``.
"""

from __future__ import annotations

import asyncio
import logging

from backends.controller.manager import BOOT_LINE as CONTROLLER_BOOT_LINE
from backends.controller.manager import ControllerConfig, ControllerManager
from backends.namesrv.config import NamesrvConfig
from backends.namesrv.kvconfig_manager import KVConfigManager
from backends.namesrv.processor import DefaultRequestProcessor
from backends.namesrv.route_info_manager import RouteInfoManager
from backends.remoting.server import RemotingServer

log = logging.getLogger("RocketmqNamesrv")


class NamesrvController:
    def __init__(self, config: NamesrvConfig | None = None, controller_config: ControllerConfig | None = None) -> None:
        self.config = config or NamesrvConfig()
        self.route_info_manager = RouteInfoManager(self.config.brokerChannelExpiredTime)
        self.kv_config_manager = KVConfigManager(self.config.kvConfigPath)
        self.remoting_server = RemotingServer(self.config.bindAddress, self.config.listenPort)
        self.processor = DefaultRequestProcessor(self.config, self.route_info_manager, self.kv_config_manager)
        self._scan_task: asyncio.Task[None] | None = None
        # enableControllerInNamesrv: the controller answers on the NameServer's port
        self.controller_manager = ControllerManager(controller_config or ControllerConfig(), self.remoting_server) \
            if self.config.enableControllerInNamesrv else None

    async def start(self) -> None:
        self.kv_config_manager.load()
        self.processor.register(self.remoting_server)
        await self.remoting_server.start()
        if self.controller_manager is not None:
            await self.controller_manager.start()
            log.info(CONTROLLER_BOOT_LINE)
        self._scan_task = asyncio.get_running_loop().create_task(self._scan_loop())

    async def _scan_loop(self) -> None:
        while True:
            await asyncio.sleep(max(self.config.scanNotActiveBrokerInterval, 10) / 1000)
            self.route_info_manager.default_heartbeat_timeout_ms = self.config.brokerChannelExpiredTime
            try:
                self.route_info_manager.scan_not_active_broker()
            except Exception:
                log.exception("scanNotActiveBroker failed")

    async def shutdown(self) -> None:
        if self.controller_manager is not None:
            await self.controller_manager.shutdown()
        if self._scan_task is not None:
            self._scan_task.cancel()
            try:
                await self._scan_task
            except asyncio.CancelledError:
                pass
            self._scan_task = None
        await self.remoting_server.shutdown()

    @property
    def port(self) -> int:
        return self.remoting_server.port
