"""The SrvOpen records of the SMB mini-redirector (one SMB2 handle each: the FileId of a
CREATE answer, MS-SMB2 2.2.14), kept in the shared ``OpenTable``, plus the one-request
exchanges every concern module sends on a handle.

Names on an SMB share compare without case, as the server compares them: a rename moves every
open of the same share (and link) at or under the old name whatever its case.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rdbss.minirdrs.base import OpenBase, OpenTable
from rdbss.minirdrs.common.args import show
from rdbss.minirdrs.smb.link import SmbLink
from rdbss.minirdrs.smb.structures import (
    SMB2_0_INFO_FILE,
    RawInfo,
    query_info_buffer,
    query_info_request,
    set_info_request,
)
from rdbss.wire.status import NtStatusError

__all__ = ["Cursor", "SmbSrvOpen", "renamed", "show"]


@dataclass(slots=True)
class Cursor:
    """A directory enumeration in progress, one per FOBX."""

    key: int
    buffered: deque[tuple[str, RawInfo]] = field(default_factory=deque)
    delivered: int = 0
    ended: bool = False


@dataclass(slots=True, kw_only=True)
class SmbSrvOpen(OpenBase[str]):
    """One SRV_OPEN: an SMB2 handle on a share (``share``: its name as the caller wrote it;
    ``path``: share-relative, backslashes, "" for the root)."""

    link: SmbLink
    tree: Any  # smbprotocol TreeConnect
    handle: Any  # smbprotocol Open
    locks: list[tuple[int, int, bool]] = field(default_factory=list)  # (offset, length, shared)
    cursor: Cursor | None = None
    closed: bool = False  # its share was finalized under it


def renamed(table: OpenTable[SmbSrvOpen], moved: SmbSrvOpen, old: str, new: str) -> None:
    """Point every open at or under ``old`` (same share, same link, any case) at ``new``."""
    prefix = old.lower() + "\\"
    with table.lock:
        for other in table.values():
            if other.link is not moved.link or other.share.lower() != moved.share.lower():
                continue
            if other.path.lower() == old.lower():
                other.path = new
            elif other.path.lower().startswith(prefix):
                other.path = new + "\\" + other.path[len(prefix) :]
        moved.path = new


# --------------------------------------------------------------------------------------------
# One request on a handle
# --------------------------------------------------------------------------------------------


def send(op: SmbSrvOpen, message: Any, credit_request: int | None = None) -> Any:
    """Send one request on the handle's tree (without waiting): smbprotocol's Request."""
    return op.link.connection.send(
        message,
        sid=op.link.session.session_id,
        tid=op.tree.tree_connect_id,
        credit_request=credit_request,
    )


def roundtrip(
    op: SmbSrvOpen,
    what: str,
    message: Any,
    answer: Callable[[Any], Any],
    credit_request: int | None = None,
) -> Any:
    """Send one request built by smbprotocol (``send=False``) and unpack its answer."""
    return op.link.call(what, lambda: answer(send(op, message, credit_request)))


def query_info(op: SmbSrvOpen, what: str, request: Any) -> bytes:
    """One QUERY_INFO (MS-SMB2 2.2.37): the answer's buffer."""
    return op.link.call(what, lambda: query_info_buffer(op.link.one(op.tree, request)))


def query_file(op: SmbSrvOpen, info_class: int, what: str) -> bytes:
    request = query_info_request(op.handle.file_id, SMB2_0_INFO_FILE, info_class)
    return query_info(op, what, request)


def set_info(op: SmbSrvOpen, what: str, request: Any) -> None:
    """One SET_INFO (MS-SMB2 2.2.39)."""
    op.link.call(what, lambda: op.link.one(op.tree, request))


def set_file(op: SmbSrvOpen, info_class: int, buffer: bytes, what: str) -> None:
    request = set_info_request(op.handle.file_id, info_class, buffer)
    set_info(op, f"{what} {show(op.path)}", request)


def close_quietly(op: SmbSrvOpen) -> None:
    """Close the SMB handle; quietly, since nothing can be done about a failure."""
    if op.link.dead is not None or not op.handle.connected:
        return
    with contextlib.suppress(NtStatusError):
        op.link.call(f"cannot close {show(op.path)}", op.handle.close)
