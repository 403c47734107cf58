"""Path rules of the command line, pure: which argument names a share and how UNC names are
built. A remote path is a UNC name, ``//server/share/dir/file`` or ``\\\\server\\share\\...``
(both spellings are accepted and written out with backslashes); anything else is a local path,
relative to the working directory or absolute, and is handled as a ``pathlib.Path``."""

from __future__ import annotations

from dataclasses import dataclass

from rdbss.wire.status import NtStatus, error_for_status

_SEPARATORS = "/\\"


def is_remote(text: str) -> bool:
    """A UNC name starts with two separators (``//`` or ``\\\\``)."""
    return len(text) >= 2 and text[0] in _SEPARATORS and text[1] in _SEPARATORS


def to_unc(text: str) -> str:
    """``//server/share/a`` -> ``\\\\server\\share\\a``; no trailing separator."""
    body = text.replace("/", "\\").strip("\\")
    return "\\\\" + body


def ends_with_separator(text: str) -> bool:
    return text.endswith(("/", "\\"))


@dataclass(frozen=True, slots=True)
class UncParts:
    server: str
    share: str  # "" for a bare server
    rest: tuple[str, ...]  # the components under the share


def split_unc(text: str) -> UncParts:
    parts = [p for p in text.replace("/", "\\").split("\\") if p]
    if not parts:
        raise error_for_status(NtStatus.STATUS_OBJECT_PATH_SYNTAX_BAD, f"{text!r} names no server")
    return UncParts(parts[0], parts[1] if len(parts) > 1 else "", tuple(parts[2:]))


def check_component(name: str, where: str) -> str:
    """One file or folder name crossing between a share and the local disk: never a separator,
    ``.``, ``..`` or NUL, so a copy cannot leave the folder it writes into."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise error_for_status(
            NtStatus.STATUS_OBJECT_NAME_INVALID,
            f"{name!r} in {where} cannot be copied: a name may not be empty, '.', '..' or "
            "contain '/', '\\' or NUL",
        )
    return name


def unc_join(base: str, name: str) -> str:
    return to_unc(base) + "\\" + check_component(name, to_unc(base))


def unc_name(path: str) -> str:
    """The last component of a UNC name (the share for ``//server/share``)."""
    return to_unc(path).rsplit("\\", 1)[-1]
