"""The core's read cache: file data in fixed-size blocks per Fcb, under one global byte cap
(least recently used blocks go first). Pure code: the core decides when a Fcb may cache
(READCACHING in its buffering state) and invalidates on writes, truncation and state changes.

A block shorter than ``BLOCK`` records where the file ended when it was read; a lookup that
reaches it answers a short read (or end of file) without asking the mini-redirector.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

BLOCK = 64 << 10
#: A read is widened to whole blocks only up to this size (larger reads are not cached).
MAX_FILL = 1 << 20


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    fills: int = 0
    purges: int = 0


class ReadCache:
    def __init__(self, limit_bytes: int) -> None:
        self.limit = max(0, limit_bytes)
        self.bytes = 0
        self.stats = CacheStats()
        self._blocks: OrderedDict[tuple[int, int], bytes] = OrderedDict()  # (fcb, index)
        self._of: dict[int, set[int]] = {}  # fcb -> its block indexes

    def lookup(self, fcb: int, offset: int, length: int) -> bytes | None:
        """The bytes at ``offset`` (short, or empty at end of file), or None when some block
        of the range is missing."""
        if offset < 0 or length < 0 or fcb not in self._of:
            self.stats.misses += 1
            return None
        out: list[bytes] = []
        end = offset + length
        index = offset // BLOCK
        while index * BLOCK < end:
            block = self._blocks.get((fcb, index))
            if block is None:
                self.stats.misses += 1
                return None
            self._blocks.move_to_end((fcb, index))
            start = max(offset - index * BLOCK, 0)
            out.append(block[start : end - index * BLOCK])
            if len(block) < BLOCK:
                break  # end of file
            index += 1
        self.stats.hits += 1
        return b"".join(out)

    @staticmethod
    def widen(offset: int, length: int) -> tuple[int, int] | None:
        """The block-aligned read that fills the blocks of a range; None if not worth it."""
        if offset < 0 or length <= 0:
            return None
        start = offset // BLOCK * BLOCK
        end = -(-(offset + length) // BLOCK) * BLOCK
        if end - start > MAX_FILL:
            return None
        return start, end - start

    def fill(self, fcb: int, start: int, data: bytes, asked: int) -> None:
        """Store what a widened read starting at block boundary ``start`` returned (``asked``
        bytes were asked for: a shorter answer means the file ends there)."""
        if self.limit <= 0 or start % BLOCK:
            return
        first = start // BLOCK
        count = -(-len(data) // BLOCK)
        if len(data) < asked and len(data) % BLOCK == 0:
            count += 1  # an empty block marks the end of the file
        for i in range(count):
            self._put(fcb, first + i, data[i * BLOCK : (i + 1) * BLOCK])
        self.stats.fills += 1

    def _put(self, fcb: int, index: int, block: bytes) -> None:
        if len(block) > self.limit:
            return
        old = self._blocks.pop((fcb, index), None)
        if old is not None:
            self.bytes -= len(old)
        self._blocks[(fcb, index)] = block
        self._of.setdefault(fcb, set()).add(index)
        self.bytes += len(block)
        while self.bytes > self.limit:
            (victim, victim_index), gone = self._blocks.popitem(last=False)
            self.bytes -= len(gone)
            indexes = self._of[victim]
            indexes.discard(victim_index)
            if not indexes:
                del self._of[victim]

    def invalidate(self, fcb: int, offset: int, length: int) -> None:
        """A write of ``length`` bytes at ``offset`` (-1: an append): drop the blocks it
        touches and every end-of-file block (the file may have grown)."""
        indexes = self._of.get(fcb)
        if not indexes:
            return
        if offset < 0:
            self.purge(fcb)
            return
        first, last = offset // BLOCK, (offset + max(length, 1) - 1) // BLOCK
        for index in list(indexes):
            block = self._blocks[(fcb, index)]
            if first <= index <= last or len(block) < BLOCK:
                self._drop(fcb, index)

    def _drop(self, fcb: int, index: int) -> None:
        block = self._blocks.pop((fcb, index))
        self.bytes -= len(block)
        indexes = self._of[fcb]
        indexes.discard(index)
        if not indexes:
            del self._of[fcb]

    def purge(self, fcb: int) -> None:
        """Forget everything cached for one Fcb."""
        indexes = self._of.pop(fcb, None)
        if not indexes:
            return
        for index in indexes:
            self.bytes -= len(self._blocks.pop((fcb, index)))
        self.stats.purges += 1

    def cached(self, fcb: int) -> int:
        """Bytes cached for one Fcb."""
        return sum(len(self._blocks[(fcb, i)]) for i in self._of.get(fcb, ()))
