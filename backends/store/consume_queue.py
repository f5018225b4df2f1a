"""ConsumeQueue: per topic/queue index of the commitlog (RocketMQ's ConsumeQueue).

Each entry is 20 bytes, big endian: commitlog offset i64, record size i32, tags code i64. A queue is a
list of files of ``entries_per_file`` entries, named by the 20-digit byte offset of their first entry,
under ``consumequeue/<topic>/<queueId>/``. Files are created at full size and memory mapped; an entry
with size 0 marks the end. Nothing per message is held in Python memory.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from backends.store.mapped_file import NewFileEntries, flush_mapped

log = logging.getLogger("rocketmq.store")

CQ_ENTRY = struct.Struct(">qiq")
CQ_ENTRY_SIZE = 20


@dataclass(slots=True)
class CQFile:
    start: int  # queue offset of the first entry
    path: str
    fd: int
    mm: mmap.mmap
    dirty: bool = False

    def close(self) -> None:
        try:
            self.mm.close()
        except BufferError:  # a reader still holds a view; the mapping goes with the last reference
            pass
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class ConsumeQueue:
    def __init__(self, root: str, topic: str, queue_id: int, entries_per_file: int,
                 preallocate: bool = False) -> None:
        self.preallocate = preallocate
        self.topic = topic
        self.queue_id = queue_id
        self.dir = os.path.join(root, topic, str(queue_id))
        # a new file's name lands in <queueId>/; a new queue's, topic's and consumequeue/'s one level up
        self.new_files = NewFileEntries(self.dir, os.path.dirname(self.dir), root,
                                        os.path.dirname(os.path.abspath(root)))
        self.per_file = entries_per_file
        self.file_bytes = entries_per_file * CQ_ENTRY_SIZE
        self.files: list[CQFile] = []
        self.max_offset = 0  # next queue offset to write
        self.min_offset = 0

    # --- files -------------------------------------------------------------------------------
    def load(self) -> None:
        if not os.path.isdir(self.dir):
            return
        names = sorted(n for n in os.listdir(self.dir) if n.isdigit() and len(n) == 20)
        for n in names:
            byte_start = int(n)
            if byte_start % self.file_bytes:
                log.error("consumequeue: %s has a foreign file size; ignored", os.path.join(self.dir, n))
                continue
            self._open(byte_start // CQ_ENTRY_SIZE)
        if not self.files:
            return
        self.min_offset = self.files[0].start
        last = self.files[-1]
        self.max_offset = last.start + self._first_invalid(last, lambda phy, size: size > 0)
        if self.max_offset == last.start and len(self.files) > 1:
            # an empty last file: the previous one may still be partly filled
            prev = self.files[-2]
            self.max_offset = prev.start + self._first_invalid(prev, lambda phy, size: size > 0)

    def _open(self, start: int) -> CQFile:
        path = os.path.join(self.dir, f"{start * CQ_ENTRY_SIZE:020d}")
        os.makedirs(self.dir, exist_ok=True)
        if not os.path.exists(path):
            self.new_files.created()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size != self.file_bytes:
                os.ftruncate(fd, self.file_bytes)
            if self.preallocate:  # a write through the mapping into a hole of a full disk is SIGBUS
                os.posix_fallocate(fd, 0, self.file_bytes)
            mm = mmap.mmap(fd, self.file_bytes)
        except OSError:
            os.close(fd)
            raise
        f = CQFile(start, path, fd, mm)
        self.files.append(f)
        self.files.sort(key=lambda x: x.start)
        return f

    def close(self) -> None:
        for f in self.files:
            f.close()
        self.files.clear()

    def destroy(self) -> None:
        for f in self.files:
            f.close()
            try:
                os.unlink(f.path)
            except FileNotFoundError:
                pass
        self.files.clear()
        try:
            os.rmdir(self.dir)
        except OSError:
            pass

    def _first_invalid(self, f: CQFile, valid: Callable[[int, int], bool]) -> int:
        """Index of the first entry of ``f`` failing ``valid`` (entries are a valid prefix)."""
        lo, hi = 0, self.per_file
        mm = f.mm
        while lo < hi:
            mid = (lo + hi) // 2
            phy, size, _ = CQ_ENTRY.unpack_from(mm, mid * CQ_ENTRY_SIZE)
            if valid(phy, size):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _file_for(self, offset: int) -> CQFile | None:
        if not self.files:
            return None
        i = (offset - self.files[0].start) // self.per_file
        if 0 <= i < len(self.files):
            f = self.files[i]
            if f.start <= offset < f.start + self.per_file:
                return f
        for f in self.files:  # a gap after deletion: fall back to a scan (rare, few files)
            if f.start <= offset < f.start + self.per_file:
                return f
        return None

    # --- writing -----------------------------------------------------------------------------
    def put(self, offset: int, phy: int, size: int, tags_code: int) -> None:
        f = self._file_for(offset)
        if f is None:
            f = self._open(offset - offset % self.per_file)
        CQ_ENTRY.pack_into(f.mm, (offset - f.start) * CQ_ENTRY_SIZE, phy, size, tags_code)
        f.dirty = True
        if offset >= self.max_offset:
            self.max_offset = offset + 1

    def put_bulk(self, offset: int, entries: bytes | bytearray) -> None:
        """Write packed entries for queue offsets ``offset``, ``offset + 1``, ...: one slice per file."""
        n = len(entries) // CQ_ENTRY_SIZE
        done = 0
        while done < n:
            cur = offset + done
            f = self._file_for(cur)
            if f is None:
                f = self._open(cur - cur % self.per_file)
            k = min(n - done, f.start + self.per_file - cur)
            a = (cur - f.start) * CQ_ENTRY_SIZE
            f.mm[a:a + k * CQ_ENTRY_SIZE] = entries[done * CQ_ENTRY_SIZE:(done + k) * CQ_ENTRY_SIZE]
            f.dirty = True
            done += k
        if offset + n > self.max_offset:
            self.max_offset = offset + n

    def flush(self) -> None:
        """Make dirty files (and the names of new ones) durable (called from the flush thread)."""
        self.new_files.sync()
        for f in list(self.files):
            if f.dirty:
                f.dirty = False
                flush_mapped(f.fd)  # a file closed meanwhile (deleted by retention) is skipped

    def truncate_from_phy(self, phy_end: int, zero: bool = True) -> None:
        """Drop entries whose commitlog offset is >= ``phy_end`` (recovery: they point past the log).
        ``zero=False`` only moves the end (the entries are about to be rewritten by the recovery)."""
        keep_to = self.min_offset
        for f in reversed(self.files):
            n = self._first_invalid(f, lambda phy, size: size > 0 and phy + size <= phy_end)
            if n > 0:
                keep_to = f.start + n
                break
        if keep_to < self.max_offset:
            log.warning("consumequeue %s-%d: entries %d..%d point past the commitlog end %d; truncated",
                        self.topic, self.queue_id, keep_to, self.max_offset - 1, phy_end)
        self.max_offset = max(keep_to, self.min_offset)
        if zero:
            self.cut(self.max_offset)

    def cut(self, offset: int) -> None:
        """Zero every entry from ``offset`` on and delete the files after it."""
        for f in list(self.files):
            if f.start >= offset and f.start > self.min_offset:
                f.close()
                os.unlink(f.path)
                self.files.remove(f)
            elif f.start + self.per_file > offset:
                self._zero_from(f, max(0, offset - f.start) * CQ_ENTRY_SIZE)
        self.max_offset = max(offset, self.min_offset)

    def _zero_from(self, f: CQFile, rel: int) -> None:
        """Zero ``f`` from byte ``rel`` on, writing only pages that hold data (holes stay holes)."""
        mm, end = f.mm, self.file_bytes
        page = mmap.PAGESIZE
        head_end = min(end, (rel + page - 1) // page * page)
        if head_end > rel:
            mm[rel:head_end] = bytes(head_end - rel)
        zero_page = bytes(page)
        for a in range(head_end, end, page):
            b = min(end, a + page)
            if mm[a:b] != zero_page[:b - a]:
                mm[a:b] = zero_page[:b - a]
        f.dirty = True

    # --- reading -----------------------------------------------------------------------------
    def get(self, offset: int) -> tuple[int, int, int] | None:
        if offset < self.min_offset or offset >= self.max_offset:
            return None
        f = self._file_for(offset)
        if f is None:
            return None
        phy, size, tags = CQ_ENTRY.unpack_from(f.mm, (offset - f.start) * CQ_ENTRY_SIZE)
        return phy, size, tags

    def entries(self, offset: int, count: int) -> bytes:
        """Raw entries from ``offset`` (at most ``count``, never crossing a file end)."""
        if offset < self.min_offset or offset >= self.max_offset:
            return b""
        f = self._file_for(offset)
        if f is None:
            return b""
        n = min(count, self.max_offset - offset, f.start + self.per_file - offset)
        rel = (offset - f.start) * CQ_ENTRY_SIZE
        return f.mm[rel:rel + n * CQ_ENTRY_SIZE]

    def search_offset_by_time(self, timestamp_ms: int, store_time: Callable[[int, int], int]) -> int:
        """The first queue offset whose message was stored at or after ``timestamp_ms``
        (``store_time(phy, size)`` reads the commitlog; -1 when it cannot). Past the end -> max."""
        lo, hi = self.min_offset, self.max_offset
        while lo < hi:
            mid = (lo + hi) // 2
            e = self.get(mid)
            t = store_time(e[0], e[1]) if e else -1
            if t < 0:  # removed from the commitlog: treat as older
                lo = mid + 1
            elif t < timestamp_ms:
                lo = mid + 1
            else:
                hi = mid
        return lo

    # --- retention ---------------------------------------------------------------------------
    def delete_expired(self, min_phy: int) -> int:
        """Delete files whose every entry points below ``min_phy`` (never the last); fix min offset."""
        deleted = 0
        while len(self.files) > 1:
            f = self.files[0]
            last_phy, last_size, _ = CQ_ENTRY.unpack_from(f.mm, (self.per_file - 1) * CQ_ENTRY_SIZE)
            if last_size > 0 and last_phy < min_phy:
                f.close()
                os.unlink(f.path)
                self.files.pop(0)
                deleted += 1
            else:
                break
        self.correct_min_offset(min_phy)
        return deleted

    def correct_min_offset(self, min_phy: int) -> None:
        if not self.files:
            self.min_offset = self.max_offset
            return
        f = self.files[0]
        end = min(self.per_file, self.max_offset - f.start)
        if end <= 0:
            self.min_offset = f.start
            return
        lo, hi = 0, end
        while lo < hi:
            mid = (lo + hi) // 2
            phy, size, _ = CQ_ENTRY.unpack_from(f.mm, mid * CQ_ENTRY_SIZE)
            if size > 0 and phy < min_phy:
                lo = mid + 1
            else:
                hi = mid
        self.min_offset = f.start + lo
