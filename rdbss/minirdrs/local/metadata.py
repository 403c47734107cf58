"""What the local mini-redirector keeps besides data: extended attributes (as ``user.``
xattrs, where Samba keeps them too) and the POSIX owner, group and mode as a security
descriptor. Each function takes the open's descriptor, or a path for an attributes-only
(O_PATH) open, and the share-relative path for messages."""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
from collections.abc import Mapping
from typing import Any

from rdbss.minirdrs.common.args import show
from rdbss.minirdrs.common.eas import parse_set as parse_eas
from rdbss.minirdrs.common.security import (
    POSIX_INFORMATION,
    PosixSecurity,
    check_query_information,
    posix_change,
    posix_descriptor,
)
from rdbss.wire.status import NtStatus, NtStatusError, status_from_errno

S = NtStatus
EA_PREFIX = "user."


def os_error(exc: OSError, what: str, rel: str) -> NtStatusError:
    """An NtStatusError for a failed host call, without the host path."""
    reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
    return NtStatusError(status_from_errno(exc.errno), f"{what} {show(rel)}: {reason}")


def posix_security(st: os.stat_result) -> PosixSecurity:
    """Owner, group and mode of a stat result, with the names this host knows for them."""
    try:
        owner: str | None = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = None
    try:
        group: str | None = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = None
    return PosixSecurity(st.st_uid, st.st_gid, st.st_mode, owner, group)


def query_eas(target: int | str, rel: str) -> dict[str, bytes]:
    try:
        names = [n for n in os.listxattr(target) if n.startswith(EA_PREFIX)]
        return {n[len(EA_PREFIX) :]: os.getxattr(target, n) for n in names}
    except OSError as exc:
        if exc.errno == errno.ENOTSUP:
            raise NtStatusError(S.STATUS_NOT_SUPPORTED, "no extended attributes here") from None
        raise os_error(exc, "cannot read the EAs of", rel) from None


def set_eas(target: int | str, rel: str, args: Mapping[str, Any] | None) -> None:
    changes = parse_eas(args)
    try:
        for name, value in changes.items():
            if value is None:
                with contextlib.suppress(OSError):  # deleting an absent EA is fine
                    os.removexattr(target, EA_PREFIX + name)
            else:
                os.setxattr(target, EA_PREFIX + name, value)
    except OSError as exc:
        if exc.errno == errno.ENOTSUP:
            raise NtStatusError(S.STATUS_NOT_SUPPORTED, "no extended attributes here") from None
        if exc.errno == errno.ENOSPC or exc.errno == errno.E2BIG:
            raise NtStatusError(S.STATUS_EA_TOO_LARGE, "the EAs do not fit") from None
        raise os_error(exc, "cannot set the EAs of", rel) from None


def query_security(fd: int, rel: str, info_class: object) -> dict[str, Any]:
    info = check_query_information(info_class, POSIX_INFORMATION)
    try:
        st = os.fstat(fd)
    except OSError as exc:
        raise os_error(exc, "cannot query the security of", rel) from None
    return posix_descriptor(info, posix_security(st))


def set_security(fd: int, rel: str, info_class: object, args: object) -> None:
    """Apply a security descriptor's owner, group and mode through ``/proc/self/fd`` (a path
    naming exactly the open file, also for an O_PATH descriptor)."""
    fd_path = f"/proc/self/fd/{fd}"
    try:
        st = os.fstat(fd)
        change = posix_change(info_class, args, posix_security(st))
        if change.uid is not None or change.gid is not None:
            uid = -1 if change.uid is None else change.uid
            gid = -1 if change.gid is None else change.gid
            os.chown(fd_path, uid, gid)
        if change.permissions is not None:
            os.chmod(fd_path, change.permissions)
    except NtStatusError:
        raise
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise NtStatusError(
                S.STATUS_ACCESS_DENIED,
                f"cannot change the security of {show(rel)}: "
                f"{os.strerror(exc.errno)} (only the owner may chmod, only root may chown)",
            ) from None
        raise os_error(exc, "cannot change the security of", rel) from None
