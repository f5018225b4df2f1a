"""IndexService: lookup of messages by key (RocketMQ's IndexService / IndexFile).

File layout (RocketMQ's): a 40-byte header (beginTimestamp i64, endTimestamp i64, beginPhyOffset i64,
endPhyOffset i64, hashSlotCount i32, indexCount i32), ``slots`` hash slots of 4 bytes (the number of the
newest entry in that slot, 0 = empty), then ``max_index`` entries of 20 bytes (keyHash i32,
phyOffset i64, timeDiff i32 seconds since beginTimestamp, prevIndex i32). Entry 0 is never used.
The hash is CRC-32 of ``topic#key`` (the files are only read by this store). Files live in ``index/``
named by their creation time (yyyyMMddHHmmssSSS) and are memory mapped: no Python object per message.
Hash collisions are resolved by the caller, which reads the record and checks its topic and keys.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import time

from zlib_ng.zlib_ng import crc32  # the same CRC-32 as zlib.crc32

from backends.store.mapped_file import NewFileEntries, flush_mapped

log = logging.getLogger("rocketmq.store")

INDEX_HEADER = struct.Struct(">qqqqii")
INDEX_HEADER_SIZE = 40
INDEX_ENTRY = struct.Struct(">iqii")
INDEX_ENTRY_SIZE = 20
_SLOT = struct.Struct(">i")


def key_hash(key: str) -> int:
    return crc32(key.encode()) & 0x7FFFFFFF


def full_key(topic: str, key: str) -> str:
    """What the index hashes and stores for ``key`` of a message of ``topic``."""
    return f"{topic}#{key}"


class IndexFile:
    def __init__(self, path: str, slots: int, max_index: int, create: bool, preallocate: bool = False) -> None:
        self.path = path
        self.slots = slots
        self.max_index = max_index
        self.size = INDEX_HEADER_SIZE + slots * 4 + max_index * INDEX_ENTRY_SIZE
        self.fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        try:
            if os.fstat(self.fd).st_size != self.size:
                os.ftruncate(self.fd, self.size)
            if preallocate:  # a write through the mapping into a hole of a full disk is SIGBUS
                os.posix_fallocate(self.fd, 0, self.size)
            self.mm = mmap.mmap(self.fd, self.size)
        except OSError:
            os.close(self.fd)
            raise
        (self.begin_ts, self.end_ts, self.begin_phy, self.end_phy, self.slot_count,
         self.index_count) = INDEX_HEADER.unpack_from(self.mm, 0)
        if self.index_count < 1:
            self.index_count = 1
        self.entries_base = INDEX_HEADER_SIZE + slots * 4
        self.dirty = False

    @property
    def full(self) -> bool:
        return self.index_count >= self.max_index

    def put_many(self, entries: list[tuple[str, int, int]], start: int) -> int:
        """Add ``entries[start:]`` (full key, commitlog offset, store time) until this file is full;
        returns the position in ``entries`` after the last one added."""
        mm, slots, base, cap = self.mm, self.slots, self.entries_base, self.max_index
        n, slot_count, begin_ts, end_ts, end_phy = (self.index_count, self.slot_count, self.begin_ts,
                                                    self.end_ts, self.end_phy)
        unpack_slot, pack_slot, pack_entry = _SLOT.unpack_from, _SLOT.pack_into, INDEX_ENTRY.pack_into
        i, stop = start, min(len(entries), start + cap - n)
        while i < stop:
            key, phy, ts = entries[i]
            i += 1
            h = crc32(key.encode()) & 0x7FFFFFFF
            slot_pos = INDEX_HEADER_SIZE + (h % slots) * 4
            (prev,) = unpack_slot(mm, slot_pos)
            if prev <= 0 or prev >= n:
                prev = 0
                slot_count += 1
            if begin_ts == 0:
                begin_ts = ts
                self.begin_phy = phy
            pack_entry(mm, base + n * INDEX_ENTRY_SIZE, h, phy, (ts - begin_ts) // 1000, prev)
            pack_slot(mm, slot_pos, n)
            n += 1
            if ts > end_ts:
                end_ts = ts
            if phy > end_phy:
                end_phy = phy
        if i > start:
            self.index_count, self.slot_count, self.begin_ts, self.end_ts, self.end_phy = (
                n, slot_count, begin_ts, end_ts, end_phy)
            self.dirty = True
        return i

    def write_header(self) -> None:
        INDEX_HEADER.pack_into(self.mm, 0, self.begin_ts, self.end_ts, self.begin_phy, self.end_phy,
                               self.slot_count, self.index_count)

    def lookup(self, key: str, max_num: int, begin_ms: int, end_ms: int) -> list[int]:
        """Physical offsets of entries hashed like ``key`` stored within [begin_ms, end_ms], newest first."""
        out: list[int] = []
        if self.index_count <= 1 or self.end_ts < begin_ms or self.begin_ts > end_ms:
            return out
        h = key_hash(key)
        slot = h % self.slots
        (n,) = _SLOT.unpack_from(self.mm, INDEX_HEADER_SIZE + slot * 4)
        seen = 0
        while 0 < n < self.index_count and len(out) < max_num and seen < self.max_index:
            eh, phy, diff, prev = INDEX_ENTRY.unpack_from(self.mm, self.entries_base + n * INDEX_ENTRY_SIZE)
            if eh % self.slots != slot:
                break  # a chain broken by a crash: stop rather than follow another slot's chain
            ts = self.begin_ts + diff * 1000
            if eh == h and begin_ms - 999 <= ts <= end_ms:
                out.append(phy)
            if prev >= n:
                break
            n = prev
            seen += 1
        return out

    def flush(self) -> None:
        if self.dirty:
            self.dirty = False
            try:
                self.write_header()
            except ValueError:  # closed meanwhile
                return
            flush_mapped(self.fd)

    def close(self) -> None:
        try:
            self.write_header()
            self.mm.close()
        except (ValueError, BufferError):
            pass
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class IndexService:
    def __init__(self, directory: str, slots: int, max_index: int, preallocate: bool = False) -> None:
        self.dir = directory
        self.preallocate = preallocate
        self.slots = slots
        self.max_index = max(2, max_index)  # entry 0 is never used
        self.files: list[IndexFile] = []
        self.new_files = NewFileEntries(directory, os.path.dirname(os.path.abspath(directory)))

    def load(self) -> None:
        if not os.path.isdir(self.dir):
            os.makedirs(self.dir)
            self.new_files.created()
        for n in sorted(os.listdir(self.dir)):
            if n.isdigit():
                try:
                    self.files.append(IndexFile(os.path.join(self.dir, n), self.slots, self.max_index, False))
                except (OSError, ValueError) as e:
                    log.error("index: cannot open %s (%s); ignored", os.path.join(self.dir, n), e)

    def _writable(self) -> IndexFile:
        if self.files and not self.files[-1].full:
            return self.files[-1]
        # a full file stays dirty until the next checkpoint flushes it (off the event loop)
        name = time.strftime("%Y%m%d%H%M%S", time.localtime()) + f"{int(time.time() * 1000) % 1000:03d}"
        path = os.path.join(self.dir, name)
        while os.path.exists(path) or (self.files and path <= self.files[-1].path):
            name = str(int(name) + 1)
            path = os.path.join(self.dir, name)
        f = IndexFile(path, self.slots, self.max_index, True, self.preallocate)
        self.new_files.created()
        self.files.append(f)
        return f

    def put_many(self, entries: list[tuple[str, int, int]]) -> None:
        """Index ``(full_key(topic, key), commitlog offset, store time)`` entries, in order."""
        i = 0
        while i < len(entries):
            i = self._writable().put_many(entries, i)

    def lookup(self, topic: str, key: str, max_num: int, begin_ms: int, end_ms: int) -> list[int]:
        out: list[int] = []
        full = full_key(topic, key)
        for f in reversed(self.files):
            if len(out) >= max_num:
                break
            out.extend(f.lookup(full, max_num - len(out), begin_ms, end_ms))
        return out

    def truncate_from_phy(self, phy_end: int) -> None:
        """Recovery: entries at or past ``phy_end`` are ignored by the callers' record check; files
        that begin past it are deleted."""
        for f in list(self.files):
            if f.begin_phy >= phy_end and f.index_count > 1:
                log.warning("index: deleting %s (begins past the recovered commitlog end)", f.path)
                f.close()
                os.unlink(f.path)
                self.files.remove(f)

    def delete_expired(self, min_phy: int) -> int:
        n = 0
        while len(self.files) > 1 and self.files[0].end_phy < min_phy:
            f = self.files.pop(0)
            f.close()
            os.unlink(f.path)
            n += 1
        return n

    def flush(self) -> None:
        self.new_files.sync()
        for f in list(self.files):
            f.flush()

    def close(self) -> None:
        for f in self.files:
            f.close()
        self.files.clear()
