"""The epochs of a broker's commitlog in controller mode (RocketMQ's EpochFileCache): each master epoch
and the commitlog offset it started writing at. Two replicas agree up to the end of the last epoch both
hold with the same start; a replica that rejoins as a slave cuts its log there (what a deposed master
wrote after that was never the cluster's)."""

from __future__ import annotations

import os

from backends.store.config_file import atomic_write_json, read_json

EpochEntry = tuple[int, int]  # (epoch, start offset)


def epoch_spans(entries: list[EpochEntry], end: int) -> list[tuple[int, int, int]]:
    """(epoch, start, end) of each epoch of a log ending at ``end``: an epoch ends where the next starts."""
    return [(e, s, entries[i + 1][1] if i + 1 < len(entries) else end) for i, (e, s) in enumerate(entries)]


def consistent_point(mine: list[EpochEntry], my_max: int, theirs: list[EpochEntry], their_max: int) -> int:
    """The offset up to which two logs with these epochs are the same; -1 when they share no epoch."""
    a = {e: (s, end) for e, s, end in epoch_spans(mine, my_max)}
    b = {e: (s, end) for e, s, end in epoch_spans(theirs, their_max)}
    for epoch in sorted(a, reverse=True):
        if epoch in b and a[epoch][0] == b[epoch][0]:
            return min(a[epoch][1], b[epoch][1])
    return -1


class EpochFileCache:
    def __init__(self, root: str) -> None:
        self.path = os.path.join(root, "epochFileCheckpoint")
        data = read_json(self.path, default=[])
        self.entries: list[EpochEntry] = sorted((int(e), int(s)) for e, s in data) if isinstance(data, list) else []

    @property
    def last_epoch(self) -> int:
        return self.entries[-1][0] if self.entries else 0

    def _save(self) -> None:
        atomic_write_json(self.path, [list(x) for x in self.entries])

    def begin(self, epoch: int, start: int) -> None:
        """This broker starts writing as master of ``epoch`` at ``start``."""
        self.entries = [x for x in self.entries if x[0] < epoch and x[1] <= start]
        self.entries.append((epoch, start))
        self._save()

    def replace(self, entries: list[EpochEntry]) -> None:
        """A slave takes its master's epochs (its log becomes the master's)."""
        self.entries = sorted(entries)
        self._save()
