"""The local mini-redirector (``kind = "local"``): configured local folders as shares.

minirdr.py holds ``LocalMiniRdr`` (PosixMiniRdr's primitives on host descriptors), shares.py
the shares and host path resolution, locks.py byte-range locks, metadata.py extended
attributes and security descriptors. ``rdbss.minirdrs.local.LocalMiniRdr`` stays importable
from here.
"""

from rdbss.minirdrs.base import MAX_READ_BYTES
from rdbss.minirdrs.common.fileinfo import file_info
from rdbss.minirdrs.common.shares import MAX_SHARE_NAME_CHARS, check_share_name
from rdbss.minirdrs.local.metadata import posix_security
from rdbss.minirdrs.local.minirdr import LocalMiniRdr

__all__ = [
    "MAX_READ_BYTES",
    "MAX_SHARE_NAME_CHARS",
    "LocalMiniRdr",
    "check_share_name",
    "file_info",
    "posix_security",
]
