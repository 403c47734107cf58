"""Share access between opens of one file (what IoCheckShareAccess decides), and the create
parameter checks the I/O manager makes before any file system sees a request. Pure code."""

from __future__ import annotations

from collections.abc import Iterable

from rdbss.wire.constants import Access, CreateDisposition, CreateOptions, ShareAccess
from rdbss.wire.status import NtStatus, NtStatusError

# plain ints: IntFlag arithmetic costs a microsecond, and this runs for every open on a create
_READ = int(
    Access.FILE_READ_DATA | Access.FILE_EXECUTE | Access.GENERIC_READ | Access.GENERIC_EXECUTE
)
_WRITE = int(Access.FILE_WRITE_DATA | Access.FILE_APPEND_DATA | Access.GENERIC_WRITE)
_DELETE = int(Access.DELETE)
_ALL = int(Access.GENERIC_ALL | Access.MAXIMUM_ALLOWED)
_SHARE_READ = int(ShareAccess.FILE_SHARE_READ)
_SHARE_WRITE = int(ShareAccess.FILE_SHARE_WRITE)
_SHARE_DELETE = int(ShareAccess.FILE_SHARE_DELETE)


def data_access(access: int) -> tuple[bool, bool, bool]:
    """Whether an access mask reads, writes or deletes (GENERIC_ALL and MAXIMUM_ALLOWED count
    as all three). Attribute-only access takes no part in sharing."""
    if access & _ALL:
        return True, True, True
    return bool(access & _READ), bool(access & _WRITE), bool(access & _DELETE)


def check_share_access(existing: Iterable[tuple[int, int]], access: int, share: int) -> None:
    """Raise STATUS_SHARING_VIOLATION when an open with ``access``/``share`` conflicts with one of
    the ``existing`` (access, share) opens of the same file."""
    reads, writes, deletes = data_access(access)
    if not (reads or writes or deletes):
        return  # an attribute-only open is never checked (and never counted)
    for other_access, other_share in existing:
        o_reads, o_writes, o_deletes = data_access(other_access)
        if not (o_reads or o_writes or o_deletes):
            continue
        conflict = (
            (reads and not other_share & _SHARE_READ)
            or (writes and not other_share & _SHARE_WRITE)
            or (deletes and not other_share & _SHARE_DELETE)
            or (o_reads and not share & _SHARE_READ)
            or (o_writes and not share & _SHARE_WRITE)
            or (o_deletes and not share & _SHARE_DELETE)
        )
        if conflict:
            raise NtStatusError(
                NtStatus.STATUS_SHARING_VIOLATION,
                "the file is open elsewhere with a sharing mode that does not allow this access",
            )


def check_create_parameters(disposition: int, options: int) -> None:
    """The checks the I/O manager makes on IRP_MJ_CREATE parameters."""
    if disposition not in CreateDisposition._value2member_map_:
        raise NtStatusError(NtStatus.STATUS_INVALID_PARAMETER, f"bad disposition {disposition}")
    directory = options & CreateOptions.FILE_DIRECTORY_FILE
    if directory and options & CreateOptions.FILE_NON_DIRECTORY_FILE:
        raise NtStatusError(
            NtStatus.STATUS_INVALID_PARAMETER,
            "FILE_DIRECTORY_FILE and FILE_NON_DIRECTORY_FILE together",
        )
    if directory and disposition not in (
        CreateDisposition.FILE_CREATE,
        CreateDisposition.FILE_OPEN,
        CreateDisposition.FILE_OPEN_IF,
    ):
        raise NtStatusError(
            NtStatus.STATUS_INVALID_PARAMETER,
            "a directory can only be created or opened (not superseded or overwritten)",
        )
