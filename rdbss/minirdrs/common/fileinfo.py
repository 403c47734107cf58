"""The file info map of the mini-redirector conventions (rdbss/minirdrs/base.py) from a POSIX
stat result: what MRxQueryFileInfo answers and each entry of MRxQueryDirectory. Backends whose
server speaks POSIX attributes (local folders, SFTP) fill an ``os.stat_result`` or an object
with its fields.
"""

from __future__ import annotations

import os
import stat
from typing import Any, Protocol

from rdbss.wire.constants import FileAttributes


class StatLike(Protocol):
    """The fields of ``os.stat_result`` the base and ``file_info`` read."""

    @property
    def st_mode(self) -> int: ...
    @property
    def st_size(self) -> int: ...
    @property
    def st_blocks(self) -> int: ...
    @property
    def st_nlink(self) -> int: ...
    @property
    def st_ino(self) -> int: ...
    @property
    def st_atime_ns(self) -> int: ...
    @property
    def st_mtime_ns(self) -> int: ...
    @property
    def st_ctime_ns(self) -> int: ...


# plain ints: a flag enum's | costs a call of its own, on every stat and listing entry
_DIRECTORY = int(FileAttributes.DIRECTORY)
_READONLY = int(FileAttributes.READONLY)
_HIDDEN = int(FileAttributes.HIDDEN)
_NORMAL = int(FileAttributes.NORMAL)
#: this platform's stat results carry no birth time (Linux before Python 3.12)
_NO_BIRTH = not hasattr(os.stat_result, "st_birthtime") and not hasattr(
    os.stat_result, "st_birthtime_ns"
)


def _attributes(st: StatLike, name: str) -> int:
    mode = st.st_mode
    attrs = 0
    if stat.S_ISDIR(mode):
        attrs |= _DIRECTORY
    if not mode & 0o222:
        attrs |= _READONLY
    if name.startswith("."):
        attrs |= _HIDDEN
    return attrs or _NORMAL


def _creation_time_ns(st: StatLike) -> int:
    if _NO_BIRTH and type(st) is os.stat_result:
        return st.st_ctime_ns
    birth = getattr(st, "st_birthtime_ns", None)
    if isinstance(birth, int):
        return birth
    birth_s = getattr(st, "st_birthtime", None)
    if isinstance(birth_s, int | float):
        return int(birth_s * 1_000_000_000)
    return st.st_ctime_ns


def file_info(st: StatLike, rel: str, *, delete_pending: bool = False) -> dict[str, Any]:
    """The file info map of base.py's conventions for a stat result."""
    is_dir = stat.S_ISDIR(st.st_mode)
    return {
        "name": rel,
        "size": 0 if is_dir else st.st_size,
        "allocation_size": 0 if is_dir else st.st_blocks * 512,
        "attributes": _attributes(st, rel.rpartition("\\")[2]),
        "creation_time": _creation_time_ns(st),
        "last_access_time": st.st_atime_ns,
        "last_write_time": st.st_mtime_ns,
        "change_time": st.st_ctime_ns,
        "nlink": st.st_nlink,
        "directory": is_dir,
        "delete_pending": delete_pending,
        "file_id": st.st_ino,
        "mode": st.st_mode,
    }
