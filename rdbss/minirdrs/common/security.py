"""Security descriptors (MRxQuerySdInfo / MRxSetSdInfo): one structure for every backend, the
honest mapping of a POSIX owner, group and mode to it, and the self-relative binary form SMB
servers speak. Pure code.

The structure (a msgpack map) holds only what the request's SecurityInformation asked for::

    {"owner": "S-1-22-1-0", "owner_name": "root",       # OWNER_SECURITY_INFORMATION
     "group": "S-1-22-2-0", "group_name": "root",       # GROUP_SECURITY_INFORMATION
     "uid": 0, "gid": 0,                                # POSIX backends, with owner / group
     "dacl": [{"type": 0, "flags": 0, "mask": 0x1200a9, "sid": "S-1-1-0"}, ...],   # DACL
     "mode": 0o100644,                                  # POSIX backends, with the DACL
     "control": 0x8004}

``type`` is ACCESS_ALLOWED_ACE_TYPE (0) or ACCESS_DENIED_ACE_TYPE (1) (others pass through from
an SMB server as their number); ``dacl`` is None for a NULL DACL (everyone, full access).

POSIX mapping (as Samba maps Unix ids without a domain): the owner is S-1-22-1-<uid>, the group
S-1-22-2-<gid>; the DACL has one allow ACE for each of owner, group and Everyone (S-1-1-0) whose
mask is the union of FILE_GENERIC_READ / WRITE / EXECUTE for that class's r, w and x bits (a
class with no bits has no ACE). Setting a DACL goes the other way only when it is exactly such a
DACL; anything else (a deny ACE, another SID, inheritance flags, rights such as DELETE or
WRITE_DAC, a partial generic mask) is refused with STATUS_INVALID_PARAMETER saying why: a mode
never silently approximates an ACL.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus

OWNER_SECURITY_INFORMATION = 0x1
GROUP_SECURITY_INFORMATION = 0x2
DACL_SECURITY_INFORMATION = 0x4
SACL_SECURITY_INFORMATION = 0x8
#: What a POSIX backend can answer or set.
POSIX_INFORMATION = (
    OWNER_SECURITY_INFORMATION | GROUP_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION
)
ALL_INFORMATION = POSIX_INFORMATION | SACL_SECURITY_INFORMATION

ACCESS_ALLOWED_ACE_TYPE = 0
ACCESS_DENIED_ACE_TYPE = 1
ACE_TYPE_NAMES = {ACCESS_ALLOWED_ACE_TYPE: "allow", ACCESS_DENIED_ACE_TYPE: "deny"}

FILE_READ_DATA = 0x0001
FILE_WRITE_DATA = 0x0002
FILE_EXECUTE = 0x0020
FILE_GENERIC_READ = 0x00120089
FILE_GENERIC_WRITE = 0x00120116
FILE_GENERIC_EXECUTE = 0x001200A0
_GENERIC_ALL_FILE = FILE_GENERIC_READ | FILE_GENERIC_WRITE | FILE_GENERIC_EXECUTE

EVERYONE = "S-1-1-0"
UNIX_USER_PREFIX = "S-1-22-1-"
UNIX_GROUP_PREFIX = "S-1-22-2-"

# SECURITY_DESCRIPTOR_CONTROL bits
SE_OWNER_DEFAULTED = 0x0001
SE_DACL_PRESENT = 0x0004
SE_SACL_PRESENT = 0x0010
SE_DACL_PROTECTED = 0x1000
SE_SELF_RELATIVE = 0x8000

MAX_ACES = 1024


def _invalid(message: str) -> NtStatusError:
    return NtStatusError(S.STATUS_INVALID_PARAMETER, message)


def unix_user_sid(uid: int) -> str:
    return f"{UNIX_USER_PREFIX}{uid}"


def unix_group_sid(gid: int) -> str:
    return f"{UNIX_GROUP_PREFIX}{gid}"


def _unix_id(sid: object, prefix: str, what: str) -> int:
    if not isinstance(sid, str) or not sid.upper().startswith(prefix):
        raise _invalid(
            f"{what} {sid!r} is not a Unix {what} SID ({prefix}<id>): only those map to a "
            "POSIX owner or group here"
        )
    digits = sid[len(prefix) :]
    if not digits.isdigit() or int(digits) > 0xFFFFFFFE:
        raise _invalid(f"{what} {sid!r}: not a valid id")
    return int(digits)


def uid_of(sid: object) -> int:
    return _unix_id(sid, UNIX_USER_PREFIX, "owner")


def gid_of(sid: object) -> int:
    return _unix_id(sid, UNIX_GROUP_PREFIX, "group")


def check_query_information(info: object, allowed: int) -> int:
    """The SecurityInformation bits of a query or set; STATUS_INVALID_PARAMETER for none or for
    unknown bits, STATUS_NOT_SUPPORTED for a SACL where the backend has none."""
    if isinstance(info, bool) or not isinstance(info, int) or info <= 0:
        raise _invalid(f"SecurityInformation {info!r}: ask for OWNER, GROUP and/or DACL")
    if info & ~ALL_INFORMATION:
        raise _invalid(f"SecurityInformation 0x{info:x}: unknown bits")
    if info & ~allowed:
        raise NtStatusError(
            S.STATUS_NOT_SUPPORTED, "no SACL (auditing) here: POSIX files have none"
        )
    return info


# ------------------------------------------------------------------------------ POSIX mapping
def rwx_mask(bits: int) -> int:
    """The access mask of one mode class (r=4, w=2, x=1)."""
    mask = 0
    if bits & 4:
        mask |= FILE_GENERIC_READ
    if bits & 2:
        mask |= FILE_GENERIC_WRITE
    if bits & 1:
        mask |= FILE_GENERIC_EXECUTE
    return mask


def mask_rwx(mask: int, who: str) -> int:
    """The r/w/x bits of an allow ACE's mask, refused unless the mask is exactly their generic
    masks' union."""
    extra = mask & ~_GENERIC_ALL_FILE
    if extra:
        raise _invalid(
            f"ACE for {who}: access mask 0x{mask:08x} has rights 0x{extra:08x} a POSIX mode "
            "cannot express (only FILE_GENERIC_READ / WRITE / EXECUTE)"
        )
    bits = (
        (4 if mask & FILE_READ_DATA else 0)
        | (2 if mask & FILE_WRITE_DATA else 0)
        | (1 if mask & FILE_EXECUTE else 0)
    )
    if rwx_mask(bits) != mask:
        raise _invalid(
            f"ACE for {who}: access mask 0x{mask:08x} is not a union of FILE_GENERIC_READ, "
            "FILE_GENERIC_WRITE and FILE_GENERIC_EXECUTE (a POSIX mode grants whole r/w/x)"
        )
    return bits


