"""A spy on backends.store.config_file.atomic_write_json for the tests of the JSON state files."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from backends.store import config_file

Call = tuple[threading.Thread, str, Any]


def spy_atomic_writes(monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    """Every later atomic_write_json call is recorded as (thread, path, obj), then done."""
    out: list[Call] = []
    real = config_file.atomic_write_json

    def spy(path: str, obj: Any) -> None:
        out.append((threading.current_thread(), path, obj))
        real(path, obj)

    monkeypatch.setattr(config_file, "atomic_write_json", spy)
    return out
