"""Crash-safe JSON config files (topics.json, consumerOffset.json, subscriptionGroup.json, ...).

``atomic_write_json`` writes a temporary file, fsyncs it, keeps the previous version as ``.bak``, renames
the new file into place and fsyncs the directory, so a crash leaves either the old or the new content.
``read_json`` falls back to ``path + ".bak"`` when the file is missing or corrupt.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Callable
from typing import Any

log = logging.getLogger("rocketmq.store")


def fsync_dir(directory: str, best_effort: bool = True) -> None:
    """Make the entries of ``directory`` (files created, renamed or removed in it) durable. Errors are
    ignored when ``best_effort``, else raised (OSError) -- except on a file system that cannot fsync a
    directory at all (EINVAL, ENOTSUP), where there is nothing more to do."""
    try:
        fd = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        if best_effort:
            return
        raise
    try:
        os.fsync(fd)
    except OSError as e:
        if not best_effort and e.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def atomic_write_json(path: str, obj: Any) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    data = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False).encode()
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    if os.path.exists(path):
        try:
            with open(path, "rb") as f:
                json.loads(f.read())  # only a valid file becomes the backup
            os.replace(path, path + ".bak")
        except (OSError, ValueError):
            pass
    os.replace(tmp, path)
    fsync_dir(directory)


def read_json(path: str, default: Any = None, loads: Callable[[bytes], Any] = json.loads) -> Any:
    """The content of ``path`` (else of its ``.bak``) as ``loads`` returns it; ``default`` when neither
    is readable. ``loads`` raises ValueError for content it does not accept."""
    for p in (path, path + ".bak"):
        try:
            with open(p, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            continue
        except OSError as e:
            log.error("config: cannot read %s: %s", p, e)
            continue
        if not raw.strip():
            log.error("config: %s is empty; trying the backup", p)
            continue
        try:
            return loads(raw)
        except ValueError as e:
            log.error("config: %s is corrupt (%s); trying the backup", p, e)
    return default
