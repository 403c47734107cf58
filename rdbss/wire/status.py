"""NTSTATUS values used end to end, their families, and the error type that carries one.

Values are the real Windows ones (MS-ERREF 2.3; docs/routines.md, Status codes), as ReactOS and
mingw-w64 ntstatus.h define them. Pure code: no sockets, no processes.
"""

from __future__ import annotations

import errno
from enum import IntEnum
from typing import TYPE_CHECKING

from rdbss.wire.enumview import member_view


class NtStatus(IntEnum):
    # success and informational
    STATUS_SUCCESS = 0x00000000
    STATUS_PENDING = 0x00000103
    STATUS_REPARSE = 0x00000104
    STATUS_NOTIFY_CLEANUP = 0x0000010B  # the handle was closed while a notify was pending
    STATUS_NOTIFY_ENUM_DIR = 0x0000010C  # too many changes to list: enumerate again
    STATUS_OBJECT_NAME_EXISTS = 0x40000000
    STATUS_INVALID_EA_NAME = 0x80000013
    STATUS_EA_LIST_INCONSISTENT = 0x80000014
    STATUS_STOPPED_ON_SYMLINK = 0x8000002D
    # warnings
    STATUS_BUFFER_OVERFLOW = 0x80000005
    STATUS_NO_MORE_FILES = 0x80000006
    STATUS_NO_MORE_ENTRIES = 0x8000001A  # a quota (or other) enumeration has no more
    STATUS_REDIRECTOR_HAS_OPEN_HANDLES = 0x80000023
    # errors
    STATUS_UNSUCCESSFUL = 0xC0000001
    STATUS_NOT_IMPLEMENTED = 0xC0000002
    STATUS_INVALID_INFO_CLASS = 0xC0000003
    STATUS_INFO_LENGTH_MISMATCH = 0xC0000004
    STATUS_ACCESS_VIOLATION = 0xC0000005
    STATUS_INVALID_HANDLE = 0xC0000008
    STATUS_INVALID_PARAMETER = 0xC000000D
    STATUS_NO_SUCH_FILE = 0xC000000F
    STATUS_INVALID_DEVICE_REQUEST = 0xC0000010
    STATUS_END_OF_FILE = 0xC0000011
    STATUS_MORE_PROCESSING_REQUIRED = 0xC0000016
    STATUS_NO_MEMORY = 0xC0000017
    STATUS_ACCESS_DENIED = 0xC0000022
    STATUS_BUFFER_TOO_SMALL = 0xC0000023
    STATUS_OBJECT_NAME_INVALID = 0xC0000033
    STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
    STATUS_OBJECT_NAME_COLLISION = 0xC0000035
    STATUS_OBJECT_PATH_INVALID = 0xC0000039
    STATUS_OBJECT_PATH_NOT_FOUND = 0xC000003A
    STATUS_OBJECT_PATH_SYNTAX_BAD = 0xC000003B
    STATUS_SHARING_VIOLATION = 0xC0000043
    STATUS_EAS_NOT_SUPPORTED = 0xC000004F
    STATUS_QUOTA_EXCEEDED = 0xC0000044  # a client's answers not read past its limit
    STATUS_EA_TOO_LARGE = 0xC0000050
    STATUS_NONEXISTENT_EA_ENTRY = 0xC0000051
    STATUS_NO_EAS_ON_FILE = 0xC0000052
    STATUS_EA_CORRUPT_ERROR = 0xC0000053
    STATUS_FILE_LOCK_CONFLICT = 0xC0000054
    STATUS_LOCK_NOT_GRANTED = 0xC0000055
    STATUS_DELETE_PENDING = 0xC0000056
    STATUS_NO_LOGON_SERVERS = 0xC000005E
    STATUS_PRIVILEGE_NOT_HELD = 0xC0000061
    STATUS_NO_SUCH_USER = 0xC0000064
    STATUS_WRONG_PASSWORD = 0xC000006A
    STATUS_LOGON_FAILURE = 0xC000006D
    STATUS_ACCOUNT_RESTRICTION = 0xC000006E
    STATUS_INVALID_LOGON_HOURS = 0xC000006F
    STATUS_INVALID_WORKSTATION = 0xC0000070
    STATUS_PASSWORD_EXPIRED = 0xC0000071
    STATUS_ACCOUNT_DISABLED = 0xC0000072
    STATUS_NONE_MAPPED = 0xC0000073
    STATUS_RANGE_NOT_LOCKED = 0xC000007E
    STATUS_DISK_FULL = 0xC000007F
    STATUS_INSUFFICIENT_RESOURCES = 0xC000009A
    STATUS_MEDIA_WRITE_PROTECTED = 0xC00000A2
    STATUS_DEVICE_NOT_READY = 0xC00000A3
    STATUS_PIPE_NOT_AVAILABLE = 0xC00000AC
    STATUS_PIPE_BUSY = 0xC00000AE
    STATUS_PIPE_DISCONNECTED = 0xC00000B0
    STATUS_PIPE_CLOSING = 0xC00000B1
    STATUS_IO_TIMEOUT = 0xC00000B5
    STATUS_FILE_IS_A_DIRECTORY = 0xC00000BA
    STATUS_NOT_SUPPORTED = 0xC00000BB
    STATUS_REMOTE_NOT_LISTENING = 0xC00000BC
    STATUS_BAD_NETWORK_PATH = 0xC00000BE
    STATUS_NETWORK_BUSY = 0xC00000BF
    STATUS_INVALID_NETWORK_RESPONSE = 0xC00000C3
    STATUS_UNEXPECTED_NETWORK_ERROR = 0xC00000C4
    STATUS_NETWORK_NAME_DELETED = 0xC00000C9
    STATUS_NETWORK_ACCESS_DENIED = 0xC00000CA
    STATUS_BAD_NETWORK_NAME = 0xC00000CC
    STATUS_REQUEST_NOT_ACCEPTED = 0xC00000D0
    STATUS_NOT_SAME_DEVICE = 0xC00000D4
    STATUS_PIPE_EMPTY = 0xC00000D9
    STATUS_INTERNAL_ERROR = 0xC00000E5
    STATUS_INVALID_USER_BUFFER = 0xC00000E8
    STATUS_REDIRECTOR_NOT_STARTED = 0xC00000FB
    STATUS_REDIRECTOR_STARTED = 0xC00000FC
    STATUS_DIRECTORY_NOT_EMPTY = 0xC0000101
    STATUS_NOT_A_DIRECTORY = 0xC0000103
    STATUS_CANCELLED = 0xC0000120
    STATUS_TOO_MANY_OPENED_FILES = 0xC000011F
    STATUS_CANNOT_DELETE = 0xC0000121
    STATUS_FILE_CLOSED = 0xC0000128
    STATUS_LINK_FAILED = 0xC000013E
    STATUS_PIPE_BROKEN = 0xC000014B
    STATUS_LOGON_TYPE_NOT_GRANTED = 0xC000015B
    STATUS_TRUSTED_RELATIONSHIP_FAILURE = 0xC000018D
    STATUS_ACCOUNT_EXPIRED = 0xC0000193
    STATUS_NETWORK_CREDENTIAL_CONFLICT = 0xC0000195
    STATUS_FS_DRIVER_REQUIRED = 0xC000019C
    STATUS_USER_SESSION_DELETED = 0xC0000203
    STATUS_INSUFF_SERVER_RESOURCES = 0xC0000205
    STATUS_INVALID_BUFFER_SIZE = 0xC0000206
    STATUS_CONNECTION_DISCONNECTED = 0xC000020C
    STATUS_CONNECTION_RESET = 0xC000020D
    STATUS_RETRY = 0xC000022D
    STATUS_PASSWORD_MUST_CHANGE = 0xC0000224
    STATUS_NOT_FOUND = 0xC0000225
    STATUS_ACCOUNT_LOCKED_OUT = 0xC0000234
    STATUS_CONNECTION_REFUSED = 0xC0000236
    STATUS_CONNECTION_ACTIVE = 0xC000023B
    STATUS_NETWORK_UNREACHABLE = 0xC000023C
    STATUS_HOST_UNREACHABLE = 0xC000023D
    STATUS_REQUEST_ABORTED = 0xC0000240
    STATUS_CONNECTION_ABORTED = 0xC0000241
    STATUS_LOGIN_TIME_RESTRICTION = 0xC0000247
    STATUS_LOGIN_WKSTA_RESTRICTION = 0xC0000248
    STATUS_PATH_NOT_COVERED = 0xC0000257
    STATUS_DFS_UNAVAILABLE = 0xC000026D
    STATUS_NOT_A_REPARSE_POINT = 0xC0000275
    STATUS_ONLY_IF_CONNECTED = 0xC00002CC
    STATUS_NETWORK_SESSION_EXPIRED = 0xC000035C
    STATUS_DOWNGRADE_DETECTED = 0xC0000388
    STATUS_SERVER_UNAVAILABLE = 0xC0000466

    @property
    def severity(self) -> int:
        """0 success, 1 informational, 2 warning, 3 error (the top two bits)."""
        return int(self) >> 30

    @property
    def is_success(self) -> bool:
        """NT_SUCCESS: the signed 32-bit value is >= 0 (success and informational)."""
        return self.severity < 2

    @property
    def is_error(self) -> bool:
        return self.severity == 3

    def __str__(self) -> str:
        return f"{self.name} (0x{int(self):08X})"


