"""The create rules of rdbss/model/create.py, cell by cell: every disposition x (nothing there,
a file there, a directory there) x (FILE_DIRECTORY_FILE, FILE_NON_DIRECTORY_FILE, neither) x
(write access or not), against an expectation written from MS-FSA 2.1.5.1's prose here, not
from the module's tables."""

from __future__ import annotations

import itertools

import pytest

from rdbss.model.create import (
    CREATING,
    OVERWRITING,
    check_create_parameters,
    create_information,
    data_access,
    decide_create,
)
from rdbss.wire.constants import Access, CreateDisposition, CreateInformation, CreateOptions
from rdbss.wire.rxcontext import CreateParameters
from rdbss.wire.status import NtStatus, NtStatusError

D = CreateDisposition
S = NtStatus
DIR = int(CreateOptions.FILE_DIRECTORY_FILE)
NON_DIR = int(CreateOptions.FILE_NON_DIRECTORY_FILE)


def expected(
    disposition: D, options: int, can_write: bool, there: str | None
) -> tuple[NtStatus, CreateInformation | None]:
    """The status and information MS-FSA gives; ``there`` is None, "file" or "dir"."""
    name = disposition.name
    want_dir = bool(options & DIR)
    # parameter checks come before anything is looked up
    if want_dir and options & NON_DIR:
        return S.STATUS_INVALID_PARAMETER, None
    if want_dir and name not in ("FILE_CREATE", "FILE_OPEN", "FILE_OPEN_IF"):
        return S.STATUS_INVALID_PARAMETER, None
    if there is None:
        if name in ("FILE_OPEN", "FILE_OVERWRITE"):
            return S.STATUS_OBJECT_NAME_NOT_FOUND, None
        return S.STATUS_SUCCESS, CreateInformation.FILE_CREATED
    if name == "FILE_CREATE":
        return S.STATUS_OBJECT_NAME_COLLISION, None
    if there == "dir":
        if options & NON_DIR:
            return S.STATUS_FILE_IS_A_DIRECTORY, None
        if can_write and not want_dir:
            return S.STATUS_FILE_IS_A_DIRECTORY, None
        if name in ("FILE_SUPERSEDE", "FILE_OVERWRITE", "FILE_OVERWRITE_IF"):
            return S.STATUS_OBJECT_NAME_COLLISION, None
        return S.STATUS_SUCCESS, CreateInformation.FILE_OPENED
    if want_dir:
        return S.STATUS_NOT_A_DIRECTORY, None
    if name == "FILE_SUPERSEDE":
        return S.STATUS_SUCCESS, CreateInformation.FILE_SUPERSEDED
    if name in ("FILE_OVERWRITE", "FILE_OVERWRITE_IF"):
        return S.STATUS_SUCCESS, CreateInformation.FILE_OVERWRITTEN
    return S.STATUS_SUCCESS, CreateInformation.FILE_OPENED


def actual(
    disposition: D, options: int, can_write: bool, there: str | None
) -> tuple[int, int | None]:
    params = CreateParameters(disposition=int(disposition), create_options=options)
    try:
        checked, checked_options = check_create_parameters(params)
        decide_create(
            "dir\\name",
            checked,
            checked_options,
            can_write,
            exists=there is not None,
            is_dir=there == "dir",
        )
    except NtStatusError as exc:
        return exc.status, None
    information = create_information(checked, there is not None)
    return S.STATUS_SUCCESS, information


CELLS = list(
    itertools.product(
        list(D), (0, DIR, NON_DIR, DIR | NON_DIR), (False, True), (None, "file", "dir")
    )
)


@pytest.mark.parametrize(("disposition", "options", "can_write", "there"), CELLS)
def test_every_cell(disposition: D, options: int, can_write: bool, there: str | None) -> None:
    want_status, want_information = expected(disposition, options, can_write, there)
    status, information = actual(disposition, options, can_write, there)
    assert status == want_status
    if want_status == S.STATUS_SUCCESS:
        assert information == want_information


def test_the_walk_covers_every_cell() -> None:
    assert len(CELLS) == 6 * 4 * 2 * 3
    assert {d for d, *_ in CELLS} == set(D)


def test_messages_name_the_share_relative_path() -> None:
    with pytest.raises(NtStatusError) as err:
        decide_create("a\\b", D.FILE_OPEN, 0, False, exists=False)
    assert err.value.strerror == "\\a\\b not found"


def test_sets_follow_the_dispositions() -> None:
    assert frozenset(D) - CREATING == {D.FILE_OPEN, D.FILE_OVERWRITE}
    assert {D.FILE_SUPERSEDE, D.FILE_OVERWRITE, D.FILE_OVERWRITE_IF} == OVERWRITING


def test_unknown_disposition_is_invalid() -> None:
    with pytest.raises(NtStatusError) as err:
        check_create_parameters(CreateParameters(disposition=9))
    assert err.value.status == S.STATUS_INVALID_PARAMETER


@pytest.mark.parametrize(
    ("access", "want"),
    [
        (0, (False, False, False)),
        (Access.FILE_READ_ATTRIBUTES, (False, False, False)),
        (Access.FILE_READ_DATA, (True, False, False)),
        (Access.GENERIC_READ, (True, False, False)),
        (Access.MAXIMUM_ALLOWED, (True, False, False)),
        (Access.FILE_WRITE_DATA, (False, True, False)),
        (Access.FILE_APPEND_DATA, (False, True, True)),
        (Access.FILE_APPEND_DATA | Access.FILE_READ_DATA, (True, True, True)),
        (Access.FILE_APPEND_DATA | Access.FILE_WRITE_DATA, (False, True, False)),
        (Access.GENERIC_WRITE, (False, True, False)),
        (Access.GENERIC_ALL, (True, True, False)),
    ],
)
def test_data_access(access: int, want: tuple[bool, bool, bool]) -> None:
    assert data_access(int(access)) == want


def test_not_a_regular_file_is_refused() -> None:
    with pytest.raises(NtStatusError) as err:
        decide_create("dev", D.FILE_OPEN, 0, False, exists=True, is_regular=False)
    assert err.value.status == S.STATUS_ACCESS_DENIED
