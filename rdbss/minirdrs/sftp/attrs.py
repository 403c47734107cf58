"""SFTP attributes (asyncssh.SFTPAttrs) as the stats PosixMiniRdr reads (rdbss/minirdrs/
primitives.py), and as the security and change-notify records of rdbss/minirdrs/common/.

SFTP v3 times have whole-second precision; there is no creation time (the change time is
reported, or the modification time when the server sends no change time), no block count (the
allocation size is the size rounded up to :data:`ALLOCATION_UNIT`) and no inode number
(``file_id`` is a hash of the server path, so it changes on rename).
"""

from __future__ import annotations

import hashlib
import stat
from dataclasses import dataclass, field

import asyncssh

from rdbss.minirdrs.common.notify import Entry
from rdbss.minirdrs.common.security import PosixSecurity

#: SFTP v3 reports no block count: sizes are rounded up to this for allocation_size.
ALLOCATION_UNIT = 4096

_TYPE_BITS = {
    asyncssh.FILEXFER_TYPE_REGULAR: stat.S_IFREG,
    asyncssh.FILEXFER_TYPE_DIRECTORY: stat.S_IFDIR,
    asyncssh.FILEXFER_TYPE_SYMLINK: stat.S_IFLNK,
}


def mode_of(attrs: asyncssh.SFTPAttrs) -> int:
    """st_mode, with the file type bits even when the server only sent a type (v4+)."""
    mode = attrs.permissions or 0
    if not stat.S_IFMT(mode):
        mode |= _TYPE_BITS.get(attrs.type, 0)
    return mode


def ns_of(seconds: int | float | None, ns: int | None) -> int:
    if seconds is None:
        return 0
    return int(seconds) * 1_000_000_000 + (ns or 0)


@dataclass(slots=True)
class SftpStat:
    """The fields of os.stat_result the base and ``file_info`` read, from SFTP attributes;
    with the server path and the attributes they came from (what an open of the name a lookup
    found needs, without asking again). Never changed once made; not frozen, as a frozen
    dataclass costs a microsecond more to make, once per entry of every listing."""

    st_mode: int
    st_size: int
    st_blocks: int
    st_nlink: int
    st_ino: int
    st_atime_ns: int
    st_mtime_ns: int
    st_ctime_ns: int
    remote: str = field(default="", compare=False)
    attrs: asyncssh.SFTPAttrs | None = field(default=None, compare=False, repr=False)


def file_id(remote: str) -> int:
    return int.from_bytes(hashlib.blake2b(remote.encode(), digest_size=8).digest(), "big") >> 1


def stat_of(attrs: asyncssh.SFTPAttrs, remote: str) -> SftpStat:
    """The stat of ``remote`` from its SFTP attributes."""
    size = attrs.size or 0
    allocation = -(-size // ALLOCATION_UNIT) * ALLOCATION_UNIT
    mtime = ns_of(attrs.mtime, attrs.mtime_ns)
    return SftpStat(
        st_mode=mode_of(attrs),
        st_size=size,
        st_blocks=allocation // 512,
        st_nlink=attrs.nlink or 1,
        st_ino=file_id(remote),
        st_atime_ns=ns_of(attrs.atime, attrs.atime_ns),
        st_mtime_ns=mtime,
        st_ctime_ns=ns_of(attrs.ctime, attrs.ctime_ns) if attrs.ctime is not None else mtime,
        remote=remote,
        attrs=attrs,
    )


def security_of(attrs: asyncssh.SFTPAttrs) -> PosixSecurity:
    """SFTP v3 (OpenSSH) sends numeric ids only; v4+ servers also send names."""
    return PosixSecurity(
        attrs.uid if attrs.uid is not None else -1,
        attrs.gid if attrs.gid is not None else -1,
        mode_of(attrs),
        attrs.owner or None,
        attrs.group or None,
    )


def entry_of(attrs: asyncssh.SFTPAttrs) -> Entry:
    """What the change-notify poller compares between two listings."""
    mode = mode_of(attrs)
    is_dir = stat.S_ISDIR(mode)
    size = 0 if is_dir else attrs.size or 0
    return Entry(is_dir, size, ns_of(attrs.mtime, attrs.mtime_ns), mode)
