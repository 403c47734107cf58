"""Mount a share (or a folder in it) of the rdbss daemon with FUSE, so every program can use it.

    from rdbss.fuse_mount import mount
    mount(r"\\\\local\\data", "/mnt/data")        # blocks until `fusermount3 -u /mnt/data`

or ``rdbss mount '\\\\local\\data' /mnt/data``. Built on mfusepy (ctypes over libfuse3): a
path-based, multi-threaded file system whose every call is one or a few requests to the daemon
through one ``rdbss.client.Client``. Each open file (FUSE file handle) keeps one daemon handle
(FOBX) until release, so reads and writes go at their offsets, appends and ``echo > f`` work,
and a file stays usable after it is renamed. Failures are the NTSTATUS of the daemon turned into
the errno of the matching OSError (ENOENT, EEXIST, ENOTEMPTY, EACCES...).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import mfusepy  # type: ignore[import-untyped,unused-ignore]

from rdbss.client import Client, FileInfo
from rdbss.config import Config, load_config
from rdbss.wire import (
    Access,
    CreateDisposition,
    CreateOptions,
    FileAttributes,
    FileInformationClass,
    NtStatus,
    error_for_status,
)

__all__ = ["RdbssOperations", "cmd_mount", "mount"]

log = logging.getLogger("rdbss.fuse")

# utimensat(2) special nanosecond values; libfuse3 passes them with tv_sec = 0.
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
BLOCK = 512
IO_SIZE = 1 << 20  # st_blksize: what cp and friends use as their buffer size

F = TypeVar("F", bound=Callable[..., Any])


def _errno_of(exc: BaseException) -> int:
    code = getattr(exc, "errno", None)
    return code if isinstance(code, int) and code > 0 else errno.EIO


def _fuse_errors(func: F) -> F:
    """Turn every failure into the FuseOSError of its errno (NtStatusError is an OSError whose
    errno is the one of its OSError subclass; anything else is EIO)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except mfusepy.FuseOSError:
            raise
        except OSError as exc:
            log.debug("%s%r: %s", func.__name__, args[1:], exc)
            raise mfusepy.FuseOSError(_errno_of(exc)) from exc
        except Exception as exc:
            log.exception("%s%r failed", func.__name__, args[1:])
            raise mfusepy.FuseOSError(errno.EIO) from exc

    return cast(F, wrapper)


def normalize_unc(path: str) -> str:
    r"""``//server/share/dir`` or ``\\server\share\dir\`` -> ``\\server\share\dir``."""
    parts = [p for p in path.replace("/", "\\").split("\\") if p]
    if len(parts) < 2:
        raise error_for_status(
            NtStatus.STATUS_OBJECT_PATH_SYNTAX_BAD,
            f"not a share name (\\\\server\\share): {path!r}",
        )
    return "\\\\" + "\\".join(parts)


@dataclass(slots=True)
class _Open:
    fobx: int
    path: str
    writable: bool


