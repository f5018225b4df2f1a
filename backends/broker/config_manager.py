"""Persistence helpers for the broker's JSON config files (RocketMQ's ConfigManager + DataVersion)."""

from __future__ import annotations

import logging
from typing import Any

from backends.model import DataVersion
from backends.remoting import json_body
from backends.store import config_file as store_config_file

log = logging.getLogger("rocketmq.broker")

__all__ = ["DataVersion", "persist_json", "read_json"]


def persist_json(path: str, obj: Any) -> bool:
    """Crash-safe write (temp file, fsync, .bak of the previous version, rename, directory fsync); an I/O
    error is logged (the in-memory table stays authoritative) and returns False."""
    try:
        store_config_file.atomic_write_json(path, obj)
    except OSError as e:
        log.error("persist %s failed: %s", path, e)
        return False
    return True


def read_json(path: str) -> Any | None:
    """The parsed file, else its .bak, else None. Lenient: accepts fastjson's bare integer keys, as in a
    consumerOffset.json written by a Java broker."""
    for p in (path, path + ".bak"):
        try:
            with open(p, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        if not data.strip():
            continue
        try:
            return json_body.loads(data)
        except ValueError:
            log.warning("config file %s is corrupt, trying its backup", p)
    return None
