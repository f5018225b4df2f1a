"""Figures shared by every mqbench sub-command."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..1) of an ascending list; 0.0 for an empty one."""
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]


@contextlib.contextmanager
def store_dir(given: str | None, prefix: str) -> Iterator[str]:
    """The store directory of a run: ``--dir`` as given (kept), else a new temporary one (removed)."""
    directory = given or tempfile.mkdtemp(prefix=prefix)
    try:
        yield directory
    finally:
        if given is None:
            shutil.rmtree(directory, ignore_errors=True)
