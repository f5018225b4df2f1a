"""Flushing memory-mapped store files (consume queues, index) without stalling the event loop."""

from __future__ import annotations

import errno
import os


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
