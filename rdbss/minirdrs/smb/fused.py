"""A compound's create with its related READ or WRITE and close, as a small file is read or
written whole, sent as ONE related compound CREATE + QUERY_INFO(FileAllInformation) +
READ/WRITE + CLOSE (MS-SMB2 3.2.4.1.4): one exchange with the server instead of three.

Each item is answered as it would be alone: the create with the same information (the
FileAllInformation MRxCreate answers), the READ with the same data or status, the WRITE with the
same count, the close ending the SrvOpen in the OpenTable. When the CREATE fails, the server
fails the later requests with its status (MS-SMB2 3.3.5.2.7.2) and the host answers the related
items with it, as when they run one by one. Only what one exchange answers exactly as the
separate requests would is fused (``run`` answers None otherwise, and the items run one by
one): at most one READ of at most one credit's worth (MAX_PAYLOAD) or one WRITE of at most
that at a known offset (not appending), then the close; no delete-on-close, no shared memory.
A WRITE the server takes only in part answers the count it took (alone, the rest would be sent
again: a small write the server shortens is one that fails).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rdbss.minirdrs.base import OpenTable, Result
from rdbss.minirdrs.common.args import show
from rdbss.minirdrs.smb import compound
from rdbss.minirdrs.smb.link import SmbLink
from rdbss.minirdrs.smb.opens import SmbSrvOpen
from rdbss.minirdrs.smb.packed import Body, read_body, write_body
from rdbss.minirdrs.smb.status import create_error
from rdbss.minirdrs.smb.structures import (
    MAX_PAYLOAD,
    RELATED_FILE_ID,
    query_info_buffer,
    read_buffer,
    write_count,
)
from rdbss.model.create import data_access
from rdbss.wire.constants import LowIoOp, Routine
from rdbss.wire.rxcontext import CreateParameters, RxContext
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus
_CLOSE = str(Routine.MRxCloseSrvOpen)
_LOWIO = str(Routine.MRxLowIOSubmit)


@dataclass(slots=True)
class Creating:
    """A create checked and built, not sent yet: its SMB2 CREATE (``message``) and the
    function that takes its answer (``answer``, opening ``handle``, smbprotocol's Open)."""

    link: SmbLink
    share: str
    rel: str
    params: CreateParameters
    disposition: int
    delete_on_close: bool
    tree: Any
    handle: Any
    message: Body
    answer: Callable[[Any], Any]


def shaped(related: list[RxContext]) -> bool:
    """Whether the related items are one READ or WRITE (or none) and a close."""
    if not related or len(related) > 2 or related[-1].routine != _CLOSE:
        return False
    return len(related) == 1 or related[0].routine == _LOWIO


def _middle(
    creating: Creating, related: list[RxContext], payloads: list[memoryview | None]
) -> list[Body] | None:
    """The request between the QUERY_INFO and the CLOSE ([] for none), or None when the chain
    cannot go as one exchange."""
    if not shaped(related) or any(ctx.args for ctx in related):
        return None  # shared memory: the host's own path
    if len(related) == 1:
        return []
    ctx, payload = related[0], payloads[0]
    lowio = ctx.lowio
    if ctx.routine != _LOWIO or lowio is None or lowio.offset < 0:
        return None
    connection = creating.link.connection
    if lowio.operation == LowIoOp.READ:
        if not 0 < lowio.length <= min(MAX_PAYLOAD, connection.max_read_size):
            return None
        return [read_body(RELATED_FILE_ID, lowio.offset, lowio.length)]
    if lowio.operation != LowIoOp.WRITE or payload is None or lowio.length < 0:
        return None
    if len(payload) > min(MAX_PAYLOAD, connection.max_write_size):
        return None
    if data_access(creating.params.desired_access)[2]:
        return None  # appending: the offset is the end of file the server reports then
    if not len(payload):
        return []  # answered here, as alone
    return [write_body(RELATED_FILE_ID, lowio.offset, bytes(payload))]


def _status(link: SmbLink, what: str, exc: Exception) -> NtStatusError:
    """The NtStatusError ``link.call`` makes of ``exc``."""

    def fail() -> None:
        raise exc

    try:
        link.mapped(what, fail)
    except NtStatusError as error:
        return error
    return NtStatusError(S.STATUS_INTERNAL_ERROR, what)  # pragma: no cover - mapped raised


def run(
    creating: Creating,
    related: list[RxContext],
    payloads: list[memoryview | None],
    opened: Callable[[Creating, bytes], Result],
    opens: OpenTable[SmbSrvOpen],
) -> list[Result | Exception] | None:
    """Send the chain as one compound and answer each item (None: it cannot go as one)."""
    middle = _middle(creating, related, payloads)
    link = creating.link
    window = link.connection.sequence_window
    if middle is None or window["high"] - window["low"] < 3 + len(middle):
        return None
    rel = creating.rel
    go = compound.open_and_close(link, creating.tree, creating.message, creating.answer, middle)
    try:
        answers = link.call(f"cannot open {show(rel)}", go)
    except NtStatusError as exc:
        return [create_error(exc, creating.disposition)]
    opened_answer, queried, *middle_answers, closed = answers
    for answer in (opened_answer, queried):
        if isinstance(answer, Exception):
            return [
                create_error(
                    _status(link, f"cannot open {show(rel)}", answer), creating.disposition
                )
            ]
    try:
        created = opened(creating, query_info_buffer(queried))
    except Exception as exc:
        return [exc]
    outcomes: list[Result | Exception] = [created]
    srv_open = created.result["srv_open"]
    if len(related) == 2:
        outcomes.append(_io_outcome(creating, related[0], middle_answers, created))
    outcomes.append(_close_outcome(creating, opens.pop(srv_open), closed))
    return outcomes


def _io_outcome(
    creating: Creating, ctx: RxContext, answers: list[Any], created: Result
) -> Result | Exception:
    """What MRxLowIOSubmit answers for the READ or WRITE ``ctx`` (``answers``: its answer)."""
    link, rel = creating.link, creating.rel
    if created.result.get("directory"):
        return NtStatusError(S.STATUS_INVALID_DEVICE_REQUEST, f"{show(rel)} is a directory")
    lowio = ctx.lowio
    assert lowio is not None
    if not answers:
        return Result(information=0)  # an empty WRITE
    (answer,) = answers
    if lowio.operation == LowIoOp.READ:
        if isinstance(answer, Exception):
            return _status(link, f"cannot read {show(rel)}", answer)
        data = read_buffer(answer)
        if not data:
            return NtStatusError(
                S.STATUS_END_OF_FILE, f"{show(rel)}: offset {lowio.offset} is past EOF"
            )
        return Result(information=len(data), payload=data)
    what = f"cannot write {show(rel)}"
    if isinstance(answer, Exception):
        return _status(link, what, answer)
    count = write_count(answer)
    if count <= 0:
        return NtStatusError(S.STATUS_DISK_FULL, f"{what}: the server wrote nothing")
    return Result(information=count)


def _close_outcome(creating: Creating, op: SmbSrvOpen, answer: Any) -> Result | Exception:
    """What MRxCloseSrvOpen answers (the SrvOpen has left the OpenTable); smbprotocol's handle
    is closed as its own close would (``Open._close_response``)."""
    handle = creating.handle
    handle._connected = False
    creating.tree.session.open_table.pop(handle.file_id, None)
    if not isinstance(answer, Exception):
        return Result()
    error = _status(creating.link, f"cannot close {show(op.path)}", answer)
    if error.status == S.STATUS_FILE_CLOSED:
        return Result()
    return error
