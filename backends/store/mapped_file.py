"""Flushing memory-mapped store files (consume queues, index) without stalling the event loop."""

from __future__ import annotations

import errno
import os

from backends.store.config_file import fsync_dir


def flush_mapped(fd: int) -> None:
    """Make what was written through a shared mapping of ``fd`` durable.

    ``mmap.flush()`` (msync) holds the GIL for the whole call: flushing a dirty 20 MiB index file
    stalls every other thread, the event loop included, for 100 ms and more. On Linux the pages a
    MAP_SHARED mapping dirtied are the file's page cache, so ``fdatasync(fd)`` writes the same pages,
    and it releases the GIL. A file closed meanwhile (retention, shutdown) is skipped.
    """
    if fd < 0:
        return
    try:
        os.fdatasync(fd)
    except OSError as e:
        if e.errno != errno.EBADF:
            raise


class NewFileEntries:
    """The directories a file store creates files in (innermost first): a file's name is durable only
    once its directory is fsynced, so :meth:`sync` runs before a checkpoint claims the files' content
    (run from the flush thread; :meth:`created` from the event loop)."""

    __slots__ = ("dirs", "pending")

    def __init__(self, *dirs: str) -> None:
        self.dirs = dirs
        self.pending = False

    def created(self) -> None:
        self.pending = True

    def sync(self) -> None:
        if not self.pending:
            return
        self.pending = False  # a file created from here on is synced next time
        try:
            for d in self.dirs:
                fsync_dir(d, best_effort=False)
        except OSError:
            self.pending = True
            raise
