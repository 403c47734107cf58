"""FUSE mounts for tests (rdbss.testing.mounts), under the name the tests import."""

from rdbss.testing.mounts import (
    MOUNT_CODE,
    Mount,
    Mounted,
    foreground_mount,
    fuse_missing,
    mount_share,
    stop,
    unmount,
)

__all__ = [
    "MOUNT_CODE",
    "Mount",
    "Mounted",
    "foreground_mount",
    "fuse_missing",
    "mount_share",
    "stop",
    "unmount",
]