S = NtStatus

#: The seed page's network errors plus the transport failures that mean "the server is not there".
NETWORK_ERRORS: frozenset[NtStatus] = frozenset(
    {
        S.STATUS_IO_TIMEOUT,
        S.STATUS_BAD_NETWORK_PATH,
        S.STATUS_NETWORK_UNREACHABLE,
        S.STATUS_REMOTE_NOT_LISTENING,
        S.STATUS_USER_SESSION_DELETED,
        S.STATUS_CONNECTION_DISCONNECTED,
        S.STATUS_NETWORK_NAME_DELETED,
        S.STATUS_CONNECTION_RESET,
        S.STATUS_CONNECTION_REFUSED,
        S.STATUS_CONNECTION_ABORTED,
        S.STATUS_HOST_UNREACHABLE,
        S.STATUS_NETWORK_BUSY,
        S.STATUS_UNEXPECTED_NETWORK_ERROR,
        S.STATUS_INVALID_NETWORK_RESPONSE,
        S.STATUS_LINK_FAILED,
        S.STATUS_NETWORK_SESSION_EXPIRED,
    }
)

#: The seed page's authentication errors and their close relatives.
AUTH_ERRORS: frozenset[NtStatus] = frozenset(
    {
        S.STATUS_LOGON_FAILURE,
        S.STATUS_NETWORK_CREDENTIAL_CONFLICT,
        S.STATUS_DOWNGRADE_DETECTED,
        S.STATUS_LOGIN_WKSTA_RESTRICTION,
        S.STATUS_WRONG_PASSWORD,
        S.STATUS_NO_SUCH_USER,
        S.STATUS_ACCOUNT_RESTRICTION,
        S.STATUS_PASSWORD_EXPIRED,
        S.STATUS_ACCOUNT_DISABLED,
        S.STATUS_ACCOUNT_LOCKED_OUT,
        S.STATUS_INVALID_LOGON_HOURS,
        S.STATUS_INVALID_WORKSTATION,
        S.STATUS_ACCOUNT_EXPIRED,
        S.STATUS_PASSWORD_MUST_CHANGE,
        S.STATUS_LOGIN_TIME_RESTRICTION,
        S.STATUS_LOGON_TYPE_NOT_GRANTED,
        S.STATUS_NO_LOGON_SERVERS,
        S.STATUS_TRUSTED_RELATIONSHIP_FAILURE,
    }
)