class RdbssOperations(mfusepy.Operations):  # type: ignore[misc]
    """The FUSE operations of one mounted share folder ``root`` (a UNC name)."""

    use_ns = True  # times are nanosecond ints (st_mtime etc. and utimens)

    def __init__(
        self,
        root: str,
        *,
        runtime_dir: str | Path | None = None,
        config: Config | None = None,
        timeout: float | None = None,
    ) -> None:
        self.root = normalize_unc(root)
        self._runtime_dir = runtime_dir
        self._config = config
        self._timeout = timeout
        self._lock = threading.Lock()
        self._client: Client | None = None
        self._client_pid = -1
        self._opens: dict[int, _Open] = {}
        self._next_fh = 1
        self._uid = os.getuid()
        self._gid = os.getgid()

    # ------------------------------------------------------------------ plumbing
    @property
    def client(self) -> Client:
        """Made on first use, so it belongs to the process that serves requests (libfuse forks
        when not in the foreground)."""
        pid = os.getpid()
        with self._lock:
            if self._client is None or self._client_pid != pid:
                self._client = Client(self._runtime_dir, config=self._config, timeout=self._timeout)
                self._client_pid = pid
            return self._client

    def _unc(self, path: str) -> str:
        rest = path.strip("/")
        return self.root if not rest else self.root + "\\" + rest.replace("/", "\\")

    def _add(self, fobx: int, path: str, writable: bool) -> int:
        with self._lock:
            fh = self._next_fh
            self._next_fh += 1
            self._opens[fh] = _Open(fobx, path, writable)
            return fh

    def _get(self, fh: int | None) -> _Open | None:
        if fh is None:
            return None
        with self._lock:
            return self._opens.get(fh)

    def _open_of(self, fh: int) -> _Open:
        found = self._get(fh)
        if found is None:
            raise mfusepy.FuseOSError(errno.EBADF)
        return found

    def _attrs(self, info: FileInfo) -> dict[str, Any]:
        mode = info.extra.get("mode")
        if isinstance(mode, int) and not isinstance(mode, bool):
            perm = stat.S_IMODE(mode)
        else:
            perm = 0o755 if info.is_dir else 0o644
            if info.attributes & FileAttributes.READONLY:
                perm &= ~0o222
        nlink = info.extra.get("nlink")
        allocation = info.extra.get("allocation_size")
        size = 0 if info.is_dir else info.size
        if not isinstance(allocation, int) or allocation < 0:
            allocation = size
        return {
            "st_mode": (stat.S_IFDIR if info.is_dir else stat.S_IFREG) | perm,
            "st_nlink": nlink if isinstance(nlink, int) and nlink > 0 else 2 if info.is_dir else 1,
            "st_size": size,
            "st_blocks": (allocation + BLOCK - 1) // BLOCK,
            "st_blksize": IO_SIZE,
            "st_uid": self._uid,
            "st_gid": self._gid,
            "st_atime": info.last_access_time,
            "st_mtime": info.last_write_time,
            "st_ctime": info.change_time or info.last_write_time,
        }

    @staticmethod
    def _access(flags: int) -> tuple[int, bool]:
        kind = flags & os.O_ACCMODE
        if kind == os.O_WRONLY:
            return Access.GENERIC_WRITE | Access.FILE_READ_ATTRIBUTES, True
        if kind == os.O_RDWR:
            return Access.GENERIC_READ | Access.GENERIC_WRITE, True
        return Access.GENERIC_READ, False

    # ------------------------------------------------------------------ attributes
    @_fuse_errors
    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        opened = self._get(fh)
        if opened is not None:
            return self._attrs(self.client.query_info(opened.fobx))
        return self._attrs(self.client.stat(self._unc(path)))

    @_fuse_errors
    def readdir(self, path: str, fh: int) -> list[Any]:
        entries: list[Any] = [".", ".."]
        for info in self.client.scandir(self._unc(path)):
            if info.name in (".", ".."):
                continue
            kind = stat.S_IFDIR if info.is_dir else stat.S_IFREG
            entries.append((info.name, {"st_mode": kind}, 0))
        return entries

    @_fuse_errors
    def statfs(self, path: str) -> dict[str, int]:
        volume = self.client.volume(self.root)
        frsize = int(volume.get("bytes_per_sector", BLOCK)) * int(
            volume.get("sectors_per_allocation_unit", 8)
        )
        frsize = frsize or 4096
        return {
            "f_bsize": IO_SIZE,
            "f_frsize": frsize,
            "f_blocks": int(volume.get("total_bytes", 0)) // frsize,
            "f_bfree": int(volume.get("free_bytes", 0)) // frsize,
            "f_bavail": int(volume.get("avail_bytes", volume.get("free_bytes", 0))) // frsize,
            "f_namemax": int(volume.get("max_name_length", 255)),
        }

    @_fuse_errors
    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        now = time.time_ns()
        atime, mtime = times if times is not None else (UTIME_NOW, UTIME_NOW)

        def pick(value: int) -> int:  # 0 leaves the time alone (FileBasicInformation)
            if value == UTIME_OMIT:
                return 0
            if value == UTIME_NOW:
                return now
            return max(int(value), 1)

        self._set_basic(path, last_access_time=pick(atime), last_write_time=pick(mtime))
        return 0

    @_fuse_errors
    def chmod(self, path: str, mode: int) -> int:
        """Only the write bit means something to a share: it is the READONLY attribute."""
        info = self.client.stat(self._unc(path))
        attributes = FileAttributes.DIRECTORY if info.is_dir else FileAttributes.NORMAL
        if not mode & 0o200:
            attributes = (attributes & ~FileAttributes.NORMAL) | FileAttributes.READONLY
        self._set_basic(path, attributes=int(attributes))
        return 0

    def _set_basic(self, path: str, **args: int) -> None:
        handle = self.client.create(self._unc(path), access=Access.FILE_WRITE_ATTRIBUTES)
        try:
            self.client.set_info(handle.fobx, FileInformationClass.FileBasicInformation, **args)
        finally:
            self.client.close_handle(handle.fobx)

    # ------------------------------------------------------------------ files
    @_fuse_errors
    def open(self, path: str, flags: int) -> int:
        access, writable = self._access(flags)
        truncate = writable and bool(flags & os.O_TRUNC)
        handle = self.client.create(
            self._unc(path),
            access=access,
            disposition=CreateDisposition.FILE_OVERWRITE
            if truncate
            else CreateDisposition.FILE_OPEN,
            options=CreateOptions.FILE_NON_DIRECTORY_FILE,
        )
        return self._add(handle.fobx, path, writable)

    @_fuse_errors
    def create(self, path: str, mode: int, flags: int) -> int:
        access, _ = self._access(flags)
        if flags & os.O_EXCL:
            disposition = CreateDisposition.FILE_CREATE
        elif flags & os.O_TRUNC:
            disposition = CreateDisposition.FILE_OVERWRITE_IF
        else:
            disposition = CreateDisposition.FILE_OPEN_IF
        handle = self.client.create(
            self._unc(path),
            access=access | Access.GENERIC_WRITE,  # the creator may write even a 0444 file
            disposition=disposition,
            options=CreateOptions.FILE_NON_DIRECTORY_FILE,
        )
        return self._add(handle.fobx, path, True)

    @_fuse_errors
    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        return self.client.read_handle(self._open_of(fh).fobx, offset, size)

    @_fuse_errors
    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        opened = self._open_of(fh)
        view = memoryview(data)
        done = 0
        while done < len(view):
            written = self.client.write_handle(opened.fobx, offset + done, view[done:])
            if written <= 0:
                raise mfusepy.FuseOSError(errno.EIO)
            done += written
        return done

    @_fuse_errors
    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        opened = self._get(fh)
        if opened is not None and opened.writable:
            self.client.set_info(
                opened.fobx, FileInformationClass.FileEndOfFileInformation, size=length
            )
        else:
            self.client.truncate(self._unc(path), length)
        return 0

    @_fuse_errors
    def flush(self, path: str, fh: int) -> int:
        return 0  # every write already reached the daemon

    @_fuse_errors
    def fsync(self, path: str, datasync: int, fh: int) -> int:
        self.client.flush_handle(self._open_of(fh).fobx)
        return 0

    @_fuse_errors
    def release(self, path: str, fh: int) -> int:
        with self._lock:
            opened = self._opens.pop(fh, None)
        if opened is not None:
            self.client.close_handle(opened.fobx)
        return 0

    # ------------------------------------------------------------------ names
    @_fuse_errors
    def mkdir(self, path: str, mode: int) -> int:
        self.client.mkdir(self._unc(path))
        return 0

    @_fuse_errors
    def rmdir(self, path: str) -> int:
        self.client.rmdir(self._unc(path))
        return 0

    @_fuse_errors
    def unlink(self, path: str) -> int:
        self.client.remove(self._unc(path))
        return 0

    @_fuse_errors
    def rename(self, old: str, new: str) -> int:
        """rename(2): replaces an existing file; a directory replaces an empty directory."""
        src, dst = self._unc(old), self._unc(new)
        try:
            self.client.rename(src, dst, replace=True)
        except PermissionError:
            # shares refuse to replace a directory; POSIX allows it when it is empty
            try:
                replace_dir = self.client.stat(src).is_dir and self.client.stat(dst).is_dir
            except OSError:
                replace_dir = False
            if not replace_dir:
                raise
            self.client.rmdir(dst)  # ENOTEMPTY when not empty, as rename(2) says
            self.client.rename(src, dst, replace=True)
        return 0

    def destroy(self, path: str) -> None:
        with self._lock:
            client, self._client = self._client, None
            opens = list(self._opens.values())
            self._opens.clear()
        if client is None or self._client_pid != os.getpid():
            return
        for opened in opens:
            with contextlib.suppress(OSError):
                client.close_handle(opened.fobx, wait=False)
        client.close()


