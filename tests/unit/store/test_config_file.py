from __future__ import annotations

import json
import os
from typing import Any

from backends.store.config_file import atomic_write_json, read_json


def test_atomic_write_and_backup_fallback(tmp_path: Any) -> None:
    p = str(tmp_path / "config" / "topics.json")
    assert read_json(p, {"default": 1}) == {"default": 1}
    atomic_write_json(p, {"v": 1})
    atomic_write_json(p, {"v": 2})
    assert read_json(p) == {"v": 2}
    assert json.load(open(p + ".bak")) == {"v": 1}
    assert not os.path.exists(p + ".tmp")
    with open(p, "w") as f:  # a torn write
        f.write('{"v": ')
    assert read_json(p) == {"v": 1}
    os.unlink(p)
    assert read_json(p) == {"v": 1}
    os.unlink(p + ".bak")
    assert read_json(p, []) == []
