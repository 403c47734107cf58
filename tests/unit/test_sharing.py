"""Share access between opens and the create parameter checks."""

from __future__ import annotations

import pytest

from rdbss.model.sharing import check_create_parameters, check_share_access
from rdbss.wire import Access, CreateDisposition, CreateOptions, NtStatus, NtStatusError
from rdbss.wire import ShareAccess as Sh

R, W, D = Access.GENERIC_READ, Access.GENERIC_WRITE, Access.DELETE
ATTR = Access.FILE_READ_ATTRIBUTES


@pytest.mark.parametrize(
    ("existing", "access", "share", "ok"),
    [
        ([(R, Sh.FILE_SHARE_READ)], R, Sh.FILE_SHARE_READ, True),
        ([(R, Sh.FILE_SHARE_READ)], W, Sh.ALL, False),  # the first does not share write
        ([(W, Sh.ALL)], R, Sh.FILE_SHARE_READ, False),  # the new one does not share write
        ([(R, Sh.NONE)], ATTR, Sh.NONE, True),  # attribute-only opens take no part
        ([(ATTR, Sh.NONE)], R, Sh.NONE, True),
        ([(R, Sh.ALL)], D, Sh.ALL, True),
        ([(R, Sh.FILE_SHARE_READ)], D, Sh.ALL, False),  # delete needs FILE_SHARE_DELETE
        ([(Access.GENERIC_ALL, Sh.ALL)], R, Sh.FILE_SHARE_READ, False),
        ([(R, Sh.ALL), (W, Sh.ALL)], R | W, Sh.ALL, True),
        ([], R | W | D, Sh.NONE, True),
    ],
)
def test_share_access(existing: list[tuple[int, int]], access: int, share: int, ok: bool) -> None:
    if ok:
        check_share_access(existing, access, share)
    else:
        with pytest.raises(NtStatusError) as info:
            check_share_access(existing, access, share)
        assert info.value.status == NtStatus.STATUS_SHARING_VIOLATION


@pytest.mark.parametrize(
    ("disposition", "options", "ok"),
    [
        (CreateDisposition.FILE_OPEN, CreateOptions.FILE_DIRECTORY_FILE, True),
        (CreateDisposition.FILE_OVERWRITE_IF, CreateOptions.FILE_DIRECTORY_FILE, False),
        (CreateDisposition.FILE_SUPERSEDE, CreateOptions.FILE_DIRECTORY_FILE, False),
        (
            CreateDisposition.FILE_OPEN,
            CreateOptions.FILE_DIRECTORY_FILE | CreateOptions.FILE_NON_DIRECTORY_FILE,
            False,
        ),
        (CreateDisposition.FILE_OVERWRITE, CreateOptions.FILE_NON_DIRECTORY_FILE, True),
        (9, CreateOptions.NONE, False),
    ],
)
def test_create_parameters(disposition: int, options: int, ok: bool) -> None:
    if ok:
        check_create_parameters(disposition, options)
    else:
        with pytest.raises(NtStatusError) as info:
            check_create_parameters(disposition, options)
        assert info.value.status == NtStatus.STATUS_INVALID_PARAMETER