def mount(
    unc_share: str,
    mountpoint: str,
    *,
    runtime_dir: str | Path | None = None,
    config: Config | None = None,
    timeout: float | None = None,
    foreground: bool = True,
    options: Mapping[str, str | int | bool] | None = None,
) -> None:
    r"""Mount ``unc_share`` (``\\server\share`` or a folder in it) at ``mountpoint``.

    In the foreground (the default) this returns when the file system is unmounted
    (``fusermount3 -u MOUNTPOINT``, or SIGINT/SIGTERM to this process); otherwise libfuse
    detaches into the background once mounted. ``options`` are extra ``-o`` mount options
    (``{"allow_other": True}``...). Fails before mounting if the daemon is not running or the
    share folder does not exist.
    """
    root = normalize_unc(unc_share)
    with Client(runtime_dir, config=config, timeout=timeout) as client:
        if not client.stat(root).is_dir:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", root)
    if not os.path.isdir(mountpoint):
        raise NotADirectoryError(errno.ENOTDIR, "the mount point is not a directory", mountpoint)
    operations = RdbssOperations(root, runtime_dir=runtime_dir, config=config, timeout=timeout)
    fuse_options: dict[str, Any] = {
        "fsname": "rdbss:" + root.replace("\\", "/"),
        "subtype": "rdbss",
    }
    fuse_options.update(options or {})
    mfusepy.FUSE(operations, mountpoint, foreground=foreground, nothreads=False, **fuse_options)


def _parse_options(text: str | None) -> dict[str, str | bool]:
    parsed: dict[str, str | bool] = {}
    for item in (text or "").split(","):
        if item.strip():
            key, sep, value = item.strip().partition("=")
            parsed[key] = value if sep else True
    return parsed


def cmd_mount(args: argparse.Namespace) -> int:
    """``rdbss mount SHARE MOUNTPOINT [-o opt,...] [--background]`` (see rdbss.cli)."""
    config = load_config(Path(args.config) if args.config else None)
    mount(
        args.share,
        args.mountpoint,
        config=config,
        timeout=getattr(args, "timeout", None),
        foreground=not getattr(args, "background", False),
        options=_parse_options(getattr(args, "options", None)),
    )
    return 0
