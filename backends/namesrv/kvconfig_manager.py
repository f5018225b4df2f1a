"""KVConfigManager: namespaced key/value settings kept by the NameServer (PUT/GET/DELETE_KV_CONFIG).

Persisted as RocketMQ does, to ``kvConfigPath`` as ``{"configTable": {namespace: {key: value}}}``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from backends.remoting import json_body

log = logging.getLogger("RocketmqNamesrv")


class KVConfigManager:
    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.config_table: dict[str, dict[str, str]] = {}

    def load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            data = json_body.loads(self.path.read_bytes())
            table = data.get("configTable") or {}
            self.config_table = {
                str(ns): {str(k): str(v) for k, v in (kv or {}).items()} for ns, kv in table.items()
            }
            log.info("load KV config table OK: %s", self.path)
        except (OSError, ValueError, AttributeError) as e:
            log.warning("load KV config table %s failed: %s", self.path, e)

    def persist(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_bytes(json_body.dumps({"configTable": self.config_table}))
            os.replace(tmp, self.path)
        except OSError as e:
            log.error("persist KV config table %s failed: %s", self.path, e)

    def put(self, namespace: str, key: str, value: str) -> None:
        self.config_table.setdefault(namespace, {})[key] = value
        log.info("putKVConfig: namespace=%s key=%s value=%s", namespace, key, value)
        self.persist()

    def get(self, namespace: str, key: str) -> str | None:
        return self.config_table.get(namespace, {}).get(key)

    def delete(self, namespace: str, key: str) -> None:
        table = self.config_table.get(namespace)
        if table is not None and table.pop(key, None) is not None:
            if not table:
                del self.config_table[namespace]
            self.persist()

    def get_kv_list_by_namespace(self, namespace: str) -> dict[str, str] | None:
        table = self.config_table.get(namespace)
        return dict(table) if table else None
