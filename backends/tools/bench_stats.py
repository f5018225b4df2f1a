"""Figures shared by every mqbench sub-command."""

from __future__ import annotations


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..1) of an ascending list; 0.0 for an empty one."""
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]