def mode_dacl(mode: int, owner: str, group: str) -> list[dict[str, Any]]:
    """The DACL a POSIX mode means: owner, group, Everyone allow ACEs (none for a class with no
    permission bits)."""
    dacl = []
    for sid, shift in ((owner, 6), (group, 3), (EVERYONE, 0)):
        bits = (mode >> shift) & 0o7
        if bits:
            dacl.append(
                {"type": ACCESS_ALLOWED_ACE_TYPE, "flags": 0, "mask": rwx_mask(bits), "sid": sid}
            )
    return dacl


def _ace_fields(ace: object, index: int) -> tuple[int, int, int, str]:
    if not isinstance(ace, Mapping):
        raise _invalid(f"ACE {index} is not a map")
    kind, flags, mask, sid = ace.get("type"), ace.get("flags", 0), ace.get("mask"), ace.get("sid")
    for name, value in (("type", kind), ("flags", flags), ("mask", mask)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
            raise _invalid(f"ACE {index}: {name} must be an unsigned integer")
    if not isinstance(sid, str) or not sid:
        raise _invalid(f"ACE {index}: sid must be a SID string")
    assert isinstance(kind, int) and isinstance(flags, int) and isinstance(mask, int)
    return kind, flags, mask, sid


def dacl_mode(dacl: object, owner: str, group: str) -> int:
    """The permission bits (0o777) of a DACL that is exactly owner / group / Everyone allow
    ACEs; STATUS_INVALID_PARAMETER naming what a mode cannot say otherwise."""
    if dacl is None:
        raise _invalid("a NULL DACL (no access control at all) cannot be expressed as a mode")
    if not isinstance(dacl, list):
        raise _invalid("dacl must be a list of ACEs")
    if len(dacl) > MAX_ACES:
        raise _invalid(f"more than {MAX_ACES} ACEs")
    shifts = {owner.upper(): (6, "the owner"), group.upper(): (3, "the group")}
    shifts[EVERYONE] = (0, "Everyone")
    if owner.upper() == group.upper():
        raise _invalid("owner and group SIDs are the same: their ACEs cannot be told apart")
    mode = 0
    seen: set[str] = set()
    for index, ace in enumerate(dacl):
        kind, flags, mask, sid = _ace_fields(ace, index)
        key = sid.upper()
        if kind != ACCESS_ALLOWED_ACE_TYPE:
            name = ACE_TYPE_NAMES.get(kind, f"type {kind}")
            raise _invalid(f"ACE {index} ({name} for {sid}): a POSIX mode has only allow entries")
        if flags:
            raise _invalid(
                f"ACE {index} for {sid}: flags 0x{flags:x} (inheritance) cannot be expressed "
                "as a mode"
            )
        if key not in shifts:
            raise _invalid(
                f"ACE {index}: SID {sid} is not the owner ({owner}), the group ({group}) or "
                f"Everyone ({EVERYONE}): a POSIX mode has no entry for it"
            )
        if key in seen:
            raise _invalid(f"ACE {index}: a second ACE for {sid}")
        seen.add(key)
        shift, who = shifts[key]
        mode |= mask_rwx(mask, who) << shift
    return mode


@dataclass(frozen=True, slots=True)
class PosixSecurity:
    uid: int
    gid: int
    mode: int  # st_mode, file type bits included
    owner_name: str | None = None
    group_name: str | None = None


def posix_descriptor(info: int, sec: PosixSecurity) -> dict[str, Any]:
    """The security structure of a POSIX file, holding what ``info`` asks for."""
    owner, group = unix_user_sid(sec.uid), unix_group_sid(sec.gid)
    out: dict[str, Any] = {"control": SE_SELF_RELATIVE}
    if info & OWNER_SECURITY_INFORMATION:
        out["owner"] = owner
        out["owner_name"] = sec.owner_name
        out["uid"] = sec.uid
    if info & GROUP_SECURITY_INFORMATION:
        out["group"] = group
        out["group_name"] = sec.group_name
        out["gid"] = sec.gid
    if info & DACL_SECURITY_INFORMATION:
        out["dacl"] = mode_dacl(sec.mode, owner, group)
        out["mode"] = sec.mode
        out["control"] |= SE_DACL_PRESENT | SE_DACL_PROTECTED
    return out


@dataclass(frozen=True, slots=True)
class PosixChange:
    """What a set asks of a POSIX file: None leaves that part alone."""

    uid: int | None = None
    gid: int | None = None
    permissions: int | None = None  # the 0o7777 bits


def posix_change(info: object, args: object, current: PosixSecurity) -> PosixChange:
    """Parse MRxSetSdInfo's arguments for a POSIX file: each SecurityInformation bit needs its
    field (and a field needs its bit); a DACL must be expressible as a mode (see the module
    docstring); ``mode`` sets the permission bits directly."""
    bits = check_query_information(info, POSIX_INFORMATION)
    if not isinstance(args, Mapping):
        raise _invalid("set security without arguments")
    known = {"owner", "group", "dacl", "mode"}
    unknown = sorted(str(k) for k in args if k not in known)
    if unknown:
        raise _invalid(f"unknown security field(s) {', '.join(unknown)}")
    wanted = {
        "owner": bool(bits & OWNER_SECURITY_INFORMATION),
        "group": bool(bits & GROUP_SECURITY_INFORMATION),
    }
    for name, flag in wanted.items():
        if flag and name not in args:
            raise _invalid(f"SecurityInformation asks to set the {name} but gives none")
        if not flag and name in args:
            raise _invalid(f"a {name} given without its SecurityInformation bit")
    has_dacl_field = "dacl" in args or "mode" in args
    if bool(bits & DACL_SECURITY_INFORMATION) != has_dacl_field:
        raise _invalid("DACL_SECURITY_INFORMATION and a dacl (or mode) go together")
    if "dacl" in args and "mode" in args:
        raise _invalid("give a dacl or a mode, not both")
    uid = uid_of(args["owner"]) if "owner" in args else None
    gid = gid_of(args["group"]) if "group" in args else None
    permissions: int | None = None
    if "mode" in args:
        mode = args["mode"]
        if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777:
            raise _invalid("mode must be permission bits between 0 and 0o7777")
        permissions = mode
    elif "dacl" in args:
        owner = unix_user_sid(uid if uid is not None else current.uid)
        group = unix_group_sid(gid if gid is not None else current.gid)
        rwx = dacl_mode(args["dacl"], owner, group)
        permissions = (current.mode & 0o7000) | rwx  # setuid/setgid/sticky are kept
    return PosixChange(uid, gid, permissions)


# ------------------------------------------------------------------------------ binary form
def sid_to_str(data: bytes | memoryview, offset: int = 0) -> tuple[str, int]:
    """A binary SID at ``offset``: its string form and its length."""
    if offset + 8 > len(data):
        raise _invalid("security descriptor: SID out of bounds")
    revision, count = data[offset], data[offset + 1]
    end = offset + 8 + 4 * count
    if revision != 1 or count > 15 or end > len(data):
        raise _invalid("security descriptor: malformed SID")
    authority = int.from_bytes(bytes(data[offset + 2 : offset + 8]), "big")
    subs = struct.unpack_from(f"<{count}I", data, offset + 8)
    return "-".join(["S-1", str(authority), *(str(s) for s in subs)]), end - offset


def sid_to_bytes(sid: object) -> bytes:
    if not isinstance(sid, str):
        raise _invalid(f"SID {sid!r} is not a string")
    parts = sid.upper().split("-")
    if len(parts) < 3 or parts[0] != "S" or parts[1] != "1":
        raise _invalid(f"{sid!r} is not a SID (S-1-<authority>-<sub>...)")
    try:
        authority, subs = int(parts[2]), [int(p) for p in parts[3:]]
    except ValueError:
        raise _invalid(f"{sid!r} is not a SID") from None
    if len(subs) > 15 or not 0 <= authority < 1 << 48 or any(not 0 <= s < 1 << 32 for s in subs):
        raise _invalid(f"{sid!r}: out of range")
    return (
        bytes([1, len(subs)]) + authority.to_bytes(6, "big") + struct.pack(f"<{len(subs)}I", *subs)
    )


def _parse_acl(data: bytes | memoryview, offset: int) -> list[dict[str, Any]]:
    if offset + 8 > len(data):
        raise _invalid("security descriptor: ACL out of bounds")
    _rev, _sbz, size, count, _sbz2 = struct.unpack_from("<BBHHH", data, offset)
    end = offset + size
    if end > len(data) or count > MAX_ACES:
        raise _invalid("security descriptor: malformed ACL")
    aces = []
    pos = offset + 8
    for _ in range(count):
        if pos + 8 > end:
            raise _invalid("security descriptor: ACE out of bounds")
        kind, flags, ace_size, mask = struct.unpack_from("<BBHI", data, pos)
        if ace_size < 8 or pos + ace_size > end:
            raise _invalid("security descriptor: malformed ACE")
        ace: dict[str, Any] = {"type": kind, "flags": flags, "mask": mask}
        if kind in (0, 1, 2, 3):  # the basic allow / deny / audit / alarm ACEs carry one SID
            ace["sid"], _ = sid_to_str(data[: pos + ace_size], pos + 8)
        else:
            ace["sid"] = None
            ace["body"] = bytes(data[pos + 8 : pos + ace_size])
        aces.append(ace)
        pos += ace_size
    return aces


def parse_descriptor(data: bytes | memoryview) -> dict[str, Any]:
    """A self-relative SECURITY_DESCRIPTOR as the security structure."""
    if len(data) < 20:
        raise _invalid("security descriptor shorter than its header")
    revision, _sbz, control, owner, group, sacl, dacl = struct.unpack_from("<BBHIIII", data)
    if revision != 1:
        raise _invalid(f"security descriptor revision {revision}")
    out: dict[str, Any] = {"control": control}
    if owner:
        out["owner"], _ = sid_to_str(data, owner)
    if group:
        out["group"], _ = sid_to_str(data, group)
    if control & SE_DACL_PRESENT:
        out["dacl"] = _parse_acl(data, dacl) if dacl else None
    if control & SE_SACL_PRESENT:
        out["sacl"] = _parse_acl(data, sacl) if sacl else None
    return out


def _pack_acl(aces: object, what: str) -> bytes:
    if not isinstance(aces, list):
        raise _invalid(f"{what} must be a list of ACEs")
    if len(aces) > MAX_ACES:
        raise _invalid(f"more than {MAX_ACES} ACEs")
    body = b""
    for index, ace in enumerate(aces):
        kind, flags, mask, sid = _ace_fields(ace, index)
        if kind not in (0, 1, 2, 3) or flags > 0xFF:
            raise _invalid(f"ACE {index}: type {kind} / flags {flags:#x} cannot be sent")
        sid_bytes = sid_to_bytes(sid)
        body += struct.pack("<BBHI", kind, flags, 8 + len(sid_bytes), mask) + sid_bytes
    return struct.pack("<BBHHH", 2, 0, 8 + len(body), len(aces), 0) + body


def pack_descriptor(info: int, args: object) -> bytes:
    """A self-relative SECURITY_DESCRIPTOR holding the parts ``info`` names, from the security
    structure (``owner``, ``group``, ``dacl``; ``sacl`` with SACL_SECURITY_INFORMATION)."""
    if not isinstance(args, Mapping):
        raise _invalid("set security without arguments")
    known = {"owner", "group", "dacl", "sacl", "control"}
    unknown = sorted(str(k) for k in args if k not in known)
    if unknown:
        raise _invalid(f"unknown security field(s) {', '.join(unknown)} (no 'mode' over SMB)")
    parts = (
        ("owner", OWNER_SECURITY_INFORMATION),
        ("group", GROUP_SECURITY_INFORMATION),
        ("dacl", DACL_SECURITY_INFORMATION),
        ("sacl", SACL_SECURITY_INFORMATION),
    )
    for name, flag in parts:
        if bool(info & flag) != (name in args):
            raise _invalid(f"SecurityInformation and the {name} field go together")
    control = SE_SELF_RELATIVE
    offset = 20
    blobs: list[bytes] = []
    offsets = {"owner": 0, "group": 0, "sacl": 0, "dacl": 0}
    for name in ("owner", "group"):
        if name in args:
            blob = sid_to_bytes(args[name])
            offsets[name] = offset
            blobs.append(blob)
            offset += len(blob)
    for name, present in (("sacl", SE_SACL_PRESENT), ("dacl", SE_DACL_PRESENT)):
        if name in args:
            control |= present
            if args[name] is not None:  # None: a NULL ACL (offset 0)
                blob = _pack_acl(args[name], name)
                offsets[name] = offset
                blobs.append(blob)
                offset += len(blob)
    header = struct.pack(
        "<BBHIIII",
        1,
        0,
        control,
        offsets["owner"],
        offsets["group"],
        offsets["sacl"],
        offsets["dacl"],
    )
    return header + b"".join(blobs)
