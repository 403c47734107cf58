"""The attribute cache's place in the core (model/attrcache.py has the rules): what creates,
stats, listings and queries on a handle answered is kept while the file's mini-redirector
grants FILESIZECACHEING and FILETIMECACHEING (``caching = "exclusive"``), and answers later
stats (a create for attributes and its close) and size-and-times queries on a handle with no
message to the mini-redirector. Every request that changes a file drops what is kept of it,
when it is sent and again when it completes.

A stat is answered from the cache only when the file has no Fcb here:
an open file's size may be changing under deferred writes, so its stats take the usual way. A
listing keeps nothing of files open for writing, for the same reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rdbss.core.services import CoreState
from rdbss.core.types import Payload, Then
from rdbss.model.attrcache import AttrCache, answers_open, may_cache_attributes
from rdbss.model.structs import Fcb, NetRoot, SrvCall, SrvOpen
from rdbss.wire.constants import WRITE_ACCESS, Access, CreateOptions
from rdbss.wire.rxcontext import RxCompletion
from rdbss.wire.status import NtStatus

S = NtStatus

#: A handle whose close may change the file (times stamped at close, a delete on close).
_CHANGING_ACCESS = int(WRITE_ACCESS | Access.DELETE)


class Attributes:
    def __init__(self, state: CoreState) -> None:
        self.state = state
        settings = state.settings
        self.cache = AttrCache(settings.attr_cache_entries, settings.attr_max_age_s)
        self._minirdr_of: dict[str, str] = {}  # NetRoot prefix (lower) -> its mini-redirector

    # ------------------------------------------------------------------ when it applies
    def allowed(self, net_root: NetRoot) -> bool:
        """Whether the NetRoot's mini-redirector lets the core keep attributes."""
        if not self.cache.enabled or net_root.minirdr is None:
            return False
        peer = self.state.peers.get(net_root.minirdr)
        return peer is not None and may_cache_attributes(peer.buffering)

    def epoch(self, net_root: NetRoot) -> int:
        return self.cache.epoch(net_root.prefix)

    # ------------------------------------------------------------------ answers
    def stat(self, net_root: NetRoot, path: str, create_options: int) -> dict[str, Any] | None:
        """What a stat of ``path`` (a file with no Fcb) answers from the cache, or None."""
        if not self.allowed(net_root):
            return None
        info = self.cache.lookup(net_root.prefix, path, self.state.clock())
        if info is None or not answers_open(info, create_options):
            return None
        return info

    def query(self, fcb: Fcb) -> dict[str, Any] | None:
        """What a size-and-times query on a handle of ``fcb`` answers from the cache, or None:
        only while the Fcb's own buffering state allows it and no write is held or under way."""
        if (
            not may_cache_attributes(fcb.buffering)
            or fcb.dirty
            or fcb.flushing
            or fcb.delete_pending
            or not self.allowed(fcb.net_root)
        ):
            return None
        info = self.cache.lookup(fcb.net_root.prefix, fcb.path, self.state.clock())
        if info is not None:
            info["delete_pending"] = False
        return info

    # ------------------------------------------------------------------ fills
    def learning(self, net_root: NetRoot, path: str, then: Then) -> Then:
        """Wrap the continuation of a request whose answer describes ``path`` (a create, a
        stat, a query on a handle): a success is kept, unless something changed meanwhile."""
        if not self.allowed(net_root):
            return then
        self._note(net_root)
        epoch = self.epoch(net_root)

        def learn(done: RxCompletion, payload: Payload) -> None:
            self._fill(net_root, path, done, epoch)
            then(done, payload)

        return learn

    def _fill(self, net_root: NetRoot, path: str, done: RxCompletion, epoch: int) -> None:
        if done.status == S.STATUS_SUCCESS and isinstance(done.result, dict):
            self.cache.fill(net_root.prefix, path, done.result, self.state.clock(), epoch)

    def listing(self, fcb: Fcb, then: Then) -> Then:
        """Wrap the continuation of a listing of the folder ``fcb``: its entries are kept,
        except files open for writing here."""
        return self.listing_at(fcb.net_root, fcb.path, then)

    def listing_at(self, net_root: NetRoot, folder: str, then: Then) -> Then:
        """``listing`` of the folder ``folder`` of ``net_root`` (a listing that rides along
        with the create of its handle, before the Fcb is known)."""
        if not self.allowed(net_root):
            return then
        self._note(net_root)
        epoch = self.epoch(net_root)

        def learn(done: RxCompletion, payload: Payload) -> None:
            result = done.result
            if done.status == S.STATUS_SUCCESS and isinstance(result, dict):
                entries = result.get("entries")
                if isinstance(entries, list):
                    self.cache.fill_listing(
                        net_root.prefix,
                        folder,
                        (e for e in entries if isinstance(e, dict)),
                        self.state.clock(),
                        epoch,
                        self._writing(net_root),
                    )
            then(done, payload)

        return learn

    def _writing(self, net_root: NetRoot) -> frozenset[str]:
        """The files of the NetRoot open for writing, or with writes held (lower-cased)."""
        return frozenset(
            key
            for key, fcb in net_root.fcbs.items()
            if fcb.dirty
            or fcb.flushing
            or any(so.desired_access & WRITE_ACCESS for so in fcb.srv_opens)
        )

    def _note(self, net_root: NetRoot) -> None:
        """A request that may fill goes to the NetRoot: from now on its changes count."""
        if net_root.minirdr is not None:
            self._minirdr_of[net_root.prefix.lower()] = net_root.minirdr

    def _watching(self, net_root: NetRoot) -> bool:
        """Whether anything of the NetRoot may be kept or on its way (else a change of it has
        nothing to drop, and costs nothing)."""
        return self.cache.enabled and net_root.prefix.lower() in self._minirdr_of

    # ------------------------------------------------------------------ changes
    def changing(self, net_root: NetRoot, path: str, then: Then) -> Then:
        """A request that may change the file's size, times or attributes: its entry goes now
        and when the request completes."""
        if not self._watching(net_root):
            return then
        prefix = net_root.prefix
        return self._twice(lambda: self.cache.changed(prefix, path), then)

    @staticmethod
    def _twice(drop: Callable[[], None], then: Then) -> Then:
        """``drop`` now and again when the request completes, before ``then``."""
        drop()

        def again(done: RxCompletion, payload: Payload) -> None:
            drop()
            then(done, payload)

        return again

    def changed(self, fcb: Fcb) -> None:
        """The file changed (a deferred write was taken or sent)."""
        if self._watching(fcb.net_root):
            self.cache.changed(fcb.net_root.prefix, fcb.path)

    def creating(self, net_root: NetRoot, path: str, then: Then) -> Then:
        """A create that may make, overwrite or supersede ``path``: its entry and its folder's
        go now and when it completes; what it answers is then kept."""
        allowed = self.allowed(net_root)
        if allowed:
            self._note(net_root)
        elif not self._watching(net_root):
            return then
        prefix = net_root.prefix
        self.cache.created(prefix, path)

        def created(done: RxCompletion, payload: Payload) -> None:
            self.cache.created(prefix, path)
            if allowed:
                self._fill(net_root, path, done, self.epoch(net_root))
            then(done, payload)

        return created

    def renaming(self, fcb: Fcb, target: str, then: Then) -> Then:
        """A rename of ``fcb`` to ``target`` (share-relative)."""
        if not self._watching(fcb.net_root):
            return then
        prefix, source = fcb.net_root.prefix, fcb.path
        return self._twice(lambda: self.cache.renamed(prefix, source, target), then)

    def deleting(self, net_root: NetRoot, path: str, then: Then) -> Then:
        """A delete of ``path`` (now, or at its last close)."""
        if not self._watching(net_root):
            return then
        prefix = net_root.prefix
        return self._twice(lambda: self.cache.deleted(prefix, path), then)

    def closing(
        self, net_root: NetRoot, path: str, access: int, options: int, deleting: bool, then: Then
    ) -> Then:
        """The close of a handle with this access and these create options: one that could
        write or delete may change the file as it closes (servers stamp times at close; a
        delete pending or on close happens then)."""
        if deleting or options & CreateOptions.FILE_DELETE_ON_CLOSE:
            return self.deleting(net_root, path, then)
        if access & _CHANGING_ACCESS:
            return self.changing(net_root, path, then)
        return then

    def closing_srv_open(self, srv_open: SrvOpen, then: Then) -> Then:
        """``closing`` for the close of a handle of ``srv_open``."""
        fcb = srv_open.fcb
        return self.closing(
            fcb.net_root,
            fcb.path,
            srv_open.desired_access,
            srv_open.create_options,
            fcb.delete_pending,
            then,
        )

    # ------------------------------------------------------------------ losses
    def peer_down(self, name: str) -> None:
        """A mini-redirector went down: nothing it told is trusted any more."""
        for prefix in [p for p, m in self._minirdr_of.items() if m == name]:
            del self._minirdr_of[prefix]
            self.cache.drop_net_root(prefix)

    def connection_lost(self, srv_call: SrvCall) -> None:
        """The connection to a server was lost: what it told goes with it."""
        start = f"\\\\{srv_call.name}\\".lower()
        for prefix in [p for p in self._minirdr_of if p.startswith(start)]:
            del self._minirdr_of[prefix]
            self.cache.drop_net_root(prefix)

    def counters(self) -> dict[str, int]:
        stats = self.cache.stats
        return {
            "attr_hits": stats.hits,
            "attr_misses": stats.misses,
            "attr_fills": stats.fills,
            "attr_stale_fills": stats.stale_fills,
            "attr_invalidations": stats.invalidations,
            "attr_entries": len(self.cache),
        }
