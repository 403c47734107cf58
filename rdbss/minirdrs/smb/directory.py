"""QUERY_DIRECTORY (MS-SMB2 2.2.33) on a directory handle: one cursor per Fobx, filled by
round trips of FileIdFullDirectoryInformation entries ("." and ".." left out) and handed out
``max_entries`` at a time. The first query of a cursor restarts the scan with the new pattern
(SMB2_REOPEN); STATUS_NO_SUCH_FILE when nothing matches at all, STATUS_NO_MORE_FILES at the end.
"""

from __future__ import annotations

from typing import Any

from rdbss.minirdrs.base import Result
from rdbss.minirdrs.smb.opens import Cursor, SmbSrvOpen, show
from rdbss.minirdrs.smb.structures import (
    FILE_ID_FULL_DIRECTORY_INFORMATION,
    REOPEN,
    RESTART_SCANS,
    parse_directory_entries,
    query_directory_buffer,
    query_directory_request,
    smb_file_info,
)
from rdbss.wire.rxcontext import QueryDirectoryParameters, RxContext
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus


def query_directory(op: SmbSrvOpen, ctx: RxContext) -> Result:
    if not op.is_dir:
        raise NtStatusError(S.STATUS_INVALID_PARAMETER, f"{show(op.path)} is not a directory")
    query = ctx.query_directory or QueryDirectoryParameters()
    limit = 1 if query.return_single_entry else query.max_entries
    if limit < 1:
        raise NtStatusError(S.STATUS_INVALID_PARAMETER, f"max_entries {query.max_entries!r}")
    key = ctx.fobx if ctx.fobx is not None else -int(ctx.srv_open or 0)
    cursor = op.cursor
    if cursor is None or cursor.key != key or query.restart_scan:
        pattern = query.pattern or "*"
        if any(ch in pattern for ch in "\\/\x00"):
            raise NtStatusError(S.STATUS_OBJECT_NAME_INVALID, f"bad search pattern {pattern!r}")
        cursor = Cursor(key)
        op.cursor = cursor
        _fetch(op, cursor, pattern, RESTART_SCANS | REOPEN)
    entries: list[dict[str, Any]] = []
    while len(entries) < limit:
        if not cursor.buffered:
            if cursor.ended:
                break
            _fetch(op, cursor, query.pattern or "*", 0)
            continue
        name, raw = cursor.buffered.popleft()
        rel = f"{op.path}\\{name}" if op.path else name
        info = smb_file_info(raw, rel)
        info.update(name=name, file_index=cursor.delivered)
        cursor.delivered += 1
        entries.append(info)
    if not entries:
        if cursor.delivered == 0:
            raise NtStatusError(
                S.STATUS_NO_SUCH_FILE, f"nothing in {show(op.path)} matches {query.pattern!r}"
            )
        raise NtStatusError(S.STATUS_NO_MORE_FILES, f"no more entries in {show(op.path)}")
    return Result(result={"entries": entries})


def _fetch(op: SmbSrvOpen, cursor: Cursor, pattern: str, flags: int) -> None:
    """One QUERY_DIRECTORY round trip into the cursor's buffer ("." and ".." left out)."""
    request = query_directory_request(
        op.handle.file_id, pattern, FILE_ID_FULL_DIRECTORY_INFORMATION, flags
    )
    try:
        data = op.link.call(
            f"cannot list {show(op.path)}",
            lambda: query_directory_buffer(op.link.one(op.tree, request)),
        )
    except NtStatusError as exc:
        if exc.status in (S.STATUS_NO_MORE_FILES, S.STATUS_NO_SUCH_FILE):
            cursor.ended = True
            return
        raise
    entries = parse_directory_entries(data)
    if not entries:
        cursor.ended = True
    cursor.buffered.extend(e for e in entries if e[0] not in (".", ".."))


def forget_cursor(op: SmbSrvOpen | None, fobx: int | None) -> None:
    """MRxCleanupFobx: the Fobx's enumeration ends with it."""
    if op is not None and op.cursor is not None and op.cursor.key == fobx:
        op.cursor = None
