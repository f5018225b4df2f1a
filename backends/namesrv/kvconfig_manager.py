"""KVConfigManager: namespaced key/value settings kept by the NameServer (PUT/GET/DELETE_KV_CONFIG).

Persisted as RocketMQ does, to ``kvConfigPath`` as ``{"configTable": {namespace: {key: value}}}``, with
``atomic_write_json`` (temp file, fsync, ``.bak`` of the previous version, rename, directory fsync); a
missing or corrupt file is read from its ``.bak``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from backends.remoting import json_body
from backends.store import config_file

log = logging.getLogger("RocketmqNamesrv")


class KVConfigManager:
    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.config_table: dict[str, dict[str, str]] = {}

    def load(self) -> None:
        if self.path is None:
            return
        table = config_file.read_json(str(self.path), loads=_parse_config_table)  # else its .bak
        if table is not None:
            self.config_table = table
            log.info("load KV config table OK: %s", self.path)

    def persist(self) -> None:
        if self.path is None:
            return
        try:
            config_file.atomic_write_json(str(self.path), {"configTable": self.config_table})
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


def _parse_config_table(raw: bytes) -> dict[str, dict[str, str]]:
    """``{"configTable": {namespace: {key: value}}}`` (lenient JSON, as RocketMQ writes it)."""
    try:
        table = json_body.loads(raw).get("configTable") or {}
        return {str(ns): {str(k): str(v) for k, v in (kv or {}).items()} for ns, kv in table.items()}
    except AttributeError as e:
        raise ValueError(f"not a KV config table: {e}") from None
