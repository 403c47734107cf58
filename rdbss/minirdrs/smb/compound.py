"""Related compounds (MS-SMB2 3.2.4.1.4, Sending Compounded Requests): a CREATE and the requests
on the file it opens, sent in one message and answered in one. The later requests name the file
as RELATED_FILE_ID (all 0xFF); when the CREATE fails, the server fails each of them with the
CREATE's status (MS-SMB2 3.3.5.2.7.2), so the first failure is the one to answer.

- ``open_and_query``: CREATE + QUERY_INFO(FileAllInformation): what MRxCreate answers, with the
  handle kept open;
- ``query_open``: CREATE + QUERY_INFO(FileAllInformation) + CLOSE: what MRxQueryOpen answers,
  one exchange with the server and no handle left behind;
- ``open_and_close``: CREATE + QUERY_INFO + READ or WRITE + CLOSE: a compound's create with
  its related READ/WRITE and close (a small file read or written whole), one exchange.

Each runs inside ``SmbLink.call`` (under the link's deadline) and raises the failure it met.
The requests are packed by packed.py (``Body``), not built as smbprotocol structures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from smbprotocol.exceptions import SMBResponseException

from rdbss.minirdrs.smb import packed
from rdbss.minirdrs.smb.link import SmbLink
from rdbss.minirdrs.smb.packed import Body
from rdbss.minirdrs.smb.structures import (
    FILE_ALL_INFORMATION,
    INFO_BUFFER,
    RELATED_FILE_ID,
    SMB2_0_INFO_FILE,
    query_info_buffer,
)

_ALL_INFORMATION = packed.query_info_body(
    RELATED_FILE_ID, SMB2_0_INFO_FILE, FILE_ALL_INFORMATION, INFO_BUFFER
)
_CLOSE = packed.close_body(RELATED_FILE_ID)


def send_related(link: SmbLink, tree: Any, bodies: list[Body]) -> list[Any]:
    """Send ``bodies`` as one related compound on ``tree``: smbprotocol's Requests."""
    requests: list[Any] = link.connection.send_packed(bodies, link.session, tree, related=True)
    return requests


def open_and_query(
    link: SmbLink, tree: Any, handle: Any, create: Body, create_answer: Callable[[Any], Any]
) -> Callable[[], bytes]:
    """The exchange of MRxCreate: ``create`` is the CREATE for ``handle`` and ``create_answer``
    takes its answer (opening ``handle``); the FileAllInformation buffer. When either fails, a
    handle the CREATE opened is closed again."""

    def go() -> bytes:
        requests = send_related(link, tree, [create, _ALL_INFORMATION])
        failure: SMBResponseException | None = None
        try:
            create_answer(requests[0])
        except SMBResponseException as exc:
            failure = exc
        try:
            data = query_info_buffer(link.connection.receive(requests[1]))
        except SMBResponseException as exc:
            failure = failure or exc
        if failure is not None:
            if handle.connected:
                with contextlib.suppress(SMBResponseException):
                    handle.close()
            raise failure
        return data

    return go


def query_open(link: SmbLink, tree: Any, create: Body) -> Callable[[], bytes]:
    """The exchange of MRxQueryOpen: ``create`` (an SMB2 CREATE request), the query and the
    close in one compound; the FileAllInformation buffer, or the first failure."""

    def go() -> bytes:
        requests = send_related(link, tree, [create, _ALL_INFORMATION, _CLOSE])
        answers: list[Any] = []
        for request in requests:  # every answer taken, so none is left waiting
            try:
                answers.append(link.connection.receive(request))
            except SMBResponseException as exc:
                answers.append(exc)
        opened, queried, _closed = answers  # a failed CLOSE leaves nothing to undo
        for answer in (opened, queried):
            if isinstance(answer, SMBResponseException):
                raise answer
        return query_info_buffer(queried)

    return go


def open_and_close(
    link: SmbLink,
    tree: Any,
    create: Body,
    create_answer: Callable[[Any], Any],
    middle: list[Body],
) -> Callable[[], list[Any]]:
    """The exchange of a create with related READ/WRITE items and a close (a small file read or
    written whole): CREATE + QUERY_INFO(FileAllInformation) + ``middle`` (requests on
    RELATED_FILE_ID) + CLOSE in one compound. ``create`` is the CREATE and ``create_answer``
    takes its answer. Every answer, in order (each taken, so none
    is left waiting): the CREATE's None (``create_answer`` took it) and then response headers,
    or the SMBResponseException of a failed one."""

    def go() -> list[Any]:
        requests = send_related(link, tree, [create, _ALL_INFORMATION, *middle, _CLOSE])
        answers: list[Any] = []
        try:
            create_answer(requests[0])
            answers.append(None)
        except SMBResponseException as exc:
            answers.append(exc)
        for request in requests[1:]:
            try:
                answers.append(link.connection.receive(request))
            except SMBResponseException as exc:
                answers.append(exc)
        return answers

    return go
