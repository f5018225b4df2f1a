"""RouteInfoManager: which brokers serve which topics, and which brokers are alive.

Pure state (no I/O): the request processor feeds it registrations, the scan task calls
:meth:`RouteInfoManager.scan_not_active_broker`, and the connection-close listener calls
:meth:`RouteInfoManager.on_channel_destroy`. Names follow RocketMQ's RouteInfoManager.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backends.api import BrokerData, QueueData, TopicRouteData
from backends.model import DataVersion, Perm, TopicConfig

log = logging.getLogger("RocketmqNamesrv")

MASTER_ID = 0
DEFAULT_BROKER_CHANNEL_EXPIRED_TIME_MS = 120_000


@dataclass(frozen=True, slots=True)
class BrokerAddrInfo:
    cluster_name: str
    broker_addr: str


@dataclass(slots=True)
class BrokerLiveInfo:
    last_update_timestamp: int
    heartbeat_timeout_millis: int
    data_version: DataVersion
    channel: Any  # the Connection the broker registered on (None when unknown)
    ha_server_addr: str
    broker_name: str = ""
    broker_id: int = 0


@dataclass(slots=True)
class RegisterBrokerResult:
    ha_server_addr: str | None = None
    master_addr: str | None = None


@dataclass(slots=True)
class _BrokerEntry:
    cluster: str
    broker_name: str
    broker_addrs: dict[int, str] = field(default_factory=dict)

    def to_broker_data(self) -> BrokerData:
        return BrokerData(self.cluster, self.broker_name, dict(self.broker_addrs))


class RouteInfoManager:
    def __init__(
        self,
        default_heartbeat_timeout_ms: int = DEFAULT_BROKER_CHANNEL_EXPIRED_TIME_MS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.default_heartbeat_timeout_ms = default_heartbeat_timeout_ms
        self._clock = clock
        self.topic_queue_table: dict[str, dict[str, QueueData]] = {}
        self.broker_addr_table: dict[str, _BrokerEntry] = {}
        self.cluster_addr_table: dict[str, set[str]] = {}
        self.broker_live_table: dict[BrokerAddrInfo, BrokerLiveInfo] = {}

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- registration ------------------------------------------------------------------------------

    def register_broker(
        self,
        cluster_name: str,
        broker_addr: str,
        broker_name: str,
        broker_id: int,
        ha_server_addr: str,
        topic_configs: dict[str, TopicConfig] | None,
        data_version: DataVersion,
        channel: Any = None,
        heartbeat_timeout_ms: int | None = None,
    ) -> RegisterBrokerResult:
        self.cluster_addr_table.setdefault(cluster_name, set()).add(broker_name)
        entry = self.broker_addr_table.get(broker_name)
        register_first = entry is None
        if entry is None:
            entry = _BrokerEntry(cluster_name, broker_name)
            self.broker_addr_table[broker_name] = entry
        entry.cluster = cluster_name
        # The same address under another id (a slave promoted to master, or the reverse): drop it.
        for bid, addr in list(entry.broker_addrs.items()):
            if addr == broker_addr and bid != broker_id:
                del entry.broker_addrs[bid]
        old_addr = entry.broker_addrs.get(broker_id)
        register_first = register_first or old_addr is None
        if old_addr is not None and old_addr != broker_addr:
            self.broker_live_table.pop(BrokerAddrInfo(cluster_name, old_addr), None)
        entry.broker_addrs[broker_id] = broker_addr

        addr_info = BrokerAddrInfo(cluster_name, broker_addr)
        previous = self.broker_live_table.get(addr_info)
        if topic_configs is not None and broker_id == MASTER_ID:
            changed = previous is None or (
                previous.data_version.timestamp != data_version.timestamp
                or previous.data_version.counter != data_version.counter
            )
            if changed or register_first:
                for tc in topic_configs.values():
                    self._create_and_update_queue_data(broker_name, tc)

        timeout = heartbeat_timeout_ms if heartbeat_timeout_ms and heartbeat_timeout_ms > 0 else (
            self.default_heartbeat_timeout_ms
        )
        self.broker_live_table[addr_info] = BrokerLiveInfo(
            self._now_ms(), timeout, data_version, channel, ha_server_addr, broker_name, broker_id
        )
        if previous is None:
            log.info("new broker registered, %s HAService: %s", broker_addr, ha_server_addr)

        result = RegisterBrokerResult()
        if broker_id != MASTER_ID:
            master_addr = entry.broker_addrs.get(MASTER_ID)
            if master_addr:
                master_live = self.broker_live_table.get(BrokerAddrInfo(cluster_name, master_addr))
                if master_live is not None:
                    result.ha_server_addr = master_live.ha_server_addr
                    result.master_addr = master_addr
        return result

    def _create_and_update_queue_data(self, broker_name: str, tc: TopicConfig) -> None:
        qd = QueueData(broker_name, tc.read_queue_nums, tc.write_queue_nums, tc.perm, tc.topic_sys_flag)
        table = self.topic_queue_table.setdefault(tc.topic_name, {})
        old = table.get(broker_name)
        if old is None:
            log.info("new topic registered, %s %s", tc.topic_name, qd)
        table[broker_name] = qd

    def unregister_broker(self, cluster_name: str, broker_addr: str, broker_name: str, broker_id: int) -> None:
        live = self.broker_live_table.pop(BrokerAddrInfo(cluster_name, broker_addr), None)
        log.info("unregisterBroker, remove from brokerLiveTable %s, %s", "OK" if live else "Failed", broker_addr)
        entry = self.broker_addr_table.get(broker_name)
        remove_broker_name = False
        if entry is not None:
            if entry.broker_addrs.get(broker_id) == broker_addr:
                del entry.broker_addrs[broker_id]
            else:
                for bid, addr in list(entry.broker_addrs.items()):
                    if addr == broker_addr:
                        del entry.broker_addrs[bid]
            if not entry.broker_addrs:
                del self.broker_addr_table[broker_name]
                remove_broker_name = True
        if remove_broker_name:
            names = self.cluster_addr_table.get(cluster_name)
            if names is not None:
                names.discard(broker_name)
                if not names:
                    del self.cluster_addr_table[cluster_name]
            self._remove_topic_by_broker_name(broker_name)

    def _remove_topic_by_broker_name(self, broker_name: str) -> None:
        for topic in list(self.topic_queue_table):
            table = self.topic_queue_table[topic]
            if table.pop(broker_name, None) is not None:
                log.info("removeTopicByBrokerName, remove one broker's topic %s %s", broker_name, topic)
            if not table:
                del self.topic_queue_table[topic]

    def update_broker_info_update_timestamp(self, cluster_name: str, broker_addr: str) -> bool:
        live = self.broker_live_table.get(BrokerAddrInfo(cluster_name, broker_addr))
        if live is None:
            return False
        live.last_update_timestamp = self._now_ms()
        return True

    def is_broker_topic_config_changed(self, cluster_name: str, broker_addr: str, dv: DataVersion) -> bool:
        live = self.broker_live_table.get(BrokerAddrInfo(cluster_name, broker_addr))
        if live is None:
            return True
        return live.data_version.timestamp != dv.timestamp or live.data_version.counter != dv.counter

    def query_broker_topic_config(self, cluster_name: str, broker_addr: str) -> DataVersion | None:
        live = self.broker_live_table.get(BrokerAddrInfo(cluster_name, broker_addr))
        return live.data_version if live else None

    # -- liveness ----------------------------------------------------------------------------------

    def scan_not_active_broker(self) -> list[BrokerAddrInfo]:
        """Unregister brokers whose last registration is older than their heartbeat timeout."""
        now = self._now_ms()
        expired: list[BrokerAddrInfo] = []
        for info, live in list(self.broker_live_table.items()):
            if live.last_update_timestamp + live.heartbeat_timeout_millis < now:
                log.warning(
                    "The broker channel expired, %s %dms", info.broker_addr, live.heartbeat_timeout_millis
                )
                expired.append(info)
                self._destroy(info, live)
                if live.channel is not None and hasattr(live.channel, "close"):
                    live.channel.close()
        return expired

    def on_channel_destroy(self, channel: Any) -> None:
        """The connection a broker registered on closed: forget the broker."""
        for info, live in list(self.broker_live_table.items()):
            if live.channel is channel:
                log.info("the broker's channel destroyed, %s, clean it's data structure at once", info.broker_addr)
                self._destroy(info, live)

    def _destroy(self, info: BrokerAddrInfo, live: BrokerLiveInfo) -> None:
        broker_name = live.broker_name
        broker_id = live.broker_id
        if not broker_name:
            for name, entry in self.broker_addr_table.items():
                for bid, addr in entry.broker_addrs.items():
                    if addr == info.broker_addr:
                        broker_name, broker_id = name, bid
        self.unregister_broker(info.cluster_name, info.broker_addr, broker_name, broker_id)

    # -- queries -----------------------------------------------------------------------------------

    def pickup_topic_route_data(self, topic: str) -> TopicRouteData | None:
        table = self.topic_queue_table.get(topic)
        if not table:
            return None
        route = TopicRouteData()
        for broker_name, qd in table.items():
            route.queue_datas.append(
                QueueData(qd.broker_name, qd.read_queue_nums, qd.write_queue_nums, qd.perm, qd.topic_sys_flag)
            )
            entry = self.broker_addr_table.get(broker_name)
            if entry is not None:
                route.broker_datas.append(entry.to_broker_data())
        if not route.broker_datas:
            return None
        return route

    def get_all_cluster_info(self) -> dict[str, Any]:
        return {
            "brokerAddrTable": {
                name: entry.to_broker_data().to_json() for name, entry in self.broker_addr_table.items()
            },
            "clusterAddrTable": {c: sorted(names) for c, names in self.cluster_addr_table.items()},
        }

    def get_all_topic_list(self) -> list[str]:
        return sorted(self.topic_queue_table)

    def get_topics_by_cluster(self, cluster: str) -> list[str]:
        names = self.cluster_addr_table.get(cluster, set())
        return sorted(t for t, table in self.topic_queue_table.items() if any(b in names for b in table))

    def delete_topic(self, topic: str, cluster_name: str | None = None) -> None:
        if not cluster_name:
            self.topic_queue_table.pop(topic, None)
            return
        table = self.topic_queue_table.get(topic)
        if table is None:
            return
        for broker_name in self.cluster_addr_table.get(cluster_name, set()):
            table.pop(broker_name, None)
        if not table:
            del self.topic_queue_table[topic]

    def register_topic(self, topic: str, queue_datas: list[QueueData]) -> bool:
        """REGISTER_TOPIC_IN_NAMESRV: queue data for brokers the NameServer knows (all or nothing)."""
        if not queue_datas or any(q.broker_name not in self.broker_addr_table for q in queue_datas):
            return False
        table = self.topic_queue_table.setdefault(topic, {})
        for q in queue_datas:
            table[q.broker_name] = q
        return True

    def get_system_topic_list(self) -> tuple[list[str], str | None]:
        """Cluster and broker names (the topics brokers register for them), and one broker address."""
        topics: list[str] = []
        for cluster, names in self.cluster_addr_table.items():
            topics.append(cluster)
            topics.extend(sorted(names))
        addr = None
        for entry in self.broker_addr_table.values():
            if entry.broker_addrs:
                addr = next(iter(entry.broker_addrs.values()))
                break
        return topics, addr

    def get_broker_member_group(self, cluster: str, broker_name: str) -> dict[str, Any]:
        entry = self.broker_addr_table.get(broker_name)
        addrs = {str(k): v for k, v in entry.broker_addrs.items()} if entry else {}
        return {"cluster": cluster, "brokerName": broker_name, "brokerAddrs": addrs}

    def wipe_write_perm_of_broker(self, broker_name: str) -> int:
        count = 0
        for table in self.topic_queue_table.values():
            qd = table.get(broker_name)
            if qd is not None:
                qd.perm &= ~Perm.WRITE
                count += 1
        return count

    def add_write_perm_of_broker(self, broker_name: str) -> int:
        count = 0
        for table in self.topic_queue_table.values():
            qd = table.get(broker_name)
            if qd is not None:
                qd.perm = Perm.READ | Perm.WRITE
                count += 1
        return count