def status_from_int(value: int) -> NtStatus | int:
    """The NtStatus member for a numeric value, or the int itself for a value we do not name."""
    try:
        return NtStatus(value)
    except ValueError:
        return value


def status_name(value: int) -> str:
    status = status_from_int(value)
    if isinstance(status, NtStatus):
        return status.name
    return f"0x{value & 0xFFFFFFFF:08X}"


# errno -> NTSTATUS, as a Windows server maps the POSIX failures of its file system, and as a
# Windows client reports a socket failure. This is the one table for every mini-redirector, so a
# given failure reads the same whatever the backend: no route to the network or to the host (in
# any of its forms) is NETWORK_UNREACHABLE, the network status a redirector reports for it.
_ERRNO_TO_STATUS: dict[int, NtStatus] = {
    errno.ENOENT: S.STATUS_OBJECT_NAME_NOT_FOUND,
    errno.EEXIST: S.STATUS_OBJECT_NAME_COLLISION,
    errno.EACCES: S.STATUS_ACCESS_DENIED,
    errno.EPERM: S.STATUS_ACCESS_DENIED,
    errno.EROFS: S.STATUS_ACCESS_DENIED,
    errno.EISDIR: S.STATUS_FILE_IS_A_DIRECTORY,
    errno.ENOTDIR: S.STATUS_NOT_A_DIRECTORY,
    errno.ENOTEMPTY: S.STATUS_DIRECTORY_NOT_EMPTY,
    errno.ENOSPC: S.STATUS_DISK_FULL,
    errno.EDQUOT: S.STATUS_DISK_FULL,
    errno.EFBIG: S.STATUS_DISK_FULL,
    errno.ENAMETOOLONG: S.STATUS_OBJECT_NAME_INVALID,
    errno.EINVAL: S.STATUS_INVALID_PARAMETER,
    errno.EBADF: S.STATUS_INVALID_HANDLE,
    errno.ELOOP: S.STATUS_OBJECT_NAME_INVALID,
    errno.EXDEV: S.STATUS_NOT_SAME_DEVICE,
    errno.ENOMEM: S.STATUS_INSUFFICIENT_RESOURCES,
    errno.EMFILE: S.STATUS_INSUFFICIENT_RESOURCES,
    errno.ENFILE: S.STATUS_INSUFFICIENT_RESOURCES,
    errno.EBUSY: S.STATUS_SHARING_VIOLATION,
    errno.ETXTBSY: S.STATUS_SHARING_VIOLATION,
    errno.ENOTSUP: S.STATUS_NOT_SUPPORTED,
    errno.ETIMEDOUT: S.STATUS_IO_TIMEOUT,
    errno.ECONNREFUSED: S.STATUS_REMOTE_NOT_LISTENING,
    errno.ECONNRESET: S.STATUS_CONNECTION_RESET,
    errno.ECONNABORTED: S.STATUS_CONNECTION_ABORTED,
    errno.ENETUNREACH: S.STATUS_NETWORK_UNREACHABLE,
    errno.ENETDOWN: S.STATUS_NETWORK_UNREACHABLE,
    errno.EHOSTUNREACH: S.STATUS_NETWORK_UNREACHABLE,
    errno.EHOSTDOWN: S.STATUS_NETWORK_UNREACHABLE,
    errno.EPIPE: S.STATUS_CONNECTION_DISCONNECTED,
    errno.ENOTCONN: S.STATUS_CONNECTION_DISCONNECTED,
    errno.ESHUTDOWN: S.STATUS_CONNECTION_DISCONNECTED,
}

