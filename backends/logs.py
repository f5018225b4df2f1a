"""Process logging: RocketMQ's layout, one file per process under ``~/logs/rocketmqlogs/``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s - %(message)s"


def setup_logging(file_name: str) -> Path:
    """Send the root logger (INFO) to ``~/logs/rocketmqlogs/<file_name>``; returns the path."""
    log_dir = Path(os.path.expanduser("~")) / "logs" / "rocketmqlogs"
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / file_name
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return path
