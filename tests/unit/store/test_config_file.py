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


def test_fsync_dir_errors(tmp_path, monkeypatch) -> None:
    import errno
    import os

    import pytest

    from backends.store import config_file

    config_file.fsync_dir(str(tmp_path / "missing"))  # best effort: nothing raised
    with pytest.raises(FileNotFoundError):
        config_file.fsync_dir(str(tmp_path / "missing"), best_effort=False)

    def failing(code: int):  # type: ignore[no-untyped-def]
        def fsync(fd: int) -> None:
            raise OSError(code, os.strerror(code))
        return fsync

    monkeypatch.setattr(config_file.os, "fsync", failing(errno.EIO))
    with pytest.raises(OSError):
        config_file.fsync_dir(str(tmp_path), best_effort=False)
    config_file.fsync_dir(str(tmp_path))
    monkeypatch.setattr(config_file.os, "fsync", failing(errno.EINVAL))  # a file system without directory fsync
    config_file.fsync_dir(str(tmp_path), best_effort=False)
