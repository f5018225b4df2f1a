"""kvConfig.json: written with atomic_write_json (fsync, .bak); the files written before still load."""

from __future__ import annotations

import json
from pathlib import Path

from backends.namesrv.kvconfig_manager import KVConfigManager
from tests.unit.broker.write_spy import Call


def test_written_with_atomic_write_json_and_read_back(tmp_path: Path, atomic_writes: list[Call]) -> None:
    path = tmp_path / "namesrv" / "kvConfig.json"
    kv = KVConfigManager(str(path))
    kv.put("ORDER_TOPIC_CONFIG", "T1", "broker-a:4")
    kv.put("NS", "k", "v")
    assert [c[1] for c in atomic_writes] == [str(path), str(path)]
    assert json.loads(path.read_text()) == {"configTable": {"ORDER_TOPIC_CONFIG": {"T1": "broker-a:4"},
                                                            "NS": {"k": "v"}}}
    assert json.loads(Path(str(path) + ".bak").read_text()) == {
        "configTable": {"ORDER_TOPIC_CONFIG": {"T1": "broker-a:4"}}}
    again = KVConfigManager(str(path))
    again.load()
    assert again.config_table == kv.config_table


def test_reads_the_old_file_and_falls_back_to_the_backup(tmp_path: Path) -> None:
    path = tmp_path / "kvConfig.json"
    path.write_bytes(b'{"configTable":{"NS":{"k":"v"}}}')  # as written before
    kv = KVConfigManager(str(path))
    kv.load()
    assert kv.get("NS", "k") == "v"
    kv.put("NS", "k2", "v2")  # the old file becomes the .bak
    path.unlink()  # a crash between the two renames of atomic_write_json
    back = KVConfigManager(str(path))
    back.load()
    assert back.config_table == {"NS": {"k": "v"}}
    path.write_text("{broken")
    back = KVConfigManager(str(path))
    back.load()
    assert back.config_table == {"NS": {"k": "v"}}
