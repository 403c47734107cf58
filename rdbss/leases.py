"""Read leases, the client's side (rules in rdbss/model/leases.py): what a leased handle read,
kept in 64 KiB blocks under one byte cap (least recently used first), and served again with no
message while the handle's epoch in the core's table (rdbss/epochs.py) is still the one its
grant named.

A read that misses is widened to whole blocks, and what it brings fills the cache only if the
epoch is still the granted one once the answer is in: the core bumps the epoch before it lets a
write or anything else that changes the file go on, so an answer taken under the granted epoch
holds no data older than that change. A broken lease stays broken (grants come only with a
create): the handle's blocks go and its reads make round trips from then on.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from rdbss.epochs import EpochView
from rdbss.model.filecache import ReadCache

log = logging.getLogger("rdbss.client")

#: the client's lease cache by default (``Client(lease_cache_bytes=...)``; 0 turns leases off)
DEFAULT_CACHE_BYTES = 4 << 20


@dataclass(slots=True)
class Lease:
    view: EpochView
    slot: int
    epoch: int


@dataclass(slots=True)
class LeaseStats:
    hits: int = 0  # reads answered with no message
    misses: int = 0  # reads of a leased handle that made a round trip
    fills: int = 0
    breaks: int = 0  # leases found broken


class LeaseCache:
    """One client's leases and the bytes their handles read. Not thread-safe: the client holds
    its lock around every call."""

    def __init__(self, limit_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.blocks = ReadCache(limit_bytes)
        self.held: dict[int, Lease] = {}  # fobx -> its lease
        self.stats = LeaseStats()
        self._views: dict[str, EpochView] = {}

    def hold(self, fobx: int, grant: Any) -> bool:
        """Keep the lease a create's answer granted; False (and no lease) for a grant that is
        malformed or names a table this process cannot map."""
        if not isinstance(grant, dict):
            return False
        name, slot, epoch = grant.get("table"), grant.get("slot"), grant.get("epoch")
        if not isinstance(name, str) or type(slot) is not int or type(epoch) is not int:
            return False
        view = self._views.get(name)
        if view is None:
            try:
                view = EpochView(name)
            except OSError as exc:  # NtStatusError for a file that is not a private table
                log.info("lease not used: %s", exc.strerror or exc)
                return False
            self._drop_views()
            self._views[name] = view
        if not 0 <= slot < view.slots:
            return False
        self.held[fobx] = Lease(view, slot, epoch)
        return True

    def valid(self, fobx: int) -> bool:
        """Whether ``fobx`` holds a lease not broken; a broken one is dropped with its blocks."""
        lease = self.held.get(fobx)
        if lease is None:
            return False
        if lease.view.load(lease.slot) == lease.epoch:
            return True
        self.stats.breaks += 1
        self.drop(fobx)
        return False

    def lookup(self, fobx: int, offset: int, length: int) -> bytes | None:
        """The bytes at ``offset`` from the cache (short or empty at the end of the file), or
        None: no valid lease, or some of the range was not read yet."""
        if not self.valid(fobx):
            return None
        data = self.blocks.lookup(fobx, offset, length)
        if data is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return data

    def fill(self, fobx: int, start: int, data: bytes, asked: int) -> None:
        """What a widened read (ReadCache.widen) brought, if the lease still holds."""
        if self.valid(fobx):
            self.blocks.fill(fobx, start, data, asked)
            self.stats.fills += 1

    def drop(self, fobx: int) -> None:
        """The handle closed, or its lease broke."""
        self.held.pop(fobx, None)
        self.blocks.purge(fobx)

    def clear(self) -> None:
        """The connection to the daemon was lost: every lease is void."""
        for fobx in list(self.held):
            self.drop(fobx)
        self._drop_views()

    def _drop_views(self) -> None:
        """Tables no held lease names (a core that stopped) are unmapped."""
        named = {lease.view.name for lease in self.held.values()}
        for name in [n for n in self._views if n not in named]:
            with contextlib.suppress(BufferError):
                self._views.pop(name).close()
