"""HTTP and transport failures as NTSTATUS values (the table is in the package docstring)."""

from __future__ import annotations

import socket

import httpx

from rdbss.minirdrs.webdav.props import parse_content_range
from rdbss.wire.status import NtStatus, NtStatusError, network_status_from_errno

S = NtStatus


def error(status: int, message: str) -> NtStatusError:
    return NtStatusError(status, message)


def _os_errno(exc: BaseException) -> tuple[int | None, BaseException | None]:
    """The errno (and the exception) of the first OSError in an exception's cause chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and not isinstance(current, httpx.HTTPError):
            return current.errno, current
        current = current.__cause__ or current.__context__
    return None, None


def connect_status(exc: httpx.ConnectError) -> int:
    """The status of a failed connect while setting up a SrvCall."""
    err, cause = _os_errno(exc)
    if isinstance(cause, socket.gaierror):
        return S.STATUS_BAD_NETWORK_PATH
    if err is not None:
        return network_status_from_errno(err)
    text = str(exc).lower()
    if "refused" in text:
        return S.STATUS_REMOTE_NOT_LISTENING
    if "name or service not known" in text or "nodename nor servname" in text:
        return S.STATUS_BAD_NETWORK_PATH
    return S.STATUS_NETWORK_UNREACHABLE


#: HTTP error answer -> NTSTATUS, whatever the method (405 depends on it: ``http_status``)
_HTTP_STATUSES: dict[int, int] = {
    400: S.STATUS_INVALID_PARAMETER,
    401: S.STATUS_LOGON_FAILURE,
    403: S.STATUS_ACCESS_DENIED,
    404: S.STATUS_OBJECT_NAME_NOT_FOUND,
    409: S.STATUS_OBJECT_PATH_NOT_FOUND,  # the parent is missing
    412: S.STATUS_OBJECT_NAME_COLLISION,
    413: S.STATUS_DISK_FULL,
    416: S.STATUS_END_OF_FILE,
    423: S.STATUS_SHARING_VIOLATION,
    507: S.STATUS_DISK_FULL,
}
#: 405 Method Not Allowed by method: MKCOL where something is, PUT onto a collection
_NOT_ALLOWED: dict[str, int] = {
    "MKCOL": S.STATUS_OBJECT_NAME_COLLISION,
    "PUT": S.STATUS_FILE_IS_A_DIRECTORY,
}


def http_status(code: int, method: str) -> int:
    """The NTSTATUS for an HTTP error answer to ``method``."""
    if code == 405:
        return _NOT_ALLOWED.get(method, S.STATUS_NOT_SUPPORTED)
    if code in _HTTP_STATUSES:
        return _HTTP_STATUSES[code]
    if code >= 500:
        return S.STATUS_UNEXPECTED_NETWORK_ERROR
    return S.STATUS_INVALID_NETWORK_RESPONSE


def reason(response: httpx.Response) -> str:
    return f"HTTP {response.status_code} {response.reason_phrase}".rstrip()


def fail(response: httpx.Response, method: str, what: str) -> NtStatusError:
    """The error of an unexpected answer to ``method``."""
    return error(http_status(response.status_code, method), f"{what}: {reason(response)}")


def range_from(response: httpx.Response, offset: int, what: str) -> tuple[int, int, int | None]:
    """A 206 answer's Content-Range (first, last, size or None), which must start at
    ``offset``; STATUS_INVALID_NETWORK_RESPONSE otherwise."""
    found = parse_content_range(response.headers.get("content-range"))
    if found is None or found[0] != offset:
        raise error(
            S.STATUS_INVALID_NETWORK_RESPONSE,
            f"{what}: the server answered another range than asked for",
        )
    return found
