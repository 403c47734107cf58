"""The shares of the local mini-redirector and the host paths of share-relative names.

Every share-relative path is checked before use (``components``: NUL, ``:`` and ``..`` are
refused), and its host location, resolved with ``realpath``, must stay inside the share's
folder, so no symbolic link leads out of it (STATUS_ACCESS_DENIED). Error messages name the
share-relative path, never the host path of a share.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rdbss.minirdrs.common.args import components, show
from rdbss.minirdrs.common.shares import check_share_name
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus


@dataclass(slots=True)
class Share:
    name: str  # as configured
    root: str  # absolute, user-expanded host folder

    def __str__(self) -> str:
        return self.name


def host_folder(folder: str) -> str:
    return os.path.abspath(os.path.expanduser(folder))


def within(root: str, real: str) -> bool:
    """``real`` (normalized, absolute) is ``root`` or under it."""
    return real == root or real.startswith(root if root.endswith("/") else root + "/")


def resolve_below(root: str, parts: list[str]) -> tuple[str, os.stat_result | None]:
    """``os.path.realpath(root/parts...)`` for a ``root`` that is resolved already: one lstat
    per component below it (realpath walks every component from /), and realpath itself as
    soon as a component is a symbolic link. Like realpath, what does not exist is kept as
    named. Also the lstat of the last component when it was taken (it exists and is no link),
    else None."""
    current = root
    st: os.stat_result | None = None
    for i, part in enumerate(parts):
        candidate = current + part if current.endswith("/") else current + "/" + part
        try:
            st = os.lstat(candidate)
        except OSError:
            return os.path.join(candidate, *parts[i + 1 :]), None
        if stat.S_ISLNK(st.st_mode):
            return os.path.realpath(os.path.join(root, *parts)), None
        current = candidate
    return current, st


class Shares:
    """The configured (and added) shares by lower-case name, and the host paths in them."""

    def __init__(self, shares: object) -> None:
        if not isinstance(shares, Mapping):
            raise ValueError("local mini-redirector: 'shares' must be a map of name -> folder")
        self._lock = threading.Lock()
        self._shares: dict[str, Share] = {}
        # share name -> (resolved folder, its device and inode): see real_root
        self._real_roots: dict[str, tuple[str, tuple[int, int]]] = {}
        for share, folder in shares.items():
            if not isinstance(folder, str) or not folder:
                raise ValueError(f"local mini-redirector: share {share!r} needs a folder path")
            try:
                check_share_name(share)
            except NtStatusError as exc:
                raise ValueError(f"local mini-redirector: {exc.strerror}") from None
            if share.lower() in self._shares:
                raise ValueError(f"local mini-redirector: share {share!r} given twice")
            self._shares[share.lower()] = Share(share, host_folder(folder))

    def get(self, name: str | None) -> Share:
        with self._lock:
            share = self._shares.get(name.lower()) if isinstance(name, str) else None
        if share is None:
            raise NtStatusError(S.STATUS_BAD_NETWORK_NAME, f"no share named {name!r}")
        return share

    # --- management (RDBSS_LIST_SHARES, RDBSS_ADD_SHARE, RDBSS_REMOVE_SHARE) --------------------
    def listing(self) -> dict[str, Any]:
        with self._lock:
            return {share.name: share.root for share in self._shares.values()}

    def add(self, name: str, folder: str) -> None:
        check_share_name(name)
        root = host_folder(folder) if folder else ""
        if not root or not os.path.isdir(root):
            raise NtStatusError(
                S.STATUS_OBJECT_PATH_NOT_FOUND, f"folder {folder!r} is not a directory"
            )
        with self._lock:
            if name.lower() in self._shares:
                raise NtStatusError(
                    S.STATUS_OBJECT_NAME_COLLISION, f"share {name!r} already exists"
                )
            self._shares[name.lower()] = Share(name, root)

    def remove(self, name: str) -> None:
        with self._lock:
            if self._shares.pop(name.lower(), None) is None:
                raise NtStatusError(S.STATUS_BAD_NETWORK_NAME, f"no share named {name!r}")

    # --- host paths ---------------------------------------------------------------------------
    @staticmethod
    def root(share: Share) -> str:
        root = os.path.realpath(share.root)
        if not os.path.isdir(root):
            raise NtStatusError(
                S.STATUS_BAD_NETWORK_NAME, f"the folder of share {share.name!r} is gone"
            )
        return root

    def real_root(self, share: Share) -> str:
        """``root(share)``, resolved once and then kept while the share's folder is the same
        directory (one stat a request instead of an lstat per component from /)."""
        try:
            info = os.stat(share.root)
        except OSError:
            info = None
        if info is not None and stat.S_ISDIR(info.st_mode):
            known = self._real_roots.get(share.name)
            if known is not None and known[1] == (info.st_dev, info.st_ino):
                return known[0]
        root = self.root(share)  # raises when the folder is gone
        try:
            moved = os.stat(root)
        except OSError:
            return root
        self._real_roots[share.name] = (root, (moved.st_dev, moved.st_ino))
        return root

    def host_path(self, share: Share, rel: str) -> str:
        """The fully resolved host path of ``rel``; ACCESS_DENIED if it leaves the share."""
        return self.host_entry_stat(share, rel)[0]

    def host_entry_stat(self, share: Share, rel: str) -> tuple[str, os.stat_result | None]:
        """``host_path``, and the lstat of what it names when resolving it took one (a path
        with no symbolic link in it, below the share root), else None."""
        parts = components(rel)
        root = self.real_root(share)
        real, st = resolve_below(root, parts)
        if not within(root, real):
            raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(rel)} leads outside the share")
        return real, st

    def host_entry(self, share: Share, rel: str) -> str:
        """The host path of the directory entry ``rel`` itself: its parent resolved, its last
        component not followed (so deleting or renaming a link acts on the link)."""
        parts = components(rel)
        if not parts:
            raise NtStatusError(
                S.STATUS_ACCESS_DENIED, "the share root cannot be renamed or deleted"
            )
        root = self.root(share)
        parent = os.path.realpath(os.path.join(root, *parts[:-1]))
        if not within(root, parent):
            raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{show(rel)} leads outside the share")
        return os.path.join(parent, parts[-1])
