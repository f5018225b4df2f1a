"""SubscriptionGroupManager: consumer groups, persisted in config/subscriptionGroup.json."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from backends.broker.config_manager import CoalescedPersistence, CoalescingPersister, DataVersion, read_json
from backends.model import SubscriptionGroupConfig

if TYPE_CHECKING:
    from backends.broker.broker_config import BrokerConfig

log = logging.getLogger("rocketmq.broker")

# Groups RocketMQ pre-creates (MixAll / SubscriptionGroupManager.init).
_SYSTEM_GROUPS = (
    "TOOLS_CONSUMER", "FILTERSRV_CONSUMER", "SELF_TEST_C_GROUP", "CID_ONS-HTTP-PROXY",
    "CID_ONSAPI_PULL", "CID_ONSAPI_PERMISSION", "CID_ONSAPI_OWNER", "CID_SYS_RMQ_TRANS",
)


def alter_attributes(current: dict[str, str], requested: dict[str, str]) -> dict[str, str]:
    """A group's attributes after an update (RocketMQ's AttributeUtil.alterCurrentAttributes): keys
    ``+k`` set k, ``-k`` remove it, plain keys set; an update that carries none keeps the current ones."""
    out = dict(current)
    for k, v in requested.items():
        if k.startswith("+"):
            out[k[1:]] = v
        elif k.startswith("-"):
            out.pop(k[1:], None)
        else:
            out[k] = v
    return out


class SubscriptionGroupManager(CoalescedPersistence):
    """Consumer groups by name; persist / request_persist / wait_persisted / flush from CoalescedPersistence."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.subscription_group_table: dict[str, SubscriptionGroupConfig] = {}
        self.data_version = DataVersion()
        self.path = os.path.join(config.store_path_root_dir, "config", "subscriptionGroup.json")
        for g in _SYSTEM_GROUPS:
            self.subscription_group_table[g] = SubscriptionGroupConfig(g)
        self._persister = CoalescingPersister(lambda: self.path, self.encode, name="subscriptionGroup.json")

    def load(self) -> None:
        data = read_json(self.path)
        if isinstance(data, dict):
            self.decode(data, self.path)

    def decode(self, data: dict[str, Any], source: str) -> None:
        """Take the groups of a subscriptionGroup.json document (the file, or a master's table on a slave)."""
        for name, sg in (data.get("subscriptionGroupTable") or {}).items():
            try:
                self.subscription_group_table[str(name)] = SubscriptionGroupConfig.from_json(sg)
            except (KeyError, TypeError, ValueError) as e:
                log.warning("bad subscription group %r in %s ignored: %s", name, source, e)
        self.data_version = DataVersion.from_json(data.get("dataVersion"))

    def encode(self) -> dict[str, Any]:
        return {
            "subscriptionGroupTable": {k: v.to_json() for k, v in self.subscription_group_table.items()},
            "forbiddenTable": {},
            "dataVersion": self.data_version.to_json(),
        }

    def find_subscription_group_config(self, group: str) -> SubscriptionGroupConfig | None:
        """The group's config; auto-created when autoCreateSubscriptionGroup (called in request handling: the
        file is written off the event loop, see :meth:`request_persist`)."""
        sg = self.subscription_group_table.get(group)
        if sg is None and self.config.auto_create_subscription_group and group:
            sg = SubscriptionGroupConfig(group)
            self.subscription_group_table[group] = sg
            log.info("auto create a subscription group, %s", sg.to_json())
            self.data_version.next_version()
            self.request_persist()
        return sg

    def get(self, group: str) -> SubscriptionGroupConfig | None:
        """The group's config without auto-creation."""
        return self.subscription_group_table.get(group)

    def update_subscription_group_config(self, cfg: SubscriptionGroupConfig) -> None:
        old = self.subscription_group_table.get(cfg.group_name)
        self.subscription_group_table[cfg.group_name] = cfg
        log.info("%s subscription group config %s", "update" if old else "create", cfg.to_json())
        self.data_version.next_version()
        self.persist()

    def delete_subscription_group_config(self, group: str) -> SubscriptionGroupConfig | None:
        old = self.subscription_group_table.pop(group, None)
        if old is not None:
            log.info("delete subscription group %s", group)
            self.data_version.next_version()
            self.persist()
        return old
