"""RocketMQ's MQVersion.Version: the int a remoting client sends as its version is the ordinal of one of
these names (V3_1_8 = 63, V4_9_4 = 401, V5_3_1 = 475); admin tools print the name."""

from __future__ import annotations

import functools


@functools.cache
def _names() -> tuple[str, ...]:
    # the enum's order: 3.0.0's pre-releases, then a SNAPSHOT and a release per version (3.3-3.9 start
    # at .1), and HIGHER_VERSION last
    names = ["V3_0_0_SNAPSHOT", "V3_0_0_ALPHA1"] + [f"V3_0_0_BETA{i}" for i in range(1, 6)]
    for i in range(6, 10):
        names += [f"V3_0_0_BETA{i}_SNAPSHOT", f"V3_0_0_BETA{i}"]
    names.append("V3_0_0_FINAL")
    triples = [(3, 0, z) for z in range(1, 16)] + [(3, y, z) for y in (1, 2) for z in range(10)]
    triples += [(3, y, z) for y in range(3, 10) for z in range(1, 10)]
    triples += [(x, y, z) for x in (4, 5) for y in range(10) for z in range(10)]
    for x, y, z in triples:
        names += [f"V{x}_{y}_{z}_SNAPSHOT", f"V{x}_{y}_{z}"]
    names.append("HIGHER_VERSION")
    return tuple(names)


def version_desc(ordinal: int) -> str:
    """MQVersion.getVersionDesc: the name of a version ordinal (past the end: HIGHER_VERSION)."""
    names = _names()
    return names[min(max(ordinal, 0), len(names) - 1)]


def version_ordinal(release: str) -> int:
    """The ordinal of a release written ``5.1.2`` (an SDK's x-mq-client-version); 0 when unknown."""
    name = "V" + release.strip().lstrip("vV").replace(".", "_").upper()
    try:
        return _names().index(name)
    except ValueError:
        return 0
