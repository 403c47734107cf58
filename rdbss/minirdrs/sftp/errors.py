"""How asyncssh's failures become NTSTATUS values (see tests/integration/test_servers_smoke.py
for what asyncssh raises in each case against OpenSSH).

SFTP v3, which OpenSSH speaks, has only eight status codes: OpenSSH reports ENOENT, ENOTDIR and
ELOOP as FX_NO_SUCH_FILE, EACCES/EPERM as FX_PERMISSION_DENIED and nearly everything else
(EEXIST, ENOTEMPTY, EISDIR, ENOSPC...) as a plain FX_FAILURE. The routines therefore check the
state before acting (or look again after a failure) to give the precise status; what is left
is mapped here.
"""

from __future__ import annotations

import socket
from typing import NoReturn

import asyncssh

from rdbss.minirdrs.common.args import show
from rdbss.wire.status import NtStatus, NtStatusError, network_status_from_errno

S = NtStatus

#: The connection (not just one request) is gone: the SrvCall is dead from then on.
LOST_CONNECTION: tuple[type[BaseException], ...] = (
    asyncssh.DisconnectError,  # ConnectionLost and every SSH-level disconnect
    asyncssh.SFTPNoConnection,
    asyncssh.SFTPConnectionLost,
    asyncssh.ChannelOpenError,
    BrokenPipeError,
    ConnectionResetError,
    ConnectionAbortedError,
    EOFError,
)

_SFTP_STATUS: dict[type[asyncssh.SFTPError], NtStatus] = {
    asyncssh.SFTPEOFError: S.STATUS_END_OF_FILE,
    asyncssh.SFTPNoSuchFile: S.STATUS_OBJECT_NAME_NOT_FOUND,
    asyncssh.SFTPPermissionDenied: S.STATUS_ACCESS_DENIED,
    asyncssh.SFTPFailure: S.STATUS_UNSUCCESSFUL,
    asyncssh.SFTPBadMessage: S.STATUS_INVALID_PARAMETER,
    asyncssh.SFTPNoConnection: S.STATUS_CONNECTION_DISCONNECTED,
    asyncssh.SFTPConnectionLost: S.STATUS_CONNECTION_DISCONNECTED,
    asyncssh.SFTPOpUnsupported: S.STATUS_NOT_SUPPORTED,
    # SFTP v4-v6 codes (not sent by OpenSSH, cheap to map)
    asyncssh.SFTPInvalidHandle: S.STATUS_INVALID_HANDLE,
    asyncssh.SFTPNoSuchPath: S.STATUS_OBJECT_PATH_NOT_FOUND,
    asyncssh.SFTPFileAlreadyExists: S.STATUS_OBJECT_NAME_COLLISION,
    asyncssh.SFTPWriteProtect: S.STATUS_ACCESS_DENIED,
    asyncssh.SFTPNoMedia: S.STATUS_DEVICE_NOT_READY,
    asyncssh.SFTPNoSpaceOnFilesystem: S.STATUS_DISK_FULL,
    asyncssh.SFTPQuotaExceeded: S.STATUS_DISK_FULL,
    asyncssh.SFTPLockConflict: S.STATUS_SHARING_VIOLATION,
    asyncssh.SFTPDirNotEmpty: S.STATUS_DIRECTORY_NOT_EMPTY,
    asyncssh.SFTPNotADirectory: S.STATUS_NOT_A_DIRECTORY,
    asyncssh.SFTPInvalidFilename: S.STATUS_OBJECT_NAME_INVALID,
    asyncssh.SFTPLinkLoop: S.STATUS_OBJECT_NAME_INVALID,
    asyncssh.SFTPCannotDelete: S.STATUS_CANNOT_DELETE,
    asyncssh.SFTPInvalidParameter: S.STATUS_INVALID_PARAMETER,
    asyncssh.SFTPFileIsADirectory: S.STATUS_FILE_IS_A_DIRECTORY,
    asyncssh.SFTPByteRangeLockConflict: S.STATUS_FILE_LOCK_CONFLICT,
    asyncssh.SFTPByteRangeLockRefused: S.STATUS_LOCK_NOT_GRANTED,
    asyncssh.SFTPDeletePending: S.STATUS_DELETE_PENDING,
}


def is_lost(exc: BaseException) -> bool:
    """True when ``exc`` means the SSH connection itself is gone."""
    return isinstance(exc, LOST_CONNECTION)


def sftp_status(exc: asyncssh.SFTPError) -> NtStatus:
    for cls in type(exc).__mro__:
        status = _SFTP_STATUS.get(cls)
        if status is not None:
            return status
    return S.STATUS_UNSUCCESSFUL


def sftp_reason(exc: asyncssh.SFTPError) -> str:
    """The server's short reason ("No such file"), never a path."""
    return str(exc.reason or type(exc).__name__)


def fail(exc: BaseException, what: str, rel: str) -> NoReturn:
    """Re-raise an SFTP failure as an NtStatusError naming the share-relative path. A lost
    connection (or anything unexpected) is re-raised unchanged for the session's ``run`` to
    handle."""
    if isinstance(exc, asyncssh.SFTPError) and not is_lost(exc):
        raise NtStatusError(sftp_status(exc), f"{what} {show(rel)}: {sftp_reason(exc)}") from None
    raise exc


def connect_status(exc: BaseException) -> tuple[NtStatus, str]:
    """The status (and a message without secrets) for a failed connect + authentication."""
    if isinstance(exc, asyncssh.PermissionDenied | asyncssh.IllegalUserName):
        return S.STATUS_LOGON_FAILURE, "authentication failed"
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        # a host key that does not match may be a man in the middle: a security failure
        return S.STATUS_DOWNGRADE_DETECTED, "the server's host key is not trusted"
    if isinstance(exc, asyncssh.ConnectionLost):
        return S.STATUS_CONNECTION_DISCONNECTED, "the server closed the connection"
    if isinstance(exc, asyncssh.DisconnectError):
        return S.STATUS_UNEXPECTED_NETWORK_ERROR, f"SSH failure: {type(exc).__name__}"
    if isinstance(exc, asyncssh.ChannelOpenError):
        return S.STATUS_CONNECTION_DISCONNECTED, "the server refused the SFTP session"
    if isinstance(exc, socket.gaierror):
        return S.STATUS_BAD_NETWORK_PATH, "the host name does not resolve"
    if isinstance(exc, TimeoutError):
        return S.STATUS_IO_TIMEOUT, "no answer in time"
    if isinstance(exc, ConnectionRefusedError):
        return S.STATUS_REMOTE_NOT_LISTENING, "nothing listens on the server's port"
    if isinstance(exc, OSError):
        status = network_status_from_errno(exc.errno)
        reason = (exc.strerror or type(exc).__name__) if exc.errno else type(exc).__name__
        return status, f"cannot connect: {reason}"
    if isinstance(exc, asyncssh.SFTPError):
        return sftp_status(exc), f"cannot start SFTP: {sftp_reason(exc)}"
    return S.STATUS_UNEXPECTED_NETWORK_ERROR, f"cannot connect: {type(exc).__name__}"
