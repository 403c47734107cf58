"""Reading a configured password, the one way every network mini-redirector does it: when a
session is set up (never at start-up, so a changed file is picked up by the next connection),
from exactly one source (``password_file``, ``password_env`` or an inline ``password``). A
password is never logged and never part of a message: a source that cannot be read answers
STATUS_LOGON_FAILURE naming the source, never its content.
"""

from __future__ import annotations

import logging
import os

from rdbss.wire.status import NtStatus, NtStatusError

log = logging.getLogger("rdbss.minirdr")

#: A password file is read up to this size (anything larger is not a password).
MAX_PASSWORD_FILE_BYTES = 4096


def read_password(
    where: str,
    *,
    password_file: str | None = None,
    password_env: str | None = None,
    password: str | None = None,
) -> str | None:
    """The password from its configured source, None when none is configured. ``where`` names
    the server in messages. A file others may read is used, with a warning in the log."""
    if password_file is not None:
        path = os.path.expanduser(password_file)
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_PASSWORD_FILE_BYTES + 1)
                mode = os.fstat(f.fileno()).st_mode
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
            raise _failure(where, f"cannot read its password_file {path}: {reason}") from None
        if len(raw) > MAX_PASSWORD_FILE_BYTES:
            raise _failure(where, f"its password_file {path} is too large")
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise _failure(where, f"its password_file {path} is not UTF-8") from None
        if mode & 0o077:
            log.warning("%s: password file %s is readable by others", where, path)
        return text.rstrip("\r\n")
    if password_env is not None:
        value = os.environ.get(password_env)
        if value is None:
            raise _failure(where, f"environment variable {password_env} is not set")
        return value
    return password


def _failure(where: str, what: str) -> NtStatusError:
    return NtStatusError(NtStatus.STATUS_LOGON_FAILURE, f"{where}: {what}")