#: On a network connection (connect, send, receive) a connection that broke, whichever way, is
#: CONNECTION_DISCONNECTED: the core tears it down and the next request builds it again; and a
#: closed socket (EBADF) is the same loss, not a bad handle of the caller's.
_NETWORK_ERRNO_TO_STATUS: dict[int, NtStatus] = {
    **_ERRNO_TO_STATUS,
    errno.ECONNRESET: S.STATUS_CONNECTION_DISCONNECTED,
    errno.ECONNABORTED: S.STATUS_CONNECTION_DISCONNECTED,
    errno.EBADF: S.STATUS_CONNECTION_DISCONNECTED,
}


def status_from_errno(err: int | None) -> NtStatus:
    """The status of a failed file-system call with this errno (UNSUCCESSFUL when unknown)."""
    if err is None:
        return S.STATUS_UNSUCCESSFUL
    return _ERRNO_TO_STATUS.get(err, S.STATUS_UNSUCCESSFUL)


def network_status_from_errno(err: int | None) -> NtStatus:
    """The status of a failed network operation (connect, send, receive) with this errno, the
    same for every mini-redirector: UNEXPECTED_NETWORK_ERROR when the errno says nothing more."""
    status = _NETWORK_ERRNO_TO_STATUS.get(err) if err is not None else None
    return S.STATUS_UNEXPECTED_NETWORK_ERROR if status is None else status


