"""CommitLog: the one append-only log of every message (RocketMQ's CommitLog + MappedFileQueue).

Segments are files named by their 20-digit start offset, each ``file_size`` bytes (created sparse at full
size, as RocketMQ's mapped files are). A record never spans two segments: the rest of a segment that
cannot hold the next record is padded with a BLANK record. Writes use ``os.pwrite`` (one call per
batch), reads ``os.pread``; durability (fdatasync) is driven by :mod:`backends.store.flush`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from backends.store.config_file import fsync_dir
from backends.store.record import (
    END_FILE_MIN_BLANK_LENGTH,
    BlankRecord,
    RecordError,
    RecordView,
    blank_record,
    check_record,
)

log = logging.getLogger("rocketmq.store")

SCAN_CHUNK = 4 * 1024 * 1024
_ZERO4 = b"\x00\x00\x00\x00"


def segment_name(offset: int) -> str:
    return f"{offset:020d}"


@dataclass(slots=True)
class Segment:
    start: int
    path: str
    fd: int

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            finally:
                self.fd = -1


class CommitLog:
    def __init__(self, directory: str, file_size: int) -> None:
        if file_size < 4096:
            raise ValueError("mapped_file_size_commit_log must be >= 4096")
        self.dir = directory
        self.file_size = file_size
        self.segments: list[Segment] = []
        self.write_pos = 0  # absolute offset of the next byte to write (max physical offset)

    # --- files -------------------------------------------------------------------------------
    def load(self) -> None:
        if not os.path.isdir(self.dir):
            os.makedirs(self.dir)
            fsync_dir(os.path.dirname(os.path.abspath(self.dir)), best_effort=False)
        names = sorted(n for n in os.listdir(self.dir) if n.isdigit() and len(n) == 20)
        prev = -1
        for n in names:
            start = int(n)
            path = os.path.join(self.dir, n)
            if start % self.file_size != 0 or (prev >= 0 and start != prev + self.file_size):
                # A gap or a foreign size: keep only the contiguous head (RocketMQ refuses to load).
                log.error("commitlog: file %s does not follow %s (segment size %d); ignoring it and later ones",
                          path, segment_name(prev) if prev >= 0 else "-", self.file_size)
                break
            size = os.path.getsize(path)
            fd = os.open(path, os.O_RDWR)
            if size != self.file_size:
                os.ftruncate(fd, self.file_size)
            self.segments.append(Segment(start, path, fd))
            prev = start
        self.write_pos = self.segments[0].start if self.segments else 0

    def close(self) -> None:
        for s in self.segments:
            s.close()
        self.segments.clear()

    @property
    def min_offset(self) -> int:
        return self.segments[0].start if self.segments else 0

    def _new_segment(self, start: int) -> Segment:
        path = os.path.join(self.dir, segment_name(start))
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, self.file_size)
            # the new file's name must survive a power loss too: fdatasync of the file does not promise it
            fsync_dir(self.dir, best_effort=False)
        except OSError:
            os.close(fd)
            raise
        seg = Segment(start, path, fd)
        self.segments.append(seg)
        return seg

    def segment_for(self, offset: int) -> Segment | None:
        if not self.segments:
            return None
        i = (offset - self.segments[0].start) // self.file_size
        if 0 <= i < len(self.segments):
            return self.segments[i]
        return None

    def writable_segment(self) -> Segment:
        """The segment that holds ``write_pos`` (created when needed)."""
        seg = self.segment_for(self.write_pos)
        if seg is None:
            start = self.write_pos - self.write_pos % self.file_size
            seg = self._new_segment(start)
        return seg

    # --- writing ---------------------------------------------------------------------------------
    def space_left(self) -> int:
        return self.file_size - self.write_pos % self.file_size

    def write(self, data: bytes | bytearray | memoryview, pos: int) -> None:
        """Write ``data`` at absolute ``pos`` (it must lie in one segment). Raises OSError."""
        seg = self.segment_for(pos)
        if seg is None:
            seg = self._new_segment(pos - pos % self.file_size)
        file_pos = pos - seg.start
        n = os.pwrite(seg.fd, data, file_pos)
        if n != len(data):
            raise OSError(28, f"short write ({n} of {len(data)} bytes) to {seg.path}")

    def pad_to_end(self) -> None:
        """Write a BLANK record over the rest of the current segment and move to the next one."""
        left = self.space_left()
        if left >= END_FILE_MIN_BLANK_LENGTH:
            self.write(blank_record(left)[:END_FILE_MIN_BLANK_LENGTH], self.write_pos)
        self.write_pos += left

    # --- reading ---------------------------------------------------------------------------------
    def read(self, pos: int, size: int) -> bytes | None:
        if pos < self.min_offset or pos + size > self.write_pos or size <= 0:
            return None
        seg = self.segment_for(pos)
        if seg is None or seg.fd < 0:
            return None
        data = os.pread(seg.fd, size, pos - seg.start)
        return data if len(data) == size else None

    def read_record(self, pos: int) -> bytes | None:
        """The record at ``pos`` with its size taken from its own header (None if out of range)."""
        head = self.read(pos, 4)
        if head is None:
            return None
        size = int.from_bytes(head, "big", signed=True)
        if size <= 0 or size > self.file_size - pos % self.file_size:
            return None
        return self.read(pos, size)

    # --- recovery --------------------------------------------------------------------------------
    def scan(self, start: int, on_record: Callable[[RecordView], None], check_crc: bool = True,
             stop: int | None = None) -> int:
        """Verify records forward from ``start``; call ``on_record(view)`` for each valid one.

        Returns the offset just past the last valid record (the recovered end). Stops at the first
        zero header (end of data) or invalid record (logged with file and offset); the caller cuts there.
        With ``stop``, returns at the first record boundary at or past it.
        """
        if stop is None:
            stop = 1 << 62
        pos = start
        fs = self.file_size
        want = SCAN_CHUNK
        while True:
            seg = self.segment_for(pos)
            if seg is None:
                return pos
            rel = pos - seg.start
            chunk = os.pread(seg.fd, min(want, fs - rel), rel)
            want = SCAN_CHUNK
            clen = len(chunk)
            view_of_chunk = memoryview(chunk)  # zero-copy slices for the body CRC
            chunk_reaches_end = rel + clen >= fs
            cpos = 0
            next_file = False
            while cpos + 8 <= clen:
                if chunk[cpos:cpos + 4] == _ZERO4:
                    return pos + cpos  # end of written data
                if pos + cpos >= stop:
                    return pos + cpos
                try:
                    view = check_record(view_of_chunk, cpos, check_crc, clen)
                except BlankRecord as b:
                    if rel + cpos + b.size != fs:
                        log.error("commitlog: blank record in %s at file offset %d does not reach the file end",
                                  seg.path, rel + cpos)
                        return pos + cpos
                    next_file = True
                    break
                except RecordError as e:
                    total = int.from_bytes(chunk[cpos:cpos + 4], "big", signed=True)
                    if not chunk_reaches_end and 0 < total <= fs - rel - cpos and cpos + total > clen:
                        if cpos == 0:
                            want = total  # a record larger than the scan chunk
                        break  # split by the chunk end: read again from it
                    log.error("commitlog: invalid record in %s at file offset %d (physical offset %d): %s; "
                              "the log is cut here", seg.path, rel + cpos, pos + cpos, e)
                    return pos + cpos
                if view.physical_offset != pos + cpos:
                    log.error("commitlog: record in %s at file offset %d claims physical offset %d; "
                              "the log is cut here", seg.path, rel + cpos, view.physical_offset)
                    return pos + cpos
                on_record(view)
                cpos += view.total_size
            if next_file:
                pos = seg.start + fs
                continue
            if cpos == 0 and want == SCAN_CHUNK:
                if rel >= fs:
                    pos = seg.start + fs
                    continue
                log.error("commitlog: no complete record in %s at file offset %d; the log is cut here",
                          seg.path, rel)
                return pos
            pos += cpos
            if pos - seg.start >= fs:
                continue
            if chunk_reaches_end and cpos + 8 > clen and cpos < clen:
                log.error("commitlog: %d bytes at the end of %s hold no blank record; the log is cut here",
                          clen - cpos, seg.path)
                return pos

    def truncate(self, end: int) -> None:
        """Cut the log at ``end``: zero the rest of its segment and delete every later segment."""
        for seg in [s for s in self.segments if s.start > end]:
            log.warning("commitlog: deleting %s (after the recovered end %d)", seg.path, end)
            self.delete_segment(seg)
        tail = self.segment_for(end)
        if tail is not None:
            rel = end - tail.start
            os.ftruncate(tail.fd, rel)  # drop the tail, then restore the full (sparse) size
            os.ftruncate(tail.fd, self.file_size)
            os.fsync(tail.fd)
        self.write_pos = end

    def delete_segment(self, seg: Segment) -> None:
        seg.close()
        try:
            os.unlink(seg.path)
        except FileNotFoundError:
            pass
        self.segments.remove(seg)
