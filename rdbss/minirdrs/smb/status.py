"""Which failures end an SMB link, and the NtStatus each one answers (pure).

An NTSTATUS from the server passes straight through (MS-SMB2 2.2.2, the ERROR response). A lost
connection (SMBConnectionClosed, ConnectionError, the receiver thread's death) answers
STATUS_CONNECTION_DISCONNECTED and ends the link, so later calls answer the same at once; so
does a lost session (STATUS_USER_SESSION_DELETED, STATUS_NETWORK_SESSION_EXPIRED) or a deleted
share (STATUS_NETWORK_NAME_DELETED), with that status first. A negotiate that failed validation
(MS-SMB2 3.3.5.15.12, FSCTL_VALIDATE_NEGOTIATE_INFO) or cannot give the encryption asked for
answers STATUS_DOWNGRADE_DETECTED: the connection is not trusted. How the core takes a lost
connection: see docs/routines.md, Connections and Status codes.
"""

from __future__ import annotations

import errno
import os
import socket

from smbprotocol.exceptions import (
    SMBAuthenticationError,
    SMBConnectionClosed,
    SMBException,
    SMBResponseException,
)

from rdbss.wire.constants import CreateDisposition
from rdbss.wire.status import NtStatus, NtStatusError, network_status_from_errno, status_name

S = NtStatus

#: Server statuses that mean the session (not just this request) is gone.
SESSION_LOST = frozenset({S.STATUS_USER_SESSION_DELETED, S.STATUS_NETWORK_SESSION_EXPIRED})
#: ... and the connection's trees with it (the share was closed under it).
LINK_LOST = SESSION_LOST | {S.STATUS_NETWORK_NAME_DELETED}
#: Socket errors that mean the connection is gone.
LOST_ERRNOS = frozenset(
    {
        errno.EPIPE,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ENOTCONN,
        errno.EBADF,
        errno.ESHUTDOWN,
    }
)
#: smbprotocol's words for a negotiate that failed validation: the secure-negotiate check of
#: SMB 3.0/3.0.2 found the answers changed, or the session needs encryption the negotiated
#: dialect cannot give.
DOWNGRADE_TEXTS = (
    "secure negotiate failed",
    "encryption is required but the connection does not support it",
)
#: The answer to a QUERY_INFO for the EAs (FileFullEaInformation) of a file that has none.
STATUS_NO_EAS_ON_FILE = 0xC0000052


def is_downgrade(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, SMBException) and any(t in text for t in DOWNGRADE_TEXTS)


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, SMBException) and "timeout" in str(exc).lower()


def server_status(exc: SMBResponseException) -> tuple[int, bool]:
    """The server's status for a failed request, and whether it ends the link."""
    status = int(exc.status)
    return status, status in LINK_LOST


def link_failure(
    exc: BaseException, what: str, *, broken: bool, timeout: float
) -> NtStatusError | None:
    """For an exchange that failed without an answer (not an NtStatusError, not the server's
    status): the error that ends the link (``broken``: the connection's receiver has died or
    its transport is down), or None when only this request failed."""
    lost = isinstance(exc, SMBConnectionClosed | ConnectionError | EOFError) or (
        isinstance(exc, OSError) and exc.errno in LOST_ERRNOS
    )
    if is_downgrade(exc):
        return NtStatusError(S.STATUS_DOWNGRADE_DETECTED, f"{what}: {exc}")
    if lost or broken:
        return NtStatusError(S.STATUS_CONNECTION_DISCONNECTED, f"{what}: connection lost")
    if _is_timeout(exc):
        return NtStatusError(S.STATUS_IO_TIMEOUT, f"{what}: no answer in {timeout} s")
    return None


def unexpected(exc: BaseException, what: str) -> NtStatusError:
    return NtStatusError(S.STATUS_UNEXPECTED_NETWORK_ERROR, f"{what}: {type(exc).__name__}: {exc}")


def connect_error(exc: BaseException, where: str, timeout: float) -> NtStatusError:
    """The status of a failed connect, negotiate or session setup (past its deadline is the
    link's to say: it knows the set-up's phase)."""
    if isinstance(exc, NtStatusError):
        return exc
    if is_downgrade(exc):
        return NtStatusError(S.STATUS_DOWNGRADE_DETECTED, f"{where}: {exc}")
    if isinstance(exc, SMBResponseException):
        return NtStatusError(exc.status, f"{where}: {status_name(exc.status)}")
    if isinstance(exc, SMBAuthenticationError):
        return NtStatusError(S.STATUS_LOGON_FAILURE, f"{where}: authentication failed")
    cause = connect_cause(exc)
    if isinstance(cause, socket.gaierror):
        return NtStatusError(S.STATUS_BAD_NETWORK_PATH, f"{where}: unknown host name")
    if isinstance(cause, TimeoutError):
        return NtStatusError(S.STATUS_IO_TIMEOUT, f"{where}: connect timed out")
    if isinstance(cause, OSError) and cause.errno is not None:
        status = network_status_from_errno(cause.errno)
        return NtStatusError(status, f"{where}: {os.strerror(cause.errno)}")
    if isinstance(exc, SMBConnectionClosed | ConnectionError | EOFError):
        return NtStatusError(S.STATUS_CONNECTION_DISCONNECTED, f"{where}: connection closed")
    if _is_timeout(exc):
        return NtStatusError(S.STATUS_IO_TIMEOUT, f"{where}: no answer in {timeout} s")
    return unexpected(exc, where)


def connect_cause(exc: BaseException) -> BaseException | None:
    """The socket's error under a failed connect (smbprotocol raises ValueError from it)."""
    return exc.__cause__ if isinstance(exc, ValueError) else exc


def create_error(exc: NtStatusError, disposition: int) -> NtStatusError:
    """The status NT gives for a failed create where Samba checks in another order: FILE_CREATE
    on an existing name is a collision before any directory/non-directory mismatch."""
    if disposition == CreateDisposition.FILE_CREATE and exc.status in (
        S.STATUS_FILE_IS_A_DIRECTORY,
        S.STATUS_NOT_A_DIRECTORY,
    ):
        return NtStatusError(S.STATUS_OBJECT_NAME_COLLISION, f"{exc.strerror}: the name exists")
    return exc
