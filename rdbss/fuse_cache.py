"""The mount's memory of names and attributes (what rdbss.fuse_ops answers without a round trip
to the daemon), and the rules of its FUSE front end that need no I/O. Pure; unit-tested alone.

``AttrCache`` maps a mount path (``/dir/name``) to the attributes last learned for it, from any
answer that carried them: a listing (what readdirplus gives the kernel), a create or open, a
query; and it knows a name is missing when the server said so, or when a listing of its folder
did not have it. Programs look names up one by one (cp -r and tar their files, git its 256
object folders, a compiler its include path): after ``LOOKUPS_BEFORE_LISTING`` lookups of unknown
names in one folder, the folder is listed once (``note_lookup``), which answers every further
lookup there, of names that exist and of names that do not.

An entry is trusted for ``ttl`` seconds after it was learned, the same window the kernel is told
for its own entry and attribute caches (``attr_timeout``), so a change made behind the mount's
back (by another client, or on the server) is seen once that window has passed. Every
change made through the mount forgets what it touches first: the path itself, its folder's
listing time, and for a rename or a removed folder everything under the old name.

An answer may arrive after a change through the mount that it did not see: a listing sent
before another program's mkdir in that folder, answered after it. So what an answer teaches
is kept only when nothing it speaks of changed since its request went out: the request takes
a token (``begin``) and the answer brings it back (``put``'s and ``put_listing``'s ``since``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["AttrCache", "chown_allowed", "parent_of"]

#: How many paths the cache keeps at most; past it, the oldest half goes.
MAX_ENTRIES = 200_000
#: Changes remembered for the tokens of answers in flight; past it, every older token is stale.
MAX_CHANGES = 4096
#: Lookups of unknown names in one folder (within ``ttl``) after which listing it is cheaper
#: than asking for each name again.
LOOKUPS_BEFORE_LISTING = 2


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
        self._entries: dict[str, tuple[float, dict[str, Any] | None]] = {}  # None: missing
        self._listings: dict[str, tuple[float, frozenset[str]]] = {}  # folder -> its names
        self._misses: dict[str, tuple[float, int]] = {}  # folder -> recent lookups there
        # changes through the mount, numbered: path -> the last that touched it (its entry, or
        # its listing for a folder), subtree root -> the last that touched all under it; a
        # token older than ``_floor`` is stale whatever it names
        self._gen = 0
        self._touched: dict[str, int] = {}
        self._trees: dict[str, int] = {}
        self._floor = 0

    def begin(self) -> int:
        """The token of a request whose answer will feed the cache (``since``)."""
        with self._lock:
            return self._gen

    def _change(self, paths: Iterable[str] = (), trees: Iterable[str] = ()) -> None:
        """A change through the mount touched ``paths`` and everything under ``trees`` (the
        lock held)."""
        self._gen += 1
        if len(self._touched) + len(self._trees) >= MAX_CHANGES:
            self._touched.clear()
            self._trees.clear()
            self._floor = self._gen
        for path in paths:
            self._touched[path] = self._gen
        for tree in trees:
            self._trees[tree.rstrip("/") + "/"] = self._gen

    def _stale(self, path: str, since: int | None) -> bool:
        """Whether a change touched ``path`` after the token ``since`` (the lock held)."""
        if since is None:
            return False
        if since < self._floor or self._touched.get(path, 0) > since:
            return True
        if not self._trees:
            return False
        key = path.rstrip("/") + "/"
        at = key.find("/", 1)
        while at != -1:  # every folder on the way down, the path itself included
            if self._trees.get(key[: at + 1], 0) > since:
                return True
            at = key.find("/", at + 1)
        return False

    def get(self, path: str) -> dict[str, Any] | None:
        """The attributes of ``path`` if learned less than ``ttl`` seconds ago, else None
        (not known, or known missing)."""
        with self._lock:
            found = self._entries.get(path)
            if found is None:
                return None
            if found[0] <= self._clock():
                del self._entries[path]
                return None
            return found[1]

    def known_missing(self, path: str) -> bool:
        """Whether ``path`` is known not to exist: the server said so, or a listing of its
        folder did not have it, less than ``ttl`` seconds ago."""
        if path.rstrip("/") == "":
            return False  # the mount's root is in no listing
        now = self._clock()
        with self._lock:
            found = self._entries.get(path)
            if found is not None and found[0] > now:
                return found[1] is None
            head, _, name = path.rstrip("/").rpartition("/")
            listing = self._listings.get(head or "/")
            return listing is not None and listing[0] > now and name not in listing[1]

    def note_lookup(self, path: str) -> bool:
        """``path`` is about to be asked for on its own (nothing known of it); True when its
        folder has had enough such lookups lately that one listing of it should answer this
        one and the next ones (and it has no fresh listing already)."""
        if self.ttl <= 0:
            return False
        folder = parent_of(path)
        now = self._clock()
        with self._lock:
            until, count = self._misses.get(folder, (0.0, 0))
            count = count + 1 if until > now else 1
            if len(self._misses) >= self._max:
                self._misses.clear()
            self._misses[folder] = (now + self.ttl, count)
            listed = self._listings.get(folder)
            return count >= LOOKUPS_BEFORE_LISTING and (listed is None or listed[0] <= now)

    def put(self, path: str, attrs: dict[str, Any] | None, since: int | None = None) -> None:
        """What is known of ``path``: its attributes, or None for "it does not exist"; from
        an answer to a request sent at token ``since`` (None: nothing can have changed
        since), kept only when no change through the mount touched ``path`` since."""
        if self.ttl <= 0:
            return
        with self._lock:
            if self._stale(path, since):
                return
            if len(self._entries) >= self._max:
                self._shrink()
            self._entries[path] = (self._clock() + self.ttl, attrs)

    def put_listing(
        self,
        folder: str,
        children: dict[str, dict[str, Any]],
        *,
        busy: Iterable[str] = (),
        since: int | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Everything a listing of ``folder`` said about its children (name -> attributes),
        but the attributes of the ``busy`` names (files open for writing through the mount,
        whose size the listing may not have yet). From a listing sent at token ``since``: its
        names are kept only when no change through the mount touched the folder since, and
        each child's attributes only when no change touched that child.

        Returns ``children`` as known now: a child a change touched since has the attributes
        learned after that change (a flush's query) when the cache has them, and is left out
        when the cache knows it is gone. What reaches the kernel from a listing (readdirplus
        sets the size the kernel keeps) is then never older than the change."""
        if self.ttl <= 0:
            return children  # nothing kept, so nothing newer known either
        prefix = folder.rstrip("/") + "/"
        skip = set(busy)
        known = dict(children)
        with self._lock:
            if len(self._entries) + len(children) > self._max:
                self._shrink()
            now = self._clock()
            until = now + self.ttl
            for name, attrs in children.items():
                path = prefix + name
                if not self._stale(path, since):
                    if name not in skip:
                        self._entries[path] = (until, attrs)
                    continue
                found = self._entries.get(path)
                if found is None or found[0] <= now:
                    continue  # nothing newer known: the listing's, as the kernel may check
                if found[1] is None:
                    del known[name]
                else:
                    known[name] = found[1]
            if not self._stale(folder, since):
                self._listings[folder] = (until, frozenset(children))
        return known

    def forget(self, path: str) -> None:
        """``path`` changed through the mount: its attributes and its folder's are stale."""
        with self._lock:
            self._change((path, parent_of(path)))
            self._entries.pop(path, None)
            self._entries.pop(parent_of(path), None)
            self._listings.pop(parent_of(path), None)
            self._listings.pop(path, None)

    def forget_attrs(self, path: str) -> None:
        """The contents of ``path`` changed through the mount (a write): its attributes are
        stale, its folder's names are not."""
        with self._lock:
            self._change((path,))
            self._entries.pop(path, None)

    def changed(self, path: str, attrs: dict[str, Any]) -> None:
        """The contents of ``path`` were changed through the mount and ``attrs`` is what the
        server said once the change was done (a flush's query): kept, and newer than any answer
        to a request sent before (a listing taken while the writes were still being sent
        would otherwise put its older size back)."""
        with self._lock:
            self._change((path,))
            if self.ttl > 0:
                self._entries[path] = (self._clock() + self.ttl, attrs)

    def added(self, path: str, attrs: dict[str, Any]) -> None:
        """``path`` was made through the mount with ``attrs``: its folder's attributes are
        stale, but its folder's listing, if known, only gained this name."""
        with self._lock:
            self._change((path, parent_of(path)))
            if self.ttl <= 0:
                return
            self._entries.pop(parent_of(path), None)
            self._entries[path] = (self._clock() + self.ttl, attrs)
            self._rename_in_listing(path, path)

    def forget_under(self, path: str) -> None:
        """``path`` is being removed or renamed through the mount: what is known of it and under
        it, and its folder's attributes, are stale; its folder's names are not yet."""
        with self._lock:
            self._change((path, parent_of(path)), (path,))
            self._drop_under(path)

    def removed(self, path: str) -> None:
        """``path`` was removed through the mount: it is known missing, and its folder's
        listing, if known, only lost this name."""
        with self._lock:
            self._change((path, parent_of(path)), (path,))
            self._drop_under(path)
            self._rename_in_listing(path, None)
            if self.ttl > 0:
                self._entries[path] = (self._clock() + self.ttl, None)

    def renamed(self, old: str, new: str) -> None:
        """``old`` is now ``new`` (whatever ``new`` was is gone): the listings of both folders,
        if known, only changed by these names."""
        with self._lock:
            self._change((old, new, parent_of(old), parent_of(new)), (old, new))
            self._drop_under(old)
            self._drop_under(new)
            self._rename_in_listing(old, None)
            self._rename_in_listing(new, new)

    def _drop_under(self, path: str) -> None:
        """(the lock held)"""
        prefix = path.rstrip("/") + "/"
        self._entries.pop(path, None)
        self._entries.pop(parent_of(path), None)
        self._listings.pop(path, None)
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]
        for key in [k for k in self._listings if k.startswith(prefix)]:
            del self._listings[key]

    def _rename_in_listing(self, path: str, now_there: str | None) -> None:
        """Take the name of ``path`` out of its folder's fresh listing, or put it in when
        ``now_there`` (the lock held)."""
        folder = parent_of(path)
        name = path.rstrip("/").rpartition("/")[2]
        listing = self._listings.get(folder)
        if listing is None or listing[0] <= self._clock():
            return
        names = listing[1] | {name} if now_there else listing[1] - {name}
        self._listings[folder] = (listing[0], names)

    def forget_tree(self, path: str) -> None:
        """``path`` and everything under it (a rename, a removed folder), and its folder."""
        with self._lock:
            self._change((path, parent_of(path)), (path,))
            self._drop_under(path)
            self._listings.pop(parent_of(path), None)

    def clear(self) -> None:
        with self._lock:
            self._gen += 1  # every answer in flight is older than this
            self._touched.clear()
            self._trees.clear()
            self._floor = self._gen
            self._entries.clear()
            self._listings.clear()
            self._misses.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _shrink(self) -> None:
        """Drop the expired entries, then the oldest half if still full (the lock held)."""
        now = self._clock()
        for key in [k for k, (until, _) in self._entries.items() if until <= now]:
            del self._entries[key]
        for key in [k for k, (until, _) in self._listings.items() if until <= now]:
            del self._listings[key]
        if len(self._entries) >= self._max:
            ordered = sorted(self._entries.items(), key=lambda item: item[1][0])
            for key, _ in ordered[: len(ordered) // 2]:
                del self._entries[key]
