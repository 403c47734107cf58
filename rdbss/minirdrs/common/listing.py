"""Directory enumeration for mini-redirectors that list a whole folder and hand it out in
batches (local, sftp, webdav): one cursor per handle (FOBX), the pattern of the first query
sticks until a restart, STATUS_NO_SUCH_FILE when the first query matches nothing and
STATUS_NO_MORE_FILES at the end (see docs/routines.md, The routines). Each mini-redirector
supplies how to list the matching names and how to describe one entry."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rdbss.minirdrs.base import Result
from rdbss.wire.rxcontext import QueryDirectoryParameters, RxContext
from rdbss.wire.status import NtStatus, NtStatusError

T = TypeVar("T")


def check_pattern(pattern: str) -> str:
    """The search pattern of a query (empty means all); path separators and NUL are refused."""
    pattern = pattern or "*"
    if any(ch in pattern for ch in "\\/\x00"):
        raise NtStatusError(NtStatus.STATUS_OBJECT_NAME_INVALID, f"bad search pattern {pattern!r}")
    return pattern


@dataclass(slots=True)
class Cursor(Generic[T]):
    srv_open: int
    items: list[tuple[str, T]]  # sorted matching names with whatever the listing gave for each
    position: int = 0


class Enumerations(Generic[T]):
    """The enumerations in progress of one mini-redirector. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cursors: dict[int, Cursor[T]] = {}

    def query(
        self,
        ctx: RxContext,
        shown: str,
        load: Callable[[str], list[tuple[str, T]]],
        describe: Callable[[str, T], dict[str, Any] | None],
    ) -> Result:
        """One MRxQueryDirectory. ``load(pattern)`` lists the matching entries (sorted);
        ``describe(name, data)`` gives an entry's file information, or None when it vanished."""
        query = ctx.query_directory or QueryDirectoryParameters()
        limit = 1 if query.return_single_entry else query.max_entries
        if limit < 1:
            raise NtStatusError(
                NtStatus.STATUS_INVALID_PARAMETER, f"max_entries {query.max_entries!r}"
            )
        pattern = check_pattern(query.pattern)
        key = ctx.fobx if ctx.fobx is not None else -int(ctx.srv_open or 0)
        srv_open = int(ctx.srv_open or 0)
        with self._lock:
            cursor = self._cursors.get(key)
        first = cursor is None or cursor.srv_open != srv_open or query.restart_scan
        if first or cursor is None:
            cursor = Cursor(srv_open, load(pattern))
            with self._lock:
                self._cursors[key] = cursor
        entries: list[dict[str, Any]] = []
        while cursor.position < len(cursor.items) and len(entries) < limit:
            index = cursor.position
            name, data = cursor.items[index]
            cursor.position += 1
            info = describe(name, data)
            if info is None:
                continue
            info.update(name=name, file_index=index)
            entries.append(info)
        if not entries:
            if first:
                raise NtStatusError(
                    NtStatus.STATUS_NO_SUCH_FILE, f"nothing in {shown} matches {pattern!r}"
                )
            raise NtStatusError(NtStatus.STATUS_NO_MORE_FILES, f"no more entries in {shown}")
        return Result(result={"entries": entries})

    def forget_fobx(self, fobx: int | None) -> None:
        if fobx is not None:
            with self._lock:
                self._cursors.pop(fobx, None)

    def forget_srv_open(self, srv_open: int | None) -> None:
        with self._lock:
            for key in [k for k, c in self._cursors.items() if c.srv_open == srv_open]:
                del self._cursors[key]

    def clear(self) -> None:
        with self._lock:
            self._cursors.clear()
