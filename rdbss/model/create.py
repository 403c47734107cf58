"""The rules of MRxCreate every mini-redirector follows, as tables and checks. Pure code.

What a create does is decided by its disposition and whether the name exists (MS-FSA 2.1.5.1,
"Server Requests an Open of a File"):

=================  ====================  =====================
disposition        nothing there         something there
=================  ====================  =====================
FILE_SUPERSEDE     create                supersede
FILE_OPEN          OBJECT_NAME_NOT_FOUND open
FILE_CREATE        create                OBJECT_NAME_COLLISION
FILE_OPEN_IF       create                open
FILE_OVERWRITE     OBJECT_NAME_NOT_FOUND overwrite
FILE_OVERWRITE_IF  create                overwrite
=================  ====================  =====================

and what the create answers as its information (CreateInformation) follows from the action.
An existing directory is only ever opened: overwriting or superseding one is refused, and so
are FILE_NON_DIRECTORY_FILE and a write access without FILE_DIRECTORY_FILE (``check_open_dir``);
FILE_DIRECTORY_FILE on an existing file is STATUS_NOT_A_DIRECTORY. Paths in messages are
share-relative (``\\dir\\name``), never host or server paths.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from rdbss.wire.constants import (
    READ_ACCESS,
    WRITE_ACCESS,
    Access,
    CreateDisposition,
    CreateInformation,
    CreateOptions,
)
from rdbss.wire.rxcontext import CreateParameters
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus
D = CreateDisposition


class Action(enum.Enum):
    """What a create does to the name it opens."""

    OPEN = "open"  # open what is there
    CREATE = "create"  # make a new file or directory
    OVERWRITE = "overwrite"  # truncate the file that is there (its attributes stay)
    SUPERSEDE = "supersede"  # replace the file that is there
    NOT_FOUND = "not found"  # fail: STATUS_OBJECT_NAME_NOT_FOUND
    COLLISION = "collision"  # fail: STATUS_OBJECT_NAME_COLLISION


A = Action

#: disposition -> (the action when nothing exists, the action when something exists)
ACTIONS: Mapping[CreateDisposition, tuple[Action, Action]] = {
    D.FILE_SUPERSEDE: (A.CREATE, A.SUPERSEDE),
    D.FILE_OPEN: (A.NOT_FOUND, A.OPEN),
    D.FILE_CREATE: (A.CREATE, A.COLLISION),
    D.FILE_OPEN_IF: (A.CREATE, A.OPEN),
    D.FILE_OVERWRITE: (A.NOT_FOUND, A.OVERWRITE),
    D.FILE_OVERWRITE_IF: (A.CREATE, A.OVERWRITE),
}

#: the create's information for each action that succeeds
INFORMATION: Mapping[Action, CreateInformation] = {
    A.OPEN: CreateInformation.FILE_OPENED,
    A.CREATE: CreateInformation.FILE_CREATED,
    A.OVERWRITE: CreateInformation.FILE_OVERWRITTEN,
    A.SUPERSEDE: CreateInformation.FILE_SUPERSEDED,
}

#: the dispositions that truncate or replace an existing file
OVERWRITING: frozenset[CreateDisposition] = frozenset(
    d for d, (_, there) in ACTIONS.items() if there in (A.OVERWRITE, A.SUPERSEDE)
)
#: the dispositions that create a missing name
CREATING: frozenset[CreateDisposition] = frozenset(
    d for d, (missing, _) in ACTIONS.items() if missing is A.CREATE
)
#: the dispositions FILE_DIRECTORY_FILE allows (a directory is opened or created, never
#: overwritten)
DIRECTORY_DISPOSITIONS: frozenset[CreateDisposition] = frozenset(
    {D.FILE_CREATE, D.FILE_OPEN, D.FILE_OPEN_IF}
)

# plain ints: IntFlag arithmetic costs a microsecond, and a create tests several of these
#: access bits that write data anywhere (FILE_APPEND_DATA alone only appends)
_WRITE_ANYWHERE = int(Access.FILE_WRITE_DATA | Access.GENERIC_WRITE | Access.GENERIC_ALL)
_READING = int(READ_ACCESS | Access.MAXIMUM_ALLOWED)
_WRITING = int(WRITE_ACCESS)
_DIRECTORY_FILE = int(CreateOptions.FILE_DIRECTORY_FILE)
_NON_DIRECTORY_FILE = int(CreateOptions.FILE_NON_DIRECTORY_FILE)


def _show(rel: str) -> str:
    return "\\" + rel


def create_action(disposition: CreateDisposition, exists: bool, rel: str = "") -> Action:
    """The action of the table for ``disposition`` and ``exists``; raises
    STATUS_OBJECT_NAME_NOT_FOUND or STATUS_OBJECT_NAME_COLLISION for the cells that fail."""
    action = ACTIONS[disposition][1 if exists else 0]
    if action is A.NOT_FOUND:
        raise NtStatusError(S.STATUS_OBJECT_NAME_NOT_FOUND, f"{_show(rel)} not found")
    if action is A.COLLISION:
        raise NtStatusError(S.STATUS_OBJECT_NAME_COLLISION, f"{_show(rel)} already exists")
    return action


def create_information(disposition: CreateDisposition, exists: bool) -> int:
    """The CreateInformation a successful create answers."""
    return int(INFORMATION[create_action(disposition, exists)])


#: the dispositions by value (a dictionary lookup: calling the enum costs several calls)
_DISPOSITIONS: Mapping[int, CreateDisposition] = {int(d): d for d in CreateDisposition}


def check_create_parameters(params: CreateParameters) -> tuple[CreateDisposition, int]:
    """The disposition and create options of a create, checked: a known disposition, not both
    FILE_DIRECTORY_FILE and FILE_NON_DIRECTORY_FILE, FILE_DIRECTORY_FILE only with a
    disposition that can open or create a directory; else STATUS_INVALID_PARAMETER."""
    disposition = _DISPOSITIONS.get(params.disposition)
    if disposition is None:
        raise NtStatusError(
            S.STATUS_INVALID_PARAMETER, f"unknown create disposition {params.disposition!r}"
        )
    options = int(params.create_options)
    want_dir = bool(options & _DIRECTORY_FILE)
    if want_dir and options & _NON_DIRECTORY_FILE:
        raise NtStatusError(
            S.STATUS_INVALID_PARAMETER,
            "FILE_DIRECTORY_FILE and FILE_NON_DIRECTORY_FILE together",
        )
    if want_dir and disposition not in DIRECTORY_DISPOSITIONS:
        raise NtStatusError(
            S.STATUS_INVALID_PARAMETER,
            f"FILE_DIRECTORY_FILE with {disposition.name}",
        )
    return disposition, options


def data_access(desired_access: int) -> tuple[bool, bool, bool]:
    """(can read, can write, append only) for a desired access mask. Append only: the open may
    write (FILE_APPEND_DATA) but only at the end of the file."""
    can_read = bool(desired_access & _READING)
    can_write = bool(desired_access & _WRITING)
    append_only = can_write and not desired_access & _WRITE_ANYWHERE
    return can_read, can_write, append_only


def check_open_dir(rel: str, options: int, disposition: CreateDisposition, can_write: bool) -> None:
    """What an open of an existing directory refuses: FILE_NON_DIRECTORY_FILE, writing data
    (FILE_WRITE_DATA is FILE_ADD_FILE on a directory, meant only by a caller that asked for a
    directory), and overwriting or superseding it."""
    if options & _NON_DIRECTORY_FILE:
        raise NtStatusError(S.STATUS_FILE_IS_A_DIRECTORY, f"{_show(rel)} is a directory")
    if can_write and not options & _DIRECTORY_FILE:
        raise NtStatusError(
            S.STATUS_FILE_IS_A_DIRECTORY, f"{_show(rel)} is a directory: cannot write it"
        )
    if disposition in OVERWRITING:
        raise NtStatusError(
            S.STATUS_OBJECT_NAME_COLLISION, f"{_show(rel)} is a directory: cannot overwrite it"
        )


def check_open_existing(
    rel: str,
    options: int,
    disposition: CreateDisposition,
    can_write: bool,
    *,
    is_dir: bool,
    is_regular: bool = True,
) -> bool:
    """What an open of an existing entry checks about its kind (a create and a query open
    alike): ``check_open_dir`` for a directory; STATUS_NOT_A_DIRECTORY for FILE_DIRECTORY_FILE
    on anything else; STATUS_ACCESS_DENIED for what is neither a directory nor a regular file
    (a device, a socket). True for a directory."""
    if is_dir:
        check_open_dir(rel, options, disposition, can_write)
        return True
    if options & _DIRECTORY_FILE:
        raise NtStatusError(S.STATUS_NOT_A_DIRECTORY, f"{_show(rel)} is not a directory")
    if not is_regular:
        raise NtStatusError(S.STATUS_ACCESS_DENIED, f"{_show(rel)} is not a regular file")
    return False


def decide_create(
    rel: str,
    disposition: CreateDisposition,
    options: int,
    can_write: bool,
    *,
    exists: bool,
    is_dir: bool = False,
    is_regular: bool = True,
) -> Action:
    """The whole decision of a create once its parameters are checked and the name looked up
    (``is_dir``/``is_regular`` describe what exists): the action, or the NtStatusError of the
    first rule that refuses it (the table first, then the checks of ``check_open_existing``)."""
    action = create_action(disposition, exists, rel)
    if exists:
        check_open_existing(
            rel, options, disposition, can_write, is_dir=is_dir, is_regular=is_regular
        )
    return action
