"""Extended attributes: the names Windows allows and the FILE_FULL_EA_INFORMATION list that
SMB carries them in. Pure code.

On the wire between client, core and mini-redirector EAs are a map ``{name: bytes}``; in a set
request a value of None (or b"") deletes the EA, as an empty EaValue does on Windows.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from rdbss.wire.status import NtStatus, NtStatusError

MAX_NAME = 255
MAX_VALUE = 65535
MAX_TOTAL = 64 << 10  # NTFS keeps at most 64 KiB of EAs per file
_BAD = frozenset('"*/:<>?\\|+,;=[]') | frozenset(chr(c) for c in range(32))


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise NtStatusError(NtStatus.STATUS_INVALID_PARAMETER, f"bad EA name {name!r}")
    if not name.isascii() or any(ch in _BAD for ch in name):
        raise NtStatusError(NtStatus.STATUS_INVALID_PARAMETER, f"bad EA name {name!r}")
    return name


def parse_set(args: Mapping[str, Any] | None) -> dict[str, bytes | None]:
    """The ``eas`` argument of a set request, validated."""
    eas = (args or {}).get("eas")
    if not isinstance(eas, Mapping) or not eas:
        raise NtStatusError(NtStatus.STATUS_INVALID_PARAMETER, "set EA needs a map of EAs")
    out: dict[str, bytes | None] = {}
    total = 0
    for name, value in eas.items():
        check_name(name)
        if value is not None and not isinstance(value, bytes):
            raise NtStatusError(NtStatus.STATUS_INVALID_PARAMETER, f"EA {name!r}: not bytes")
        if value is not None and len(value) > MAX_VALUE:
            raise NtStatusError(NtStatus.STATUS_EA_TOO_LARGE, f"EA {name!r} is too large")
        total += len(name) + len(value or b"")
        out[name] = value or None
    if total > MAX_TOTAL:
        raise NtStatusError(NtStatus.STATUS_EA_TOO_LARGE, "EAs over 64 KiB")
    return out


def pack_full_ea(eas: Mapping[str, bytes | None]) -> bytes:
    """FILE_FULL_EA_INFORMATION entries, each 4-byte aligned, chained by NextEntryOffset."""
    entries = []
    for name, value in eas.items():
        raw_name = name.encode("ascii")
        raw_value = value or b""
        body = struct.pack("<BBH", 0, len(raw_name), len(raw_value)) + raw_name + b"\0" + raw_value
        entries.append(body)
    out = bytearray()
    for i, body in enumerate(entries):
        last = i == len(entries) - 1
        size = 4 + len(body)
        padded = size if last else (size + 3) & ~3
        out += struct.pack("<I", 0 if last else padded) + body + b"\0" * (padded - size)
    return bytes(out)


def parse_full_ea(data: bytes) -> dict[str, bytes]:
    eas: dict[str, bytes] = {}
    offset = 0
    while offset + 8 <= len(data):
        following, _flags, name_len, value_len = struct.unpack_from("<IBBH", data, offset)
        start = offset + 8
        end = start + name_len + 1 + value_len
        if end > len(data):
            raise NtStatusError(NtStatus.STATUS_INVALID_NETWORK_RESPONSE, "truncated EA list")
        name = data[start : start + name_len].decode("ascii", "replace")
        eas[name] = data[start + name_len + 1 : end]
        if following == 0:
            break
        offset += following
    return eas
