"""Share names: what a configured or added share may be called (the characters Windows refuses
in a share name, and a length bound)."""

from __future__ import annotations

from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus

MAX_SHARE_NAME_CHARS = 80
_INVALID_SHARE_CHARS = frozenset('\\/:*?"<>|\x00')


def check_share_name(name: object) -> str:
    """The share name if it is valid, else STATUS_OBJECT_NAME_INVALID."""
    if not isinstance(name, str) or not name:
        raise NtStatusError(S.STATUS_OBJECT_NAME_INVALID, "share name must be a non-empty string")
    if len(name) > MAX_SHARE_NAME_CHARS:
        raise NtStatusError(
            S.STATUS_OBJECT_NAME_INVALID,
            f"share name longer than {MAX_SHARE_NAME_CHARS} characters",
        )
    bad = next((ch for ch in name if ch in _INVALID_SHARE_CHARS), None)
    if bad is not None:
        raise NtStatusError(S.STATUS_OBJECT_NAME_INVALID, f"share name {name!r}: character {bad!r}")
    return name