# NTSTATUS -> the OSError subclass Python has for the same failure, and the errno to give it.
_STATUS_TO_OSERROR: dict[NtStatus, tuple[type[OSError], int]] = {
    S.STATUS_OBJECT_NAME_NOT_FOUND: (FileNotFoundError, errno.ENOENT),
    S.STATUS_OBJECT_PATH_NOT_FOUND: (FileNotFoundError, errno.ENOENT),
    S.STATUS_NO_SUCH_FILE: (FileNotFoundError, errno.ENOENT),
    S.STATUS_BAD_NETWORK_NAME: (FileNotFoundError, errno.ENOENT),
    S.STATUS_BAD_NETWORK_PATH: (FileNotFoundError, errno.ENOENT),
    S.STATUS_DELETE_PENDING: (PermissionError, errno.EACCES),
    S.STATUS_OBJECT_NAME_COLLISION: (FileExistsError, errno.EEXIST),
    S.STATUS_ACCESS_DENIED: (PermissionError, errno.EACCES),
    S.STATUS_NETWORK_ACCESS_DENIED: (PermissionError, errno.EACCES),
    S.STATUS_SHARING_VIOLATION: (PermissionError, errno.EBUSY),
    S.STATUS_CANNOT_DELETE: (PermissionError, errno.EACCES),
    S.STATUS_FILE_IS_A_DIRECTORY: (IsADirectoryError, errno.EISDIR),
    S.STATUS_NOT_A_DIRECTORY: (NotADirectoryError, errno.ENOTDIR),
    S.STATUS_DIRECTORY_NOT_EMPTY: (OSError, errno.ENOTEMPTY),
    S.STATUS_DISK_FULL: (OSError, errno.ENOSPC),
    S.STATUS_OBJECT_NAME_INVALID: (OSError, errno.EINVAL),
    S.STATUS_OBJECT_PATH_SYNTAX_BAD: (OSError, errno.EINVAL),
    S.STATUS_INVALID_PARAMETER: (OSError, errno.EINVAL),
    S.STATUS_INVALID_HANDLE: (OSError, errno.EBADF),
    S.STATUS_FILE_CLOSED: (OSError, errno.EBADF),
    S.STATUS_IO_TIMEOUT: (TimeoutError, errno.ETIMEDOUT),
    S.STATUS_CONNECTION_DISCONNECTED: (ConnectionAbortedError, errno.ECONNABORTED),
    S.STATUS_CONNECTION_ABORTED: (ConnectionAbortedError, errno.ECONNABORTED),
    S.STATUS_CONNECTION_RESET: (ConnectionResetError, errno.ECONNRESET),
    S.STATUS_CONNECTION_REFUSED: (ConnectionRefusedError, errno.ECONNREFUSED),
    S.STATUS_REMOTE_NOT_LISTENING: (ConnectionRefusedError, errno.ECONNREFUSED),
    S.STATUS_REDIRECTOR_NOT_STARTED: (ConnectionRefusedError, errno.ECONNREFUSED),
    S.STATUS_NETWORK_UNREACHABLE: (OSError, errno.ENETUNREACH),
    S.STATUS_HOST_UNREACHABLE: (OSError, errno.EHOSTUNREACH),
    **{status: (PermissionError, errno.EACCES) for status in AUTH_ERRORS},
    S.STATUS_NOT_IMPLEMENTED: (OSError, errno.ENOSYS),
    S.STATUS_NOT_SUPPORTED: (OSError, errno.EOPNOTSUPP),
    S.STATUS_LOCK_NOT_GRANTED: (BlockingIOError, errno.EAGAIN),
    S.STATUS_FILE_LOCK_CONFLICT: (BlockingIOError, errno.EAGAIN),
    S.STATUS_INSUFFICIENT_RESOURCES: (OSError, errno.ENOMEM),
    S.STATUS_QUOTA_EXCEEDED: (OSError, errno.EDQUOT),
    S.STATUS_TOO_MANY_OPENED_FILES: (OSError, errno.EMFILE),
    S.STATUS_END_OF_FILE: (OSError, errno.EIO),
}


class NtStatusError(OSError):
    """An operation failed with an NTSTATUS; subclasses also derive from the matching OSError."""

    status: int

    def __init__(self, status: int, message: str = "", *, errno_value: int | None = None) -> None:
        text = message or status_name(status)
        super().__init__(errno_value if errno_value is not None else errno.EIO, text)
        self.status = int(status)

    @property
    def status_name(self) -> str:
        return status_name(self.status)

    def __str__(self) -> str:
        return f"[{self.status_name}] {self.strerror}"

    def __reduce__(self) -> tuple[object, ...]:
        return (error_for_status, (self.status, self.strerror or ""))


_ERROR_CLASSES: dict[type[OSError], type[NtStatusError]] = {}


def _error_class(base: type[OSError]) -> type[NtStatusError]:
    if base is OSError:
        return NtStatusError
    cls = _ERROR_CLASSES.get(base)
    if cls is None:
        cls = type(f"Nt{base.__name__}", (NtStatusError, base), {"__module__": __name__})
        _ERROR_CLASSES[base] = cls
    return cls


def error_for_status(status: int, message: str = "") -> NtStatusError:
    """The exception a client raises for a failed NTSTATUS: an NtStatusError that is also, where
    Python has one, the matching OSError subclass (FileNotFoundError, PermissionError...)."""
    known = status_from_int(status)
    mapped = _STATUS_TO_OSERROR.get(known) if isinstance(known, NtStatus) else None
    if mapped is None:
        return NtStatusError(status, message)
    base, err = mapped
    return _error_class(base)(status, message, errno_value=err)


if not TYPE_CHECKING:  # fast member access on 3.11 (see enumview); type checkers see the enum
    NtStatus = member_view(NtStatus)
    S = NtStatus
