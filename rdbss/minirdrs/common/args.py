"""Checks of a request's arguments and share-relative paths, as every mini-redirector does them.

A share-relative path uses backslashes and names the share root as ``""``; ``components``
refuses anything that could name another place (``..``, NUL, ``/``, alternate data streams),
and ``show`` is how such a path appears in a message (never a host or server path).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus

#: Time arguments of FileBasicInformation, all POSIX ns; 0 (or below) leaves a time unchanged.
TIME_ARGS = ("creation_time", "last_access_time", "last_write_time", "change_time")


def show(rel: str) -> str:
    """How a share-relative path appears in a message."""
    return "\\" + rel


def components(rel: str) -> list[str]:
    """Split a share-relative path, refusing anything that could name another place."""
    if not isinstance(rel, str):
        raise NtStatusError(S.STATUS_OBJECT_NAME_INVALID, "path is not a string")
    if "\x00" in rel:
        raise NtStatusError(S.STATUS_OBJECT_NAME_INVALID, "NUL character in path")
    parts: list[str] = []
    for part in rel.split("\\"):
        if part in ("", "."):
            continue
        if part == "..":
            raise NtStatusError(S.STATUS_OBJECT_NAME_INVALID, f"'..' in path {show(rel)}")
        if ":" in part:
            raise NtStatusError(
                S.STATUS_OBJECT_NAME_INVALID,
                f"{show(rel)}: alternate data streams are not supported",
            )
        if "/" in part:
            raise NtStatusError(S.STATUS_OBJECT_NAME_INVALID, f"'/' in name {part!r}")
        parts.append(part)
    return parts


def arg_int(args: Mapping[str, Any], key: str, *, default: int | None = None) -> int:
    """``args[key]`` as an integer (not a bool); STATUS_INVALID_PARAMETER otherwise."""
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise NtStatusError(S.STATUS_INVALID_PARAMETER, f"argument {key!r} must be an integer")
    return value


def arg_bool(args: Mapping[str, Any], key: str, *, default: bool | None = None) -> bool:
    """``args[key]`` as a boolean; STATUS_INVALID_PARAMETER otherwise."""
    value = args.get(key, default)
    if not isinstance(value, bool):
        raise NtStatusError(S.STATUS_INVALID_PARAMETER, f"argument {key!r} must be a boolean")
    return value


def arg_str(args: Mapping[str, Any], key: str) -> str:
    """``args[key]`` as a string; STATUS_INVALID_PARAMETER otherwise."""
    value = args.get(key)
    if not isinstance(value, str):
        raise NtStatusError(S.STATUS_INVALID_PARAMETER, f"argument {key!r} must be a string")
    return value
