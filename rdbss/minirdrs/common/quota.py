"""Quota entries (MRxQueryQuotaInfo / MRxSetQuotaInfo) and their SMB binary forms
(FILE_QUOTA_INFORMATION, FILE_GET_QUOTA_INFORMATION, SMB2_QUERY_QUOTA_INFO). Pure code.

An entry is a map ``{"sid": "S-1-22-1-0", "used": bytes, "threshold": bytes, "limit": bytes,
"change_time": POSIX ns}``; a threshold or limit of -1 means "none" (as Windows says it). A set
gives ``sid``, ``threshold`` and ``limit`` (``used`` and ``change_time`` are the server's).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from rdbss.minirdrs.common.security import sid_to_bytes, sid_to_str
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus
FILETIME_EPOCH = 116_444_736_000_000_000
MAX_ENTRIES = 4096
MAX_SIDS = 256


def _invalid(message: str) -> NtStatusError:
    return NtStatusError(S.STATUS_INVALID_PARAMETER, message)


def _chain(records: list[bytes]) -> bytes:
    """Records linked by NextEntryOffset (the first field), each 8-byte aligned."""
    out = b""
    for index, record in enumerate(records):
        record += bytes(-len(record) % 8)
        following = 0 if index == len(records) - 1 else len(record)
        out += struct.pack("<I", following) + record[4:]
    return out


def query_quota_info(sids: list[str] | None, *, restart: bool) -> bytes:
    """SMB2_QUERY_QUOTA_INFO: every entry (``sids`` None) or those of ``sids``."""
    sid_list = b""
    if sids:
        records = []
        for sid in sids:
            raw = sid_to_bytes(sid)
            records.append(struct.pack("<II", 0, len(raw)) + raw)
        sid_list = _chain(records)
    # ReturnSingle, RestartScan, Reserved, SidListLength, StartSidLength, StartSidOffset
    return struct.pack("<BBHIII", 0, int(restart), 0, len(sid_list), 0, 0) + sid_list


def parse_quota_information(data: bytes | memoryview) -> list[dict[str, Any]]:
    """FILE_QUOTA_INFORMATION records as entries; STATUS_INVALID_NETWORK_RESPONSE when
    malformed."""
    out: list[dict[str, Any]] = []
    offset = 0
    while offset + 40 <= len(data) and len(out) < MAX_ENTRIES:
        following, sid_length, change, used, threshold, limit = struct.unpack_from(
            "<IIqqqq", data, offset
        )
        end = offset + 40 + sid_length
        if end > len(data):
            raise NtStatusError(S.STATUS_INVALID_NETWORK_RESPONSE, "truncated quota record")
        try:
            sid, _ = sid_to_str(bytes(data[offset + 40 : end]))
        except NtStatusError:
            raise NtStatusError(
                S.STATUS_INVALID_NETWORK_RESPONSE, "malformed SID in a quota record"
            ) from None
        out.append(
            {
                "sid": sid,
                "used": used,
                "threshold": threshold,
                "limit": limit,
                "change_time": (change - FILETIME_EPOCH) * 100 if change > 0 else 0,
            }
        )
        if not following:
            return out
        if following < 40 + sid_length:
            raise NtStatusError(S.STATUS_INVALID_NETWORK_RESPONSE, "malformed quota records")
        offset += following
    if data and offset < len(data) and len(out) < MAX_ENTRIES:
        raise NtStatusError(S.STATUS_INVALID_NETWORK_RESPONSE, "truncated quota records")
    return out


def _limit(entry: Mapping[str, Any], key: str, index: int) -> int:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value < 1 << 63:
        raise _invalid(f"quota entry {index}: {key} must be bytes (or -1 for none)")
    return value


def pack_quota_entries(entries: object) -> bytes:
    """FILE_QUOTA_INFORMATION records for a set: ``sid``, ``threshold``, ``limit`` each."""
    if not isinstance(entries, list) or not entries:
        raise _invalid("set quota needs a non-empty list of entries")
    if len(entries) > MAX_SIDS:
        raise _invalid(f"more than {MAX_SIDS} quota entries")
    records = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise _invalid(f"quota entry {index} is not a map")
        unknown = sorted(str(k) for k in entry if k not in ("sid", "threshold", "limit"))
        if unknown:
            raise _invalid(f"quota entry {index}: unknown field(s) {', '.join(unknown)}")
        raw = sid_to_bytes(entry.get("sid"))
        threshold, limit = _limit(entry, "threshold", index), _limit(entry, "limit", index)
        records.append(struct.pack("<IIqqqq", 0, len(raw), 0, 0, threshold, limit) + raw)
    return _chain(records)


def parse_query_args(args: object) -> list[str] | None:
    """The SIDs a query names (None: every entry)."""
    if args is None or (isinstance(args, Mapping) and not args):
        return None
    if not isinstance(args, Mapping) or set(args) - {"sids"}:
        raise _invalid("a quota query takes only 'sids'")
    sids = args.get("sids")
    if sids is None:
        return None
    if not isinstance(sids, list) or not sids or len(sids) > MAX_SIDS:
        raise _invalid(f"sids must be a list of 1 to {MAX_SIDS} SIDs")
    for sid in sids:
        sid_to_bytes(sid)  # refuses what is not a SID
    return [str(s) for s in sids]
