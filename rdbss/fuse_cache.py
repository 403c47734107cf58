"""The mount's memory of names and attributes (what rdbss.fuse_mount answers without a round trip
to the daemon), and the rules of its FUSE front end that need no I/O. Pure; unit-tested alone.

``AttrCache`` maps a mount path (``/dir/name``) to the attributes last learned for it, from any
answer that carried them: a listing (what readdirplus gives the kernel), a create or open, a
query. An entry is trusted for ``ttl`` seconds after it was learned, the same window the kernel
is told for its own entry and attribute caches (``attr_timeout``), so a change made behind the
mount's back (by another client, or on the server) is seen once that window has passed. Every
change made through the mount forgets what it touches first: the path itself, its folder's
listing time, and for a rename or a removed folder everything under the old name.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["AttrCache", "chown_allowed", "parent_of"]

#: How many paths the cache keeps at most; past it, the oldest half goes.
MAX_ENTRIES = 200_000


def parent_of(path: str) -> str:
    """``/a/b`` -> ``/a``; ``/a`` -> ``/``."""
    head = path.rstrip("/").rpartition("/")[0]
    return head or "/"


def chown_allowed(uid: int, gid: int, own_uid: int, own_gid: int) -> bool:
    """A share keeps no POSIX owner the mount could change: a chown to the mounting user's own
    ids (or -1, "leave it") changes nothing and succeeds, so ``cp -a`` and ``tar xf`` work as
    that user; any other owner is refused (EPERM), as chown(2) refuses an unprivileged user."""
    return uid in (-1, own_uid) and gid in (-1, own_gid)


class AttrCache:
    """Attributes by mount path, each trusted for ``ttl`` seconds (0: nothing is kept)."""

    def __init__(
        self,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.ttl = ttl
        self._clock = clock
        self._max = max_entries
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, path: str) -> dict[str, Any] | None:
        """The attributes of ``path`` if learned less than ``ttl`` seconds ago, else None."""
        with self._lock:
            found = self._entries.get(path)
            if found is None:
                return None
            if found[0] <= self._clock():
                del self._entries[path]
                return None
            return found[1]

    def put(self, path: str, attrs: dict[str, Any]) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self._max:
                self._shrink()
            self._entries[path] = (self._clock() + self.ttl, attrs)

    def put_listing(self, folder: str, children: dict[str, dict[str, Any]]) -> None:
        """Everything a listing of ``folder`` said about its children (name -> attributes)."""
        if self.ttl <= 0:
            return
        prefix = folder.rstrip("/") + "/"
        with self._lock:
            if len(self._entries) + len(children) > self._max:
                self._shrink()
            until = self._clock() + self.ttl
            for name, attrs in children.items():
                self._entries[prefix + name] = (until, attrs)

    def forget(self, path: str) -> None:
        """``path`` changed through the mount: its attributes and its folder's are stale."""
        with self._lock:
            self._entries.pop(path, None)
            self._entries.pop(parent_of(path), None)

    def forget_tree(self, path: str) -> None:
        """``path`` and everything under it (a rename, a removed folder), and its folder."""
        prefix = path.rstrip("/") + "/"
        with self._lock:
            self._entries.pop(path, None)
            self._entries.pop(parent_of(path), None)
            for key in [k for k in self._entries if k.startswith(prefix)]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _shrink(self) -> None:
        """Drop the expired entries, then the oldest half if still full (the lock held)."""
        now = self._clock()
        for key in [k for k, (until, _) in self._entries.items() if until <= now]:
            del self._entries[key]
        if len(self._entries) >= self._max:
            ordered = sorted(self._entries.items(), key=lambda item: item[1][0])
            for key, _ in ordered[: len(ordered) // 2]:
                del self._entries[key]


def join(folder: str, name: str) -> str:
    """A child's mount path."""
    return os.path.join(folder, name) if folder != "/" else "/" + name
