"""Buffering states and the open-collapsing rules (see docs/routines.md, Buffering states and
Create, collapsing and close). Pure code.

A mini-redirector's grant is the set of FCB_STATE_*_ENABLED bits it allows for an uncontended
open (what MRxComputeNewBufferingState answers for an SMB oplock or an NFS delegation). Our
servers give no oplocks, so the grant is fixed by configuration and sent once, with the
registration (``Register.buffering``): the hot path needs no extra round trip. The core then
narrows it like an oplock, from the handles open on the Fcb:

- one handle, or only readers: the grant stands (readers lose the write bits);
- a writer among several handles: no caching at all, only the handle bits (collapsing);
- a byte-range lock on the file: no data caching (locks are mandatory and checked by the
  mini-redirector, so every read and write must reach it).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from rdbss.model.sharing import check_share_access, data_access
from rdbss.wire.constants import CreateDisposition, CreateOptions
from rdbss.wire.status import NtStatusError


class FcbState:
    """The buffering bits of FCB_STATE (docs/routines.md, Buffering states), plus DELAY_CLOSE.
    Plain ints, not an IntFlag: they are tested on every request, and IntFlag arithmetic costs a
    microsecond."""

    NONE = 0
    DELAY_CLOSE = 0x800  # a closed SrvOpen may be kept for a re-open (delayed close)
    FILETIMECACHEING_ENABLED = 0x80000
    FILESIZECACHEING_ENABLED = 0x100000
    LOCK_BUFFERING_ENABLED = 0x200000
    COLLAPSING_ENABLED = 0x400000
    OPENSHARING_ENABLED = 0x800000
    READBUFFERING_ENABLED = 0x1000000
    READCACHING_ENABLED = 0x2000000
    WRITEBUFFERING_ENABLED = 0x4000000
    WRITECACHING_ENABLED = 0x8000000


F = FcbState
#: name -> bit, in the order of the class
_BITS: dict[str, int] = {
    name: bit for name, bit in vars(FcbState).items() if name.isupper() and type(bit) is int and bit
}
#: FCB_STATE_BUFFERING_STATE_MASK (the nine *_ENABLED bits) and DELAY_CLOSE.
BUFFERING_STATE_MASK = (
    F.WRITECACHING_ENABLED
    | F.WRITEBUFFERING_ENABLED
    | F.READCACHING_ENABLED
    | F.READBUFFERING_ENABLED
    | F.OPENSHARING_ENABLED
    | F.COLLAPSING_ENABLED
    | F.LOCK_BUFFERING_ENABLED
    | F.FILESIZECACHEING_ENABLED
    | F.FILETIMECACHEING_ENABLED
    | F.DELAY_CLOSE
)
HANDLE_BITS = F.COLLAPSING_ENABLED | F.OPENSHARING_ENABLED | F.DELAY_CLOSE
READ_BITS = (
    F.READCACHING_ENABLED
    | F.READBUFFERING_ENABLED
    | F.FILESIZECACHEING_ENABLED
    | F.FILETIMECACHEING_ENABLED
)
WRITE_BITS = F.WRITECACHING_ENABLED | F.WRITEBUFFERING_ENABLED | F.LOCK_BUFFERING_ENABLED


class Caching(StrEnum):
    """The ``caching`` option of a mini-redirector: what it may grant.

    - ``off``: handles of one file with the same access share one server open (collapsing);
      nothing is cached and a close closes at once.
    - ``handles``: also keep a closed server open for ``close_delay`` seconds so that a
      re-open reuses it (safe only where no other program renames or deletes the files).
    - ``exclusive``: also cache file data in the core: promises that only rdbss writes there.
    """

    OFF = "off"
    HANDLES = "handles"
    EXCLUSIVE = "exclusive"


_GRANTS: dict[Caching, int] = {
    Caching.OFF: F.COLLAPSING_ENABLED | F.OPENSHARING_ENABLED,
    Caching.HANDLES: int(HANDLE_BITS),
    Caching.EXCLUSIVE: int(BUFFERING_STATE_MASK),
}


def grant_for(caching: str, mask: int = int(BUFFERING_STATE_MASK)) -> int:
    """The buffering bits a mini-redirector registers for its ``caching`` option, limited by
    what its kind allows at all (``mask``). ValueError for an unknown option value."""
    try:
        level = Caching(caching)
    except ValueError:
        known = ", ".join(c.value for c in Caching)
        raise ValueError(f"caching must be one of {known}, not {caching!r}") from None
    return _GRANTS[level] & mask & BUFFERING_STATE_MASK


def compute_buffering_state(grant: int, accesses: Iterable[int], locked: bool = False) -> int:
    """The Fcb's buffering state for the handles open on it (their desired access masks):
    MRxComputeNewBufferingState with the core standing in for the server's oplock rules."""
    state = grant & BUFFERING_STATE_MASK
    opens = list(accesses)
    if len(opens) > 1:
        if any(data_access(a)[1] for a in opens):
            state &= HANDLE_BITS  # a writer among several handles: caching is off
        else:
            state &= ~WRITE_BITS  # only readers: they may cache reads
    if locked:
        state &= ~(READ_BITS | WRITE_BITS)
    return state


def lost(old: int, new: int) -> int:
    """The bits a change of state takes away (what must be flushed or purged first)."""
    return old & ~new


#: Dispositions that may collapse: they neither create, overwrite nor supersede.
_COLLAPSIBLE_DISPOSITIONS = frozenset({CreateDisposition.FILE_OPEN, CreateDisposition.FILE_OPEN_IF})
#: Create options RDBSS never collapses (docs/routines.md, Create, collapsing and close), and
#: directories (their enumeration and change-notification state belongs to the server open on
#: some servers).
_NEVER_COLLAPSE = int(
    CreateOptions.FILE_DELETE_ON_CLOSE
    | CreateOptions.FILE_OPEN_FOR_BACKUP_INTENT
    | CreateOptions.FILE_DIRECTORY_FILE
)


def may_collapse(disposition: int, options: int) -> bool:
    """Whether a new open with these parameters may reuse an existing SrvOpen at all."""
    return disposition in _COLLAPSIBLE_DISPOSITIONS and not options & _NEVER_COLLAPSE


def collapsible_onto(
    access: int, share: int, options: int, srv_access: int, srv_share: int, srv_options: int
) -> bool:
    """RxSearchForCollapsibleOpen's match: the same access, sharing and options (the handle's
    rights are then exactly the server open's, so the mini-redirector's checks stay right)."""
    return access == srv_access and share == srv_share and options == srv_options


def conflicts(access: int, share: int, disposition: int, held: tuple[int, int]) -> bool:
    """Whether a new open conflicts with a server open kept for a delayed close (``held`` =
    its access and sharing): it must be closed before the new open reaches the server."""
    if disposition not in _COLLAPSIBLE_DISPOSITIONS or data_access(access)[2]:
        return True  # the new open replaces or deletes the file
    try:
        check_share_access([held], access, share)
    except NtStatusError:
        return True
    return False


def describe(state: int) -> list[str]:
    """The names of the bits set, for status output (e.g. ["COLLAPSING", "READCACHING"])."""
    return [name.removesuffix("_ENABLED") for name, bit in _BITS.items() if state & bit]
